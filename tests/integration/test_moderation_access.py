"""Every moderation page and API, found by walking the URL configuration (so a new one is covered
without being listed here): anonymous, the API answers 401 and a page the sign-in prompt;
signed in without the role (an ordinary user, staff without a role, and the other role), 403.
The report and notice forms and a publisher's own views live outside /moderation/ and
/api/v1/moderation/ and are not walked."""
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
import pytest

from marketplace.accounts.models import User
from marketplace.accounts.roles import ARBITER, MODERATOR

pytestmark = pytest.mark.django_db

# A sample value per path converter: any value will do, the role is checked before the target.
SAMPLES = {"int": "1", "str": "x", "slug": "x", "path": "x", "uuid": "00000000-0000-0000-0000-000000000001"}
ADDRESS = "0x" + "ab" * 20


def _walk(patterns, prefix=""):
    for p in patterns:
        route = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, route)
        elif isinstance(p, URLPattern):
            yield route, p


def _fill(route: str) -> str:
    path = "/" + route.lstrip("^").rstrip("$")
    while "<" in path:
        start, end = path.index("<"), path.index(">")
        converter, _, name = path[start + 1:end].rpartition(":")
        value = ADDRESS if "address" in name or "wallet" in name else SAMPLES.get(converter or "str", "1")
        path = path[:start] + value + path[end + 1:]
    return path


def moderation_urls():
    pages, apis = [], []
    for route, pattern in _walk(get_resolver().url_patterns):
        path = _fill(route)
        if path.startswith("/api/v1/moderation/"):
            apis.append((path, pattern))
        elif path.startswith("/moderation/"):
            pages.append((path, pattern))
    return pages, apis


def _roles_of(pattern) -> set:
    """The roles a URL admits: the disputes' and the stray transfers' (returns) pages and APIs are
    the arbiter's, the failed operator actions both roles' (an arbiter retries a resolution), the
    rest the moderator's."""
    route = str(pattern.pattern)
    if "dispute" in route or route.startswith("moderation/returns"):
        return {ARBITER}
    if route.startswith("moderation/actions"):
        return {MODERATOR, ARBITER}
    return {MODERATOR}


def _outsiders(pattern, outsiders, holders):
    """Who must be refused: people without a role, and the holders of a role the URL does not admit."""
    return [*outsiders.items(), *((f"a {role}", client) for role, client in holders.items()
                                  if role not in _roles_of(pattern))]


def person(name, *roles, **extra):
    user = User.objects.create_user(name, password="a-long-password-1", **extra)
    for role in roles:
        Group.objects.get(name=role).user_set.add(user)
    client = Client()
    client.force_login(user)
    return client


def test_the_walk_finds_the_moderation_console():
    pages, apis = moderation_urls()
    assert "/moderation/audit" in [p for p, _ in pages]
    assert {"/api/v1/moderation/audit", "/api/v1/moderation/revisions"} <= {p for p, _ in apis}


def test_every_moderation_api_is_401_anonymous_and_403_without_its_role():
    _, apis = moderation_urls()
    outsiders = {"user": person("pub"), "staff": person("staff", is_staff=True)}
    holders = {ARBITER: person("arb", ARBITER), MODERATOR: person("mod", MODERATOR)}
    for path, pattern in apis:
        for method in ("get", "post"):
            answer = getattr(Client(), method)(path)
            assert answer.status_code == 401, (method, path, answer.status_code)
            assert answer.json()["error"]["code"] == "not_signed_in", (method, path)
            for who, client in _outsiders(pattern, outsiders, holders):
                answer = getattr(client, method)(path)
                assert answer.status_code == 403, (who, method, path, answer.status_code)
                assert answer.json()["error"]["code"] == "forbidden", (who, method, path)


def test_every_moderation_page_is_the_sign_in_prompt_anonymous_and_403_without_its_role():
    pages, _ = moderation_urls()
    outsiders = {"user": person("pub"), "staff": person("staff", is_staff=True)}
    holders = {ARBITER: person("arb", ARBITER), MODERATOR: person("mod", MODERATOR)}
    for path, pattern in pages:
        anonymous = Client().get(path)
        assert anonymous.status_code in (200, 401) and "Connect your wallet" in anonymous.content.decode(), path
        for who, client in _outsiders(pattern, outsiders, holders):
            answer = client.get(path)
            assert answer.status_code == 403, (who, path, answer.status_code)
            assert "only" in answer.content.decode(), (who, path)

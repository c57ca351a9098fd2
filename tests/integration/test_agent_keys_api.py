"""The agent keys API (`/api/v1/me/agent-keys`) and page (`/me/agents`) against real PostgreSQL:
a key is made with its secret shown once, listed with its spending, its purchases paged, revoked
at once; bad terms are 400s naming the field, a wallet already registered a 409, another user's
key a 404; the header is named in the OpenAPI schema."""
from datetime import timedelta
import html
import re

from django.test import Client
from django.utils import timezone
import pytest

from marketplace.accounts import agent_keys
from marketplace.accounts.agent_keys import AgentKeyRefused
from marketplace.accounts.models import AgentKey, AgentRefund, AgentSpend
from marketplace.accounts.services import wallet_user
from tests.integration.test_agent_keys import AGENT, OTHER_OWNER, OWNER, PUBLISHER, USDC, sign

pytestmark = pytest.mark.django_db

API = "/api/v1/me/agent-keys"


def signed_in(address=OWNER):
    client = Client()
    client.force_login(wallet_user(address))
    return client


def terms(**changes):
    return {"name": "Research bot", "wallet": AGENT, "max_per_purchase": str(10 * USDC),
            "daily_cap": str(30 * USDC), "expires_at": (timezone.now() + timedelta(days=30)).isoformat(),
            **changes}


def create(client, **changes):
    """POST the terms, with the agent wallet's signature of a challenge when one is issued for
    the wallet (none for a wallet that is not an address, or that already has the user's key)."""
    body = terms(**changes)
    challenge = client.post(f"{API}/challenge", {"wallet": body["wallet"]}, content_type="application/json")
    if challenge.status_code == 201:
        body |= {"nonce": challenge.json()["nonce"], "wallet_signature": sign(challenge.json()["message"])}
    return client.post(API, body, content_type="application/json")


def test_a_key_is_made_with_its_secret_shown_once():
    client = signed_in()
    answer = create(client, allowed_categories=["economics"], allowed_publishers=[PUBLISHER.lower()])
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["secret"].startswith("dmk_") and body["prefix"] == body["secret"][:12]
    assert body["wallet"] == AGENT and body["status"] == "live" and body["allowed_publishers"] == [PUBLISHER]
    assert body["max_per_purchase"] == str(10 * USDC) and body["spending"]["remaining"] == str(30 * USDC)
    assert agent_keys.key_for_payment(body["secret"], AGENT).pk == body["id"]

    listed = client.get(API).json()
    assert [k["id"] for k in listed] == [body["id"]] and "secret" not in listed[0]
    assert body["secret"] not in client.get(API).content.decode()
    assert body["secret"] not in client.get(f"{API}/{body['id']}").content.decode()


@pytest.mark.parametrize("changes, field", [
    ({"wallet": "0x12"}, "wallet"),
    ({"wallet": AGENT[:2] + AGENT[2:].swapcase()}, "wallet"),
    ({"max_per_purchase": str(31 * USDC)}, "max_per_purchase"),
    ({"max_per_purchase": 5}, "max_per_purchase"),  # a JSON number, not the string the schema asks for
    ({"daily_cap": "1.5"}, "daily_cap"),
    ({"expires_at": (timezone.now() - timedelta(hours=1)).isoformat()}, "expires_at"),
    ({"expires_at": "tomorrow"}, "expires_at"),
    ({"allowed_categories": ["astrology"]}, "allowed_categories"),
    ({"allowed_publishers": ["nobody"]}, "allowed_publishers"),
    ({"name": ""}, "name"),
])
def test_bad_terms_are_a_400_naming_the_field(changes, field):
    answer = create(signed_in(), **changes)
    assert answer.status_code == 400, answer.content
    error = answer.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"], error
    assert str(error["fields"][field]) and not AgentKey.objects.exists()


def test_a_missing_field_is_a_400():
    body = terms()
    del body["wallet"]
    answer = signed_in().post(API, body, content_type="application/json")
    assert answer.status_code == 400 and "wallet" in answer.json()["error"]["fields"]


def test_a_wallet_another_user_registered_is_a_409():
    assert create(signed_in()).status_code == 201
    answer = create(signed_in(OTHER_OWNER))
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "wallet_registered"
    again = create(signed_in())
    assert again.status_code == 409 and again.json()["error"]["code"] == "wallet_has_key"


def test_without_a_sign_in_nothing_is_answered():
    anonymous = Client()
    assert anonymous.get(API).status_code == 403
    assert anonymous.get(API).json()["error"]["code"] == "not_signed_in"
    assert create(anonymous).status_code == 403 and not AgentKey.objects.exists()


def test_the_list_shows_each_key_s_spending_in_the_last_24_hours():
    client = signed_in()
    key = AgentKey.objects.get(pk=create(client).json()["id"])
    for ref, amount in (("a", 4), ("b", 6), ("c", 5), ("old", 9)):
        agent_keys.reserve(key, payment_ref=ref, amount=amount * USDC, listing_id=1, publisher=PUBLISHER,
                           category="health")
    agent_keys.spend("a", chain_id=31337, order_id=1, tx_hash="0x" + "aa" * 32)
    agent_keys.spend("old", chain_id=31337, order_id=2, tx_hash="0x" + "bb" * 32)
    agent_keys.release("c")
    AgentSpend.objects.filter(payment_ref="old").update(created_at=timezone.now() - timedelta(hours=30))
    AgentRefund.objects.create(spend=AgentSpend.objects.get(payment_ref="a"), amount=USDC, chain_id=31337,
                               tx_hash="0x" + "cc" * 32, log_index=0, block_number=9)

    (body,) = client.get(API).json()
    assert body["spending"] == {"used": str(9 * USDC), "remaining": str(21 * USDC), "purchases": 2,
                                "refunded": str(USDC)}
    assert body["last_used_at"] is not None


def test_a_key_s_purchases_come_newest_first_in_pages():
    client = signed_in()
    key = AgentKey.objects.get(pk=create(client, daily_cap=str(10**12), max_per_purchase=str(USDC)).json()["id"])
    for i in range(55):
        agent_keys.reserve(key, payment_ref=f"p{i}", amount=USDC, listing_id=i, publisher=PUBLISHER, category="ai")
    agent_keys.spend("p54", chain_id=31337, order_id=77, tx_hash="0x" + "dd" * 32)

    first = client.get(f"{API}/{key.pk}/purchases").json()
    assert len(first["results"]) == 50 and first["results"][0]["payment_ref"] == "p54"
    assert first["results"][0] | {"created_at": None} == {
        "id": first["results"][0]["id"], "payment_ref": "p54", "listing_id": "54", "amount": str(USDC),
        "state": "spent", "chain_id": 31337, "order_id": "77", "tx_hash": "0x" + "dd" * 32, "refunded": "0",
        "created_at": None}
    rest = client.get(f"{API}/{key.pk}/purchases", {"before": first["next_before"]}).json()
    assert [r["payment_ref"] for r in rest["results"]] == [f"p{i}" for i in range(4, -1, -1)]
    assert rest["next_before"] is None
    assert client.get(f"{API}/{key.pk}/purchases", {"before": "x"}).status_code == 400


def test_another_user_s_key_is_a_404():
    key_id = create(signed_in()).json()["id"]
    stranger = signed_in(OTHER_OWNER)
    for answer in (stranger.get(f"{API}/{key_id}"), stranger.get(f"{API}/{key_id}/purchases"),
                   stranger.post(f"{API}/{key_id}/revoke")):
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert AgentKey.objects.get().revoked_at is None


def test_revoking_refuses_the_next_payment_at_once():
    client = signed_in()
    body = create(client).json()
    answer = client.post(f"{API}/{body['id']}/revoke")
    assert answer.status_code == 200 and answer.json()["status"] == "revoked"
    with pytest.raises(AgentKeyRefused) as caught:
        agent_keys.key_for_payment(body["secret"], AGENT)
    assert caught.value.code == "key_revoked"
    assert client.post(f"{API}/{body['id']}/revoke").json()["revoked_at"] == answer.json()["revoked_at"]


def test_a_revoked_key_s_wallet_is_refused_until_it_is_released():
    client = signed_in()
    body = create(client).json()
    assert body["wallet_bound"] is True and body["wallet_released_at"] is None
    live = client.post(f"{API}/{body['id']}/release-wallet")
    assert live.status_code == 409 and live.json()["error"]["code"] == "key_live"
    client.post(f"{API}/{body['id']}/revoke")
    with pytest.raises(AgentKeyRefused) as caught:
        agent_keys.key_for_payment(None, AGENT)
    assert caught.value.code == "key_revoked"
    assert signed_in(OTHER_OWNER).post(f"{API}/{body['id']}/release-wallet").status_code == 404
    answer = client.post(f"{API}/{body['id']}/release-wallet")
    assert answer.status_code == 200 and answer.json()["wallet_bound"] is False
    assert answer.json()["wallet_released_at"] is not None
    assert agent_keys.key_for_payment(None, AGENT) is None
    again = client.post(f"{API}/{body['id']}/release-wallet").json()
    assert again["wallet_released_at"] == answer.json()["wallet_released_at"]


def test_an_expired_key_is_listed_as_expired():
    client = signed_in()
    key_id = create(client).json()["id"]
    AgentKey.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    assert client.get(f"{API}/{key_id}").json()["status"] == "expired"


def test_the_schema_names_the_agent_key_header():
    schema = Client().get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    scheme = schema["components"]["securitySchemes"]["AgentKeyHeader"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", agent_keys.HEADER)
    assert "key_required" in scheme["description"]
    for path in (API, API + "/{id}", API + "/{id}/revoke", API + "/{id}/release-wallet", API + "/{id}/purchases"):
        assert path in schema["paths"], path
    assert "409" in schema["paths"][API]["post"]["responses"]
    assert "X-Agent-Key" in schema["paths"][API]["post"]["description"]


# The page ---------------------------------------------------------------------------------------

PAGE = "/me/agents"


def form(**changes):
    return {"name": "Page bot", "wallet": AGENT, "max_per_purchase": "2.5", "daily_cap": "10",
            "expires_in_days": "30", "allowed_categories": ["economics", "health"], "allowed_publishers": "",
            **changes}


def challenge_on(page: str) -> tuple[str, str]:
    """The nonce and the message the page's second step asks the agent's wallet to sign."""
    nonce = re.search(r'name="nonce" value="([0-9a-f]{32})"', page).group(1)
    message = html.unescape(re.search(r"data-challenge-message>([^<]*)</textarea>", page).group(1))
    return nonce, message


def make_on_page(client, **changes):
    """Both steps of the page's form: the terms, then the agent wallet's signature."""
    first = client.post(PAGE, form(**changes))
    assert first.status_code == 200 and "data-wallet-proof" in first.content.decode(), first.content
    nonce, message = challenge_on(first.content.decode())
    return client.post(PAGE, form(**changes, nonce=nonce, wallet_signature=sign(message)))


def test_the_page_asks_a_visitor_to_sign_in():
    page = Client().get(PAGE).content.decode()
    assert "data-sign-in-prompt" in page and "data-agent-key-form" not in page


def test_making_a_key_on_the_page_shows_its_secret_once_with_a_copy_button():
    client = signed_in()
    page = client.get(PAGE).content.decode()
    assert "data-no-keys" in page and 'href="/me/agents"' in page  # the nav links here
    answer = make_on_page(client)
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    page = answer.content.decode()
    secret = re.search(r'data-secret>(dmk_[A-Za-z0-9_-]+)<', page).group(1)
    assert f'data-copy="{secret}"' in page
    key = agent_keys.key_for_payment(secret, AGENT)
    assert (int(key.max_per_purchase), int(key.daily_cap)) == (2_500_000, 10 * USDC)
    assert key.allowed_categories == ["economics", "health"]
    assert timedelta(days=29) < key.expires_at - timezone.now() <= timedelta(days=30)

    again = client.get(PAGE).content.decode()
    assert secret not in again and key.prefix in again and f'data-agent-key="{key.pk}"' in again


@pytest.mark.parametrize("changes, field", [
    ({"wallet": "0x12"}, "wallet"),
    ({"max_per_purchase": "11"}, "max_per_purchase"),
    ({"max_per_purchase": "0.0000001"}, "max_per_purchase"),
    ({"daily_cap": "ten"}, "daily_cap"),
    ({"expires_in_days": "0"}, "expires_at"),
    ({"allowed_categories": ["astrology"]}, "allowed_categories"),
    ({"allowed_publishers": "0xnope"}, "allowed_publishers"),
])
def test_bad_terms_on_the_page_are_shown_beside_their_field(changes, field):
    answer = signed_in().post(PAGE, form(**changes))
    assert answer.status_code == 400
    page = answer.content.decode()
    assert f'data-error-for="{field}"' in page and "data-secret" not in page
    assert not AgentKey.objects.exists()
    assert 'value="Page bot"' in page  # what was typed stays


def test_the_page_shows_each_agent_s_spending_and_purchases_and_revokes():
    client = signed_in()
    make_on_page(client)
    key = AgentKey.objects.get()
    agent_keys.reserve(key, payment_ref="bought", amount=2 * USDC, listing_id=12, publisher=PUBLISHER,
                       category="health")
    agent_keys.spend("bought", chain_id=31337, order_id=5, tx_hash="0x" + "ee" * 32)
    page = client.get(PAGE).content.decode()
    assert 'data-used>2 of 10 USDC' in page and 'data-remaining>8 USDC' in page
    assert 'data-purchase="bought" data-state="spent"' in page and "#5" in page

    answer = client.post(f"/me/agents/{key.pk}/revoke")
    assert answer.status_code == 302 and answer["Location"].startswith(f"{PAGE}?revoked={key.pk}")
    assert AgentKey.objects.get().revoked_at is not None
    page = client.get(answer["Location"]).content.decode()
    assert "data-revoked-notice" in page and 'data-status="revoked"' in page and "data-revoke-form" not in page
    assert "data-wallet-bound" in page and "data-release-form" in page

    assert signed_in(OTHER_OWNER).post(f"/me/agents/{key.pk}/release-wallet").status_code == 404
    assert client.get(f"/me/agents/{key.pk}/release-wallet").status_code == 405
    answer = client.post(f"/me/agents/{key.pk}/release-wallet")
    assert answer.status_code == 302 and answer["Location"].startswith(f"{PAGE}?released={key.pk}")
    assert AgentKey.objects.get().wallet_released_at is not None
    page = client.get(answer["Location"]).content.decode()
    assert "data-released-notice" in page and "data-release-form" not in page


def test_another_user_cannot_revoke_a_key_from_the_page():
    client = signed_in()
    make_on_page(client)
    key = AgentKey.objects.get()
    assert signed_in(OTHER_OWNER).post(f"/me/agents/{key.pk}/revoke").status_code == 404
    assert Client().post(f"/me/agents/{key.pk}/revoke").status_code == 200  # the sign-in prompt
    assert signed_in().get(f"/me/agents/{key.pk}/revoke").status_code == 405
    assert AgentKey.objects.get().revoked_at is None


def test_the_page_has_no_inline_script():
    client = signed_in()
    make_on_page(client)
    page = client.get(PAGE).content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page) and " on" + "click=" not in page

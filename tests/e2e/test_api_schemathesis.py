"""Schemathesis against the live server: every operation of the OpenAPI schema with every check,
anonymously and with a signed-in session, from a fixed seed and a bounded number of examples.

Its settings (the few domain rules a schema cannot state) are in schemathesis.toml beside this
file; `st run` with them reproduces a run against any server (see the README)."""
import os
from pathlib import Path
import re
import subprocess
import sys
import time

from eth_account import Account
from eth_account.messages import encode_defunct
import pytest
import requests
import yaml

from marketplace.accounts.services import wallet_user
from marketplace.catalog import revisions
from marketplace.catalog.indexing import SearchSync
from marketplace.moderation import reports
from tests.conftest import DEV_KEYS
from tests.e2e.test_catalog_pages import COLUMNS, OWNER, SAMPLE, listed, owner  # noqa: F401

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20261206
MAX_EXAMPLES = 10  # per operation and phase: about a minute per run on two cores
SCHEMATHESIS = Path(sys.executable).with_name("st")


@pytest.fixture
def api(live_server, chain, owner, settings, tmp_path):  # noqa: F811
    """The live server with a searchable catalog and the rate limits off (they have their own
    tests; here they would leave the logic behind them untested behind 429s)."""
    settings.LIMITS = {rule: {scope: "off" for scope in scopes} for rule, scopes in settings.LIMITS.items()}
    # The live server speaks plain HTTP: cookies marked Secure would not come back from requests.
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    settings.SEARCH_INDEX_DIR = tmp_path / "search"
    dataset = listed(owner, "Rainfall", row_count=3, analysis_status="done", columns=COLUMNS, sample=SAMPLE)
    SearchSync().rebuild()
    revision = revisions.edit_dataset(dataset, by=owner, summary="Yearly rainfall, now with monthly figures.").revision
    reports.file_report(reporter=wallet_user(Account.create().address), target_type="dataset", target=dataset.slug,
                        reason="spam", evidence="A copy of another dataset.")
    # Path parameters name the listed dataset, its open revision and its reports, so that the
    # operations on them reach their logic instead of answering 404 to random identifiers.
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'parameters = {{ "path.slug" = "{dataset.slug}", "path.number" = 1, '
                      f'"path.revision_id" = {revision.pk}, "path.target_type" = "dataset", '
                      f'"path.target_id" = "{dataset.pk}" }}\n' + CONFIG.read_text())
    return live_server.url, config


def signed_in_session(base_url, key):
    session = requests.Session()
    account = Account.from_key(key)
    issued = session.post(f"{base_url}/api/v1/auth/nonce", json={"address": account.address}, timeout=10)
    assert issued.status_code == 201, issued.text
    message = issued.json()["message"]
    signature = "0x" + account.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")
    signed = session.post(f"{base_url}/api/v1/auth/sign-in", json={"message": message, "signature": signature},
                          timeout=10)
    assert signed.status_code == 200, signed.text
    assert session.get(f"{base_url}/me/datasets", timeout=10).status_code == 200  # sets the CSRF cookie
    return session


def run_schemathesis(api, tmp_path, *extra):
    """Runs `st run` and returns (exit code, output, counts from its JSON report)."""
    base_url, config = api
    report = tmp_path / "report.ndjson"
    command = [
        str(SCHEMATHESIS), "--config-file", str(config), "--no-color", "run", f"{base_url}/api/v1/schema",
        "--checks", "all", "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES),
        "--generation-database", "none", "--workers", "1",
        "--report", "ndjson", "--report-ndjson-path", str(report), *extra,
    ]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                            env={**os.environ, "NO_COLOR": "1"})
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    print(output[-6000:], f"\n({seconds:.0f} s)")
    return result.returncode, output


def schema_operations(base_url, prefix=""):
    schema = yaml.safe_load(requests.get(f"{base_url}/api/v1/schema", timeout=10).text)
    return sum(method in {"get", "put", "post", "patch", "delete"} for path, item in schema["paths"].items()
               if path.startswith(prefix) for method in item)


def varying_operations(base_url):
    """Operations that take parameters or a body: each gives schemathesis room for many examples
    (one without inputs, such as GET /api/v1/rewards/network, gives only a few)."""
    schema = yaml.safe_load(requests.get(f"{base_url}/api/v1/schema", timeout=10).text)
    return sum(method in {"get", "put", "post", "patch", "delete"} and bool(
        op.get("parameters") or op.get("requestBody") or item.get("parameters"))
        for item in schema["paths"].values() for method, op in item.items() if isinstance(op, dict))


def assert_clean(code, output, operations, total, varying=None):
    """Exit 0, every operation tested, and the closing count: 'N generated, N passed', at least
    50 examples for each operation that takes inputs (`varying`, default: all selected)."""
    assert code == 0, output[-8000:]
    assert total > 15 and f"{operations} selected / {total} total" in output
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    varying = operations if varying is None else varying
    assert counts and counts[1] == counts[2] and int(counts[1]) > 50 * varying, output[-3000:]
    assert "found" not in counts.string[counts.start():counts.start() + 200].splitlines()[0]
    print(f"schemathesis: {counts[0]}")


def test_anonymous_run_finds_nothing(api, tmp_path):
    code, output = run_schemathesis(api, tmp_path)
    total = schema_operations(api[0])
    assert_clean(code, output, total, total, varying_operations(api[0]))


def test_signed_in_run_finds_nothing(api, tmp_path):
    session = signed_in_session(api[0], DEV_KEYS[3])
    assert session.get(f"{api[0]}/api/v1/auth/me", timeout=10).json()["address"] == OWNER  # the listed dataset's
    cookies = "; ".join(f"{name}={value}" for name, value in session.cookies.items())
    code, output = run_schemathesis(
        api, tmp_path, "-H", f"Cookie: {cookies}", "-H", f"X-CSRFToken: {session.cookies['csrftoken']}",
        # The session cookie goes in the header above, for every request: schemathesis must not
        # generate a sessionid of its own (the anonymous run sends none, or random ones).
        "--generation-with-security-parameters", "false",
        # Signing out would end the session half-way; the anonymous run covers it.
        "--exclude-path", "/api/v1/auth/sign-out",
    )
    total = schema_operations(api[0])
    assert_clean(code, output, total - 1, total, varying_operations(api[0]))  # sign-out takes no input
    me = session.get(f"{api[0]}/api/v1/auth/me", timeout=10)
    assert me.status_code == 200  # still signed in at the end: the run tested what it meant to


def test_moderator_run_finds_nothing(api, tmp_path):
    """The moderation operations (the catalog's review queue and decision, the audit log, the review
    console's queue, claim, release and decision, the reports, a dataset's actions, the appeals and
    their decisions, disputes, flags, failed operator actions), as a moderator who is also an
    arbiter, on an open revision and a dataset's open report."""
    from django.contrib.auth.models import Group

    moderator = Account.create()
    person = wallet_user(moderator.address, is_staff=True)
    for role in ("moderator", "arbiter"):
        Group.objects.get(name=role).user_set.add(person)
    session = signed_in_session(api[0], moderator.key)
    cookies = "; ".join(f"{name}={value}" for name, value in session.cookies.items())
    code, output = run_schemathesis(
        api, tmp_path, "-H", f"Cookie: {cookies}", "-H", f"X-CSRFToken: {session.cookies['csrftoken']}",
        "--generation-with-security-parameters", "false", "--include-path-regex", "^/api/v1/moderation/",
    )
    assert_clean(code, output, schema_operations(api[0], prefix="/api/v1/moderation/"), schema_operations(api[0]))

"""GET /healthz reports database, broker and chain, 200 only when all three are up, and never
hangs on a part that is down."""
import time

import pytest

from marketplace.chain.models import Deployment
from tests.conftest import dead_broker_url, free_port


@pytest.fixture
def dead_url():
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_all_up_is_200_with_each_part(client, chain, broker):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["database"] == {"up": True}
    assert body["broker"]["up"] is True
    assert body["chain"]["up"] is True
    assert body["chain"]["chain_id"] == 31337
    assert body["chain"]["contracts"]["TestUSDC"] == chain.token.address
    assert response["Cache-Control"].startswith("max-age=0")


def test_chain_down_is_503_naming_the_chain(client, chain, broker, settings, dead_url):
    settings.CHAIN_RPC_URL = dead_url
    started = time.monotonic()
    response = client.get("/healthz")
    elapsed = time.monotonic() - started
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert body["chain"] == {"up": False, "error": "chain node unreachable (ConnectionError)"}
    assert body["database"]["up"] is True and body["broker"]["up"] is True
    assert elapsed < 5, f"/healthz waited {elapsed:.1f} s on a dead chain"


def test_health_never_shows_the_rpc_url_but_logs_where_it_failed(client, chain, broker, settings, caplog):
    """Provider keys live in CHAIN_RPC_URL's path or query: /healthz is public, so it names
    neither, and the log names only the host."""
    port = free_port()
    settings.CHAIN_RPC_URL = f"https://user:pa55word@127.0.0.1:{port}/v3/SECRET-PROVIDER-KEY?apikey=OTHER-SECRET"
    response = client.get("/healthz")
    assert response.status_code == 503
    text = response.content.decode()
    for secret in ("SECRET-PROVIDER-KEY", "OTHER-SECRET", "pa55word", str(port)):
        assert secret not in text
    assert response.json()["chain"]["error"].startswith("chain node unreachable")
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "marketplace.chain.health")
    assert f"https://127.0.0.1:{port} unreachable" in logged
    for secret in ("SECRET-PROVIDER-KEY", "OTHER-SECRET", "pa55word"):
        assert secret not in logged


def test_broker_down_is_503_naming_the_broker(client, chain, broker, point_broker_at, broken_broker_url):
    point_broker_at(broken_broker_url)
    started = time.monotonic()
    response = client.get("/healthz")
    elapsed = time.monotonic() - started
    body = response.json()
    assert response.status_code == 503
    assert body["broker"]["up"] is False and body["broker"]["transport"] == "redis"
    assert set(body["broker"]) == {"up", "transport", "error"}
    assert body["broker"]["error"] == "broker unreachable: OperationalError", body["broker"]
    assert body["chain"]["up"] is True
    assert elapsed < 2, f"/healthz waited {elapsed:.1f} s on a broken broker"


def test_contracts_missing_on_a_live_chain_is_503(client, chain, broker):
    Deployment.objects.all().delete()
    body = client.get("/healthz").json()
    assert body["chain"]["up"] is False
    assert "not deployed" in body["chain"]["error"]


def test_home_page_renders_while_chain_and_broker_are_down(client, db, settings, dead_url, point_broker_at):
    settings.CHAIN_RPC_URL = dead_url
    point_broker_at(dead_broker_url())
    started = time.monotonic()
    response = client.get("/")
    assert response.status_code == 200
    assert time.monotonic() - started < 1
    html = response.content.decode()
    assert 'data-health-url="/healthz"' in html
    assert "/static/app.css" in html and "/static/app.js" in html

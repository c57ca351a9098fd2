"""Rate limits hold across threads, processes and hosts: counts live in PostgreSQL (an atomic
upsert) or, when LIMITS_REDIS_URL is set, in Redis (the machine's, at 127.0.0.1:6379); the
client's address comes from the configured trusted proxies; wallets and addresses are limited
separately; JSON and form bodies are size-limited; expired nonces are deleted by beat's task."""
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
import http.client
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.db import connection, connections
from django.utils import timezone
import pytest
import redis

from marketplace.accounts.models import SignInNonce
from marketplace.accounts.services import wallet_user
from marketplace.limits import services
from marketplace.limits.models import RequestLog
from tests.conftest import ROOT, database_url, dead_broker_url, wait_until

# The machine's Redis (TEST_REDIS_URL to use another); keys get a prefix per test.
REDIS_URL = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"


def limit(settings, rule, **rates):
    """Set `rule`'s rates for this test (the other rules keep theirs)."""
    settings.LIMITS = {**settings.LIMITS, rule: rates}


@pytest.fixture(params=["postgres", "redis"])
def backend(request, settings, monkeypatch):
    """Each test runs against both stores. Redis keys get a prefix of their own, so tests running
    at once on this machine's Redis never share a count."""
    monkeypatch.setattr(services, "_redis_down_until", 0.0)
    if request.param == "postgres":
        settings.LIMITS_REDIS_URL = ""
        yield "postgres"
        return
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        pytest.fail(f"the limits' Redis tests need a Redis server at {REDIS_URL} ({error}); "
                    "start one (apt-get install redis-server) or set TEST_REDIS_URL")
    prefix = f"test-limits-{secrets.token_hex(8)}:"
    settings.LIMITS_REDIS_URL = REDIS_URL
    settings.LIMITS_REDIS_PREFIX = prefix
    yield "redis"
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)


def stored_hits(backend, key):
    """How many requests the store holds for `key` (and proof that it was that store)."""
    if backend == "redis":
        assert not RequestLog.objects.filter(key=key).exists()
        return redis.Redis.from_url(REDIS_URL).zcard(django_settings.LIMITS_REDIS_PREFIX + key)
    log = RequestLog.objects.filter(key=key).first()
    return len(log.hits) if log else 0


# Atomic, shared counts --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_50_concurrent_requests_against_a_limit_of_10_let_exactly_10_through(live_server, settings, backend):
    limit(settings, "nonce", ip="10/minute")
    url = urlsplit(live_server.url)
    start = threading.Barrier(50)

    def request_nonce(_):
        start.wait()
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        try:
            conn.request("POST", "/api/v1/auth/nonce", headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.getheader("Retry-After"), json.loads(response.read())
        finally:
            conn.close()

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(request_nonce, range(50)))

    assert Counter(status for status, _, _ in results) == {201: 10, 429: 40}
    assert SignInNonce.objects.count() == 10
    for status, retry_after, body in results:
        if status == 429:
            assert body["error"]["code"] == "throttled" and 1 <= int(retry_after) <= 60
    assert stored_hits(backend, "nonce:ip:127.0.0.1") == 10


CONSUMER = """
import sys
import django

django.setup()
from marketplace.limits.services import LimitExceeded, consume

print("ready", flush=True)
sys.stdin.readline()  # every process starts counting at once
allowed = 0
for _ in range(10):
    try:
        consume("upload", wallet=sys.argv[1])
        allowed += 1
    except LimitExceeded:
        pass
print(allowed, flush=True)
"""


@pytest.mark.django_db(transaction=True)
def test_processes_share_one_count(settings, backend):
    """Five processes (as five web hosts would be), ten requests each, a limit of 10 in all."""
    env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict),
           "LIMIT_UPLOADS_PER_WALLET": "10/day", "LIMITS_REDIS_URL": settings.LIMITS_REDIS_URL,
           "LIMITS_REDIS_PREFIX": settings.LIMITS_REDIS_PREFIX}
    wallet = "0x" + secrets.token_hex(20)
    processes = [subprocess.Popen([sys.executable, "-c", CONSUMER, wallet], cwd=ROOT, env=env, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(5)]
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready"
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        allowed = [int(process.stdout.readline()) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert sum(allowed) == 10, allowed
    assert stored_hits(backend, f"upload:wallet:{wallet}") == 10


@pytest.mark.django_db(transaction=True)
def test_threads_with_their_own_connections_share_one_count(settings, backend):
    limit(settings, "dataset", wallet="7/day")
    start = threading.Barrier(20)

    def create(_):
        start.wait()
        try:
            services.consume("dataset", wallet="0xshared")
            return True
        except services.LimitExceeded:
            return False
        finally:
            connections.close_all()

    with ThreadPoolExecutor(20) as pool:
        assert sum(pool.map(create, range(20))) == 7


def test_a_refused_request_counts_in_no_scope(db, settings, backend):
    limit(settings, "dataset", ip="3/day", wallet="1/day")
    services.consume("dataset", ip="198.51.100.1", wallet="0xaaa")
    with pytest.raises(services.LimitExceeded) as refused:
        services.consume("dataset", ip="198.51.100.1", wallet="0xaaa")  # the wallet is full
    assert refused.value.scope == "wallet"
    # The address counted only the one request that went through: two more fit.
    services.consume("dataset", ip="198.51.100.1", wallet="0xbbb")
    services.consume("dataset", ip="198.51.100.1", wallet="0xccc")
    with pytest.raises(services.LimitExceeded) as refused:
        services.consume("dataset", ip="198.51.100.1", wallet="0xddd")
    assert refused.value.scope == "ip"
    assert stored_hits(backend, "dataset:ip:198.51.100.1") == 3
    assert stored_hits(backend, "dataset:wallet:0xddd") == 0


def test_requests_older_than_the_period_no_longer_count(db, settings, backend):
    limit(settings, "upload", wallet="2/minute")
    services.consume("upload", wallet="0xaaa", now=1000.0)
    services.consume("upload", wallet="0xaaa", now=1030.0)
    with pytest.raises(services.LimitExceeded) as refused:
        services.consume("upload", wallet="0xaaa", now=1059.0)
    assert refused.value.retry_after == 1  # the first leaves the minute at 1060
    services.consume("upload", wallet="0xaaa", now=1060.5)
    with pytest.raises(services.LimitExceeded) as refused:
        services.consume("upload", wallet="0xaaa", now=1061.0)
    assert refused.value.retry_after == 29  # the one at 1030 leaves at 1090


def test_while_redis_is_down_counts_go_to_postgresql(db, settings, monkeypatch, caplog):
    monkeypatch.setattr(services, "_redis_down_until", 0.0)
    settings.LIMITS_REDIS_URL = dead_broker_url()  # nothing listens there
    limit(settings, "upload", wallet="2/day")
    with caplog.at_level(logging.WARNING, logger="marketplace.limits.services"):
        services.consume("upload", wallet="0xaaa")
        services.consume("upload", wallet="0xaaa")
        with pytest.raises(services.LimitExceeded):
            services.consume("upload", wallet="0xaaa")
    assert len(RequestLog.objects.get(key="upload:wallet:0xaaa").hits) == 2
    # One warning, then PostgreSQL for a while without trying Redis at every request.
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "counting in PostgreSQL" in caplog.records[0].message


# Client addresses -------------------------------------------------------------------------------


def test_a_client_cannot_escape_its_limit_with_x_forwarded_for(client, db, settings):
    settings.TRUSTED_PROXIES = 0
    limit(settings, "nonce", ip="2/minute")
    codes = [client.post("/api/v1/auth/nonce", content_type="application/json",
                                 HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code for i in range(3)]
    assert codes == [201, 201, 429]


def nonce_from(client, peer, forwarded):
    """The status of a nonce request that reaches the server from `peer` with X-Forwarded-For."""
    return client.post("/api/v1/auth/nonce", content_type="application/json", REMOTE_ADDR=peer,
                       HTTP_X_FORWARDED_FOR=forwarded).status_code


def test_behind_a_trusted_proxy_its_entry_names_the_client(client, db, settings):
    settings.TRUSTED_PROXIES = 1
    limit(settings, "nonce", ip="2/minute")

    def nonce(forwarded):
        return nonce_from(client, "10.0.0.2", forwarded)

    # What the client wrote left of the proxy's entry changes nothing.
    assert [nonce(f"198.51.100.{i}, 203.0.113.5") for i in range(3)] == [201, 201, 429]
    assert nonce("203.0.113.6") == 201  # another client behind the same proxy


def test_a_direct_client_cannot_escape_its_limit_with_x_forwarded_for_behind_proxies(client, db, settings):
    # Proxies are configured, but this client reaches the web server itself (a published port).
    settings.TRUSTED_PROXIES = 1
    limit(settings, "nonce", ip="2/minute")

    def nonce(forwarded):
        return nonce_from(client, "203.0.113.50", forwarded)

    assert [nonce(f"198.51.100.{i}") for i in range(3)] == [201, 201, 429]


# Per wallet and per address, through the API -----------------------------------------------------


def create_dataset(client, title="Cities", **extra):
    body = {"title": title, "license": "CC-BY-4.0"}
    return client.post("/api/v1/datasets", body, content_type="application/json", **extra)


def test_dataset_creations_are_limited_per_wallet_and_per_address(client, db, settings):
    limit(settings, "dataset", wallet="2/day", ip="3/day")
    client.force_login(wallet_user("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"))
    assert [create_dataset(client).status_code for _ in range(2)] == [201, 201]
    refused = create_dataset(client)
    assert refused.status_code == 429
    assert refused.json()["error"]["message"].startswith("Too many new datasets for this wallet (at most 2 per day)")
    assert 86000 < int(refused["Retry-After"]) <= 86400

    client.force_login(wallet_user("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"))  # same address
    assert create_dataset(client).status_code == 201
    refused = create_dataset(client)
    assert refused.status_code == 429 and "from your network address" in refused.json()["error"]["message"]
    # From another address the second wallet goes on.
    assert create_dataset(client, REMOTE_ADDR="198.51.100.9").status_code == 201


def test_invalid_dataset_requests_do_not_use_the_allowance(client, db, settings):
    limit(settings, "dataset", wallet="1/day")
    client.force_login(wallet_user("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"))
    assert create_dataset(client, title="").status_code == 400
    assert create_dataset(client).status_code == 201


def test_uploads_are_limited_per_wallet(client, db, settings):
    from marketplace.catalog.models import DatasetVersion
    from marketplace.limits.models import StorageReservation

    limit(settings, "upload", wallet="2/day")
    client.force_login(wallet_user("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"))
    slug = create_dataset(client).json()["slug"]

    def upload():
        return client.post(f"/api/v1/datasets/{slug}/versions?filename=a.csv&price=1&token="
                           "0x5FbDB2315678afecb367f032d93F642f64180aa3", data=b"a,b\n1,2\n",
                           content_type="application/octet-stream")

    assert [upload().status_code for _ in range(2)] == [201, 201]
    refused = upload()
    assert refused.status_code == 429 and refused.json()["error"]["message"].startswith("Too many uploads for this wallet")
    assert DatasetVersion.objects.count() == 2 and not StorageReservation.objects.exists()


# Nonces per wallet ---------------------------------------------------------------------------------


def test_nonces_count_per_wallet_when_a_wallet_signs_in_with_one(client, db, settings):
    from eth_account import Account

    from tests.integration.test_sign_in import sign, sign_in, siwe_message

    limit(settings, "nonce", wallet="2/hour")
    wallet, other = Account.create(), Account.create()
    # Asking for nonces in a wallet's name proves nothing and spends none of its allowance.
    for _ in range(5):
        assert client.post("/api/v1/auth/nonce", {"address": wallet.address}, content_type="application/json").status_code == 201

    def attempt(account):
        message = client.post("/api/v1/auth/nonce", {"address": account.address},
                              content_type="application/json").json()["message"]
        return sign_in(client, message, sign(account, message)), message

    assert attempt(wallet)[0].status_code == 200
    assert attempt(wallet)[0].status_code == 200
    refused, message = attempt(wallet)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 3500
    assert refused.json()["error"]["message"].startswith("Too many sign-in requests for this wallet (at most 2 per hour)")
    nonce = message.split("Nonce: ")[1].split("\n")[0]
    assert SignInNonce.objects.get(nonce=nonce).used_at is None  # refused before it was spent
    assert attempt(other)[0].status_code == 200


def test_sign_in_attempts_are_limited_per_address(client, db, settings):
    limit(settings, "sign_in", ip="2/minute")
    body = {"message": "not a siwe message", "signature": "0x" + "00" * 65}
    codes = [client.post("/api/v1/auth/sign-in", body, content_type="application/json").status_code for _ in range(3)]
    assert codes == [401, 401, 429]


# Bodies -------------------------------------------------------------------------------------------


def test_a_json_body_over_the_limit_is_refused_with_413(client, db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"address": "0x" + "a" * 40, "padding": "x" * 2000}).encode()
    response = client.post("/api/v1/auth/nonce", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"] == {"code": "body_too_large",
                                         "message": "The request body is larger than the limit of 1,000 bytes."}
    assert not SignInNonce.objects.exists()


def test_a_json_body_within_the_limit_is_read(client, db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"address": "0x" + "a" * 40}).encode()
    response = client.post("/api/v1/auth/nonce", data=body, content_type="application/json")
    assert response.status_code == 201 and "message" in response.json()


@pytest.mark.parametrize("content_type, body", [
    ("application/x-www-form-urlencoded", b"address=0x" + b"a" * 40),
    ("application/x-www-form-urlencoded", "&".join(f"f{i}=1" for i in range(2000)).encode()),
    ("multipart/form-data; boundary=BOUNDARY",
     b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"padding\"; filename=\"p.bin\"\r\n\r\n"
     + b"x" * 200_000 + b"\r\n--BOUNDARY--\r\n"),
])
def test_form_bodies_are_refused_unread_whatever_their_size(client, db, settings, content_type, body):
    """The API takes JSON only: a form is a 415, never parsed (so never held in memory)."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client.post("/api/v1/auth/nonce", data=body, content_type=content_type)
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"
    assert not SignInNonce.objects.exists()


# Housekeeping -------------------------------------------------------------------------------------


def test_beat_runs_the_housekeeping_tasks():
    tasks = {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"accounts.delete_expired_nonces", "limits.purge_expired"} <= tasks


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_deletes_expired_nonces(celery_worker):
    from datetime import timedelta

    from marketplace.celery import app

    now = timezone.now()
    old = SignInNonce.objects.create(nonce="old", expires_at=now - timedelta(hours=2))
    recent = SignInNonce.objects.create(nonce="recent", expires_at=now - timedelta(minutes=5))
    live = SignInNonce.objects.create(nonce="live", expires_at=now + timedelta(minutes=5))
    app.send_task("accounts.delete_expired_nonces")
    assert wait_until(lambda: not SignInNonce.objects.filter(pk=old.pk).exists(), timeout=30), celery_worker.output()
    # An expired nonce stays an hour, so a late sign-in is told "expired" rather than "unknown".
    assert set(SignInNonce.objects.values_list("pk", flat=True)) == {recent.pk, live.pk}


def test_purge_deletes_only_logs_whose_hits_all_left_their_period(db, settings):
    limit(settings, "upload", wallet="5/minute")
    services.consume("upload", wallet="0xold", now=timezone.now().timestamp() - 120)
    services.consume("upload", wallet="0xnew")
    assert services.purge_expired()["counters"] == 1
    assert list(RequestLog.objects.values_list("key", flat=True)) == ["upload:wallet:0xnew"]

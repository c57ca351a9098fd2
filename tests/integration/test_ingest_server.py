"""The heartbeat ingest server (marketplace/rewards/ingest_server.py) through gunicorn as shipped,
against the test database: it answers what the Django view answers, heartbeat for heartbeat
(accepted, forged, replayed, out of order, precomputed, unknown, unbound, too soon, throttled,
bad bodies, wrong methods, probes), stores many devices' heartbeats in one statement each and one
device's at most once, and says 503 (nothing stored) when its database is gone."""
from concurrent.futures import ThreadPoolExecutor
import json
import os
import signal
import time

from django.db import connection
import psycopg
import pytest
import requests

from marketplace.rewards import ingest
from marketplace.rewards.models import Device, Heartbeat
from tests.conftest import database_url, free_port
from tests.integration.test_heartbeats import bind
from tests.node_helpers import heartbeat_body, new_key, start_gunicorn

pytestmark = pytest.mark.django_db(transaction=True)

HEARTBEAT = "/api/v1/node/heartbeat"


@pytest.fixture
def ingest_url():
    """A base URL of the ingest server, and a function that restarts it with other settings."""
    servers = []

    def start(**env):
        for server in servers:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(15)
        servers.clear()
        port = free_port()
        servers.append(start_gunicorn(port, database_url(connection.settings_dict), server="ingest", extra_env={
            "REWARD_HEARTBEAT_MIN_INTERVAL": "0", "REWARD_TRUSTED_NETWORKS": "127.0.0.0/8", **env}))
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(15)


def post(url, body, **kwargs):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(url + HEARTBEAT, data=data, timeout=10, **kwargs)


def error(response):
    return response.status_code, response.json()["error"]["code"]


def test_it_takes_a_heartbeat_as_the_view_does_and_refuses_each_bad_one_with_the_same_answer(ingest_url):
    url = ingest_url()
    key = new_key()
    device = bind(key)
    # Without TRUSTED_PROXIES (the default 0) a client's own X-Forwarded-For is never believed.
    response = post(url, heartbeat_body(key, seq=1, nonce=device.nonce, bytes_up=7),
                    headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200, response.text
    ack = response.json()
    assert ack["seq"] == 1 and len(ack["nonce"]) == 66 and ack["nonce"] != device.nonce
    assert ack["probe"]["url"] == f"/api/v1/node/probe/{key.address}/{ack['nonce']}"
    row = Heartbeat.objects.get(device=device, seq=1)
    assert row.bytes_up == 7 and not row.probe_ok and str(row.ip) == "127.0.0.1"
    assert Device.objects.get(pk=device.pk).nonce == ack["nonce"]

    # The probe, then a heartbeat carrying its answer counts for uptime.
    probe = requests.get(url + ack["probe"]["url"], timeout=10)
    assert probe.status_code == 200 and len(probe.json()["answer"]) == 64  # the server's secret is its own
    second = post(url, heartbeat_body(key, seq=2, nonce=ack["nonce"], probe=probe.json()["answer"]))
    assert second.status_code == 200 and Heartbeat.objects.get(device=device, seq=2).probe_ok
    nonce = second.json()["nonce"]

    assert error(post(url, heartbeat_body(key, seq=3, nonce=nonce, signer=new_key()))) == (401, "forged")
    replayed = post(url, heartbeat_body(key, seq=2, nonce=nonce))
    assert error(replayed) == (409, "replayed") and replayed.json()["error"]["seq"] == 2
    assert error(post(url, heartbeat_body(key, seq=1, nonce=nonce))) == (409, "out_of_order")
    assert error(post(url, heartbeat_body(key, seq=3, nonce=ack["nonce"]))) == (409, "precomputed")
    far = post(url, heartbeat_body(key, seq=3, nonce=nonce, sent_at=int(time.time()) + 3600))
    assert error(far) == (400, "clock_skew") and "server_time" in far.json()["error"]
    stranger = new_key()
    assert error(post(url, heartbeat_body(stranger, seq=1, nonce="0x" + "00" * 32))) == (404, "unknown_device")
    assert error(post(url, b"{not json")) == (400, "invalid")
    assert error(post(url, {"device": key.address, "seq": -1})) == (400, "invalid")
    assert error(post(url, b"x" * (ingest.MAX_BODY + 1))) == (413, "body_too_large")
    wrong = requests.get(url + HEARTBEAT, timeout=10)
    assert error(wrong) == (405, "method_not_allowed") and wrong.headers["Allow"] == "POST"
    assert requests.get(url + "/api/v1/node/probe/x/y", timeout=10).status_code == 404
    assert error(requests.get(url + "/api/v1/datasets", timeout=10)) == (404, "not_found")
    assert error(requests.post(url + HEARTBEAT, data=b"{}", headers={"Host": "evil.example"}, timeout=10)) == (
        400, "bad_request")
    Device.objects.filter(pk=device.pk).update(contributor=None)
    assert error(post(url, heartbeat_body(key, seq=3, nonce=nonce))) == (403, "unbound_device")
    # Nothing refused was stored.
    assert sorted(Heartbeat.objects.filter(device=device).values_list("seq", flat=True)) == [1, 2]


def test_a_device_too_soon_or_an_address_over_its_rate_is_told_when_to_come_back(ingest_url):
    url = ingest_url(REWARD_HEARTBEAT_MIN_INTERVAL="30", REWARD_TRUSTED_NETWORKS="",
                     REWARD_HEARTBEATS_PER_IP_MINUTE="3")
    key = new_key()
    device = bind(key)
    ack = post(url, heartbeat_body(key, seq=1, nonce=device.nonce)).json()
    soon = post(url, heartbeat_body(key, seq=2, nonce=ack["nonce"]))
    assert error(soon) == (429, "too_soon") and 1 <= int(soon.headers["Retry-After"]) <= 30
    others = [new_key() for _ in range(2)]
    statuses = [post(url, heartbeat_body(k, seq=1, nonce=bind(k).nonce)).status_code for k in others]
    # Two workers count apart (at most W times the rate from one address): the fourth or a later one is refused.
    for _ in range(8):
        if 429 in statuses:
            break
        k = new_key()
        statuses.append(post(url, heartbeat_body(k, seq=1, nonce=bind(k).nonce)).status_code)
    assert statuses.count(429) >= 1 and all(s in (200, 429) for s in statuses)


def test_many_devices_at_once_are_each_stored_once_and_one_device_s_twin_heartbeats_once(ingest_url):
    url = ingest_url(INGEST_WORKERS="1")
    keys = [new_key() for _ in range(40)]
    devices = {key.address: bind(key) for key in keys}
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda k: post(url, heartbeat_body(k, seq=1, nonce=devices[k.address].nonce)),
                                keys))
    assert [a.status_code for a in answers] == [200] * 40
    assert Heartbeat.objects.filter(seq=1, device__in=devices.values()).count() == 40

    # One device sends the same next heartbeat eight times at once (and seven more, each a fresh
    # signature of the same sequence): exactly one is taken.
    key = keys[0]
    nonce = answers[0].json()["nonce"]
    bodies = [heartbeat_body(key, seq=2, nonce=nonce) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        twins = list(pool.map(lambda body: post(url, body), bodies))
    codes = sorted(a.status_code for a in twins)
    assert codes.count(200) == 1 and codes.count(409) == 7, [a.text for a in twins]
    assert Heartbeat.objects.filter(device=devices[key.address], seq=2).count() == 1


def test_a_statement_stuck_behind_a_lock_ends_in_a_503_and_the_node_s_retry_is_taken(ingest_url):
    url = ingest_url(INGEST_STATEMENT_TIMEOUT="500")
    key = new_key()
    device = bind(key)
    body = heartbeat_body(key, seq=1, nonce=device.nonce)
    with psycopg.connect(database_url(connection.settings_dict)) as other:  # holds the device row
        other.execute("SELECT 1 FROM rewards_device WHERE id = %s FOR UPDATE", [device.pk])
        started = time.monotonic()
        stuck = post(url, body)
        assert error(stuck) == (503, "unavailable") and time.monotonic() - started < 8
    assert not Heartbeat.objects.filter(device=device).exists()
    again = post(url, body)  # the same heartbeat, sent again once the row is free
    assert again.status_code == 200, again.text
    assert Heartbeat.objects.filter(device=device, seq=1).count() == 1


def test_without_its_database_it_says_503_and_stores_nothing(ingest_url, settings):
    closed = free_port()  # nothing listens there
    dead = f"postgresql://postgres@127.0.0.1:{closed}/nothing"
    port = free_port()
    server = start_gunicorn(port, dead, server="ingest", extra_env={"REWARD_TRUSTED_NETWORKS": "127.0.0.0/8"})
    try:
        key = new_key()
        response = post(f"http://127.0.0.1:{port}", heartbeat_body(key, seq=1, nonce="0x" + "11" * 32))
        assert error(response) == (503, "unavailable")
        assert response.headers["Retry-After"] == "1" and "send it again" in response.json()["error"]["message"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(15)


def test_a_heartbeat_with_a_control_character_is_a_400_and_honest_ones_beside_it_are_stored(ingest_url):
    """A NUL passes no check: PostgreSQL would refuse it, and in a batch that would fail the others."""
    url = ingest_url(INGEST_WORKERS="1")
    keys = [new_key() for _ in range(30)]
    devices = {key.address: bind(key) for key in keys}
    attacker = new_key()
    poisons = [heartbeat_body(attacker, seq=1, nonce="\u0000"), heartbeat_body(attacker, seq=1, nonce="0x" + "a" * 64,
                                                                                probe="\u0001")]
    with ThreadPoolExecutor(32) as pool:
        bad = [pool.submit(post, url, poisons[i % 2]) for i in range(20)]
        honest = [pool.submit(post, url, heartbeat_body(k, seq=1, nonce=devices[k.address].nonce)) for k in keys]
        bad += [pool.submit(post, url, poisons[i % 2]) for i in range(20)]
        assert [f.result().status_code for f in honest] == [200] * 30
        assert {error(f.result()) for f in bad} == {(400, "invalid")}
    assert Heartbeat.objects.filter(device__in=devices.values()).count() == 30


def test_a_row_postgresql_refuses_fails_only_its_own_heartbeat_in_a_batch(settings):
    """The writer itself, on the test database: a batch with one row PostgreSQL refuses (a NUL,
    were it to get past the checks) is tried again one heartbeat at a time."""
    import asyncio

    from marketplace.rewards import ingest_server

    settings.REWARD_HEARTBEAT_MIN_INTERVAL = 0
    settings.REWARD_TRUSTED_NETWORKS = ["127.0.0.0/8"]
    keys = [new_key() for _ in range(3)]
    devices = [bind(key) for key in keys]
    now = time.time()
    rows = [ingest.check(json.dumps(heartbeat_body(k, seq=1, nonce=d.nonce)).encode(), "127.0.0.1", None, now)[1]
            for k, d in zip(keys, devices)]
    poisoned = dict(rows[0], device=new_key().address, nonce="\u0000")  # as if the checks had missed it
    writer = ingest_server.Writer()

    async def store_all():
        answers = await asyncio.gather(*(writer.store(row) for row in [poisoned, *rows]), return_exceptions=True)
        await writer._close()
        return answers

    # In a thread of its own: an earlier test (a browser's) may have left an event loop running here.
    with ThreadPoolExecutor(1) as pool:
        answers = pool.submit(asyncio.run, store_all()).result()
    assert isinstance(answers[0], ingest_server.DatabaseDown)
    assert answers[1:] == [ingest.STORED] * 3
    assert Heartbeat.objects.filter(device__in=devices, seq=1).count() == 3


def test_with_a_shared_address_count_it_recovers_when_its_database_connections_are_cut(ingest_url):
    url = ingest_url(REWARD_HEARTBEAT_IP_COUNT="shared", REWARD_TRUSTED_NETWORKS="", INGEST_WORKERS="1")
    key = new_key()
    device = bind(key)
    response = post(url, heartbeat_body(key, seq=1, nonce=device.nonce))
    assert response.status_code == 200, response.text
    nonce = response.json()["nonce"]
    with connection.cursor() as cursor:  # a database restart, as the server's connections see it
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
    statuses = []
    for seq in range(2, 6):
        response = post(url, heartbeat_body(key, seq=seq, nonce=nonce))
        statuses.append(response.status_code)
        if response.status_code == 200:
            nonce = response.json()["nonce"]
    # At most the heartbeat that found the cut connection is a 503 ("send it again"); never a 500.
    assert set(statuses) <= {200, 503} and statuses[-2:] == [200, 200], statuses

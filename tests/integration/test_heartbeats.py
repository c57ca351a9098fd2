"""Heartbeat ingest: a heartbeat is taken only when signed by a bound device over the nonce of its
last acknowledgement, with a greater sequence number, a sane clock, and not too often; forged,
replayed, out-of-order, precomputed, far-future and far-past ones, unknown and unbound devices
get their own 4xx. Probes decide uptime. The device-signed session resumes a node. And a server
killed mid-stream loses no acknowledged heartbeat."""
import json
import os
import signal
import threading
import time

from django.db import connection
import pytest
import requests

from marketplace.rewards import binding, ingest
from marketplace.rewards.models import Device, Heartbeat
from tests.conftest import database_url, free_port
from tests.node_helpers import bind_body, heartbeat_body, new_key, post_json, signed_headers, start_gunicorn

HEARTBEAT = "/api/v1/node/heartbeat"
SESSION = "/api/v1/node/session"


def code(response):
    return response.json()["error"]["code"]


def bind(device, wallet=None):
    body = bind_body(device, wallet or new_key())
    binding.bind(bind=binding.Signed(body["device"], body["wallet"], body["nonce"], body["issued_at"],
                                     body["wallet_signature"]),
                 device_signature=body["device_signature"], window=60)
    return Device.objects.get(address=device.address)


@pytest.fixture(autouse=True)
def _no_interval(settings):
    settings.REWARD_HEARTBEAT_MIN_INTERVAL = 0
    ingest.per_address.counts.clear()


@pytest.fixture
def node(db):
    key = new_key()
    return key, bind(key)


def beat(client, key, *, seq, nonce, **kwargs):
    return post_json(client, HEARTBEAT, heartbeat_body(key, seq=seq, nonce=nonce, **kwargs))


def test_a_signed_heartbeat_is_stored_and_acknowledged_with_a_fresh_nonce(client, node):
    key, device = node
    response = beat(client, key, seq=1, nonce=device.nonce, bytes_up=123)
    assert response.status_code == 200, response.json()
    ack = response.json()
    assert ack["seq"] == 1 and ack["nonce"] != device.nonce and len(ack["nonce"]) == 66
    assert ack["probe"]["url"] == f"/api/v1/node/probe/{key.address}/{ack['nonce']}"
    row = Heartbeat.objects.get(device=device, seq=1)
    assert row.bytes_up == 123 and not row.probe_ok and str(row.ip) == "127.0.0.1"
    device.refresh_from_db()
    assert (device.seq, device.nonce) == (1, ack["nonce"])


def test_a_forged_heartbeat_is_refused(client, node):
    key, device = node
    response = beat(client, key, seq=1, nonce=device.nonce, signer=new_key())
    assert response.status_code == 401 and code(response) == "forged"
    tampered = heartbeat_body(key, seq=1, nonce=device.nonce)
    tampered["bytes_up"] = 10**9  # a figure changed after signing
    response = post_json(client, HEARTBEAT, tampered)
    assert response.status_code == 401 and code(response) == "forged"
    assert not Heartbeat.objects.filter(device=device).exists()


def test_a_replayed_heartbeat_is_refused_with_the_servers_sequence(client, node):
    key, device = node
    body = heartbeat_body(key, seq=7, nonce=device.nonce)
    assert post_json(client, HEARTBEAT, body).status_code == 200
    again = post_json(client, HEARTBEAT, body)
    assert again.status_code == 409 and code(again) == "replayed"
    assert again.json()["error"]["seq"] == 7
    assert Heartbeat.objects.filter(device=device).count() == 1


def test_an_out_of_order_heartbeat_is_refused(client, node):
    key, device = node
    ack = beat(client, key, seq=5, nonce=device.nonce).json()
    response = beat(client, key, seq=4, nonce=ack["nonce"])
    assert response.status_code == 409 and code(response) == "out_of_order"
    assert response.json()["error"]["seq"] == 5


def test_a_heartbeat_made_in_advance_is_refused(client, node):
    """Signed over a nonce the server never gave (as one made before the last ack must be)."""
    key, device = node
    ack = beat(client, key, seq=1, nonce=device.nonce).json()
    response = beat(client, key, seq=2, nonce="0x" + "ab" * 32)
    assert response.status_code == 409 and code(response) == "precomputed"
    response = beat(client, key, seq=2, nonce=device.nonce)  # the previous nonce, already spent
    assert response.status_code == 409 and code(response) == "precomputed"
    assert beat(client, key, seq=2, nonce=ack["nonce"]).status_code == 200


@pytest.mark.parametrize("offset", [3600, -3600])
def test_a_heartbeat_from_a_far_clock_is_refused(client, node, offset):
    key, device = node
    response = beat(client, key, seq=1, nonce=device.nonce, sent_at=int(time.time()) + offset)
    assert response.status_code == 400 and code(response) == "clock_skew"
    assert not Heartbeat.objects.filter(device=device).exists()


def test_an_unknown_device_is_refused(client, db):
    key = new_key()
    response = beat(client, key, seq=1, nonce="0x" + "00" * 32)
    assert response.status_code == 404 and code(response) == "unknown_device"


def test_an_unbound_device_is_refused(client, node):
    key, device = node
    Device.objects.filter(pk=device.pk).update(contributor=None)
    response = beat(client, key, seq=1, nonce=device.nonce)
    assert response.status_code == 403 and code(response) == "unbound_device"


def test_a_device_sending_too_often_is_told_when_to_come_back(client, node, settings):
    settings.REWARD_HEARTBEAT_MIN_INTERVAL = 30
    key, device = node
    ack = beat(client, key, seq=1, nonce=device.nonce).json()
    response = beat(client, key, seq=2, nonce=ack["nonce"])
    assert response.status_code == 429 and code(response) == "too_soon"
    assert 1 <= int(response["Retry-After"]) <= 30


def test_one_address_sending_too_many_is_throttled_unless_trusted(client, db, settings):
    settings.REWARD_HEARTBEATS_PER_IP_MINUTE = 2
    settings.REWARD_TRUSTED_NETWORKS = []
    nodes = [(key, bind(key)) for key in (new_key(), new_key(), new_key())]
    statuses = [beat(client, key, seq=1, nonce=device.nonce).status_code for key, device in nodes]
    if statuses != [200, 200, 429]:  # the minute turned between two of them: once more
        ingest.per_address.counts.clear()
        statuses = [beat(client, key, seq=2, nonce=Device.objects.get(pk=device.pk).nonce).status_code
                    for key, device in nodes]
    assert statuses == [200, 200, 429]
    settings.REWARD_TRUSTED_NETWORKS = ["127.0.0.0/8"]
    key, device = nodes[2]
    assert beat(client, key, seq=5, nonce=Device.objects.get(pk=device.pk).nonce).status_code == 200


def test_the_address_count_can_be_shared_through_the_limits_service(client, db, settings):
    settings.REWARD_HEARTBEAT_IP_COUNT = "shared"
    settings.REWARD_TRUSTED_NETWORKS = []
    settings.LIMITS = {**settings.LIMITS, "node_heartbeat": {"ip": "2/minute"}}
    nodes = [(key, bind(key)) for key in (new_key(), new_key(), new_key())]
    statuses = [beat(client, key, seq=1, nonce=device.nonce) for key, device in nodes]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert code(statuses[2]) == "throttled" and 1 <= int(statuses[2]["Retry-After"]) <= 60
    assert not ingest.per_address.counts  # counted in the shared store, not in this process


def test_a_heartbeat_carrying_the_probes_answer_counts_for_uptime(client, node):
    key, device = node
    ack = beat(client, key, seq=1, nonce=device.nonce).json()
    answer = client.get(ack["probe"]["url"]).json()["answer"]
    good = beat(client, key, seq=2, nonce=ack["nonce"], probe=answer)
    assert good.status_code == 200
    wrong = beat(client, key, seq=3, nonce=good.json()["nonce"], probe="0" * 64)
    assert wrong.status_code == 200
    assert [r.probe_ok for r in Heartbeat.objects.filter(device=device).order_by("seq")] == [False, True, False]
    # Another device's answer, or one for another nonce, is no answer.
    assert answer != ingest.probe_answer(new_key().address, ack["nonce"])
    assert answer != ingest.probe_answer(key.address, good.json()["nonce"])


def test_uptime_counts_at_most_one_slot_per_device(client, node):
    key, device = node
    nonce, probe = device.nonce, ""
    for seq in range(1, 5):
        ack = beat(client, key, seq=seq, nonce=nonce, probe=probe).json()
        nonce = ack["nonce"]
        probe = client.get(ack["probe"]["url"]).json()["answer"]
    path = "/api/v1/node/status"
    status = client.get(path, **signed_headers(key, "GET", path)).json()
    assert status["heartbeats"] == 4
    slots = set(Heartbeat.objects.filter(device=device, probe_ok=True).values_list("slot", flat=True))
    assert status["verified_slots"] == len(slots) >= 1
    assert len(slots) < 3  # three answered probes within a few seconds: one slot (two at a boundary)


def test_the_session_resumes_a_node_that_lost_its_state(client, node):
    key, device = node
    ack = beat(client, key, seq=41, nonce=device.nonce).json()
    response = client.get(SESSION, **signed_headers(key, "GET", SESSION))
    assert response.status_code == 200, response.json()
    session = response.json()
    assert (session["seq"], session["nonce"], session["wallet"]) == (41, ack["nonce"], device.contributor.wallet)
    assert beat(client, key, seq=42, nonce=session["nonce"]).status_code == 200


def test_a_device_signed_request_is_taken_once_and_only_from_its_device(client, node):
    key, _ = node
    headers = signed_headers(key, "GET", SESSION)
    assert client.get(SESSION, **headers).status_code == 200
    again = client.get(SESSION, **headers)
    assert again.status_code == 409 and code(again) == "replayed"
    forged = signed_headers(new_key(), "GET", SESSION)
    forged["HTTP_X_DEVICE"] = key.address
    response = client.get(SESSION, **forged)
    assert response.status_code == 401 and code(response) == "forged"
    stale = client.get(SESSION, **signed_headers(key, "GET", SESSION, stamp=int(time.time()) - 3600))
    assert stale.status_code == 401 and code(stale) == "clock_skew"
    other_path = client.get(SESSION, **signed_headers(key, "GET", "/api/v1/node/status"))
    assert other_path.status_code == 401 and code(other_path) == "forged"
    assert client.get(SESSION).status_code == 401


def test_a_body_that_is_not_a_heartbeat_is_a_400(client, db):
    response = client.post(HEARTBEAT, "[1]", content_type="application/json")
    assert response.status_code == 400 and code(response) == "invalid"
    response = post_json(client, HEARTBEAT, {"device": "0x1", "seq": "1"})
    assert response.status_code == 400 and code(response) == "invalid"
    assert client.get(HEARTBEAT).status_code == 405


# The kill test -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server_kind", ["web", "ingest"])
def test_every_acknowledged_heartbeat_survives_the_server_being_killed(settings, server_kind):
    """Nodes send as fast as they can through gunicorn (the Django view, and the ingest server's
    group commits); the server is SIGKILLed mid-stream. Every (device, seq) a node had an
    acknowledgement for is in the table afterwards."""
    devices = []
    for _ in range(8):
        key = new_key()
        devices.append((key, bind(key).nonce))
    port = free_port()
    server = start_gunicorn(port, database_url(connection.settings_dict),
                            extra_env={"REWARD_HEARTBEAT_MIN_INTERVAL": "0",
                                       "REWARD_TRUSTED_NETWORKS": "127.0.0.0/8"}, server=server_kind)
    acked, stop = [], threading.Event()

    def send(key, nonce):
        seq = 0
        http = requests.Session()
        while not stop.is_set():
            seq += 1
            try:
                response = http.post(f"http://127.0.0.1:{port}{HEARTBEAT}", timeout=5,
                                     data=json.dumps(heartbeat_body(key, seq=seq, nonce=nonce)))
            except requests.RequestException:
                return  # the server is gone
            if response.status_code != 200:
                return
            acked.append((key.address, seq))
            nonce = response.json()["nonce"]

    threads = [threading.Thread(target=send, args=d) for d in devices]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acked) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGKILL)  # the arbiter and its workers, mid-request
        server.wait(10)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    assert len(acked) >= 200
    stored = {(address, seq) for address, seq in
              Heartbeat.objects.values_list("device__address", "seq")}
    missing = set(acked) - stored
    assert not missing, sorted(missing)[:10]


# Metering: partitions, roll-up, flags ------------------------------------------------------------

from datetime import datetime, timedelta, timezone as dt_timezone  # noqa: E402

from marketplace.rewards import metering  # noqa: E402
from marketplace.rewards.models import DeviceDay, Flag  # noqa: E402


def insert(device, seq, at, *, ip="203.0.113.7", probe_ok=True, sent_at=None, bytes_up=0, slot=None):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO rewards_heartbeat (device_id, seq, received_at, slot, probe_ok, ip, sent_at, bytes_up) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [device.pk, seq, at, slot if slot is not None else int(at.timestamp()) // 60, probe_ok, ip,
             sent_at or at, bytes_up])


def partition_of(device, seq):
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM rewards_heartbeat WHERE device_id = %s AND seq = %s",
                       [device.pk, seq])
        return cursor.fetchone()[0]


def test_a_new_partition_takes_over_the_rows_the_default_partition_held(node):
    _, device = node
    day = metering.today() + timedelta(days=20)
    at = datetime.combine(day, datetime.min.time(), tzinfo=dt_timezone.utc) + timedelta(hours=5)
    insert(device, 1, at)
    insert(device, 2, at + timedelta(minutes=1))
    assert partition_of(device, 1) == "rewards_heartbeat_default"
    name = metering.create_partition(day)
    assert name == "rewards_heartbeat_" + day.strftime("%Y%m%d")
    assert partition_of(device, 1) == name and partition_of(device, 2) == name
    assert Heartbeat.objects.filter(device=device).count() == 2
    assert metering.create_partition(day) == name  # made once


def test_days_past_retention_are_rolled_up_then_dropped_with_their_addresses(node, settings):
    _, device = node
    settings.REWARD_HEARTBEAT_RETENTION_DAYS = 7
    old_day = metering.today() - timedelta(days=9)
    at = datetime.combine(old_day, datetime.min.time(), tzinfo=dt_timezone.utc) + timedelta(hours=1)
    metering.create_partition(old_day)
    insert(device, 1, at, bytes_up=100)
    insert(device, 2, at + timedelta(seconds=20), bytes_up=50)  # the same slot
    insert(device, 3, at + timedelta(minutes=2), probe_ok=False)
    stray_day = old_day - timedelta(days=1)  # a day that never had a partition: in DEFAULT
    insert(device, 0, datetime.combine(stray_day, datetime.min.time(), tzinfo=dt_timezone.utc))
    result = metering.maintain_partitions()
    assert old_day.isoformat() in result["dropped"]
    assert not Heartbeat.objects.filter(device=device).exists()
    assert old_day not in metering.partitions()
    assert all(day >= metering.today() for day in list(metering.partitions())[-4:])
    rolled = DeviceDay.objects.get(device=device, day=old_day)
    assert (rolled.heartbeats, rolled.verified_slots, rolled.bytes_up) == (3, 1, 150)
    assert DeviceDay.objects.get(device=device, day=stray_day).heartbeats == 1


def test_the_roll_up_counts_verified_slots_once_and_reruns_agree(node):
    _, device = node
    now = datetime.now(dt_timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=10)
    for seq, offset, ok in [(1, 0, True), (2, 30, True), (3, 60, True), (4, 120, False)]:
        insert(device, seq, now + timedelta(seconds=offset), probe_ok=ok, bytes_up=10)
    metering.roll_up_recent()
    metering.roll_up_recent()
    day = DeviceDay.objects.get(device=device, day=now.date())
    assert (day.heartbeats, day.verified_slots, day.bytes_up) == (4, 2, 40)


def test_one_device_key_on_two_connections_is_flagged_once(node, settings):
    _, device = node
    settings.REWARD_TRUSTED_NETWORKS = []
    at = datetime.now(dt_timezone.utc) - timedelta(minutes=1)
    insert(device, 1, at, ip="198.51.100.1", slot=999)
    insert(device, 2, at + timedelta(seconds=1), ip="198.51.100.2", slot=999)
    flags = metering.flag_abuse()
    assert [(f.kind, f.device_id) for f in flags] == [("two_connections", device.pk)]
    assert flags[0].evidence["addresses"] == ["198.51.100.1", "198.51.100.2"]
    assert flags[0].wallet == device.contributor.wallet
    assert metering.flag_abuse() == []  # the same evidence, no second flag


def test_two_connections_inside_trusted_networks_raise_no_flag(node, settings):
    _, device = node
    settings.REWARD_TRUSTED_NETWORKS = ["198.51.100.0/24"]
    at = datetime.now(dt_timezone.utc) - timedelta(minutes=1)
    insert(device, 1, at, ip="198.51.100.1", slot=999)
    insert(device, 2, at, ip="198.51.100.2", slot=999)
    assert not [f for f in metering.flag_abuse() if f.kind == "two_connections"]


def test_uptime_claimed_beyond_wall_time_is_flagged(node, settings):
    _, device = node
    now = datetime.now(dt_timezone.utc)
    if now.hour == 0 and now.minute < 5:
        now += timedelta(minutes=5)  # keep the rows within one UTC day
    at = now - timedelta(minutes=3)
    # Received within a minute, but the node's clock claims an hour went by.
    insert(device, 1, at, sent_at=at - timedelta(hours=1))
    insert(device, 2, at + timedelta(seconds=40), sent_at=at)
    flags = [f for f in metering.flag_abuse(now=now) if f.kind == "over_wall_time"]
    assert len(flags) == 1 and flags[0].evidence["seconds_claimed"] >= 3600


def test_many_wallets_from_one_address_in_a_day_are_flagged(db, settings):
    settings.REWARD_WALLETS_PER_IP_DAY = 3
    settings.REWARD_TRUSTED_NETWORKS = []
    at = datetime.now(dt_timezone.utc) - timedelta(minutes=2)
    devices = [bind(new_key()) for _ in range(4)]
    for device in devices:
        insert(device, 1, at, ip="192.0.2.50")
    other = bind(new_key())
    insert(other, 1, at, ip="192.0.2.51")
    flags = [f for f in metering.flag_abuse() if f.kind == "wallets_per_address"]
    assert sorted(f.wallet for f in flags) == sorted(d.contributor.wallet for d in devices)
    assert flags[0].evidence["address"] == "192.0.2.50" and len(flags[0].evidence["wallets"]) == 4
    assert Flag.objects.filter(kind="wallets_per_address", wallet=other.contributor.wallet).count() == 0


def test_addresses_of_one_ipv6_slash_64_share_one_count(settings):
    settings.REWARD_HEARTBEATS_PER_IP_MINUTE = 2
    ingest.per_address.counts.clear()
    now = 120.0
    one_host = ["2001:db8:1:2::1", "2001:db8:1:2::ffff", "2001:db8:1:2:aaaa::3"]
    assert [ingest.per_address.allow(ip, now) for ip in one_host] == [True, True, False]
    assert ingest.per_address.allow("2001:db8:1:3::1", now)  # the next /64 is another host
    assert [ingest.per_address.allow("198.51.100.7", now) for _ in range(3)] == [True, True, False]
    assert ingest.per_address.allow("198.51.100.8", now)  # IPv4 addresses count one by one

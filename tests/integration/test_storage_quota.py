"""Storage quotas per wallet and per client address: an upload reserves its declared size under
the scopes' row locks before its body is read, so two uploads cannot both pass a quota that fits
one; the reservation is settled with the stored version or given back when the upload fails; and
uploads are refused while the storage volume would drop below UPLOAD_MIN_FREE_DISK."""
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
import io
from pathlib import Path
import shutil
import socket
import threading
from urllib.parse import urlsplit

from django.db import connections, transaction
from django.utils import timezone
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog.models import DatasetVersion
from marketplace.limits import http as limits_http, services
from marketplace.limits.models import StorageReservation, StorageUsage
from tests.conftest import wait_until

# A Celery worker an earlier test left running would analyse these uploads while the test's
# teardown empties the tables: its row locks and the flush's table locks deadlocked once.
pytestmark = pytest.mark.usefixtures("no_worker")

OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CSRF = "a" * 32


def csv_of(size):
    """A valid CSV file of exactly `size` bytes."""
    head = b"n\n"
    return head + b"1\n" * ((size - len(head)) // 2) + (b"1" if (size - len(head)) % 2 else b"")


def free_disk(settings):
    Path(settings.UPLOAD_TMP_DIR).mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(settings.UPLOAD_TMP_DIR).free


def used(scope):
    usage = StorageUsage.objects.filter(scope=scope).first()
    return usage.used if usage else 0


@pytest.fixture
def owner_client(client, db):
    client.force_login(wallet_user(OWNER))
    return client


def new_dataset(client):
    response = client.post("/api/v1/datasets", {"title": "Cities", "license": "CC0-1.0"}, content_type="application/json")
    assert response.status_code == 201, response.json()
    return response.json()["slug"]


def upload(client, slug, content, filename="data.csv", **extra):
    return client.post(f"/api/v1/datasets/{slug}/versions?filename={filename}&price=1&token={TOKEN}",
                       data=content, content_type="application/octet-stream", **extra)


class RawUpload:
    """An upload to the live server over a socket of our own, so that the test decides when the
    body arrives (or that it never does)."""

    def __init__(self, live_server, session, slug, declared, first=b""):
        url = urlsplit(live_server.url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=60)
        head = (f"POST /api/v1/datasets/{slug}/versions?filename=data.csv&price=1&token={TOKEN} HTTP/1.1\r\n"
                f"Host: {url.hostname}:{url.port}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {declared}\r\nCookie: sessionid={session}; csrftoken={CSRF}\r\n"
                f"X-CSRFToken: {CSRF}\r\nConnection: close\r\n\r\n")
        self.sock.sendall(head.encode() + first)

    def finish(self, rest):
        self.sock.sendall(rest)
        answer = b""
        while chunk := self.sock.recv(65536):
            answer += chunk
        self.sock.close()
        return int(answer.split(b" ", 2)[1])

    def abort(self):
        self.sock.close()


@pytest.mark.django_db(transaction=True)
def test_an_upload_holds_its_room_while_it_streams(live_server, client, settings):
    settings.STORAGE_QUOTA_PER_WALLET = 100
    client.force_login(wallet_user(OWNER))
    slug = new_dataset(client)
    first = csv_of(80)
    streaming = RawUpload(live_server, client.cookies["sessionid"].value, slug, declared=80, first=first[:10])
    try:
        # The reservation exists before the body has arrived...
        assert wait_until(lambda: StorageReservation.objects.filter(size=80).exists(), timeout=30)
        # ...so a second upload that would fit the quota alone does not fit beside it.
        refused = upload(client, slug, csv_of(50))
        assert refused.status_code == 413
        assert refused.json()["error"] == {
            "code": "storage_quota_exceeded",
            "message": "This file (50 bytes) does not fit in this wallet's storage quota: 0 bytes stored, "
                       "80 bytes in uploads under way, of 100 bytes."}
    finally:
        status = streaming.finish(first[10:])
    assert status == 201
    assert used(f"wallet:{OWNER.lower()}") == 80 and used("ip:127.0.0.1") == 80
    assert not StorageReservation.objects.exists()
    assert upload(client, slug, csv_of(20)).status_code == 201  # exactly the quota
    full = upload(client, slug, csv_of(4))
    assert full.status_code == 413 and "100 bytes stored" in full.json()["error"]["message"]
    assert DatasetVersion.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_an_upload_that_breaks_off_gives_its_reservation_back(live_server, client, settings):
    settings.STORAGE_QUOTA_PER_WALLET = 100
    client.force_login(wallet_user(OWNER))
    slug = new_dataset(client)
    broken = RawUpload(live_server, client.cookies["sessionid"].value, slug, declared=90, first=csv_of(90)[:30])
    assert wait_until(lambda: StorageReservation.objects.exists(), timeout=30)
    broken.abort()
    assert wait_until(lambda: not StorageReservation.objects.exists(), timeout=30)
    assert used(f"wallet:{OWNER.lower()}") == 0 and not DatasetVersion.objects.exists()
    assert upload(client, slug, csv_of(90)).status_code == 201


def test_a_refused_file_gives_its_reservation_back(owner_client, settings):
    settings.STORAGE_QUOTA_PER_WALLET = 100
    slug = new_dataset(owner_client)
    response = upload(owner_client, slug, csv_of(90), filename="data.parquet")  # CSV bytes, parquet name
    assert response.status_code == 415
    assert not StorageReservation.objects.exists() and used(f"wallet:{OWNER.lower()}") == 0
    assert upload(owner_client, slug, csv_of(90)).status_code == 201


def test_the_quota_of_an_address_is_shared_by_its_wallets(client, db, settings):
    settings.STORAGE_QUOTA_PER_IP = 100
    client.force_login(wallet_user(OWNER))
    assert upload(client, new_dataset(client), csv_of(70)).status_code == 201
    client.force_login(wallet_user(OTHER))
    slug = new_dataset(client)
    refused = upload(client, slug, csv_of(40))
    assert refused.status_code == 413
    assert "the storage quota of your network address: 70 bytes stored" in refused.json()["error"]["message"]
    assert upload(client, slug, csv_of(40), REMOTE_ADDR="198.51.100.4").status_code == 201


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("shared", ["wallet", "ip"])
def test_concurrent_reservations_cannot_both_pass_a_quota_that_fits_one(settings, shared):
    settings.STORAGE_QUOTA_PER_WALLET = settings.STORAGE_QUOTA_PER_IP = 100
    # The shared scope has stored before (its row exists): only its row lock orders the uploads.
    StorageUsage.objects.create(scope="wallet:0xshared" if shared == "wallet" else "ip:198.51.100.1", used=10)
    start = threading.Barrier(8)

    def reserve(i):
        start.wait()
        try:
            services.reserve_storage(wallet="0xshared" if shared == "wallet" else f"0x{i}",
                                     ip="198.51.100.1" if shared == "ip" else f"198.51.100.{i}", size=60)
            return True
        except services.StorageRefused as refused:
            assert refused.code == "storage_quota_exceeded"
            return False
        finally:
            connections.close_all()

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(reserve, range(8))) == 1  # 10 stored + 60 reserved; another 60 would be 130
    assert StorageReservation.objects.count() == 1


def test_settling_is_part_of_the_storing_transaction(db):
    reservation = services.reserve_storage(wallet="0xaaa", ip="198.51.100.1", size=50)
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            services.settle_storage(reservation, size=50)
            raise RuntimeError("storing the version failed")
    assert used("wallet:0xaaa") == 0 and StorageReservation.objects.filter(pk=reservation.pk).exists()
    with transaction.atomic():
        services.settle_storage(reservation, size=48)  # the file as received
    assert used("wallet:0xaaa") == 48 and used("ip:198.51.100.1") == 48
    assert not StorageReservation.objects.exists()


def test_a_dead_uploads_reservation_expires_and_is_swept(db, settings):
    settings.STORAGE_QUOTA_PER_WALLET = 100
    StorageReservation.objects.create(wallet="wallet:0xaaa", ip="ip:198.51.100.1", size=100, host="web-1",
                                      expires_at=timezone.now() - timedelta(seconds=1))
    services.reserve_storage(wallet="0xaaa", ip="198.51.100.1", size=100)  # the dead one no longer counts
    assert services.purge_expired()["reservations"] == 1
    assert StorageReservation.objects.count() == 1


def test_a_streaming_upload_keeps_its_reservation_alive(db, settings, monkeypatch):
    monkeypatch.setattr(limits_http, "KEEP_ALIVE_EVERY", 0.0)
    reservation = services.reserve_storage(wallet="0xaaa", ip="198.51.100.1", size=10)
    StorageReservation.objects.filter(pk=reservation.pk).update(expires_at=timezone.now() + timedelta(seconds=5))
    body = limits_http._KeptAlive(reservation, io.BytesIO(b"0123456789"))
    assert body.read(4) == b"0123"
    expires = StorageReservation.objects.get(pk=reservation.pk).expires_at
    assert expires > timezone.now() + timedelta(seconds=settings.UPLOAD_RESERVATION_TTL - 60)


# Free disk ------------------------------------------------------------------------------------------


def test_uploads_are_refused_when_the_disk_would_drop_below_the_floor(owner_client, settings):
    settings.UPLOAD_MIN_FREE_DISK = free_disk(settings) + 10**12
    slug = new_dataset(owner_client)
    response = upload(owner_client, slug, csv_of(50))
    assert response.status_code == 507
    assert response.json()["error"] == {
        "code": "storage_low",
        "message": "The server is low on disk space and is not taking uploads right now; try again later."}
    assert not DatasetVersion.objects.exists() and not StorageReservation.objects.exists()


def test_uploads_under_way_on_this_host_count_against_the_free_disk(owner_client, settings):
    import socket as sockets

    settings.UPLOAD_MIN_FREE_DISK = 10**9
    slug = new_dataset(owner_client)
    assert upload(owner_client, slug, csv_of(50)).status_code == 201  # the floor leaves room
    # Another upload on this host has reserved what is free: nothing more fits above the floor.
    free = free_disk(settings)
    StorageReservation.objects.create(wallet="wallet:0xelse", ip="ip:198.51.100.77", size=free,
                                      host=sockets.gethostname(), expires_at=timezone.now() + timedelta(minutes=5))
    assert upload(owner_client, slug, csv_of(50)).status_code == 507
    # Another host's uploads are written to another disk.
    StorageReservation.objects.update(host="another-web-host")
    assert upload(owner_client, slug, csv_of(50)).status_code == 201


def test_a_chunked_upload_is_asked_for_its_length(owner_client):
    slug = new_dataset(owner_client)
    response = owner_client.generic("POST", f"/api/v1/datasets/{slug}/versions?filename=data.csv&price=1&token={TOKEN}",
                                    b"", content_type="application/octet-stream", HTTP_TRANSFER_ENCODING="chunked")
    assert response.status_code == 411 and response.json()["error"]["code"] == "length_required"


@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_cannot_both_pass_a_floor_that_leaves_room_for_one(settings):
    # Nothing is written: the floor sits 15 GB under what is free, and each upload asks for 10.
    gigabyte = 10**9
    settings.UPLOAD_MIN_FREE_DISK = free_disk(settings) - 15 * gigabyte
    start = threading.Barrier(6)

    def reserve(i):
        start.wait()
        try:
            services.reserve_storage(wallet=f"0x{i}", ip=f"198.51.100.{i}", size=10 * gigabyte)
            return True
        except services.StorageRefused as refused:
            assert refused.code == "storage_low"
            return False
        finally:
            connections.close_all()

    with ThreadPoolExecutor(6) as pool:
        assert sum(pool.map(reserve, range(6))) == 1

"""A client reading a bought file at 5 MB/s for 60 s, through gunicorn exactly as it is shipped
(marketplace/gunicorn_conf.py, the Procfile's web line): the download is not cut short (no
worker timeout ends it), and other requests keep being answered quickly meanwhile. Four sync
workers with a 30 s timeout, the previous configuration, killed it after 30 s."""
import hashlib
import http.client
import os
from pathlib import Path
import subprocess
import sys
import threading
import time

from django.core.files.storage import storages
from django.db import connection
from eth_account import Account
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog.models import Dataset, DatasetVersion
from marketplace.chain import indexer
from marketplace.orders import delivery
from tests.conftest import DEV_KEYS, database_url, free_port
from tests.integration.test_listing import PRICE

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
RATE = 5 * 1024 * 1024  # bytes a second
SECONDS = 60
SIZE = RATE * SECONDS


def bought_file(chain):
    """A version of SIZE bytes, listed from the publisher's wallet, approved, bought, indexed."""
    publisher, buyer = Account.from_key(DEV_KEYS[1]), Account.from_key(DEV_KEYS[2])
    name = f"datasets/slow-{os.getpid()}/big.csv"
    path = Path(storages["private"].path(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(SIZE >> 20):
            f.write(block)
            digest.update(block)
    owner = wallet_user(publisher.address)
    dataset = Dataset.objects.create(owner=owner, slug="slow", title="Slow", license="other",
                                     payout_address=publisher.address)
    version = DatasetVersion.objects.create(dataset=dataset, number=1, file=name, original_name="big.csv",
                                            format="csv", size=SIZE, content_hash="0x" + digest.hexdigest(),
                                            price=PRICE, token=chain.token.address, analysis_status="done")
    functions = chain.market.contract.functions
    chain.send(functions.createListing(chain.token.address, PRICE, publisher.address,
                                                 digest.digest(), 24 * 3600), publisher.address)
    indexer.index_chain(chain.w3)  # its handler links the listing to the version
    listing = version.listings.get()
    chain.send(functions.setApproval([int(listing.listing_id)], True), chain.operator.address)
    chain.token.mint(buyer.address, PRICE)
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), buyer.address)
    chain.send(functions.purchase(int(listing.listing_id), PRICE), buyer.address)
    indexer.index_chain(chain.w3)
    return path, delivery.grant(buyer.address, version, via="session").token, digest.hexdigest()


def test_a_slow_download_neither_times_out_nor_blocks_other_requests(chain, tmp_path):
    path, token, sha = bought_file(chain)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict), "DJANGO_SECRET_KEY": "test-only",
           "DJANGO_SECURE_SSL_REDIRECT": "0", "DJANGO_MANIFEST_STATIC": "0", "LOG_LEVEL": "WARNING",
           "PRIVATE_STORAGE_DIR": str(Path(storages["private"].location)), "DATA_DIR": str(tmp_path),
           "WEB_HOST": "127.0.0.1", "WEB_PORT": str(port), "WEB_ACCESS_LOG": "", "CHAIN_RPC_URL": chain.url}
    procfile = (ROOT / "Procfile").read_text().splitlines()[0]
    assert procfile == "web: exec gunicorn -c marketplace/gunicorn_conf.py marketplace.wsgi"  # what we run below
    server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-c", "marketplace/gunicorn_conf.py",
                               "marketplace.wsgi"], cwd=ROOT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/api/v1/auth/me")
                conn.getresponse().read()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "gunicorn did not start"
                time.sleep(0.2)

        latencies, done = [], threading.Event()

        def others():
            while not done.is_set():
                started = time.monotonic()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/api/v1/auth/me")
                response = conn.getresponse()
                response.read()
                latencies.append((response.status, time.monotonic() - started))
                done.wait(0.5)

        poller = threading.Thread(target=others, daemon=True)
        poller.start()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", f"/downloads/{token}")
        response = conn.getresponse()
        assert response.status == 200
        digest, received, started = hashlib.sha256(), 0, time.monotonic()
        while chunk := response.read(256 * 1024):
            digest.update(chunk)
            received += len(chunk)
            behind = received / RATE - (time.monotonic() - started)
            if behind > 0:
                time.sleep(behind)  # read no faster than RATE
        seconds = time.monotonic() - started
        done.set()
        poller.join(15)
    finally:
        server.terminate()
        server.wait(15)
        path.unlink(missing_ok=True)

    assert received == SIZE and digest.hexdigest() == sha, f"{received:,} of {SIZE:,} bytes"
    assert seconds >= SECONDS - 2, f"read in {seconds:.0f} s: the client was meant to be slow"
    assert len(latencies) > SECONDS, latencies[:5]
    assert all(status == 401 for status, _ in latencies)  # answered: "not signed in"
    assert max(latency for _, latency in latencies) < 1.0, sorted(latencies, key=lambda x: x[1])[-3:]

"""The production front end: Debian's nginx running marketplace/nginx.conf (the compose file's
nginx; only its paths and ports substituted) in front of gunicorn as shipped, with
DOWNLOAD_ACCEL_REDIRECT set as the compose file sets it. Through it, with one web thread only: a
bought file (its stored name with a space, a "%" and letters outside ASCII) comes out whole and by
Range, with the content hash as its ETag; a slow download and a slow upload hold no web thread; the
internal location cannot be reached from outside; static files come from disk; an oversized body
gets the API's error body; Django sees the host and port the client asked for; no download token
reaches nginx's or gunicorn's logs; a node's heartbeat and probe reach the ingest server (as
shipped, marketplace/ingest_conf.py) and stay out of the access log."""
import hashlib
import http.client
import json
import os
from pathlib import Path
import random
import socket
import subprocess
import sys
import time
from urllib.parse import quote

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import connection
from django.test import Client
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
NGINX = Path("/usr/sbin/nginx")  # Debian's (scripts/dev test installs it as root, else says to)
CONTENT = random.Random(41).randbytes(3 * 1024 * 1024 + 17)
SHA = hashlib.sha256(CONTENT).hexdigest()
STORED_NAME = "données 50% #1.csv"


def bought(chain):
    """(version, download token): a version stored under STORED_NAME, listed from the publisher's
    wallet, approved, bought by the buyer, indexed."""
    publisher, buyer = Account.from_key(DEV_KEYS[1]), Account.from_key(DEV_KEYS[2])
    owner = wallet_user(publisher.address)
    dataset = Dataset.objects.create(owner=owner, slug="front", title="Front", license="other",
                                     payout_address=publisher.address)
    name = storages["private"].save(f"datasets/{dataset.pk}/v1/{STORED_NAME}", ContentFile(CONTENT))
    version = DatasetVersion.objects.create(
        dataset=dataset, number=1, file=name, original_name=STORED_NAME, format="csv",
        size=len(CONTENT), content_hash="0x" + SHA, price=PRICE, token=chain.token.address,
        analysis_status="done")
    functions = chain.market.contract.functions
    chain.send(functions.createListing(chain.token.address, PRICE, publisher.address,
                                      bytes.fromhex(SHA), 24 * 3600), publisher.address)
    indexer.index_chain(chain.w3)  # its handler links the listing to the version
    listing = version.listings.get()
    chain.send(functions.setApproval([int(listing.listing_id)], True), chain.operator.address)
    chain.token.mint(buyer.address, PRICE)
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), buyer.address)
    chain.send(functions.purchase(int(listing.listing_id), PRICE), buyer.address)
    indexer.index_chain(chain.w3)
    return version, delivery.grant(buyer.address, version, via="session").token


def nginx_config(tmp_path, *, port, web_port, ingest_port, files, static):
    """marketplace/nginx.conf with this machine's paths and ports for the compose file's."""
    text = (ROOT / "marketplace" / "nginx.conf").read_text()
    substitutions = [
        ("pid /tmp/nginx.pid;", f"pid {tmp_path}/nginx.pid;"),
        ("/var/lib/nginx/body;", f"{tmp_path}/body;"),
        ("/tmp/nginx-", f"{tmp_path}/nginx-"),
        ("access_log /dev/stdout redacted;", f"access_log {tmp_path}/access.log redacted;"),
        ("server web:8000;", f"server 127.0.0.1:{web_port};"),
        ("server ingest:8001;", f"server 127.0.0.1:{ingest_port};"),
        ("listen 8080;", f"listen 127.0.0.1:{port};"),
        ("alias /data/files/;", f"alias {files}/;"),
        ("alias /srv/static/;", f"alias {static}/;"),
    ]
    for compose, here in substitutions:
        assert compose in text, f"nginx.conf has no {compose!r} any more: update this test"
        text = text.replace(compose, here)
    if os.geteuid() == 0:
        # In the compose file nginx runs as the app's user, which owns the (owner-only) files;
        # here that user is root, and a root master would otherwise run its workers as nobody.
        text = "user root;\n" + text
    path = tmp_path / "nginx.conf"
    path.write_text(text)
    return path


def wait_for(port, process, name):
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, f"{name} did not start"
            time.sleep(0.1)


def get(port, path, headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


def others_answered_quickly(port):
    """Three requests that need the one web thread are answered meanwhile (a held thread would
    answer none of them until the slow client is done: this one waits for the test)."""
    for _ in range(3):
        try:
            response, _ = get(port, "/api/v1/auth/me", timeout=5)
        except TimeoutError:
            return False
        if response.status != 401:  # not signed in: answered by Django
            return False
    return True


@pytest.fixture
def front(chain, tmp_path):
    """gunicorn (one worker, one thread) behind nginx; yields (nginx port, version, token)."""
    assert NGINX.exists(), "they need Debian's nginx: apt-get install nginx (scripts/dev test does)"
    version, token = bought(chain)
    files = Path(storages["private"].location)
    web_port, ingest_port, port = free_port(), free_port(), free_port()
    env = {
        **os.environ, "DATABASE_URL": database_url(connection.settings_dict),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,  # the test's session cookie signs in
        "DJANGO_SECURE_SSL_REDIRECT": "0", "DJANGO_MANIFEST_STATIC": "0", "LOG_LEVEL": "WARNING",
        "PRIVATE_STORAGE_DIR": str(files), "DATA_DIR": str(tmp_path / "data"),
        "CHAIN_RPC_URL": chain.url,
        "WEB_HOST": "127.0.0.1", "WEB_PORT": str(web_port), "WEB_WORKERS": "1", "WEB_THREADS": "1",
        "WEB_ACCESS_LOG": str(tmp_path / "gunicorn-access.log"), "TRUSTED_PROXIES": "1",
        "DOWNLOAD_ACCEL_REDIRECT": "/protected-files/",  # as docker-compose.yml sets it
        "INGEST_HOST": "127.0.0.1", "INGEST_PORT": str(ingest_port), "INGEST_WORKERS": "1",
        "REWARD_HEARTBEAT_MIN_INTERVAL": "0",
    }
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    web = subprocess.Popen([gunicorn, "-c", "marketplace/gunicorn_conf.py", "marketplace.wsgi"],
                           cwd=ROOT, env=env, start_new_session=True)
    ingest = subprocess.Popen([gunicorn, "-c", "marketplace/ingest_conf.py", "marketplace.rewards.ingest_server:app"],
                              cwd=ROOT, env=env, start_new_session=True)
    config = nginx_config(tmp_path, port=port, web_port=web_port, ingest_port=ingest_port, files=files,
                          static=ROOT / "frontend" / "dist")
    proxy = subprocess.Popen([str(NGINX), "-c", str(config), "-p", str(tmp_path),
                              "-e", str(tmp_path / "error.log"), "-g", "daemon off;"],
                             start_new_session=True)
    try:
        wait_for(web_port, web, "gunicorn")
        wait_for(ingest_port, ingest, "the ingest server")
        wait_for(port, proxy, "nginx")
        yield port, version, token
    finally:
        for process in (proxy, web, ingest):
            process.terminate()
            process.wait(15)
        storages["private"].delete(version.file)
    for name, text in logs(tmp_path).items():
        assert token not in text, f"the download token is in {name}"


def logs(tmp_path):
    names = ("access.log", "error.log", "gunicorn-access.log")
    return {name: (tmp_path / name).read_text() for name in names}


def test_a_bought_file_comes_from_nginx_whole_and_by_range(front, tmp_path):
    port, version, token = front
    link = f"/downloads/{token}"
    response, body = get(port, link)
    assert response.status == 200 and hashlib.sha256(body).hexdigest() == SHA
    assert response.getheader("ETag") == f'"{SHA}"'  # the content hash, as the web process said
    assert response.getheader("X-Content-SHA256") == SHA
    assert response.getheader("Content-Disposition") == 'attachment; filename="front-v1.csv"'
    assert response.getheader("Content-Type") == "application/octet-stream"
    assert response.getheader("Accept-Ranges") == "bytes"
    assert response.getheader("Cache-Control") == "private, no-store"

    part, body = get(port, link, {"Range": "bytes=100-199"})
    assert part.status == 206 and body == CONTENT[100:200]
    assert part.getheader("Content-Range") == f"bytes 100-199/{len(CONTENT)}"
    # A resume as the datamarket client sends it: If-Range is the content hash.
    resumed, body = get(port, link, {"Range": f"bytes={len(CONTENT) - 10}-",
                                     "If-Range": f'"{SHA}"'})
    assert resumed.status == 206 and body == CONTENT[-10:]
    other, body = get(port, link, {"Range": "bytes=0-9", "If-Range": '"another file"'})
    assert other.status == 200 and len(body) == len(CONTENT)

    # The internal location answers only X-Accel-Redirect, never a client asking for it.
    direct, _ = get(port, "/protected-files/" + quote(version.file))
    assert direct.status == 404
    gone, _ = get(port, "/downloads/not-a-token")
    assert gone.status == 410
    # The path as Django decodes it makes a download, however the client spelled it.
    spelled, body = get(port, f"/%64ownloads/{token}")
    assert spelled.status == 200 and hashlib.sha256(body).hexdigest() == SHA

    # Both logs show the downloads, without their token (the fixture checks every log for it).
    written = logs(tmp_path)
    assert written["access.log"].count('"GET /downloads/- HTTP/1.1" 206') == 2
    assert written["access.log"].count('"GET /downloads/- HTTP/1.1" 200') == 3
    assert written["gunicorn-access.log"].count('"GET /downloads/- HTTP/1.1" 200') == 5
    assert "données" not in written["access.log"]  # nor the stored name of the file sent


def test_a_slow_download_and_a_slow_upload_hold_no_web_thread(front, chain):
    port, _, token = front
    # A client that reads a few bytes of the file, then stops reading for a while.
    slow = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    slow.request("GET", f"/downloads/{token}")
    reading = slow.getresponse()
    assert reading.status == 200 and reading.read(1024) == CONTENT[:1024]
    assert others_answered_quickly(port)

    # An upload that sends half its body, then waits: nginx holds it, the web thread stays free.
    publisher = wallet_user(Account.from_key(DEV_KEYS[1]).address)
    Dataset.objects.create(owner=publisher, slug="uploaded", title="Uploaded", license="other",
                           payout_address=publisher.address)
    browser = Client()
    browser.force_login(publisher)
    csrf = "a" * 32
    upload = ("city,population\n" + "".join(f"city{i},{i * 7}\n" for i in range(20_000))).encode()
    sending = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sending.putrequest("POST", f"/api/v1/datasets/uploaded/versions?filename=c.csv&price={PRICE}")
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(upload)),
               "Cookie": f"sessionid={browser.cookies['sessionid'].value}; csrftoken={csrf}",
               "X-CSRFToken": csrf}
    for header, value in headers.items():
        sending.putheader(header, value)
    sending.endheaders()
    sending.send(upload[:len(upload) // 2])
    time.sleep(0.5)
    assert others_answered_quickly(port)
    sending.send(upload[len(upload) // 2:])
    stored = sending.getresponse()
    assert stored.status == 201, stored.read()
    version = DatasetVersion.objects.get(dataset__slug="uploaded")
    assert version.size == len(upload)
    assert version.content_hash == "0x" + hashlib.sha256(upload).hexdigest()
    storages["private"].delete(version.file)

    rest = reading.read()
    assert hashlib.sha256(CONTENT[:1024] + rest).hexdigest() == SHA


def test_static_files_and_oversized_bodies(front):
    port, _, _ = front
    response, body = get(port, "/static/app.css")
    assert response.status == 200 and body == (ROOT / "frontend" / "dist" / "app.css").read_bytes()
    assert response.getheader("Cache-Control") == "public, max-age=300"

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/api/v1/auth/nonce", body=b"{" + b" " * (4 * 1024 * 1024) + b"}",
                 headers={"Content-Type": "application/json"})
    refused = conn.getresponse()
    assert refused.status == 413 and refused.getheader("Content-Type") == "application/json"
    assert refused.read().startswith(b'{"error": {"code": "body_too_large"')


def test_django_sees_the_host_and_port_the_client_asked_for(front):
    """The sign-in message names the site as the browser sees it (a wallet compares the two)."""
    port, _, _ = front
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    wallet = Account.from_key(DEV_KEYS[2]).address
    conn.request("POST", "/api/v1/auth/nonce", body=json.dumps({"address": wallet}),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 201
    message = json.loads(response.read())["message"]
    assert message.startswith(f"127.0.0.1:{port} wants you to sign in")
    assert f"URI: http://127.0.0.1:{port}\n" in message


def test_a_nodes_heartbeat_and_probe_reach_the_ingest_server_and_stay_out_of_the_log(front, tmp_path):
    from marketplace.rewards.models import Heartbeat
    from tests.integration.test_heartbeats import bind
    from tests.node_helpers import heartbeat_body, new_key

    port, _, _ = front
    key = new_key()
    device = bind(key)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    # A client's own X-Forwarded-For is not believed: nginx appends the address it saw.
    conn.request("POST", "/api/v1/node/heartbeat", body=json.dumps(heartbeat_body(key, seq=1, nonce=device.nonce)),
                 headers={"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.9"})
    response = conn.getresponse()
    ack = json.loads(response.read())
    assert response.status == 200, ack
    row = Heartbeat.objects.get(device=device, seq=1)
    assert str(row.ip) == "127.0.0.1"
    conn.request("GET", ack["probe"]["url"])
    probe = conn.getresponse()
    answer = json.loads(probe.read())["answer"]
    assert probe.status == 200 and len(answer) == 64
    conn.request("POST", "/api/v1/node/heartbeat", body=json.dumps(
        heartbeat_body(key, seq=2, nonce=ack["nonce"], probe=answer)), headers={"Content-Type": "application/json"})
    second = conn.getresponse()
    assert second.status == 200, second.read()
    second.read()
    assert Heartbeat.objects.get(device=device, seq=2).probe_ok  # the probe's answer came from the same secret
    # The ingest server answered (the web process has no /healthz of this shape at that path).
    conn.request("POST", "/api/v1/node/heartbeat", body=b"x" * 9000)
    too_big = conn.getresponse()
    assert too_big.status == 413 and too_big.read().startswith(b'{"error": {"code": "body_too_large"')
    # Only the refused body is logged (by the error page's location): no heartbeat or probe answered.
    # nginx writes the line once the answer is out, so it may come a moment after the client read it.
    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in logs(tmp_path)["access.log"].splitlines() if "/api/v1/node/" in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) == 1 and '/api/v1/node/heartbeat HTTP/1.1" 413' in lines[0], lines

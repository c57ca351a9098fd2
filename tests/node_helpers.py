"""What a node and a wallet sign, made with real keys for the node tests."""
import json
import secrets
import time

from eth_account import Account

from marketplace.rewards import signing

CHAIN_ID = 31337


def bind_body(device, wallet, *, issued_at=None, nonce=None, device_signer=None, wallet_signer=None, old=None):
    """The body of POST /api/v1/node/bind: `device` and `wallet` are LocalAccounts; `old`, the
    wallet the device is bound to now, adds its Unbind."""
    fields = dict(chain_id=CHAIN_ID, device=device.address, wallet=wallet.address,
                  nonce=nonce or "0x" + secrets.token_hex(32),
                  issued_at=int(time.time()) if issued_at is None else issued_at)
    body = {"device": device.address, "wallet": wallet.address, "nonce": fields["nonce"],
            "issued_at": fields["issued_at"],
            "device_signature": signing.sign_binding(device_signer or device, "Bind", **fields),
            "wallet_signature": signing.sign_binding(wallet_signer or wallet, "Bind", **fields)}
    if old is not None:
        body["unbind"] = unbind_fields(device, old)
    return body


def unbind_fields(device, wallet, *, issued_at=None):
    fields = dict(chain_id=CHAIN_ID, device=device.address, wallet=wallet.address,
                  nonce="0x" + secrets.token_hex(32), issued_at=int(time.time()) if issued_at is None else issued_at)
    return {"wallet": wallet.address, "nonce": fields["nonce"], "issued_at": fields["issued_at"],
            "signature": signing.sign_binding(wallet, "Unbind", **fields)}


def heartbeat_body(device, *, seq, nonce, probe="", sent_at=None, signer=None, bytes_up=0):
    sent_at = int(time.time()) if sent_at is None else sent_at
    message = signing.heartbeat_message(chain_id=CHAIN_ID, device=device.address, seq=seq, nonce=nonce,
                                        sent_at=sent_at, probe=probe, bytes_up=bytes_up)
    return {"device": device.address, "seq": seq, "nonce": nonce, "sent_at": sent_at, "probe": probe,
            "bytes_up": bytes_up, "bytes_down": 0, "latency_ms": 0,
            "signature": signing.sign(signer or device, message)}


def signed_headers(device, method, path, body=b"", *, stamp=None):
    """Django test client keyword arguments for a device-signed request."""
    stamp = int(time.time()) if stamp is None else stamp
    message = signing.request_message(chain_id=CHAIN_ID, device=device.address, method=method, path=path,
                                      timestamp=stamp, body=body)
    return {"HTTP_X_DEVICE": device.address, "HTTP_X_DEVICE_TIME": str(stamp),
            "HTTP_X_DEVICE_SIGNATURE": signing.sign(device, message)}


def post_json(client, path, body, **extra):
    return client.post(path, json.dumps(body), content_type="application/json", **extra)


def new_key():
    return Account.create()


def start_gunicorn(port, database_url, *, extra_env=None, workers=2, threads=2, server="web"):
    """gunicorn as shipped on `port` against `database_url`: the web process
    (marketplace/gunicorn_conf.py) or, with server="ingest", the heartbeat ingest server
    (marketplace/ingest_conf.py); returns the process once it answers."""
    import http.client
    import os
    from pathlib import Path
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SECRET_KEY": "test-only",
           "DJANGO_SECURE_SSL_REDIRECT": "0", "DJANGO_MANIFEST_STATIC": "0", "LOG_LEVEL": "WARNING",
           "WEB_HOST": "127.0.0.1", "WEB_PORT": str(port), "WEB_ACCESS_LOG": "", "WEB_WORKERS": str(workers),
           "WEB_THREADS": str(threads), "INGEST_HOST": "127.0.0.1", "INGEST_PORT": str(port),
           "INGEST_WORKERS": str(workers), **(extra_env or {})}
    config, app = {"web": ("marketplace/gunicorn_conf.py", "marketplace.wsgi"),
                   "ingest": ("marketplace/ingest_conf.py", "marketplace.rewards.ingest_server:app")}[server]
    server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-c", config, app], cwd=root, env=env,
                              start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/v1/node/probe/-/-")  # answered without the chain or a query
            conn.getresponse().read()
            return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.2)

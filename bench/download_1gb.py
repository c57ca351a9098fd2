"""A bought 1 GiB file through the real download path: gunicorn as the Procfile runs it.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/download_1gb.py

It starts its own anvil with the real contracts and a database `bench_download`, stores a 1 GiB
file as a dataset version, lists it from the publisher's wallet (linked through the receipt, as
the page does), approves it on-chain, buys it from a dev wallet, lets the chain indexer read the
order, and asks for a download link as a script does (an EIP-712 request signed by the buyer).
Then, through gunicorn on loopback, it checks the whole file and its two halves joined (Range)
against the sha256, untimed, and times the whole file and a resumed half (`Range:
bytes=<half>-`), printing GB/s and the peak RSS growth of the gunicorn workers (sampled from /proc
every 50 ms), against the same file from a bare WSGI app in gunicorn (the reference, in the same
run). Targets: at least 1 GB/s, memory growth under 50 MB.
"""
import argparse
import hashlib
import http.client
import os
from pathlib import Path
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
BIN = Path(sys.executable).parent
OPERATOR_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil's dev keys
PUBLISHER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
BUYER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
PRICE = 10**6


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for n in range(size >> 20):
            chunk = block[n % 251:] + block[:n % 251]  # differs chunk to chunk, cheaply
            f.write(chunk)
            digest.update(chunk)
    return "0x" + digest.hexdigest()


def fetch(port: int, path: str, headers: dict, sampler_pids, *, digest=None) -> tuple[float, int, int, int]:
    """GET path, reading the body (into `digest` if given: hashing runs at about the speed of the
    server, so timed reads do not hash); returns (seconds, bytes, status, peak RSS growth of the
    worker that grew most)."""
    from upload_1gb import RssSampler

    sampler = RssSampler(sampler_pids)
    sampler.start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    received = 0
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    while n := response.readinto(buffer):
        if digest is not None:
            digest.update(view[:n])
        received += n
    seconds = time.perf_counter() - started
    sampler.stop()
    return seconds, received, response.status, sampler.growth()[2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL")
    if not base:
        raise SystemExit("set DATABASE_URL to a PostgreSQL server (a database bench_download is made there)")
    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    env = bench_env(base, "bench_download", work)
    processes = []
    try:
        import django

        django.setup()
        from upload_1gb import children, free_port, wait_for_http

        w3, contracts = start_chain(env, processes)
        link = buy(w3, contracts, work, args.size_mb << 20)

        web_port, bare_port = free_port(), free_port()
        # The reference: the same file from a bare WSGI app (1 MiB reads) in the same kind of server.
        (work / "bare_app.py").write_text(
            "def app(environ, start_response):\n"
            f"    start_response('200 OK', [('Content-Length', '{link['size']}')])\n"
            f"    with open({str(work / 'files' / link['file'])!r}, 'rb') as f:\n"
            "        while chunk := f.read(1 << 20):\n"
            "            yield chunk\n")
        processes.append(subprocess.Popen([str(BIN / "gunicorn"), "bare_app:app", "--chdir", str(work), "--bind",
                                           f"127.0.0.1:{bare_port}", "--workers", "1", "--log-level", "warning"]))
        bare = processes[-1]
        processes.append(subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "marketplace/gunicorn_conf.py", "marketplace.wsgi", "--bind",
             f"127.0.0.1:{web_port}", "--log-level", "warning", "--access-logfile", "/dev/null"], cwd=ROOT, env=env))
        wait_for_http(web_port, processes[-1])
        time.sleep(1)  # the bare server too
        workers = children(processes[-1].pid)
        size = link["size"]
        print(f"file: {size:,} bytes, sha256 {link['sha256'][:16]}...; gunicorn as the Procfile runs it "
              f"({len(workers)} workers)\n")
        rows = [("reference: a bare WSGI app, same file", bare_port, "/", {}, children(bare.pid)),
                ("download, whole file", web_port, link["url"], {}, workers),
                ("download, resumed from the middle", web_port, link["url"], {"Range": f"bytes={size // 2}-"}, workers)]
        # Checked once, untimed: the whole file, and the two halves a resumed download joins.
        whole, halves = hashlib.sha256(), hashlib.sha256()
        fetch(web_port, link["url"], {}, workers, digest=whole)
        fetch(web_port, link["url"], {"Range": f"bytes=0-{size // 2 - 1}"}, workers, digest=halves)
        fetch(web_port, link["url"], {"Range": f"bytes={size // 2}-"}, workers, digest=halves)
        same = whole.hexdigest() == halves.hexdigest() == link["sha256"]
        print(f"the whole file, and its two halves joined, against the sha256: {'ok' if same else 'WRONG'}")
        for name, port_, path, headers, pids in rows:
            seconds, received, status, growth = fetch(port_, path, headers, pids)
            expected = size - (size // 2 if headers else 0)
            ok = received == expected
            print(f"{name:<40} {status} {received / seconds / 1e9:5.2f} GB/s  {seconds:6.2f} s  "
                  f"RSS growth {growth / 2**20:6.1f} MiB  {'ok' if ok else 'WRONG BYTES'}")
        print("\ntargets: at least 1 GB/s, memory growth under 50 MB")
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def bench_env(base: str, database: str, work: Path, **extra) -> dict:
    """The environment of a bench's server processes, also set in this one: a fresh database
    `database` on the server of `base`, files under `work`, plus `extra`."""
    from indexer import fresh_database

    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "marketplace.settings", "DJANGO_SECRET_KEY": "bench-only",
        "DJANGO_SECURE_SSL_REDIRECT": "0", "DJANGO_MANIFEST_STATIC": "0", "LOG_LEVEL": "WARNING",
        "DATABASE_URL": fresh_database(base, database), "DATA_DIR": str(work / "data"),
        "PRIVATE_STORAGE_DIR": str(work / "files"), "PATH": f"{BIN}:{os.environ.get('PATH', '')}", **extra,
    }
    os.environ.update(env)
    return env


def start_chain(env: dict, processes: list):
    """The database migrated, a fresh anvil (appended to `processes`) with the real contracts
    deployed by the operator key and recorded; CHAIN_RPC_URL set in `env`, the environment and
    the settings. Returns (the operator's Web3, the deployments)."""
    from django.conf import settings
    from django.core.management import call_command

    from marketplace.chain.client import _signing_web3
    from marketplace.chain.models import Deployment
    from marketplace.chain.services import deploy_all
    from marketplace.devstack import ANVIL, wait_for_rpc
    from upload_1gb import free_port

    call_command("migrate", verbosity=0)
    port = free_port()
    anvil = subprocess.Popen([str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--chain-id", "31337",
                              "--silent"], start_new_session=True)
    processes.append(anvil)
    chain_url = f"http://127.0.0.1:{port}"
    assert wait_for_rpc(chain_url, anvil), "anvil did not start"
    os.environ["CHAIN_RPC_URL"] = env["CHAIN_RPC_URL"] = settings.CHAIN_RPC_URL = chain_url
    w3 = _signing_web3(chain_url, 30.0, OPERATOR_KEY)
    contracts = deploy_all(w3)
    for result in contracts.values():
        Deployment.objects.create(chain_id=w3.eth.chain_id, **result.__dict__)
    return w3, contracts


def buy(w3, contracts, work, size):
    """The version listed, approved, bought and indexed; returns a download link got by a signed
    request, with the file's name, size and sha256."""
    from django.core.files.storage import storages
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    from marketplace.accounts.services import wallet_user
    from marketplace.catalog.models import Dataset, DatasetVersion
    from marketplace.chain import indexer
    from marketplace.chain.contracts import DataMarket, TestUSDC
    from marketplace.orders import delivery, signed

    market = DataMarket(w3, contracts["DataMarket"].address)
    token = TestUSDC(w3, contracts["TestUSDC"].address)
    publisher, buyer = Account.from_key(PUBLISHER_KEY), Account.from_key(BUYER_KEY)
    owner = wallet_user(publisher.address)
    (work / "files" / "datasets").mkdir(parents=True, exist_ok=True)
    name = "datasets/bench-1gb.csv"
    print(f"writing a {size / 2**30:.1f} GiB file ...", flush=True)
    sha = make_file(Path(storages["private"].path(name)), size)
    dataset = Dataset.objects.create(owner=owner, slug="bench-1gb", title="Bench file", license="other",
                                     payout_address=publisher.address, status=Dataset.Status.LISTED)
    version = DatasetVersion.objects.create(dataset=dataset, number=1, file=name, original_name="bench.csv",
                                            format="csv", size=size, content_hash=sha, price=PRICE,
                                            token=token.address, analysis_status="done")
    tx = market.contract.functions.createListing(token.address, PRICE, publisher.address, bytes.fromhex(sha[2:]),
                                                 24 * 3600).transact({"from": publisher.address})
    w3.eth.wait_for_transaction_receipt(tx)
    indexer.index_chain(w3)  # its handler links the listing to the version
    listing = version.listings.get()
    market._transact(market.contract.functions.setApproval([int(listing.listing_id)], True))
    token.mint(buyer.address, PRICE)
    for call in (token.contract.functions.approve(market.address, PRICE),
                 market.contract.functions.purchase(int(listing.listing_id), PRICE)):
        w3.eth.wait_for_transaction_receipt(call.transact({"from": buyer.address}))
    indexer.index_chain(w3)
    request = dict(market=market.address, buyer=buyer.address, content_hash=sha, expiry=int(time.time()) + 500,
                   nonce="0x" + secrets.token_hex(32))
    signature = buyer.sign_message(encode_typed_data(full_message=signed.typed_data(**request))).signature
    verified = signed.verify(**request, signature="0x" + bytes(signature).hex())
    granted = delivery.grant(verified, version, via="signature")
    return {"url": f"/downloads/{granted.token}", "file": name, "size": size, "sha256": sha[2:]}


if __name__ == "__main__":
    main()

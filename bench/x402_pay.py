"""Agents paying over HTTP 402 for a 10 MB file: the real path, gunicorn as the Procfile runs it.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/x402_pay.py

It starts its own anvil (the embedded chain: no confirmations) with the real contracts, a
database `bench_x402`, the web process (gunicorn, `marketplace/gunicorn_conf.py`) and a Celery
worker and beat as the Procfile runs them. A 10 MB file is listed from the publisher's wallet and
approved on-chain. Each agent is a fresh wallet holding only the token (no ETH). It asks the paid
URL (`GET /pay/<listing id>`: 402), signs the `TransferWithAuthorization` the 402's
`PAYMENT-REQUIRED` describes, asks again with `PAYMENT-SIGNATURE`, and reads the file, whose
sha256 must be the listed content hash.

Shapes, each with p50 / p95 / max:
- one agent at a time (`--payments`, 30 by default): the paid request's first byte (the
  settlement through the operator sender included), and the whole exchange (402, signing, paid
  request, the last byte);
- `--agents` (20) paying at once, `--rounds` (3) times: each agent's whole exchange;
- references measured in the same run, each shape against its own: the chain's own cost of one
  settlement (the same `purchaseWithAuthorization` sent by this script from a relayer key, the
  receipt awaited) and the first byte of the same file bought before and fetched through a
  download link, one at a time; and for the crowd, `--agents` settlements sent at once by this
  script from as many threads (signed beforehand at consecutive nonces, each thread broadcasting
  one and awaiting its receipt) and `--agents` fetches of the whole file through download links at
  once, `--rounds` times each.
Targets (issue 21): the paid first byte within 1 s at p95; 20 agents at once all within 5 s at p95.
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
from pathlib import Path
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
BIN = Path(sys.executable).parent
OPERATOR_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil's dev keys
PUBLISHER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
BUYER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
BANK_KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"  # funds the agents
RELAYER_KEY = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"  # the reference's relayer
PRICE = 2 * 10**6


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return (f"p50 {statistics.median(ordered) * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  "
            f"max {ordered[-1] * 1000:7.1f} ms  (n={len(ordered)})"), p95


class Agent:
    """A wallet holding only the token, paying the way an x402 client does."""

    def __init__(self, account, port: int, path: str):
        self.account, self.port, self.path = account, port, path

    def get(self, headers: dict, *, body: bool = True):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        started = time.perf_counter()
        conn.request("GET", self.path, headers=headers)
        response = conn.getresponse()
        first = response.read(1)
        first_byte = time.perf_counter() - started
        digest = hashlib.sha256(first)
        if body:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
        conn.close()
        return response, first_byte, digest.hexdigest()

    def pay_header(self, required: str) -> str:
        from marketplace.payments.verify import transfer_typed_data
        from eth_account import Account

        document = json.loads(base64.b64decode(required))
        (accepts,) = document["accepts"]
        values = {"payer": self.account.address, "to": accepts["payTo"], "value": int(accepts["amount"]),
                  "valid_after": 0, "valid_before": int(time.time()) + int(accepts["maxTimeoutSeconds"]),
                  "nonce": "0x" + secrets.token_hex(32)}
        data = transfer_typed_data(token=accepts["asset"], token_name=accepts["extra"]["name"],
                                   token_version=accepts["extra"]["version"], **values)
        signature = "0x" + bytes(Account.sign_typed_data(self.account.key, full_message=data).signature).hex()
        payload = {"signature": signature, "authorization": {
            "from": values["payer"], "to": values["to"], "value": str(values["value"]),
            "validAfter": "0", "validBefore": str(values["valid_before"]), "nonce": values["nonce"]}}
        return base64.b64encode(json.dumps({"x402Version": 2, "resource": document["resource"],
                                            "accepted": accepts, "payload": payload}).encode()).decode()

    def buy(self, sha256: str) -> tuple[float, float]:
        """The whole exchange; returns (the paid request's first byte, the exchange's seconds)."""
        started = time.perf_counter()
        response, _, _ = self.get({}, body=True)
        if response.status != 402:
            raise SystemExit(f"expected 402, got {response.status}")
        header = self.pay_header(response.getheader("PAYMENT-REQUIRED"))
        response, first_byte, digest = self.get({"PAYMENT-SIGNATURE": header})
        if response.status != 200 or digest != sha256 or not response.getheader("PAYMENT-RESPONSE"):
            raise SystemExit(f"paid request: {response.status} {response.getheader('PAYMENT-RESPONSE')!r}, "
                             f"sha256 {'ok' if digest == sha256 else 'WRONG'}")
        return first_byte, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=10)
    parser.add_argument("--payments", type=int, default=30)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", default="bench_x402", help="the database made (dropped first) for the run")
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL")
    if not base:
        raise SystemExit("set DATABASE_URL to a PostgreSQL server (a database --database, bench_x402, is made there)")
    from download_1gb import bench_env

    work = Path(tempfile.mkdtemp(prefix="bench-x402-"))
    env = bench_env(base, args.database, work, CHAIN_OPERATOR_KEY=OPERATOR_KEY,
                    DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
                    # Every agent here pays from one address (loopback): the per-address limits are raised.
                    LIMIT_PAYMENTS_PER_IP="100000/minute", LIMIT_PAYMENT_REQUIRED_PER_IP="100000/minute")
    processes = []
    try:
        import django

        django.setup()
        from eth_account import Account

        from download_1gb import start_chain
        from upload_1gb import free_port, wait_for_http

        w3, contracts = start_chain(env, processes)
        listed = list_file(w3, contracts, work, args.size_mb << 20)

        web_port = free_port()
        logs = work / "logs"
        logs.mkdir()
        processes.append(subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "marketplace/gunicorn_conf.py", "marketplace.wsgi", "--bind",
             f"127.0.0.1:{web_port}", "--log-level", "warning", "--access-logfile", "/dev/null"], cwd=ROOT, env=env))
        wait_for_http(web_port, processes[-1])
        for name, command in (("worker", ["worker", "--pool", "threads", "--concurrency", "4"]),
                              ("beat", ["beat", "--schedule", str(work / "beat-schedule")])):
            processes.append(subprocess.Popen([str(BIN / "celery"), "-A", "marketplace", *command, "--loglevel",
                                               "WARNING"], cwd=ROOT, env=env, stdout=open(logs / name, "w"),
                                              stderr=subprocess.STDOUT))
        time.sleep(2)
        path = f"/pay/{listed['listing_id']}"
        sha = listed["sha256"]

        def agents(n):
            accounts = [Account.create() for _ in range(n)]
            mint_all(w3, contracts, [a.address for a in accounts])
            return [Agent(account, web_port, path) for account in accounts]

        print(f"file: {listed['size']:,} bytes; {path}; gunicorn as the Procfile runs it\n")
        agents(1)[0].buy(sha)  # warm: the workers' first request, the 402's first build

        chain_ref = reference_settlements(w3, contracts, listed["listing_id"], args.payments)
        link_ref = reference_download(web_port, listed, args.payments)
        chain_crowd, link_crowd = [], []
        for _ in range(args.rounds):
            chain_crowd += reference_settlements_at_once(w3, contracts, listed["listing_id"], args.agents)
            link_crowd += reference_downloads_at_once(web_port, listed, args.agents)

        first_bytes, exchanges = [], []
        for agent in agents(args.payments):
            first_byte, whole = agent.buy(sha)
            first_bytes.append(first_byte)
            exchanges.append(whole)

        together, failures = [], []
        for _ in range(args.rounds):
            crowd = agents(args.agents)
            barrier = threading.Barrier(len(crowd))
            times = [None] * len(crowd)

            def run(i, agent):
                barrier.wait()
                try:
                    times[i] = agent.buy(sha)[1]
                except SystemExit as exc:  # a refused or failed payment: reported, not timed
                    failures.append(str(exc))

            threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(crowd)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            together.extend(t for t in times if t is not None)

        line, chain_p95 = percentiles(chain_ref)
        print(f"{'reference: one settlement sent by this script':<58} {line}")
        line, link_p95 = percentiles(link_ref)
        print(f"{'reference: first byte of a bought file (download link)':<58} {line}")
        line, first_p95 = percentiles(first_bytes)
        print(f"{'paid request, first byte (one agent at a time)':<58} {line}  "
              f"{first_p95 / (chain_p95 + link_p95):4.1f}x the two references")
        line, _ = percentiles(exchanges)
        print(f"{'whole exchange: 402, sign, pay, last byte (one at a time)':<58} {line}")
        line, chain_crowd_p95 = percentiles(chain_crowd)
        print(f"{f'reference: {args.agents} settlements sent at once by this script':<58} {line}")
        line, link_crowd_p95 = percentiles(link_crowd)
        print(f"{f'reference: {args.agents} download links at once, last byte':<58} {line}")
        line, crowd_p95 = percentiles(together)
        print(f"{f'{args.agents} agents at once, whole exchange':<58} {line}  "
              f"{crowd_p95 / (chain_crowd_p95 + link_crowd_p95):4.1f}x the two crowd references")
        if failures:
            print(f"{len(failures)} of {args.agents * args.rounds} agents at once did not get their file: "
                  + "; ".join(sorted(set(failures))))
        print("\ntargets: paid first byte within 1 s at p95; "
              f"{args.agents} agents at once within 5 s at p95")
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)


def mint_all(w3, contracts, addresses):
    """PRICE of the token to each address, from the bank's wallet (the operator key is the web
    process's: this script never sends with it once the server runs)."""
    from eth_account import Account

    from marketplace.chain.client import _signing_web3
    from marketplace.chain.contracts import TestUSDC

    bank = _signing_web3(w3.provider.endpoint_uri, 30.0, BANK_KEY)
    token = TestUSDC(bank, contracts["TestUSDC"].address)
    sender = Account.from_key(BANK_KEY).address
    hashes = [token.contract.functions.transfer(address, PRICE).transact({"from": sender}) for address in addresses]
    for tx in hashes:
        bank.eth.wait_for_transaction_receipt(tx)


def reference_settlements(w3, contracts, listing_id, count) -> list[float]:
    """The chain's own cost of a settlement: purchaseWithAuthorization sent with the operator key
    (the relayer) by this script, receipt awaited, `count` times with fresh wallets."""
    from eth_account import Account

    from marketplace.chain.contracts import DataMarket
    from marketplace.payments.verify import transfer_typed_data

    from marketplace.chain.client import _signing_web3

    relayer = _signing_web3(w3.provider.endpoint_uri, 30.0, RELAYER_KEY)
    market = DataMarket(relayer, contracts["DataMarket"].address).contract
    token = contracts["TestUSDC"].address
    accounts = [Account.create() for _ in range(count)]
    mint_all(w3, contracts, [a.address for a in accounts])
    name, version = "Test USD Coin", "2"
    times = []
    for account in accounts:
        values = {"payer": account.address, "to": market.address, "value": PRICE, "valid_after": 0,
                  "valid_before": int(time.time()) + 600, "nonce": "0x" + secrets.token_hex(32)}
        data = transfer_typed_data(token=token, token_name=name, token_version=version, **values)
        signature = bytes(Account.sign_typed_data(account.key, full_message=data).signature)
        auth = (account.address, PRICE, 0, values["valid_before"], bytes.fromhex(values["nonce"][2:]), signature)
        started = time.perf_counter()
        tx = market.functions.purchaseWithAuthorization(listing_id, auth).transact(
            {"from": relayer.eth.default_account})
        receipt = relayer.eth.wait_for_transaction_receipt(tx)
        times.append(time.perf_counter() - started)
        assert receipt.status == 1
    return times


def reference_settlements_at_once(w3, contracts, listing_id, count) -> list[float]:
    """The chain's own cost of `count` settlements at once: purchaseWithAuthorization of `count`
    fresh wallets, signed by the relayer beforehand at consecutive nonces, each broadcast by its
    own thread at the same moment and its receipt awaited; seconds from the barrier per thread."""
    from eth_account import Account

    from marketplace.chain.client import _signing_web3
    from marketplace.chain.contracts import DataMarket
    from marketplace.payments.verify import transfer_typed_data

    relayer = _signing_web3(w3.provider.endpoint_uri, 30.0, RELAYER_KEY)
    market = DataMarket(relayer, contracts["DataMarket"].address).contract
    token = contracts["TestUSDC"].address
    accounts = [Account.create() for _ in range(count)]
    mint_all(w3, contracts, [a.address for a in accounts])
    key = Account.from_key(RELAYER_KEY)
    nonce = relayer.eth.get_transaction_count(key.address, "pending")
    block = relayer.eth.get_block("latest")
    max_fee = 2 * int(block["baseFeePerGas"]) + 10**9
    raws = []
    for i, account in enumerate(accounts):
        values = {"payer": account.address, "to": market.address, "value": PRICE, "valid_after": 0,
                  "valid_before": int(time.time()) + 600, "nonce": "0x" + secrets.token_hex(32)}
        data = transfer_typed_data(token=token, token_name="Test USD Coin", token_version="2", **values)
        signature = bytes(Account.sign_typed_data(account.key, full_message=data).signature)
        auth = (account.address, PRICE, 0, values["valid_before"], bytes.fromhex(values["nonce"][2:]), signature)
        built = market.functions.purchaseWithAuthorization(listing_id, auth).build_transaction({
            "from": key.address, "nonce": nonce + i, "gas": 400_000, "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": 10**9, "chainId": 31337})
        raws.append(key.sign_transaction(built).raw_transaction)
    barrier = threading.Barrier(count)
    times = [None] * count

    def send(i):
        barrier.wait()
        started = time.perf_counter()
        tx = relayer.eth.send_raw_transaction(raws[i])
        receipt = relayer.eth.wait_for_transaction_receipt(tx, poll_latency=0.05)
        times[i] = time.perf_counter() - started
        assert receipt.status == 1

    threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert None not in times, "a reference settlement failed"
    return times


def reference_downloads_at_once(port, listed, count) -> list[float]:
    """`count` fetches of the whole file through the download link at once (the same link: a
    grant serves any number of fetches while it lasts), to the last byte, sha256 checked."""
    barrier = threading.Barrier(count)
    times = [None] * count

    def fetch(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        barrier.wait()
        started = time.perf_counter()
        conn.request("GET", listed["link"])
        response = conn.getresponse()
        digest = hashlib.sha256()
        while chunk := response.read(1 << 20):
            digest.update(chunk)
        times[i] = time.perf_counter() - started
        assert response.status == 200 and digest.hexdigest() == listed["sha256"], response.status
        conn.close()

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert None not in times, "a reference download failed"
    return times


def reference_download(port, listed, count) -> list[float]:
    """First byte of the same file through a download link, bought before (no payment)."""
    times = []
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        started = time.perf_counter()
        conn.request("GET", listed["link"])
        response = conn.getresponse()
        response.read(1)
        times.append(time.perf_counter() - started)
        assert response.status == 200, response.status
        conn.close()
    return times


def list_file(w3, contracts, work, size):
    """The version listed from the publisher's wallet, approved, indexed; one purchase by the
    buyer for the reference download link."""
    from django.core.files.storage import storages
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    from download_1gb import make_file
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
    name = "datasets/bench-x402.csv"
    sha = make_file(Path(storages["private"].path(name)), size)
    dataset = Dataset.objects.create(owner=owner, slug="bench-x402", title="Bench file", license="other",
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
    token.mint(Account.from_key(BANK_KEY).address, 10**15)
    relayer_role = market.contract.functions.RELAYER_ROLE().call()
    market._transact(market.contract.functions.grantRole(relayer_role, Account.from_key(RELAYER_KEY).address))
    for call in (token.contract.functions.approve(market.address, PRICE),
                 market.contract.functions.purchase(int(listing.listing_id), PRICE)):
        w3.eth.wait_for_transaction_receipt(call.transact({"from": buyer.address}))
    indexer.index_chain(w3)
    request = dict(market=market.address, buyer=buyer.address, content_hash=sha, expiry=int(time.time()) + 500,
                   nonce="0x" + secrets.token_hex(32))
    signature = buyer.sign_message(encode_typed_data(full_message=signed.typed_data(**request))).signature
    verified = signed.verify(**request, signature="0x" + bytes(signature).hex())
    granted = delivery.grant(verified, version, via="signature")
    return {"listing_id": int(listing.listing_id), "link": f"/downloads/{granted.token}", "size": size,
            "sha256": sha[2:]}


if __name__ == "__main__":
    main()

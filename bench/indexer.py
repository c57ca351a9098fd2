"""The chain indexer from an empty cursor: events per second from anvil into PostgreSQL, the
handlers' rows included (orders), against a bare eth_getLogs + COPY loop over the same blocks in
the same run (the reference: the machine's speed varies between runs).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/indexer.py

It starts its own anvil, deploys the real contracts, and makes `--rounds` rounds of three
transactions (a bench-only MarketBatcher creates `--per-round` listings of the real DataMarket,
the operator approves them, a second MarketBatcher buys them): per round, per listing, a
ListingCreated, a ListingApprovalSet, an OrderCreated and a Transfer into the market. Then it
indexes everything from the deployment's block with `indexer.index_chain`, once with the default
range (CHAIN_LOG_RANGE) and once with 100-block ranges, each from an empty cursor. The target: at
least 10,000 events a second over at least 20,000 events in at least 1,000 blocks.
"""
import argparse
import os
from pathlib import Path
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
os.environ["LOG_LEVEL"] = "WARNING"

OPERATOR_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil's first dev key
PRICE = 10**6
WINDOW = 24 * 3600


def fresh_database(base_url: str, name: str) -> str:
    import dj_database_url
    import psycopg

    db = dj_database_url.parse(base_url)
    admin = dict(dbname="postgres", user=db["USER"] or None, password=db["PASSWORD"] or None,
                 host=db["HOST"] or None, port=db["PORT"] or None)
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return base_url.rsplit("/", 1)[0] + "/" + name


def make_events(w3, contracts, rounds, per_round):
    from marketplace.chain.artifacts import load_artifact
    from marketplace.chain.contracts import DataMarket, TestUSDC
    from marketplace.chain.services import deploy_contract

    market = DataMarket(w3, contracts["DataMarket"].address)
    token = TestUSDC(w3, contracts["TestUSDC"].address)
    abi = load_artifact("MarketBatcher").abi  # compiled from contracts/test/mocks
    seller, buyer = (w3.eth.contract(address=deploy_contract(w3, "MarketBatcher", []).address, abi=abi)
                     for _ in range(2))
    token.mint(buyer.address, PRICE * rounds * per_round)
    started = time.perf_counter()
    for n in range(rounds):
        receipt = _send(w3, seller.functions.createListings(market.address, token.address, PRICE, WINDOW,
                                                            per_round, n))
        ids = [log["args"]["listingId"] for log in market.contract.events.ListingCreated().process_receipt(receipt)]
        _send(w3, market.contract.functions.setApproval(ids, True))
        _send(w3, buyer.functions.purchaseAll(market.address, token.address, ids, PRICE))
        if (n + 1) % 100 == 0:
            print(f"  {n + 1:,} of {rounds:,} rounds sent ({time.perf_counter() - started:.0f} s)", flush=True)


def _send(w3, call):
    receipt = w3.eth.wait_for_transaction_receipt(call.transact({"gas": 25_000_000}))
    assert receipt["status"] == 1, receipt
    return receipt


def index_once(w3, range_size):
    """Index everything from an empty cursor; returns (events, order rows, seconds, ranges)."""
    from django.db import connection

    from marketplace.chain import indexer
    from marketplace.chain.models import ChainEvent
    from marketplace.orders.models import Order

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE chain_chainevent, chain_indexedblock, chain_indexercursor, orders_order")
    started = time.perf_counter()
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        profile = cProfile.Profile()
        report = profile.runcall(indexer.index_chain, w3, range_size=range_size)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(35)
    else:
        report = indexer.index_chain(w3, range_size=range_size)
    seconds = time.perf_counter() - started
    assert report.through == w3.eth.block_number, report
    events = ChainEvent.objects.count()
    assert report.events == events
    return events, Order.objects.count(), seconds, report.ranges


def bare_loop(w3, contracts, base_url, first, last, range_size):
    """The reference: eth_getLogs over the same blocks and addresses (raw JSON-RPC), then COPY of
    the raw logs into a table: no decoding, no handlers, no transaction per range."""
    import psycopg

    url = fresh_database(base_url, "bench_indexer_bare")
    addresses = [contracts["DataMarket"].address, contracts["RewardDistributor"].address]
    market_topic = "0x" + "0" * 24 + contracts["DataMarket"].address[2:].lower()
    transfer = "0x" + w3.keccak(text="Transfer(address,address,uint256)").hex().removeprefix("0x")
    filters = [{"address": addresses}] + [{"address": contracts["TestUSDC"].address, "topics": topics}
                                          for topics in ([transfer, market_topic], [transfer, None, market_topic])]
    started = time.perf_counter()
    rows = 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE logs (tx_hash text, log_index text, block_number text, address text, "
                     "topics text, data text)")
        for lo in range(first, last + 1, range_size):
            hi = min(last, lo + range_size - 1)
            logs = []
            for params in filters:
                logs += w3.provider.make_request("eth_getLogs", [{**params, "fromBlock": hex(lo), "toBlock": hex(hi)}])[
                    "result"]
            with conn.cursor().copy("COPY logs FROM STDIN") as copy:
                for log in logs:
                    copy.write_row((log["transactionHash"], log["logIndex"], log["blockNumber"], log["address"],
                                    ",".join(log["topics"]), log["data"]))
            rows += len(logs)
    return rows, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=350, help="rounds of three blocks")
    parser.add_argument("--per-round", type=int, default=20, help="listings created, approved and bought a round")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL")
    if not base_url:
        raise SystemExit("set DATABASE_URL to a PostgreSQL server (a database bench_indexer is made there)")
    os.environ["DATABASE_URL"] = fresh_database(base_url, "bench_indexer")

    import django

    django.setup()
    from django.conf import settings
    from eth_account import Account

    from django.core.management import call_command

    from marketplace.chain.client import _signing_web3
    from marketplace.chain.models import Deployment
    from marketplace.chain.services import deploy_all
    from marketplace.devstack import ANVIL, wait_for_rpc
    from tests.conftest import free_port

    port = free_port()
    anvil = subprocess.Popen([str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--chain-id", "31337",
                              "--silent", "--gas-limit", "60000000"], start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for_rpc(url, anvil), "anvil did not start"
        settings.CHAIN_RPC_URL = url
        w3 = _signing_web3(url, 30.0, Account.from_key(OPERATOR_KEY).key.hex())
        contracts = deploy_all(w3)
        call_command("migrate", verbosity=0)
        for result in contracts.values():
            Deployment.objects.create(chain_id=w3.eth.chain_id, **result.__dict__)
        first = min(c.block_number for c in contracts.values())
        print(f"making {args.rounds:,} rounds of {args.per_round} listings created, approved and bought ...", flush=True)
        make_events(w3, contracts, args.rounds, args.per_round)
        head = w3.eth.block_number
        print(f"chain: blocks {first:,} to {head:,} ({head - first + 1:,} blocks)\n")

        rows, bare_seconds = bare_loop(w3, contracts, base_url, first, head, settings.CHAIN_LOG_RANGE)
        print(f"reference: bare eth_getLogs + COPY      {rows:>7,} logs in {bare_seconds:6.2f} s = "
              f"{rows / bare_seconds:>9,.0f} a second")
        for range_size in (settings.CHAIN_LOG_RANGE, 100):
            events, orders, seconds, ranges = index_once(w3, range_size)
            print(f"indexer, {range_size:>5,}-block ranges ({ranges:>3} ranges) {events:>7,} events in {seconds:6.2f} s = "
                  f"{events / seconds:>9,.0f} a second ({orders:,} order rows); "
                  f"{(events / seconds) / (rows / bare_seconds):.2f}x the reference")
        print("\ntarget: at least 10,000 events a second over at least 20,000 events in at least 1,000 blocks")
    finally:
        anvil.terminate()
        anvil.wait(10)


if __name__ == "__main__":
    main()

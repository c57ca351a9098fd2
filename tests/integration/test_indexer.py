"""The chain indexer against anvil with the real contracts: events stored once with their
handlers, only from watched addresses, token transfers into and out of the market, confirmations,
reorganisations (snapshot and revert), one run at a time, a crash mid-range, a node that is down."""
from datetime import timedelta

from django.db import connection
from django.utils import timezone
from eth_account import Account
import psycopg
import pytest
from web3 import Web3
from web3.logs import DISCARD

from marketplace.chain import indexer
from marketplace.chain.client import get_web3
from marketplace.chain.models import ChainEvent, IndexedBlock, IndexerCursor
from marketplace.chain.services import deploy_contract
from tests.conftest import DEV_KEYS, database_url

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

PRICE = 25 * 10**6
WINDOW = 3 * 24 * 3600


@pytest.fixture(autouse=True)
def handlers():
    """The test's own handlers, removed afterwards (apps' handlers stay registered)."""
    saved, saved_rollbacks = list(indexer._handlers), list(indexer._rollback_handlers)
    calls = []
    yield calls
    indexer._handlers[:] = saved
    indexer._rollback_handlers[:] = saved_rollbacks


@pytest.fixture
def seller():
    return Account.from_key(DEV_KEYS[1])


@pytest.fixture
def buyer(chain):
    account = Account.from_key(DEV_KEYS[2])
    chain.token.mint(account.address, 1_000 * 10**6)
    chain.send(chain.token.contract.functions.approve(chain.market.address, 10**12), account.address)
    return account


def create_listing(chain, seller, market=None):
    market = market or chain.market
    functions = market.contract.functions
    receipt = chain.send(functions.createListing(chain.token.address, PRICE, seller.address,
                                                 Web3.keccak(text="a version"), WINDOW), seller.address)
    (event,) = market.contract.events.ListingCreated().process_receipt(receipt, errors=DISCARD)
    listing_id = event["args"]["listingId"]
    chain.send(functions.setApproval([listing_id], True), chain.operator.address)
    return listing_id


def purchase(chain, buyer, listing_id, market=None):
    market = market or chain.market
    return chain.send(market.contract.functions.purchase(listing_id, PRICE), buyer.address)


def events(name=None):
    rows = ChainEvent.objects.order_by("block_number", "log_index")
    return list(rows.filter(name=name) if name else rows)


def test_events_are_stored_once_and_handlers_get_each_new_one_once(chain, seller, buyer, handlers):
    indexer.register(lambda batch: handlers.append([(e.name, e.tx_hash, e.log_index) for e in batch]),
                     events=["ListingCreated", "OrderCreated"])
    listing_id = create_listing(chain, seller)
    receipt = purchase(chain, buyer, listing_id)

    report = indexer.index_chain(chain.w3)
    assert report.through == chain.w3.eth.block_number and report.events == len(events())
    (order,) = events("OrderCreated")
    assert order.tx_hash == "0x" + bytes(receipt["transactionHash"]).hex()
    assert order.block_number == receipt["blockNumber"] and order.block_hash == "0x" + bytes(receipt["blockHash"]).hex()
    assert order.tx_index == receipt["transactionIndex"] and order.address == chain.market.address
    assert order.args["buyer"] == buyer.address and order.args["amount"] == str(PRICE)
    assert order.args["listingId"] == str(listing_id)
    (created,) = events("ListingCreated")
    assert created.args["owner"] == seller.address and created.args["contentHash"] == "0x" + Web3.keccak(
        text="a version").hex().removeprefix("0x")
    assert [name for batch in handlers for name, *_ in batch] == ["ListingCreated", "OrderCreated"]
    # The deployment's own events are there too, from its first block: roles, the token.
    assert events("TokenConfigured")[0].args["token"] == chain.token.address

    again = indexer.index_chain(chain.w3)
    assert again.events == 0 and len(handlers) == 1
    assert ChainEvent.objects.count() == report.events


def test_only_the_watched_contracts_count(chain, seller, buyer):
    """A second DataMarket, not this database's, emits the same events: none of them is read."""
    other = deploy_contract(chain.w3, "DataMarket", [chain.operator.address, chain.operator.address, 250])
    from marketplace.chain.contracts import DataMarket

    other_market = DataMarket(chain.w3, other.address)
    other_market.set_token_allowed(chain.token.address, True, True)
    other_market.grant_role("MODERATOR_ROLE", chain.operator.address)
    chain.send(chain.token.contract.functions.approve(other.address, 10**12), buyer.address)
    fake_listing = create_listing(chain, seller, market=other_market)
    purchase(chain, buyer, fake_listing, market=other_market)

    indexer.index_chain(chain.w3)
    assert events("OrderCreated") == []
    assert {e.address for e in events()} <= {chain.market.address, chain.distributor.address, chain.token.address}
    # The token's transfers into that other market are not the market's either.
    assert [e for e in events("Transfer") if other.address in (e.args["from"], e.args["to"])] == []


def test_token_transfers_into_and_out_of_the_market_and_no_others(chain, seller, buyer):
    listing_id = create_listing(chain, seller)
    purchase(chain, buyer, listing_id)
    stranger = Account.create().address
    chain.send(chain.token.contract.functions.transfer(stranger, 5), buyer.address)  # not the market's
    chain.advance(WINDOW + 1)

    indexer.index_chain(chain.w3)
    order_id = int(events("OrderCreated")[0].args["orderId"])
    chain.send(chain.market.contract.functions.release([order_id]), chain.operator.address)
    indexer.index_chain(chain.w3)

    transfers = [(e.args["from"], e.args["to"], int(e.args["value"])) for e in events("Transfer")]
    assert (buyer.address, chain.market.address, PRICE) in transfers
    assert any(frm == chain.market.address and to == seller.address for frm, to, _ in transfers)
    assert all(chain.market.address in (frm, to) for frm, to, _ in transfers)
    assert stranger not in {to for _, to, _ in transfers}


def test_confirmations_keep_the_newest_blocks_out(chain, seller, buyer):
    listing_id = create_listing(chain, seller)
    receipt = purchase(chain, buyer, listing_id)
    chain.rpc("evm_mine")
    report = indexer.index_chain(chain.w3, confirmations=2)
    assert report.through == receipt["blockNumber"] - 1 and events("OrderCreated") == []
    chain.rpc("evm_mine")
    indexer.index_chain(chain.w3, confirmations=2)
    assert len(events("OrderCreated")) == 1


def test_a_reorganisation_drops_the_orphaned_events_and_reads_the_new_chain(chain, seller, buyer, handlers):
    rolled_back = []
    indexer.register_rollback(lambda chain_id, ancestor, orphaned: rolled_back.append(
        (ancestor, [(e.name, e.tx_hash) for e in orphaned])))
    listing_id = create_listing(chain, seller)
    indexer.index_chain(chain.w3)
    fork_point = chain.w3.eth.block_number
    snapshot = chain.rpc("evm_snapshot")
    orphan = purchase(chain, buyer, listing_id)
    indexer.index_chain(chain.w3)
    orphan_hash = "0x" + bytes(orphan["transactionHash"]).hex()
    assert [e.tx_hash for e in events("OrderCreated")] == [orphan_hash]

    assert chain.rpc("evm_revert", [snapshot]) is True
    other_buyer = Account.from_key(DEV_KEYS[3])
    chain.token.mint(other_buyer.address, 100 * 10**6)
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), other_buyer.address)
    survivor = purchase(chain, other_buyer, listing_id)

    report = indexer.index_chain(chain.w3)
    assert report.reorgs == 1 and report.orphaned >= 2  # the order and its transfer
    (ancestor, orphaned), = rolled_back
    assert ancestor <= fork_point and ("OrderCreated", orphan_hash) in orphaned
    (order,) = events("OrderCreated")
    assert order.tx_hash == "0x" + bytes(survivor["transactionHash"]).hex()
    assert order.args["buyer"] == other_buyer.address
    assert not ChainEvent.objects.filter(tx_hash=orphan_hash).exists()
    cursor = IndexerCursor.objects.get()
    assert cursor.block_number == chain.w3.eth.block_number
    assert cursor.block_hash == "0x" + bytes(chain.w3.eth.get_block("latest")["hash"]).hex()


def test_a_reorganisation_at_the_tip_with_the_same_height_is_found(chain, seller, buyer):
    listing_id = create_listing(chain, seller)
    snapshot = chain.rpc("evm_snapshot")
    purchase(chain, buyer, listing_id)
    indexer.index_chain(chain.w3)
    height = chain.w3.eth.block_number
    chain.rpc("evm_revert", [snapshot])
    chain.rpc("evm_mine")  # a different block at the same height, with no order
    assert chain.w3.eth.block_number == height
    report = indexer.index_chain(chain.w3)
    assert report.reorgs == 1 and events("OrderCreated") == []


def test_one_run_at_a_time(chain, seller):
    create_listing(chain, seller)
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"chain.indexer:{chain.w3.eth.chain_id}"])
        report = indexer.index_chain(chain.w3)
        assert report.skipped == "another run holds the indexer lock" and events() == []
        # Released now: a closed connection's session lock goes only once its server process ends.
        other.execute("SELECT pg_advisory_unlock(hashtext(%s))", [f"chain.indexer:{chain.w3.eth.chain_id}"])
    assert indexer.index_chain(chain.w3).events > 0


def test_a_crash_mid_range_stores_nothing_and_the_next_run_stores_everything_once(chain, seller, buyer, handlers):
    listing_id = create_listing(chain, seller)
    purchase(chain, buyer, listing_id)
    crash = {"now": True}

    def handler(batch):
        if crash["now"]:
            raise RuntimeError("worker killed")
        handlers.append(len(batch))

    indexer.register(handler, events=["OrderCreated"])
    first = indexer.IndexReport()
    with pytest.raises(RuntimeError):
        first = indexer.index_chain(chain.w3)
    assert first.events == 0 and events() == []
    start = IndexerCursor.objects.get().block_number
    assert start < chain.w3.eth.block_number and IndexedBlock.objects.count() == 1

    crash["now"] = False
    report = indexer.index_chain(chain.w3)
    assert handlers == [1] and len(events("OrderCreated")) == 1 and report.events == ChainEvent.objects.count()


def test_a_node_that_is_down_is_backed_off_and_then_read(chain, seller):
    create_listing(chain, seller)
    indexer.index_chain(chain.w3, max_ranges=0)  # makes the cursor
    dead = get_web3("http://127.0.0.1:9")
    with pytest.raises(Exception):
        indexer.index_chain(dead)
    cursor = IndexerCursor.objects.get()
    assert cursor.failures == 1 and cursor.retry_at > timezone.now() and "ConnectionError" in cursor.error
    skipped = indexer.index_chain(chain.w3)
    assert skipped.skipped.startswith("backing off") and events() == []

    IndexerCursor.objects.update(retry_at=timezone.now() - timedelta(seconds=1))
    report = indexer.index_chain(chain.w3)
    assert report.events > 0
    cursor.refresh_from_db()
    assert cursor.failures == 0 and cursor.error == "" and cursor.retry_at is None


def test_a_nudge_reads_through_a_block_and_no_further(chain, seller, buyer):
    listing_id = create_listing(chain, seller)
    first = purchase(chain, buyer, listing_id)
    later_buyer = Account.from_key(DEV_KEYS[3])
    chain.token.mint(later_buyer.address, PRICE)
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), later_buyer.address)
    purchase(chain, later_buyer, listing_id)
    report = indexer.index_chain(chain.w3, through=first["blockNumber"])
    assert report.through == first["blockNumber"] and len(events("OrderCreated")) == 1


def test_small_ranges_read_the_same_events(chain, seller, buyer):
    indexer._handlers.clear()  # the events are read twice below; the apps' rows once would clash
    listing_id = create_listing(chain, seller)
    purchase(chain, buyer, listing_id)
    report = indexer.index_chain(chain.w3, range_size=3)
    assert report.ranges > 3
    small = [(e.tx_hash, e.log_index) for e in events()]
    ChainEvent.objects.all().delete()
    IndexedBlock.objects.all().delete()
    IndexerCursor.objects.all().delete()
    indexer.index_chain(chain.w3)
    assert [(e.tx_hash, e.log_index) for e in events()] == small


def test_a_chain_that_keeps_changing_under_the_read_ends_the_run_without_storing(chain, seller, monkeypatch):
    """Nodes behind one URL that disagree make every read look moved: the run stops after a few
    tries instead of spinning, and stores nothing."""
    create_listing(chain, seller)
    indexer.index_chain(chain.w3, max_ranges=0)
    start = IndexerCursor.objects.get().block_number
    reads = []
    monkeypatch.setattr(indexer, "read_range", lambda *args: reads.append(args) and None)
    report = indexer.index_chain(chain.w3)
    assert len(reads) == indexer.MAX_MOVED_READS and "changed under 5 reads" in report.skipped
    assert IndexerCursor.objects.get().block_number == start and events() == []

"""Attacks on the chain indexer, orders and downloads, found by a security review of their first
version: each test is a concrete sequence that broke a guarantee before it was fixed (a reorg
between reading a range and its last block's hash, a chain cut back below the cursor, a chain
reset racing a range, junk signed requests spending a buyer's rate limit, a Range of thousands of
digits, a download that kept streaming after a full refund, stray zero-value transfers and
skipped releases stored by the thousand)."""
import hashlib
import random
import secrets
import threading
import time

from django.core.files.storage import storages
from django.db import connection, connections
from eth_account import Account
import pytest

from marketplace.chain import indexer
from marketplace.chain.models import ChainEvent
from marketplace.chain.services import forget_chain
from marketplace.orders import delivery
from marketplace.orders.models import Download, Order
from marketplace.orders.selectors import paid_orders
from tests.conftest import DEV_KEYS
from tests.integration.test_downloads import (  # noqa: F401 (fixtures)
    BUYER_KEY, as_wallet, bought, link_for, list_and_buy, url,
)
from tests.integration.test_indexer import (  # noqa: F401 (fixtures: handlers is autouse)
    PRICE, buyer, create_listing, handlers, purchase, seller,
)

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]


def agrees_with_chain(chain, listing_id, account):
    ours = paid_orders(account.address, chain.w3.eth.chain_id, [listing_id]).exists()
    theirs = chain.market.has_access(listing_id, account.address)
    return ours, theirs


def test_a_reorg_between_the_read_and_the_last_block_s_hash_leaves_a_ghost_order_and_wedges_the_indexer(
        chain, seller, buyer, monkeypatch):
    """_run reads a range's logs (read_range checks the hash of `last` before and after), then asks
    for `last`'s hash a third time and stores that one as the cursor's. A reorganisation in
    between stores fork A's events under fork B's hash: the next run sees no reorganisation, the
    orphaned order keeps granting access, and fork B's order with the same id fails the orders
    COPY (one_row_per_order) on every run from then on."""
    listing_id = create_listing(chain, seller)
    indexer.index_chain(chain.w3)
    snapshot = chain.rpc("evm_snapshot")
    purchase(chain, buyer, listing_id)  # fork A: order 1 for the buyer
    other = Account.from_key(DEV_KEYS[3])
    real = indexer.read_range

    def racing(*args, **kwargs):
        rows = real(*args, **kwargs)
        monkeypatch.setattr(indexer, "read_range", real)
        # The chain reorganises just after the read: fork B, where another wallet buys instead.
        chain.rpc("evm_revert", [snapshot])
        chain.token.mint(other.address, PRICE)
        chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), other.address)
        purchase(chain, other, listing_id)
        return rows

    monkeypatch.setattr(indexer, "read_range", racing)
    errors = []
    for _ in range(3):
        try:
            indexer.index_chain(chain.w3)
        except Exception as exc:  # noqa: BLE001
            errors.append(type(exc).__name__)
    # (ours, the contract's hasAccess) for each buyer, and the runs' errors
    assert (agrees_with_chain(chain, listing_id, buyer), agrees_with_chain(chain, listing_id, other), errors) == \
        ((False, False), (True, True), [])


def test_a_chain_cut_back_below_the_cursor_rolls_the_orphaned_order_back(chain, seller, buyer):
    """anvil's evm_revert (or any reorganisation to a shorter chain): the cursor's block is gone,
    block_hash answers None, and _run treats None as 'no reorganisation'. The orphaned order
    keeps granting downloads until the new chain grows past the old height."""
    listing_id = create_listing(chain, seller)
    indexer.index_chain(chain.w3)
    snapshot = chain.rpc("evm_snapshot")
    purchase(chain, buyer, listing_id)
    indexer.index_chain(chain.w3)
    assert agrees_with_chain(chain, listing_id, buyer) == (True, True)

    chain.rpc("evm_revert", [snapshot])  # the purchase never happened; the buyer keeps the money
    report = indexer.index_chain(chain.w3)
    assert report.reorgs == 1
    assert agrees_with_chain(chain, listing_id, buyer) == (False, False)


def _waiting_on_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0] > 0


def test_forget_chain_during_a_range_takes_the_range_s_orders_too(chain, seller, buyer):
    """forget_chain deletes orders and events first and locks the cursor last: a range committed
    while it waits for the cursor survives the reset (orders and events of a forgotten chain,
    which paid_orders, blind to the market, counts for the new chain's listing of the same id)."""
    chain_id = chain.w3.eth.chain_id
    listing_id = create_listing(chain, seller)
    indexer.index_chain(chain.w3)
    purchase(chain, buyer, listing_id)
    inside, go = threading.Event(), threading.Event()

    def stall(batch):
        inside.set()
        go.wait(30)

    indexer.register(stall, events=["OrderCreated"])
    failures = []

    def in_thread(function):
        def run():
            try:
                function()
            except Exception as exc:  # noqa: BLE001
                failures.append(repr(exc))
            finally:
                connection.close()
        thread = threading.Thread(target=run)
        thread.start()
        return thread

    indexing = in_thread(lambda: indexer.index_chain(chain.w3))
    assert inside.wait(30)
    forgetting = in_thread(lambda: forget_chain(chain_id))
    deadline = time.monotonic() + 30
    while not _waiting_on_a_lock() and time.monotonic() < deadline:
        time.sleep(0.05)
    go.set()
    indexing.join(30)
    forgetting.join(30)
    assert failures == []
    assert list(Order.objects.filter(chain_id=chain_id).values_list("order_id", "buyer")) == []
    assert not ChainEvent.objects.filter(chain_id=chain_id).exists()


def test_junk_signed_requests_naming_a_buyer_do_not_lock_the_buyer_out(client, bought, settings):
    """The signed path counts the request against the named wallet's limit before the signature
    is checked, and the session path uses the same key: anyone can spend a buyer's whole
    download allowance (300/hour) with unsigned junk, from one address."""
    version, buyer, _ = bought
    settings.LIMITS = {**settings.LIMITS, "download": {"ip": "off", "wallet": "3/hour"}}
    for _ in range(3):
        junk = {"buyer": buyer.address, "expiry": int(time.time()) + 300, "nonce": "0x" + secrets.token_hex(32),
                "signature": "0x" + "00" * 65}
        assert client.post(url(version), junk, content_type="application/json").status_code == 401
    response = as_wallet(client, BUYER_KEY).post(url(version), content_type="application/json")
    assert response.status_code == 201, response.content


def test_a_range_of_thousands_of_digits_is_not_a_server_error(client, bought):
    """int() refuses strings over 4,300 digits (Python 3.11): parse_range raises ValueError, a 500
    (and django.request logs the path, token included, at ERROR)."""
    version, _, _ = bought
    link = link_for(as_wallet(client, BUYER_KEY), version)["url"]
    client.raise_request_exception = False
    response = client.get(link, HTTP_RANGE="bytes=" + "9" * 5000 + "-")
    assert response.status_code in (200, 416)  # RFC 9110: ignored, or past the end


BIG = random.Random(29).randbytes(16 * delivery.CHUNK + 5)


@pytest.fixture
def bought_big(chain, client):
    version, buyer, listing_id = list_and_buy(chain, client, BIG, slug="big")
    yield version, buyer, listing_id
    storages["private"].delete(version.file)


def test_a_running_download_stops_once_a_full_refund_is_indexed(client, bought_big, chain):
    """The order was checked once, when the request came in: a buyer refunded in full (dispute,
    then the arbiter's 100 % refund) kept receiving a stream that had started, to its end."""
    version, buyer, listing_id = bought_big
    link = link_for(as_wallet(client, BUYER_KEY), version)["url"]

    def read(after_first_chunk):
        response = client.get(link)
        chunks = iter(response.streaming_content)
        received = next(chunks)
        after_first_chunk()
        time.sleep(delivery.RECHECK_SECONDS + 0.2)  # a slow client: the stream checks again
        received += b"".join(chunks)
        response.close()
        return received, Download.objects.order_by("-started_at").first()

    # While the order gives access, the check lets the stream go on to the end.
    whole, log = read(lambda: None)
    assert hashlib.sha256(whole).hexdigest() == hashlib.sha256(BIG).hexdigest()
    assert log.bytes_served == len(BIG) and log.finished_at is not None

    def refund_in_full():
        order_id = chain.market.order_of(listing_id, buyer.address)
        market = chain.market.contract.functions
        chain.send(market.dispute(order_id), buyer.address)
        chain.send(market.resolve(order_id, 10_000), chain.operator.address)
        indexer.index_chain(chain.w3)
        assert Order.objects.get(listing_id=listing_id, buyer=buyer.address).status == "refunded"

    cut, log = read(refund_in_full)
    # Nothing after the first check that followed the refund; the log says what was really sent.
    assert (len(cut), log.bytes_served, log.finished_at) == (delivery.CHUNK, delivery.CHUNK, None)


def test_zero_value_transfers_and_skipped_releases_are_not_stored(chain, seller, buyer):
    """Anyone may emit a Transfer of 0 naming the market (transferFrom of 0 needs no allowance) or
    call release with one unreleasable order id thousands of times (a ReleaseSkipped each): every
    one was stored, a row per log at the price of a little gas."""
    listing_id = create_listing(chain, seller)
    purchase(chain, buyer, listing_id)
    indexer.index_chain(chain.w3)
    last = ChainEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    stranger = Account.from_key(DEV_KEYS[3])
    token, market = chain.token.contract.functions, chain.market.address
    chain.send(token.transferFrom(buyer.address, market, 0), stranger.address)  # into the market
    chain.send(token.transferFrom(market, stranger.address, 0), stranger.address)  # out of it
    chain.send(token.transfer(market, 0), buyer.address)
    order_id = chain.market.order_of(listing_id, buyer.address)
    receipt = chain.send(chain.market.contract.functions.release([order_id] * 50), stranger.address)
    assert len(receipt["logs"]) == 50  # the order is not matured: skipped, 50 times
    chain.send(token.transfer(market, 7), buyer.address)  # a real stray transfer is still read

    indexer.index_chain(chain.w3)
    new = ChainEvent.objects.filter(pk__gt=last).order_by("block_number", "log_index")
    assert [(e.name, e.args) for e in new] == \
        [("Transfer", {"from": buyer.address, "to": market, "value": "7"})]

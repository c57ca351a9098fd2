"""The single operator sender against anvil with the real contracts: one nonce per transaction for
life (a lost transaction is broadcast again byte for byte, a stuck one replaced at its nonce with
higher fees, a nonce used by another transaction gives its actions a new one), settlement from the
indexer after the confirmations, the arbiter role, the queue looked at again after the lock; and
the keeper, which releases matured orders in one transaction (a blocked payout becomes a credit)
and refunds expired disputes."""
import time

import pytest
from web3 import Web3
from web3.logs import DISCARD

from marketplace.chain import indexer, sender
from marketplace.chain.models import ChainEvent, OperatorAction, OperatorTransaction
from marketplace.chain.artifacts import load_artifact
from marketplace.chain.services import deploy_contract
from marketplace.orders import keeper
from marketplace.orders.models import Order
from tests.conftest import dead_broker_url
from tests.integration.test_indexer import PRICE, WINDOW, buyer, purchase, seller  # noqa: F401

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_worker(point_broker_at):
    """The sender tasks queued here go nowhere: a Celery worker that an earlier test started would
    otherwise be a second sender, racing the one each test runs."""
    point_broker_at(dead_broker_url())

FEE = PRICE * 250 // 10_000


def new_listing(chain, seller, text="a version", token=None):
    """A listing on the market, not approved yet."""
    receipt = chain.send(chain.market.contract.functions.createListing(
        token or chain.token.address, PRICE, seller.address, Web3.keccak(text=text), WINDOW), seller.address)
    (event,) = chain.market.contract.events.ListingCreated().process_receipt(receipt, errors=DISCARD)
    return event["args"]["listingId"]


def queue_approval(chain, listing_id, seller, text="a version", **fields):
    return OperatorAction.objects.create(
        kind="approve", chain_id=chain.w3.eth.chain_id, market=chain.market.address, listing_id=listing_id,
        expected_owner=seller.address, expected_content_hash="0x" + Web3.keccak(text=text).hex().removeprefix("0x"),
        **fields)


def queue_order_action(chain, kind, order_id, **payload):
    return OperatorAction.objects.create(kind=kind, chain_id=chain.w3.eth.chain_id, market=chain.market.address,
                                         order_id=order_id, payload=payload)


def bought(chain, seller, buyer, text="a version"):
    listing_id = new_listing(chain, seller, text)
    chain.send(chain.market.contract.functions.setApproval([listing_id], True), chain.operator.address)
    receipt = purchase(chain, buyer, listing_id)
    (event,) = chain.market.contract.events.OrderCreated().process_receipt(receipt, errors=DISCARD)
    return event["args"]["orderId"]


class manual_mining:
    """Anvil mines only on evm_mine inside the block."""

    def __init__(self, chain):
        self.chain = chain

    def __enter__(self):
        self.chain.rpc("evm_setAutomine", [False])
        return self

    def __exit__(self, *exc):
        self.chain.rpc("evm_setAutomine", [True])


def test_a_lost_transaction_is_broadcast_again_byte_for_byte(chain, seller):
    listing_id = new_listing(chain, seller)
    action = queue_approval(chain, listing_id, seller)
    with manual_mining(chain):
        first = sender.send_operator_actions(timeout=0.3)
        (tx,) = OperatorTransaction.objects.all()
        assert first.transactions == [tx.tx_hash] and tx.status == "pending" and first.waiting == 1
        raw = tx.raw
        chain.rpc("anvil_dropTransaction", [tx.tx_hash])

        again = sender.send_operator_actions(timeout=0.3)

        tx.refresh_from_db()
        assert again.rebroadcast == 1 and again.transactions == [], "nothing new was signed"
        assert tx.raw == raw and tx.hashes == first.transactions and tx.broadcasts == 2
        assert chain.w3.eth.get_transaction(tx.tx_hash)["nonce"] == tx.nonce
        chain.rpc("evm_mine")
    nonce = chain.w3.eth.get_transaction_count(chain.operator.address)

    settled = sender.send_operator_actions()

    action.refresh_from_db()
    tx.refresh_from_db()
    assert settled.confirmed == 1 and action.status == "confirmed" and action.tx_hash == tx.tx_hash
    assert tx.status == "done" and tx.mined_hash == tx.tx_hash
    assert chain.market.get_listing(listing_id)["approved"] is True
    assert chain.w3.eth.get_transaction_count(chain.operator.address) == nonce == tx.nonce + 1


def test_a_transaction_stuck_in_the_mempool_is_replaced_at_its_nonce(chain, seller, settings):
    settings.OPERATOR_REPLACE_AFTER = 1
    listing_id = new_listing(chain, seller)
    action = queue_approval(chain, listing_id, seller)
    with manual_mining(chain):
        first = sender.send_operator_actions(timeout=0.2)
        (tx,) = OperatorTransaction.objects.all()
        time.sleep(1.1)

        again = sender.send_operator_actions(timeout=0.2)

        tx.refresh_from_db()
        assert again.replaced == 1 and again.transactions == []
        assert tx.hashes == [first.transactions[0], tx.tx_hash] and tx.tx_hash != first.transactions[0]
        replacement = chain.w3.eth.get_transaction(tx.tx_hash)
        assert replacement["nonce"] == tx.nonce and replacement["input"].hex().removeprefix("0x") == \
            tx.data.removeprefix("0x")
        assert replacement["maxFeePerGas"] == int(tx.max_fee_per_gas) > 0
        chain.rpc("evm_mine")
    nonce = chain.w3.eth.get_transaction_count(chain.operator.address)

    sender.send_operator_actions()

    tx.refresh_from_db()
    action.refresh_from_db()
    assert tx.status == "done" and tx.mined_hash == tx.tx_hash and action.status == "confirmed"
    assert nonce == tx.nonce + 1, "one of the two was mined, once"
    assert ChainEvent.objects.filter(name="ListingApprovalSet").count() == 1


def test_a_nonce_used_by_another_transaction_gives_the_actions_a_new_one(chain, seller):
    listing_id = new_listing(chain, seller)
    action = queue_approval(chain, listing_id, seller)
    with manual_mining(chain):
        sender.send_operator_actions(timeout=0.2)
        (lost,) = OperatorTransaction.objects.all()
        chain.rpc("anvil_dropTransaction", [lost.tx_hash])
        # Someone else with the operator key (a script, another server) uses the nonce.
        other = chain.operator.sign_transaction({
            "chainId": lost.chain_id, "nonce": lost.nonce, "to": seller.address, "value": 1, "gas": 21_000,
            "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "type": 2})
        chain.w3.eth.send_raw_transaction(other.raw_transaction)
        chain.rpc("evm_mine")

    report = sender.send_operator_actions()

    lost.refresh_from_db()
    action.refresh_from_db()
    assert report.dropped == 1 and lost.status == "dropped" and "was used by another transaction" in lost.error
    (new,) = OperatorTransaction.objects.exclude(pk=lost.pk)
    assert new.nonce == lost.nonce + 1 and new.status == "done"
    assert action.status == "confirmed" and action.attempts == 2 and action.transaction_id == new.pk
    assert chain.market.get_listing(listing_id)["approved"] is True


def test_an_action_is_settled_only_after_the_confirmations(chain, seller, settings):
    settings.CHAIN_CONFIRMATIONS = 2
    listing_id = new_listing(chain, seller)
    action = queue_approval(chain, listing_id, seller)

    first = sender.send_operator_actions(timeout=5)

    action.refresh_from_db()
    assert first.confirmed == 0 and first.waiting == 1 and action.status == "sent"
    assert chain.market.get_listing(listing_id)["approved"] is True, "mined, not yet confirmed"
    assert OperatorTransaction.objects.get().status == "mined"
    chain.rpc("evm_mine")
    assert sender.send_operator_actions().confirmed == 0, "one confirmation of the two"
    chain.rpc("evm_mine")

    assert sender.send_operator_actions().confirmed == 1
    action.refresh_from_db()
    assert action.status == "confirmed" and action.log_index is not None


def test_arbiter_actions_need_the_operator_to_hold_the_arbiter_role(chain, seller, buyer):
    order_id = bought(chain, seller, buyer)
    chain.send(chain.market.contract.functions.dispute(order_id), buyer.address)
    arbiter = chain.market.role("ARBITER_ROLE")
    chain.send(chain.market.contract.functions.revokeRole(arbiter, chain.operator.address), chain.operator.address)
    refused = queue_order_action(chain, "resolve", order_id, refund_bps=5_000)

    assert sender.send_operator_actions().transactions == []
    refused.refresh_from_db()
    assert refused.status == "failed" and "does not hold ARBITER_ROLE" in refused.error

    chain.send(chain.market.contract.functions.grantRole(arbiter, chain.operator.address), chain.operator.address)
    resolved = queue_order_action(chain, "resolve", order_id, refund_bps=5_000)
    assert sender.send_operator_actions().confirmed == 1
    resolved.refresh_from_db()
    order = Order.objects.get(order_id=order_id)
    assert resolved.status == "confirmed" and order.status == "resolved" and order.refund == PRICE // 2


def test_a_call_that_would_revert_is_not_sent_and_says_why(chain, seller, buyer):
    order_id = bought(chain, seller, buyer)  # open, not disputed
    action = queue_order_action(chain, "resolve", order_id, refund_bps=5_000)
    assert sender.send_operator_actions().transactions == []
    action.refresh_from_db()
    assert action.status == "failed" and action.error.startswith("resolve would revert: DataMarketNotDisputed(")


def queue_after(action):
    """An on_done hook that queues more work while the sender holds its lock."""
    if action.context.get("then"):
        queue_approval_for(action.context["then"])


def queue_approval_for(spec):
    OperatorAction.objects.create(kind="approve", **spec)


def test_work_queued_while_the_lock_is_held_is_sent_by_the_holder(chain, seller):
    first_id = new_listing(chain, seller, "first")
    second_id = new_listing(chain, seller, "second")
    then = {"chain_id": chain.w3.eth.chain_id, "market": chain.market.address, "listing_id": second_id,
            "expected_owner": seller.address, "expected_content_hash": "0x" + Web3.keccak(text="second").hex()
            .removeprefix("0x")}
    queue_approval(chain, first_id, seller, "first", on_done=f"{__name__}.queue_after", context={"then": then})

    report = sender.send_operator_actions()

    assert len(report.transactions) == 2 and report.confirmed == 2
    assert chain.market.get_listing(second_id)["approved"] is True


def matured_orders(chain, seller, buyer, n):
    ids = [bought(chain, seller, buyer, f"version {i}") for i in range(n)]
    chain.advance(WINDOW + 1)
    indexer.index_chain(chain.w3)
    return ids


def test_the_keeper_releases_matured_orders_in_one_transaction(chain, seller, buyer):
    ids = matured_orders(chain, seller, buyer, 3)
    fresh = bought(chain, seller, buyer, "not matured")
    indexer.index_chain(chain.w3)
    before = chain.token.balance_of(seller.address)

    assert keeper.queue_due(chain.w3) == {"release": 3, "expire_dispute": 0}
    assert keeper.queue_due(chain.w3) == {"release": 0, "expire_dispute": 0}, "queued once"
    report = sender.send_operator_actions()

    assert len(report.transactions) == 1 and report.confirmed == 3
    assert set(Order.objects.filter(order_id__in=ids).values_list("status", flat=True)) == {"released"}
    assert Order.objects.get(order_id=fresh).status == "open"
    assert chain.token.balance_of(seller.address) == before + 3 * (PRICE - FEE)
    assert keeper.queue_due(chain.w3) == {"release": 0, "expire_dispute": 0}


def test_a_keeper_batch_with_a_blocked_payout_credits_the_owner(chain, seller, buyer):
    blocking = deploy_contract(chain.w3, "MarketRevertingToken", [chain.operator.address])
    token = chain.w3.eth.contract(address=blocking.address, abi=load_artifact("MarketRevertingToken").abi)
    market = chain.market.contract.functions
    chain.send(market.setTokenAllowed(blocking.address, True, True), chain.operator.address)
    chain.send(token.functions.mint(buyer.address, PRICE), chain.operator.address)
    chain.send(token.functions.approve(chain.market.address, PRICE), buyer.address)
    blocked_listing = new_listing(chain, seller, "blocked", token=blocking.address)
    chain.send(market.setApproval([blocked_listing], True), chain.operator.address)
    purchase(chain, buyer, blocked_listing)
    chain.send(token.functions.setBlocked(seller.address, True), chain.operator.address)
    (paid,) = matured_orders(chain, seller, buyer, 1)

    assert keeper.queue_due(chain.w3)["release"] == 2
    report = sender.send_operator_actions()

    assert len(report.transactions) == 1 and report.confirmed == 2
    assert set(Order.objects.values_list("status", flat=True)) == {"released"}
    (credited,) = ChainEvent.objects.filter(name="Credited")
    assert credited.args["account"] == seller.address and int(credited.args["amount"]) == PRICE - FEE
    assert chain.market.credit_of(blocking.address, seller.address) == PRICE - FEE


def test_the_keeper_refunds_an_expired_dispute(chain, seller, buyer):
    order_id = bought(chain, seller, buyer)
    chain.send(chain.market.contract.functions.dispute(order_id), buyer.address)
    indexer.index_chain(chain.w3)
    assert keeper.queue_due(chain.w3)["expire_dispute"] == 0, "the arbiter still has time"
    chain.advance(chain.market.dispute_period() + 1)
    balance = chain.token.balance_of(buyer.address)

    assert keeper.queue_due(chain.w3) == {"release": 0, "expire_dispute": 1}
    assert sender.send_operator_actions().confirmed == 1

    order = Order.objects.get(order_id=order_id)
    assert order.status == "refunded" and order.refund == PRICE
    assert chain.token.balance_of(buyer.address) == balance + PRICE


def test_a_release_the_market_skips_is_cancelled_and_not_queued_again_at_once(chain, seller, buyer):
    (order_id,) = matured_orders(chain, seller, buyer, 1)
    assert keeper.queue_due(chain.w3)["release"] == 1
    chain.send(chain.market.contract.functions.confirm(order_id), buyer.address)  # the buyer was quicker

    report = sender.send_operator_actions()

    action = OperatorAction.objects.get(kind="release")
    assert report.confirmed == 0 and action.status == "cancelled" and "skipped" in action.error
    assert Order.objects.get(order_id=order_id).status == "released"
    assert keeper.queue_due(chain.w3)["release"] == 0


def test_a_failed_release_is_queued_again_after_the_retry_delay(chain, seller, buyer, settings):
    (order_id,) = matured_orders(chain, seller, buyer, 1)
    OperatorAction.objects.create(kind="release", chain_id=chain.w3.eth.chain_id, market=chain.market.address,
                                  order_id=order_id, status="failed", error="the node refused it")
    assert keeper.queue_due(chain.w3)["release"] == 0, "too soon"
    settings.KEEPER_RETRY_AFTER = 0
    assert keeper.queue_due(chain.w3)["release"] == 1



@pytest.mark.django_db
def test_a_revoke_is_not_sent_while_a_later_epoch_s_proposal_is_in_flight(settings):
    """revokePendingRoot takes no root: sent behind a later proposal (a lost one broadcast again
    at its nonce) it would revoke that one instead."""
    from marketplace.chain.sender import revoke_precheck

    action = OperatorAction.objects.create(
        kind=OperatorAction.Kind.PROPOSE_ROOT, chain_id=settings.CHAIN_ID, market="0x" + "11" * 20,
        payload={"epoch": 5, "root": "0x" + "22" * 32, "total": "1"}, status=OperatorAction.Status.SENT)
    why = revoke_precheck(None, {"epoch": 4, "root": "0x" + "33" * 32})
    assert "later epoch's root proposal is in flight" in why
    OperatorAction.objects.filter(pk=action.pk).update(status=OperatorAction.Status.CONFIRMED)
    with pytest.raises(AttributeError):  # no proposal in flight: it goes on to read the distributor
        revoke_precheck(None, {"epoch": 4, "root": "0x" + "33" * 32})

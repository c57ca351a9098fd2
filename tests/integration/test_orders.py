"""Orders mirrored by the indexer from the real market on anvil: each state of the contract's
order, access as the contract's hasAccess says, and reorganisations (an orphaned order disappears,
a released-then-orphaned order is open again)."""
from eth_account import Account
import pytest

from marketplace.chain import indexer
from marketplace.chain.services import forget_chain
from marketplace.orders.models import Order
from marketplace.orders.selectors import paid_orders
from tests.conftest import DEV_KEYS
from tests.integration.test_indexer import PRICE, WINDOW, buyer, create_listing, purchase, seller  # noqa: F401

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]


def order_of(chain, listing_id, buyer):
    indexer.index_chain(chain.w3)
    return Order.objects.get(listing_id=listing_id, buyer=buyer.address)


def has_access(chain, listing_id, buyer):
    """The indexer's answer and the contract's, which must agree."""
    ours = paid_orders(buyer.address, chain.w3.eth.chain_id, [listing_id]).exists()
    assert ours == chain.market.has_access(listing_id, buyer.address)
    return ours


def test_a_purchase_becomes_an_open_order(chain, seller, buyer):
    listing_id = create_listing(chain, seller)
    receipt = purchase(chain, buyer, listing_id)
    order = order_of(chain, listing_id, buyer)
    block = chain.w3.eth.get_block(receipt["blockNumber"])
    assert order.status == "open" and order.amount == PRICE and order.token == chain.token.address
    assert order.market == chain.market.address and order.fee_bps == 250
    assert order.release_at.timestamp() == block["timestamp"] + WINDOW
    assert order.tx_hash == "0x" + bytes(receipt["transactionHash"]).hex() and order.block_number == receipt["blockNumber"]
    assert has_access(chain, listing_id, buyer)
    assert not has_access(chain, listing_id, Account.from_key(DEV_KEYS[3]))


def test_release_dispute_resolve_and_refund_follow_the_contract(chain, seller, buyer):
    functions = chain.market.contract.functions
    first = create_listing(chain, seller)
    purchase(chain, buyer, first)
    order_id = int(order_of(chain, first, buyer).order_id)
    chain.advance(WINDOW + 1)
    chain.send(functions.release([order_id]), chain.operator.address)
    released = order_of(chain, first, buyer)
    assert released.status == "released" and released.fee == PRICE * 250 // 10_000
    assert released.owner_amount == PRICE - released.fee and has_access(chain, first, buyer)

    second = create_listing(chain, seller)
    purchase(chain, buyer, second)
    order_id = int(order_of(chain, second, buyer).order_id)
    chain.send(functions.dispute(order_id), buyer.address)
    disputed = order_of(chain, second, buyer)
    assert disputed.status == "disputed" and disputed.dispute_deadline is not None
    chain.send(functions.resolve(order_id, 4_000), chain.operator.address)
    resolved = order_of(chain, second, buyer)
    assert resolved.status == "resolved" and resolved.refund == PRICE * 4 // 10 and has_access(chain, second, buyer)

    third = create_listing(chain, seller)
    purchase(chain, buyer, third)
    order_id = int(order_of(chain, third, buyer).order_id)
    chain.send(functions.dispute(order_id), buyer.address)
    chain.send(functions.resolve(order_id, 10_000), chain.operator.address)
    refunded = order_of(chain, third, buyer)
    assert refunded.status == "refunded" and refunded.refund == PRICE and not has_access(chain, third, buyer)


def test_an_undecided_dispute_expires_into_a_full_refund_and_the_buyer_may_buy_again(chain, seller, buyer):
    functions = chain.market.contract.functions
    listing_id = create_listing(chain, seller)
    purchase(chain, buyer, listing_id)
    order_id = int(order_of(chain, listing_id, buyer).order_id)
    chain.send(functions.dispute(order_id), buyer.address)
    chain.advance(chain.market.dispute_period() + 1)
    chain.send(functions.settleExpiredDispute(order_id), seller.address)
    indexer.index_chain(chain.w3)
    assert Order.objects.get(order_id=order_id).status == "refunded" and not has_access(chain, listing_id, buyer)

    purchase(chain, buyer, listing_id)
    indexer.index_chain(chain.w3)
    assert Order.objects.filter(listing_id=listing_id, buyer=buyer.address).count() == 2
    assert has_access(chain, listing_id, buyer)


def test_an_orphaned_order_disappears_and_the_new_chain_s_order_appears(chain, seller, buyer):
    listing_id = create_listing(chain, seller)
    indexer.index_chain(chain.w3)
    snapshot = chain.rpc("evm_snapshot")
    orphan = purchase(chain, buyer, listing_id)
    indexer.index_chain(chain.w3)
    assert Order.objects.get().tx_hash == "0x" + bytes(orphan["transactionHash"]).hex()

    chain.rpc("evm_revert", [snapshot])
    other = Account.from_key(DEV_KEYS[3])
    chain.token.mint(other.address, PRICE)
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), other.address)
    purchase(chain, other, listing_id)
    assert indexer.index_chain(chain.w3).reorgs == 1
    (order,) = Order.objects.all()
    assert order.buyer == other.address and has_access(chain, listing_id, other) and not has_access(chain, listing_id, buyer)


def test_a_released_then_orphaned_order_is_open_again(chain, seller, buyer):
    listing_id = create_listing(chain, seller)
    purchase(chain, buyer, listing_id)
    order = order_of(chain, listing_id, buyer)
    chain.advance(WINDOW + 1)
    snapshot = chain.rpc("evm_snapshot")
    chain.send(chain.market.contract.functions.release([int(order.order_id)]), chain.operator.address)
    assert order_of(chain, listing_id, buyer).status == "released"

    chain.rpc("evm_revert", [snapshot])
    chain.rpc("evm_mine")
    chain.rpc("evm_mine")
    report = indexer.index_chain(chain.w3)
    assert report.reorgs == 1
    again = Order.objects.get(pk=order.pk)
    assert again.status == "open" and again.owner_amount == 0 and again.fee == 0 and again.settled_block is None
    assert chain.market.get_order(int(order.order_id))["status"] == "open"  # as the chain says


def test_a_forgotten_chain_takes_its_orders(chain, seller, buyer):
    listing_id = create_listing(chain, seller)
    purchase(chain, buyer, listing_id)
    indexer.index_chain(chain.w3)
    assert Order.objects.count() == 1
    forget_chain(chain.w3.eth.chain_id)
    assert Order.objects.count() == 0


def test_the_same_event_from_another_market_makes_no_order(chain, seller, buyer):
    """Orders come only from the watched market: an identical market's purchase is no order."""
    from marketplace.chain.contracts import DataMarket
    from marketplace.chain.services import deploy_contract

    other = DataMarket(chain.w3, deploy_contract(chain.w3, "DataMarket", [
        chain.operator.address, chain.operator.address, 250]).address)
    other.set_token_allowed(chain.token.address, True, True)
    other.grant_role("MODERATOR_ROLE", chain.operator.address)
    chain.send(chain.token.contract.functions.approve(other.address, 10**12), buyer.address)
    listing_id = create_listing(chain, seller, market=other)
    purchase(chain, buyer, listing_id, market=other)
    assert other.has_access(listing_id, buyer.address)
    indexer.index_chain(chain.w3)
    assert Order.objects.count() == 0 and not paid_orders(buyer.address, chain.w3.eth.chain_id, [listing_id]).exists()


def test_a_purchase_posted_by_its_page_is_read_through_its_block_after_the_confirmations(chain, seller, buyer,
                                                                                          client, settings):
    listing_id = create_listing(chain, seller)
    receipt = purchase(chain, buyer, listing_id)
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
    settings.CHAIN_CONFIRMATIONS = 2

    def post(tx):
        return client.post("/api/v1/purchases", {"tx_hash": tx}, content_type="application/json")

    waiting = post(tx_hash)
    assert waiting.status_code == 202 and waiting.json() == {"confirmations": 1, "needed": 3}
    assert not Order.objects.exists()
    chain.rpc("evm_mine")
    chain.rpc("evm_mine")
    (order,) = post(tx_hash).json()
    assert order["tx_hash"] == tx_hash and order["buyer"] == buyer.address and order["status"] == "open"

    stray = chain.send(chain.token.contract.functions.transfer(seller.address, 1), buyer.address)
    chain.rpc("evm_mine")
    chain.rpc("evm_mine")
    nothing = post("0x" + bytes(stray["transactionHash"]).hex())
    assert nothing.status_code == 404 and nothing.json()["error"]["code"] == "no_order"
    unknown = post("0x" + "ab" * 32)
    assert unknown.status_code == 409 and unknown.json()["error"]["code"] == "not_mined"
    assert post("0x12").status_code == 400

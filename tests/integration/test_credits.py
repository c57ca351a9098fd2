"""Credits mirrored by the indexer from the real market on anvil: a payout the token refuses
becomes a `Credited` row, a withdrawal a `Withdrawn` row, the balance is what the contract's
creditOf says; a reorganisation takes orphaned entries away (and a withdrawal orphaned with them
gives the credit back); an order remembers the transaction of its last change."""
from eth_account import Account
import pytest
from web3 import Web3
from web3.logs import DISCARD

from marketplace.chain import indexer
from marketplace.chain.artifacts import load_artifact
from marketplace.chain.services import deploy_contract, forget_chain
from marketplace.orders.models import CreditEntry, Order
from marketplace.orders.selectors import credit_balances, touched_by
from tests.conftest import DEV_KEYS
from tests.integration.test_indexer import PRICE, WINDOW

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def seller():
    return Account.from_key(DEV_KEYS[1])


@pytest.fixture
def buyer():
    return Account.from_key(DEV_KEYS[2])


@pytest.fixture
def blocking(chain, seller, buyer):
    """A token that can refuse transfers to an address (as USDC's blocklist can), allowed on the
    market, and an approved listing of the seller's priced in it, bought by the buyer; returns
    (token contract, order id)."""
    deployed = deploy_contract(chain.w3, "MarketRevertingToken", [chain.operator.address])
    abi = load_artifact("MarketRevertingToken").abi
    token = chain.w3.eth.contract(address=deployed.address, abi=abi)
    market = chain.market.contract.functions
    chain.send(market.setTokenAllowed(token.address, True, True), chain.operator.address)
    chain.send(token.functions.mint(buyer.address, PRICE), chain.operator.address)
    chain.send(token.functions.approve(chain.market.address, PRICE), buyer.address)
    receipt = chain.send(market.createListing(token.address, PRICE, seller.address,
                                              Web3.keccak(text="credits"), WINDOW), seller.address)
    events = chain.market.contract.events
    (created,) = events.ListingCreated().process_receipt(receipt, errors=DISCARD)
    listing_id = created["args"]["listingId"]
    chain.send(market.setApproval([listing_id], True), chain.operator.address)
    receipt = chain.send(market.purchase(listing_id, PRICE), buyer.address)
    (order,) = events.OrderCreated().process_receipt(receipt, errors=DISCARD)
    return token, order["args"]["orderId"]


def tx(receipt) -> str:
    return "0x" + bytes(receipt["transactionHash"]).hex()


def balance(chain, account) -> int:
    rows = credit_balances(account, chain.w3.eth.chain_id)
    return sum(row["balance"] for row in rows)


def confirm_blocked(chain, seller, buyer, token, order_id):
    """The buyer confirms while the token refuses the seller: the seller's share is credited."""
    chain.send(token.functions.setBlocked(seller.address, True), chain.operator.address)
    return chain.send(chain.market.contract.functions.confirm(order_id), buyer.address)


def test_a_refused_payout_is_a_credit_row_and_a_withdrawal_takes_it(chain, seller, buyer, blocking):
    token, order_id = blocking
    confirmed = confirm_blocked(chain, seller, buyer, token, order_id)
    indexer.index_chain(chain.w3)
    fee = PRICE * chain.market.fee_bps() // 10_000
    (credited,) = CreditEntry.objects.all()
    assert credited.kind == "credited" and credited.account == seller.address
    assert credited.token == token.address and credited.market == chain.market.address
    assert credited.amount == PRICE - fee and credited.order_id == order_id
    assert credited.tx_hash == tx(confirmed)
    on_chain = chain.market.credit_of(token.address, seller.address)
    assert balance(chain, seller.address) == on_chain == PRICE - fee
    order = Order.objects.get(order_id=order_id)
    assert order.status == "released" and order.settled_tx_hash == tx(confirmed)
    assert touched_by(chain.w3.eth.chain_id, tx(confirmed)) == [order]  # the nudge finds it

    elsewhere = Account.from_key(DEV_KEYS[3]).address
    withdraw = chain.market.contract.functions.withdraw(token.address, elsewhere)
    withdrawn = chain.send(withdraw, seller.address)
    indexer.index_chain(chain.w3)
    entry = CreditEntry.objects.get(kind="withdrawn")
    assert entry.account == seller.address and entry.to == elsewhere and entry.amount == PRICE - fee
    assert entry.order_id is None and entry.tx_hash == tx(withdrawn)
    assert balance(chain, seller.address) == 0
    assert chain.market.credit_of(token.address, seller.address) == 0
    assert credit_balances(seller.address, chain.w3.eth.chain_id)[0]["withdrawn"] == PRICE - fee


def test_an_orphaned_withdrawal_gives_the_credit_back(chain, seller, buyer, blocking):
    token, order_id = blocking
    confirm_blocked(chain, seller, buyer, token, order_id)
    indexer.index_chain(chain.w3)
    owed = balance(chain, seller.address)
    snapshot = chain.rpc("evm_snapshot")
    elsewhere = Account.from_key(DEV_KEYS[3]).address  # the seller's own address is still refused
    chain.send(chain.market.contract.functions.withdraw(token.address, elsewhere), seller.address)
    indexer.index_chain(chain.w3)
    assert balance(chain, seller.address) == 0

    chain.rpc("evm_revert", [snapshot])
    chain.rpc("evm_mine")
    chain.rpc("evm_mine")
    assert indexer.index_chain(chain.w3).reorgs == 1
    assert not CreditEntry.objects.filter(kind="withdrawn").exists()
    assert balance(chain, seller.address) == owed
    assert owed == chain.market.credit_of(token.address, seller.address)


def test_an_orphaned_credit_goes_and_its_order_is_open_again(chain, seller, buyer, blocking):
    token, order_id = blocking
    indexer.index_chain(chain.w3)
    snapshot = chain.rpc("evm_snapshot")
    confirm_blocked(chain, seller, buyer, token, order_id)
    indexer.index_chain(chain.w3)
    assert CreditEntry.objects.count() == 1

    chain.rpc("evm_revert", [snapshot])
    chain.rpc("evm_mine")
    chain.rpc("evm_mine")
    chain.rpc("evm_mine")
    assert indexer.index_chain(chain.w3).reorgs == 1
    assert CreditEntry.objects.count() == 0 and balance(chain, seller.address) == 0
    order = Order.objects.get(order_id=order_id)
    assert order.status == "open" and order.settled_tx_hash == "" and order.settled_block is None


def test_a_forgotten_chain_takes_its_credits(chain, seller, buyer, blocking):
    token, order_id = blocking
    confirm_blocked(chain, seller, buyer, token, order_id)
    indexer.index_chain(chain.w3)
    assert CreditEntry.objects.count() == 1
    forget_chain(chain.w3.eth.chain_id)
    assert CreditEntry.objects.count() == 0

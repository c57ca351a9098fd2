"""Money that reaches the market without an order, against anvil with the real contracts, the
real indexer and the operator sender: an x402 authorization pushed straight to the token is
returned to its payer (once, by the transfer's own value, batched), while the same payer's real
orders stay untouched; a plain transfer waits for an arbiter's review; a mint is skipped; dust is
recorded and not returned; a reorganisation that drops the stray transfer takes its row and its
return; without the arbiter role the return waits for the arbiter's wallet."""
from eth_account import Account
import pytest
from web3 import Web3
from web3.logs import DISCARD

from marketplace.accounts.services import wallet_user
from marketplace.chain import indexer, sender
from marketplace.chain.contracts import surplus_reference
from marketplace.chain.models import ChainEvent, OperatorAction
from marketplace.orders import strays
from marketplace.orders.models import Order, StrayTransfer
from tests.conftest import DEV_KEYS
from tests.integration.test_market import x402_authorization
from tests.integration.test_moderation_disputes import person

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

PRICE = 25 * 10**6
WINDOW = 3 * 24 * 3600
PUSHED = 7 * 10**6  # what the pushed authorization moves: not a price, so nothing can mistake it for one
START = 1_000 * 10**6
ARBITER_WALLET = Account.from_key(DEV_KEYS[3]).address


@pytest.fixture(autouse=True)
def _no_worker(no_worker):
    """The sender runs in the test (a worker would race it)."""


@pytest.fixture
def seller():
    return Account.from_key(DEV_KEYS[1])


@pytest.fixture
def payer(chain):
    """A dev key with ETH for its own purchase, and test USDC."""
    account = Account.from_key(DEV_KEYS[4])
    chain.token.mint(account.address, START - chain.token.balance_of(account.address))
    return account


@pytest.fixture
def stranger():
    return Account.from_key(DEV_KEYS[2]).address


def listing(chain, seller, text):
    functions = chain.market.contract.functions
    receipt = chain.send(functions.createListing(chain.token.address, PRICE, seller.address, Web3.keccak(text=text),
                                                 WINDOW), seller.address)
    (event,) = chain.market.contract.events.ListingCreated().process_receipt(receipt, errors=DISCARD)
    chain.send(functions.setApproval([event["args"]["listingId"]], True), chain.operator.address)
    return event["args"]["listingId"]


def push(chain, payer, amount, by):
    """`by` sends `payer`'s x402 authorization straight to the token (transferWithAuthorization to
    the market): the money arrives with no order. Returns (tx hash, log index) of its Transfer."""
    from_, value, after, before, nonce, signature = x402_authorization(chain, payer, amount)
    receipt = chain.send(chain.token.contract.get_function_by_signature(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)")(
        from_, chain.market.address, value, after, before, nonce, signature), by)
    (transfer,) = chain.token.contract.events.Transfer().process_receipt(receipt, errors=DISCARD)
    return "0x" + bytes(receipt["transactionHash"]).hex(), transfer["logIndex"]


def buy_both_ways(chain, seller, payer):
    """The payer's real orders: `purchase` from its wallet, and `purchaseWithAuthorization` sent by
    the relayer (the operator key) with an authorization it signed. Returns the order ids."""
    first, second = listing(chain, seller, "first"), listing(chain, seller, "second")
    functions = chain.market.contract.functions
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), payer.address)
    ids = []
    for receipt in (chain.send(functions.purchase(first, PRICE), payer.address),
                    chain.send(functions.purchaseWithAuthorization(second, x402_authorization(chain, payer, PRICE)),
                               chain.operator.address)):
        (event,) = chain.market.contract.events.OrderCreated().process_receipt(receipt, errors=DISCARD)
        ids.append(event["args"]["orderId"])
    return ids


def strays_of(payer):
    return list(StrayTransfer.objects.filter(payer=payer).order_by("block_number", "log_index"))


def test_a_pushed_authorization_is_returned_and_the_payer_s_orders_are_untouched(chain, client, seller, payer,
                                                                                stranger):
    tx_hash, log_index = push(chain, payer, PUSHED, stranger)
    order_ids = buy_both_ways(chain, seller, payer)
    assert chain.token.balance_of(payer.address) == START - PUSHED - 2 * PRICE
    escrowed = chain.market.total_escrowed(chain.token.address)
    assert escrowed == 2 * PRICE and chain.market.surplus(chain.token.address) == PUSHED

    indexer.index_chain(chain.w3)

    (stray,) = strays_of(payer.address)
    assert (stray.kind, stray.status, int(stray.amount), stray.token) == (
        "authorization", "returning", PUSHED, chain.token.address)
    assert (stray.tx_hash, stray.log_index) == (tx_hash, log_index)
    assert stray.ref == "0x" + surplus_reference(tx_hash, log_index).hex()
    assert stray.action.kind == "return_surplus" and stray.action.payload == {
        "token": chain.token.address, "to": payer.address, "amount": str(PUSHED), "ref": stray.ref}
    assert ChainEvent.objects.filter(name="AuthorizationUsed", tx_hash=tx_hash,
                                     args__authorizer=payer.address).count() == 1

    report = sender.send_operator_actions()

    assert report.confirmed == 1 and report.failed == 0
    assert chain.token.balance_of(payer.address) == START - 2 * PRICE, "made whole: the pushed amount is back"
    assert chain.market.total_escrowed(chain.token.address) == escrowed
    assert chain.market.surplus(chain.token.address) == 0
    assert [chain.market.get_order(i)["status"] for i in order_ids] == ["open", "open"]
    orders = Order.objects.filter(buyer=payer.address).order_by("order_id")
    assert [(int(o.order_id), o.status, int(o.amount)) for o in orders] == [(i, "open", PRICE) for i in order_ids]
    stray.refresh_from_db()
    action = OperatorAction.objects.get(pk=stray.action_id)
    assert stray.status == "returned" and stray.return_tx_hash == action.tx_hash and action.status == "confirmed"
    assert chain.market.surplus_returned(bytes.fromhex(stray.ref[2:])) is True

    client.force_login(wallet_user(payer.address))
    (shown,) = client.get("/api/v1/me/returns").json()
    assert shown == {"chain_id": 31337, "token": chain.token.address, "amount": str(PUSHED),
                     "kind": "authorization", "status": "returned", "status_text": "Returned",
                     "tx_hash": tx_hash, "log_index": log_index, "block_number": stray.block_number,
                     "ref": stray.ref, "return_tx_hash": stray.return_tx_hash}
    page = client.get("/me/library").content.decode()
    assert "data-returns" in page and tx_hash in page and stray.return_tx_hash in page
    assert len(client.get("/api/v1/me/orders").json()) == 2, "the library's orders are the two real ones"

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
    assert stray.ref == "0x" + surplus_reference(tx_hash, chain.token.address, 0).hex()  # its first into the market
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


def test_returns_of_several_pushed_authorizations_go_out_in_one_batch(chain, seller, payer, stranger):
    other = Account.create()
    chain.token.mint(other.address, 50 * 10**6)
    push(chain, payer, PUSHED, stranger)
    push(chain, other, 3 * 10**6, stranger)
    push(chain, payer, 2 * 10**6, stranger)
    indexer.index_chain(chain.w3)
    assert OperatorAction.objects.filter(kind="return_surplus", status="pending").count() == 3

    report = sender.send_operator_actions()

    assert len(report.transactions) == 1 and report.confirmed == 3
    rows = strays_of(payer.address) + strays_of(other.address)
    assert {r.status for r in StrayTransfer.objects.all()} == {"returned"}
    assert len({r.return_tx_hash for r in StrayTransfer.objects.all()}) == 1
    assert len(rows) == 3
    assert chain.token.balance_of(payer.address) == START and chain.token.balance_of(other.address) == 50 * 10**6
    assert chain.market.surplus(chain.token.address) == 0


def test_a_plain_transfer_goes_to_the_review_list_and_is_not_returned(chain, client, payer):
    receipt = chain.send(chain.token.contract.functions.transfer(chain.market.address, PUSHED), payer.address)

    indexer.index_chain(chain.w3)

    (stray,) = strays_of(payer.address)
    assert (stray.kind, stray.status, int(stray.amount), stray.action) == ("plain", "review", PUSHED, None)
    assert stray.tx_hash == "0x" + bytes(receipt["transactionHash"]).hex()
    assert not OperatorAction.objects.exists()
    assert sender.send_operator_actions().skipped == "nothing to send"
    assert chain.token.balance_of(payer.address) == START - PUSHED
    assert chain.market.surplus(chain.token.address) == PUSHED

    _, arbiter = person("arbiter", "arbiter")
    listed = arbiter.get("/api/v1/moderation/returns").json()
    assert [(r["payer"], r["amount"], r["status"], r["ref"]) for r in listed["review"]] == [
        (payer.address, str(PUSHED), "review", stray.ref)]
    assert listed["waiting"] == [] and listed["prepared"] is None
    assert len(arbiter.get(f"/api/v1/moderation/returns?payer={payer.address.lower()}").json()["review"]) == 1
    assert arbiter.get(f"/api/v1/moderation/returns?payer={ARBITER_WALLET}").json()["review"] == []
    assert arbiter.get("/api/v1/moderation/returns?kind=authorization").json()["review"] == []
    assert len(arbiter.get("/api/v1/moderation/returns?kind=plain").json()["review"]) == 1
    bad = arbiter.get("/api/v1/moderation/returns?payer=0x1234")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"
    assert arbiter.get("/api/v1/moderation/returns?status=review").json()["error"]["code"] == "unknown_parameter"
    page = arbiter.get("/moderation/returns")
    assert page.status_code == 200 and f'data-stray="{stray.ref}"' in page.content.decode()
    _, moderator = person("moderator", "moderator")
    assert moderator.get("/api/v1/moderation/returns").status_code == 403
    assert moderator.get("/moderation/returns").status_code == 403
    assert client.get("/api/v1/moderation/returns").status_code == 401


def test_a_mint_to_the_market_is_skipped(chain):
    chain.token.mint(chain.market.address, PUSHED)

    indexer.index_chain(chain.w3)

    minted = ChainEvent.objects.get(name="Transfer", args__to=chain.market.address)
    assert minted.args["from"] == "0x" + "00" * 20 and minted.args["value"] == str(PUSHED)
    assert not StrayTransfer.objects.exists() and not OperatorAction.objects.exists()


def test_dust_is_recorded_but_not_returned(chain, payer, stranger, settings):
    settings.STRAY_RETURN_DUST = 10_000
    push(chain, payer, 9_999, stranger)
    push(chain, payer, 10_000, stranger)

    indexer.index_chain(chain.w3)
    sender.send_operator_actions()

    dust, returned = strays_of(payer.address)
    assert (int(dust.amount), dust.status, dust.action) == (9_999, "dust", None)
    assert (int(returned.amount), returned.status) == (10_000, "returned")
    assert chain.token.balance_of(payer.address) == START - 9_999
    assert OperatorAction.objects.get().payload["amount"] == "10000"


def test_a_reorganisation_that_drops_the_stray_transfer_removes_its_row_and_its_return(chain, payer, stranger):
    before = chain.rpc("evm_snapshot")
    push(chain, payer, PUSHED, stranger)
    indexer.index_chain(chain.w3)
    (stray,) = strays_of(payer.address)
    action = stray.action
    assert stray.status == "returning" and action.status == "pending"

    assert chain.rpc("evm_revert", [before]) is True  # the block with the pushed authorization is gone
    chain.rpc("evm_mine")
    report = indexer.index_chain(chain.w3)

    assert report.reorgs == 1
    assert not StrayTransfer.objects.exists()
    action.refresh_from_db()
    assert action.status == "cancelled" and "reorganisation" in action.error
    assert sender.send_operator_actions().transactions == []
    assert chain.token.balance_of(payer.address) == START, "the money never left the payer"


def test_the_return_is_sent_once_whatever_sees_the_transfer_again(chain, payer, stranger):
    from marketplace.chain import retry
    from marketplace.chain.indexer import EVENT_FIELDS, Event

    tx_hash, log_index = push(chain, payer, PUSHED, stranger)
    indexer.index_chain(chain.w3)
    assert sender.send_operator_actions().confirmed == 1
    assert chain.token.balance_of(payer.address) == START

    # The handler sees the transfer again (a replayed range): nothing new is recorded or queued.
    transfer = Event(**ChainEvent.objects.values(*EVENT_FIELDS).get(tx_hash=tx_hash, log_index=log_index))
    strays.on_transfers([transfer])
    assert StrayTransfer.objects.count() == 1 and OperatorAction.objects.count() == 1
    assert StrayTransfer.objects.get().status == "returned"

    # The same return queued again (a sender retry) is refused before anything is signed.
    first = OperatorAction.objects.get()
    again = OperatorAction.objects.create(kind="return_surplus", chain_id=first.chain_id, market=first.market,
                                          payload=first.payload, on_done=first.on_done, context=first.context)
    report = sender.send_operator_actions()
    again.refresh_from_db()
    assert report.transactions == [] and again.status == "failed" and "answered already" in again.error
    assert StrayTransfer.objects.get().status == "returned", "a refused duplicate leaves the returned row alone"
    with pytest.raises(retry.RetryRefused) as refused:
        retry.ask_chain(again.pk)
    assert "DataMarketSurplusAlreadyReturned" in refused.value.message
    assert chain.token.balance_of(payer.address) == START


def make_wallet_the_arbiter(chain, settings):
    role = chain.market.role("ARBITER_ROLE")
    functions = chain.market.contract.functions
    chain.send(functions.grantRole(role, ARBITER_WALLET), chain.operator.address)
    chain.send(functions.revokeRole(role, chain.operator.address), chain.operator.address)
    settings.CHAIN_ARBITER = ARBITER_WALLET


def test_without_the_arbiter_role_returns_wait_for_the_arbiter_s_wallet(chain, payer, stranger, settings):
    push(chain, payer, PUSHED, stranger)
    indexer.index_chain(chain.w3)
    (queued,) = strays_of(payer.address)
    assert queued.status == "returning"
    make_wallet_the_arbiter(chain, settings)

    assert sender.send_operator_actions().failed == 1  # queued before the role moved: handed to the wallet
    queued.refresh_from_db()
    assert queued.status == "arbiter" and "ARBITER_ROLE" in queued.action.error
    push(chain, payer, 2 * 10**6, stranger)
    indexer.index_chain(chain.w3)
    first, second = strays_of(payer.address)
    assert (second.status, second.action) == ("arbiter", None)
    assert OperatorAction.objects.count() == 1

    _, arbiter = person("arbiter", "arbiter")
    listed = arbiter.get("/api/v1/moderation/returns").json()
    assert [r["ref"] for r in listed["waiting"]] == [first.ref, second.ref]
    prepared = listed["prepared"]
    assert prepared["from"] == ARBITER_WALLET and prepared["to"] == chain.market.address
    _, args = chain.market.contract.decode_function_input(prepared["data"])
    assert [(i["token"], i["to"], i["amount"], "0x" + i["ref"].hex()) for i in args["items"]] == [
        (chain.token.address, payer.address, PUSHED, first.ref),
        (chain.token.address, payer.address, 2 * 10**6, second.ref)]
    assert "data-send-prepared" in arbiter.get("/moderation/returns").content.decode()

    sent = chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_transaction(
        {"from": ARBITER_WALLET, "to": prepared["to"], "data": prepared["data"]}))
    indexer.index_chain(chain.w3)

    assert {(r.status, r.return_tx_hash) for r in strays_of(payer.address)} == {
        ("returned", "0x" + bytes(sent["transactionHash"]).hex())}
    assert chain.token.balance_of(payer.address) == START
    assert arbiter.get("/api/v1/moderation/returns").json()["prepared"] is None

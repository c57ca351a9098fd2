"""Findings of the attack review of the operator sender, the relay and the dispute admin, each
against anvil with the real market and fixed: a buyer's contract wallet cannot make the operator
burn gas (a ceiling per kind, estimated as priced, and a wallet whose relayed call reverted is
suspended), nor stop every later transaction; a transaction the node refused is repriced at its
nonce; tips stop at OPERATOR_MAX_FEE_PER_GAS; settled transactions the chain lost are sent again
byte for byte; an approval sent again never overtakes a newer clearing; settlement trusts the
indexer only on the chain's own fork; only a holder of orders.resolve_dispute resolves."""
import secrets
import time

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
import pytest
import requests
from web3 import Web3
from web3.eth import Eth

from marketplace.chain import indexer, sender
from marketplace.chain.artifacts import load_artifact
from marketplace.chain.services import deploy_contract
from marketplace.chain.models import OperatorAction, OperatorTransaction
from marketplace.orders import keeper
from marketplace.orders.models import Order
from tests.conftest import dead_broker_url
from tests.integration.test_dispute_admin import QUEUE, disputed, resolve  # noqa: F401
from tests.integration.test_indexer import PRICE, WINDOW, buyer, seller  # noqa: F401
from tests.integration.test_operator_sender import manual_mining, new_listing, queue_approval

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_worker(point_broker_at):
    point_broker_at(dead_broker_url())


@pytest.fixture(autouse=True)
def _empty_mempool(chain):
    """evm_revert keeps anvil's pool: what these tests leave stuck there goes."""
    yield
    chain.rpc("anvil_dropAllTransactions")


def burner_buyer(chain, seller, owner, threshold):
    """A GasBurnerWallet (contracts/test/mocks) holding one open order it bought."""
    artifact = load_artifact("GasBurnerWallet")
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = chain.w3.eth.wait_for_transaction_receipt(factory.constructor(threshold).transact({"from": owner}))
    wallet = chain.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)
    listing_id = new_listing(chain, seller, f"cheap data {threshold}")
    chain.send(chain.market.contract.functions.setApproval([listing_id], True), chain.operator.address)
    chain.token.mint(wallet.address, PRICE)
    approve = chain.token.contract.encode_abi("approve", args=[chain.market.address, PRICE])
    chain.send(wallet.functions.execute(chain.token.address, approve), owner)
    buy = chain.market.contract.encode_abi("purchase", args=[listing_id, PRICE])
    chain.send(wallet.functions.execute(chain.market.address, buy), owner)
    indexer.index_chain(chain.w3)
    return wallet, int(Order.objects.get(buyer=wallet.address).order_id)


def relay_body(action="confirm"):
    return {"action": action, "nonce": "0x" + secrets.token_hex(32), "deadline": int(time.time()) + 3600,
            "signature": "0x00"}  # any bytes: the wallet's isValidSignature decides


@pytest.mark.parametrize("threshold", [20_000_000, 100_000])
def test_a_wallet_that_burns_gas_only_when_priced_is_refused_before_signing(chain, client, seller, threshold):
    """The relay's eth_call runs at gas price 0 and passes. The sender estimates at the price it
    will pay: there the wallet burns everything, the market reverts, and nothing is signed."""
    owner = Web3.to_checksum_address(chain.w3.eth.accounts[3])
    wallet, order_id = burner_buyer(chain, seller, owner, threshold=threshold)
    balance = chain.w3.eth.get_balance(chain.operator.address)
    answer = client.post(f"/api/v1/orders/{order_id}/relay", relay_body(), content_type="application/json")
    assert answer.status_code == 202

    report = sender.send_operator_actions()

    action = OperatorAction.objects.get(pk=answer.json()["id"])
    assert report.transactions == [] and action.status == "failed" and action.transaction is None
    assert action.error.startswith("confirmBySig would revert: DataMarketInvalidSignature("), action.error
    assert not OperatorTransaction.objects.exists()
    assert chain.w3.eth.get_balance(chain.operator.address) == balance, "no gas spent"
    assert Order.objects.get(order_id=order_id).status == "open"


def test_a_call_that_would_cost_more_than_its_kind_s_ceiling_is_not_signed(chain, seller, buyer):
    """A token whose transfer to the owner burns 1M gas: releasing that order would cost more
    than a release may; it fails with the figures, and no gas is spent."""
    hungry = deploy_contract(chain.w3, "MarketGasHungryToken", [chain.operator.address])
    token = chain.w3.eth.contract(address=hungry.address, abi=load_artifact("MarketGasHungryToken").abi)
    market = chain.market.contract.functions
    chain.send(market.setTokenAllowed(hungry.address, True, True), chain.operator.address)
    chain.send(token.functions.setHungry(seller.address, 1_000_000), chain.operator.address)
    chain.send(token.functions.mint(buyer.address, PRICE), chain.operator.address)
    chain.send(token.functions.approve(chain.market.address, PRICE), buyer.address)
    listing_id = new_listing(chain, seller, "hungry", token=hungry.address)
    chain.send(market.setApproval([listing_id], True), chain.operator.address)
    chain.send(market.purchase(listing_id, PRICE), buyer.address)
    chain.advance(WINDOW + 1)
    indexer.index_chain(chain.w3)
    balance = chain.w3.eth.get_balance(chain.operator.address)
    assert keeper.queue_due(chain.w3)["release"] == 1

    assert sender.send_operator_actions().transactions == []

    action = OperatorAction.objects.get(kind="release")
    assert action.status == "failed" and "more than the 260,000 this action may use" in action.error, action.error
    assert chain.w3.eth.get_balance(chain.operator.address) == balance


def test_a_transaction_the_node_refused_is_repriced_at_its_nonce_and_the_next_one_follows(
        chain, seller, settings, monkeypatch):
    settings.OPERATOR_REPLACE_AFTER = 0
    first, second = new_listing(chain, seller, "first"), new_listing(chain, seller, "second")
    queue_approval(chain, first, seller, "first")
    real, calls = Eth.send_raw_transaction, []

    def flaky(self, raw):
        calls.append(raw)
        if len(calls) == 1:
            raise requests.ConnectionError("connection reset by peer")
        return real(self, raw)

    monkeypatch.setattr(Eth, "send_raw_transaction", flaky)
    with manual_mining(chain):
        sender.send_operator_actions(timeout=0.2)
        (stuck,) = OperatorTransaction.objects.all()
        assert stuck.status == "signed" and stuck.broadcasts == 0
        base = chain.w3.eth.get_block("latest")["baseFeePerGas"]
        chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(max(base, 2 * int(stuck.max_fee_per_gas) + 2))])
        chain.rpc("evm_mine")  # its fee is now below the base fee: the node refuses the old bytes
        queue_approval(chain, second, seller, "second")
        sender.send_operator_actions(timeout=0.2)
        stuck.refresh_from_db()
        assert stuck.replacements >= 1 and stuck.status == "pending", stuck.error
        chain.rpc("evm_mine")
    sender.send_operator_actions()
    assert chain.market.get_listing(first)["approved"] is True
    assert chain.market.get_listing(second)["approved"] is True
    assert set(OperatorAction.objects.values_list("status", flat=True)) == {"confirmed"}


def test_replacement_fees_stop_at_the_cap(chain, seller, settings):
    settings.OPERATOR_REPLACE_AFTER = 0
    listing_id = new_listing(chain, seller)
    queue_approval(chain, listing_id, seller)
    with manual_mining(chain):
        sender.send_operator_actions(timeout=0.1)
        (tx,) = OperatorTransaction.objects.all()
        settings.OPERATOR_MAX_FEE_PER_GAS = int(tx.max_fee_per_gas) * 3
        for _run in range(30):
            sender.send_operator_actions(timeout=0.05)
        tx.refresh_from_db()
        assert int(tx.max_fee_per_gas) <= settings.OPERATOR_MAX_FEE_PER_GAS
        assert 1 <= tx.replacements <= 10 and "OPERATOR_MAX_FEE_PER_GAS" in tx.error
        chain.rpc("evm_mine")
    sender.send_operator_actions()
    assert chain.market.get_listing(listing_id)["approved"] is True


def test_settled_transactions_the_chain_lost_are_sent_again_and_the_sender_goes_on(chain, seller):
    """As after anvil restarts from its state file: the chain no longer has the last transactions."""
    first, second = new_listing(chain, seller, "first"), new_listing(chain, seller, "second")
    snapshot = chain.rpc("evm_snapshot")
    approved = queue_approval(chain, first, seller, "first")
    assert sender.send_operator_actions().confirmed == 1
    (done,) = OperatorTransaction.objects.all()
    chain.rpc("evm_revert", [snapshot])
    indexer.index_chain(chain.w3)  # the indexer sees the chain go back
    later = queue_approval(chain, second, seller, "second")

    report = sender.send_operator_actions()

    done.refresh_from_db()
    approved.refresh_from_db()
    later.refresh_from_db()
    assert report.rebroadcast >= 1 and done.status == "done" and done.hashes == [done.tx_hash]
    assert approved.status == "confirmed" and later.status == "confirmed"
    assert later.transaction.nonce == done.nonce + 1
    assert chain.market.get_listing(first)["approved"] is True and chain.market.get_listing(second)["approved"]


def test_an_approval_whose_nonce_was_taken_never_overtakes_the_newer_clearing(chain, seller):
    listing_id = new_listing(chain, seller)
    approval = queue_approval(chain, listing_id, seller)
    with manual_mining(chain):
        sender.send_operator_actions(timeout=0.2)
        (approve_tx,) = OperatorTransaction.objects.all()
        clearing = OperatorAction.objects.create(
            kind="unapprove", chain_id=approval.chain_id, market=approval.market, listing_id=listing_id,
            expected_owner=approval.expected_owner, expected_content_hash=approval.expected_content_hash,
            context={"intent": "delist"})
        sender.send_operator_actions(timeout=0.2)
        chain.rpc("anvil_dropTransaction", [approve_tx.tx_hash])
        other = chain.operator.sign_transaction({
            "chainId": approve_tx.chain_id, "nonce": approve_tx.nonce, "to": seller.address, "value": 1,
            "gas": 21_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "type": 2})
        chain.w3.eth.send_raw_transaction(other.raw_transaction)
        chain.rpc("evm_mine")

    sender.send_operator_actions()

    approval.refresh_from_db()
    clearing.refresh_from_db()
    assert clearing.status == "confirmed"
    assert approval.status == "cancelled" and f"#{clearing.pk}" in approval.error
    assert chain.market.get_listing(listing_id)["approved"] is False, "the moderator's last word stands"


def test_settlement_waits_while_the_indexer_is_on_another_fork(chain, seller):
    listing_id = new_listing(chain, seller)
    snapshot = chain.rpc("evm_snapshot")
    for _ in range(3):
        chain.rpc("evm_mine")
    indexer.index_chain(chain.w3)  # three blocks of a fork that is then lost
    chain.rpc("evm_revert", [snapshot])
    action = queue_approval(chain, listing_id, seller)

    first = sender.send_operator_actions()

    action.refresh_from_db()
    assert first.failed == 0 and action.status in ("sent", "confirmed")
    indexer.index_chain(chain.w3)  # beat's run finds the fork
    sender.send_operator_actions()
    action.refresh_from_db()
    assert action.status == "confirmed" and chain.market.get_listing(listing_id)["approved"] is True


def test_viewing_orders_is_not_resolving_them(chain, disputed, buyer):
    viewer = get_user_model().objects.create_user("support", "support@example.com", "a-long-password-1",
                                                  is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_order"))
    support = Client()
    support.force_login(viewer)
    assert support.get(QUEUE).status_code == 200

    refused = resolve(support, disputed, confirmed="1", share="100")

    assert not OperatorAction.objects.exists()
    assert refused.status_code in (200, 302) and Order.objects.get(pk=disputed.pk).status == "disputed"
    viewer.user_permissions.add(Permission.objects.get(codename="resolve_dispute"))
    allowed = Client()
    allowed.force_login(get_user_model().objects.get(pk=viewer.pk))
    assert resolve(allowed, disputed, confirmed="1", share="100").status_code == 302
    assert OperatorAction.objects.get().payload == {"refund_bps": 10_000}

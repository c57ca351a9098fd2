"""Attack review of stray-transfer returns and agent-key budgets (issue 21, task R2):
reproductions against the real anvil, contracts, PostgreSQL, indexer and operator sender, with the
fixtures of test_stray_transfers and test_agent_keys.

The tests named after a finding (test_<finding>_...) reproduce what the review found and assert
the safe behaviour: each failed before its fix. The other tests pin down attacks that were tried
and found refused."""
from datetime import timedelta
import json
from pathlib import Path
import subprocess

from django.utils import timezone
from eth_account import Account
import pytest
from web3.exceptions import ContractCustomError

from marketplace.accounts import agent_keys
from marketplace.accounts.agent_keys import AgentKeyRefused
from marketplace.chain import indexer, reverts, sender
from marketplace.chain.models import OperatorTransaction
from marketplace.chain.services import deploy_contract
from marketplace.orders.models import StrayTransfer
from tests.conftest import DEV_KEYS
from tests.integration.test_agent_keys import AGENT, make_key
from tests.integration.test_stray_transfers import (  # noqa: F401 (fixtures: the sender runs in the test)
    PRICE, PUSHED, START, _no_worker, listing, payer, push, seller, stranger, strays_of)

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
MAX = 2**256 - 1

# A smart wallet as any EIP-7702 account or Safe is: it runs several calls as itself in one
# transaction and accepts any signature (EIP-1271), so it can use an EIP-3009 authorization of its
# own. Compiled here with the repository's solcjs: nothing in the product uses it.
WALLET_SOURCE = """
// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;
contract AttackWallet {
    function exec(address[] calldata targets, bytes[] calldata data) external {
        for (uint256 i = 0; i < targets.length; ++i) {
            (bool ok, bytes memory ret) = targets[i].call(data[i]);
            if (!ok) { assembly { revert(add(ret, 32), mload(ret)) } }
        }
    }
    function isValidSignature(bytes32, bytes calldata) external pure returns (bytes4) { return 0x1626ba7e; }
}
"""
COMPILE = """
const solc = require(process.argv[1] + '/node_modules/solc');
const input = {language: 'Solidity', sources: {'W.sol': {content: process.argv[2]}},
  settings: {outputSelection: {'*': {'*': ['abi', 'evm.bytecode.object']}}}};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const c = out.contracts['W.sol'].AttackWallet;
process.stdout.write(JSON.stringify({abi: c.abi, bytecode: c.evm.bytecode.object}));
"""



@pytest.fixture
def victim(chain):
    """A wallet that sent the market a plain transfer (waiting for an arbiter's review): money of
    the market's surplus that belongs to someone."""
    account = Account.from_key(DEV_KEYS[3])
    chain.token.mint(account.address, PRICE)
    chain.send(chain.token.contract.functions.transfer(chain.market.address, PRICE), account.address)
    return account


def attack_wallet(chain):
    compiled = json.loads(subprocess.run(["node", "-e", COMPILE, str(ROOT / "contracts"), WALLET_SOURCE],
                                         check=True, capture_output=True, text=True).stdout)
    factory = chain.w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    receipt = chain.w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": chain.operator.address}))
    return chain.w3.eth.contract(address=receipt["contractAddress"], abi=compiled["abi"])


def data(call) -> bytes:
    return bytes.fromhex(call._encode_transaction_data()[2:])


# Findings (fail today) ---------------------------------------------------------------------------


def test_s1_a_purchase_is_never_returned_because_another_token_s_transfer_took_its_order(chain, seller, victim):
    market, usdc = chain.market, chain.token
    other = chain.w3.eth.contract(address=deploy_contract(chain.w3, "PlainToken", []).address,
                                  abi=usdc.contract.abi)  # a 6-decimal ERC-20 (transfer, approve, mint)
    chain.send(market.contract.functions.setTokenAllowed(other.address, True, False), chain.operator.address)
    listing_id = listing(chain, seller, "a dataset paid in USDC")
    wallet = attack_wallet(chain)
    usdc.mint(wallet.address, PRICE + 1)
    chain.send(other.functions.mint(wallet.address, PRICE), chain.operator.address)
    accomplice = Account.create().address
    transfer_with_authorization = usdc.contract.get_function_by_signature(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)")
    calls = [
        (other.address, other.functions.transfer(market.address, PRICE)),  # the other token, first
        (usdc.address, usdc.contract.functions.approve(market.address, PRICE)),
        (market.address, market.contract.functions.purchase(listing_id, PRICE)),  # a real order, in USDC
        # Any AuthorizationUsed of USDC naming the wallet makes its unexplained USDC transfers "pushed".
        (usdc.address, transfer_with_authorization(wallet.address, accomplice, 1, 0, MAX, b"\x01" * 32, b"\x00")),
    ]
    chain.send(wallet.functions.exec([t for t, _ in calls], [data(c) for _, c in calls]), chain.operator.address)
    assert market.total_escrowed(usdc.address) == PRICE and market.surplus(usdc.address) == PRICE  # the victim's

    indexer.index_chain(chain.w3)
    sender.send_operator_actions()

    rows = [(r.token, int(r.amount), r.status) for r in strays_of(wallet.address)]
    victim_row = strays_of(victim.address)
    assert market.surplus(usdc.address) == PRICE, "the victim's money is still there to be returned to them"
    assert usdc.balance_of(wallet.address) == 0, "the purchase was not paid back to its buyer"
    assert [(t, a) for t, a, _ in rows] == [(other.address, PRICE)], "the other token's transfer is the stray"
    assert [r.status for r in victim_row] == ["review"]


def test_s2_a_stray_mined_again_at_another_log_index_is_returned_once(chain, payer, stranger, victim):
    usdc = chain.token
    indexer.index_chain(chain.w3)  # the victim's plain transfer: reviewed, part of the surplus
    before = chain.rpc("evm_snapshot")
    tx_hash, log_index = push(chain, payer, PUSHED, stranger)
    raw = chain.rpc("eth_getRawTransactionByHash", [tx_hash])
    indexer.index_chain(chain.w3)
    assert sender.send_operator_actions().confirmed == 1
    assert usdc.balance_of(payer.address) == START, "returned once"
    assert OperatorTransaction.objects.filter(kind="return_surplus", status="done").count() == 1

    # A reorganisation: the blocks of the push and of its return go; the push is mined again, behind
    # another transaction's log in its block (as a transaction left in the mempool is).
    assert chain.rpc("evm_revert", [before]) is True
    chain.rpc("evm_setAutomine", [False])
    other_sender = Account.from_key(DEV_KEYS[1]).address  # not the push's sender: its nonce is the push's
    chain.w3.eth.send_transaction({"from": other_sender, "to": usdc.address, "maxPriorityFeePerGas": 10**10,
                                   "maxFeePerGas": 10**11, "data": data(usdc.contract.functions.approve(stranger, 1))})
    chain.rpc("eth_sendRawTransaction", [raw])
    chain.rpc("evm_mine")
    chain.rpc("evm_setAutomine", [True])
    again = chain.w3.eth.get_transaction_receipt(tx_hash)
    assert again["status"] == 1 and max(log["logIndex"] for log in again["logs"]) != log_index

    for _ in range(3):  # the sender finds its return gone and sends it again; the indexer reads the new fork
        indexer.index_chain(chain.w3)
        sender.send_operator_actions()

    assert usdc.balance_of(payer.address) == START, "the pushed amount came back once, not twice"
    assert chain.market.surplus(usdc.address) == PRICE, "the victim's transfer is still in the market"
    assert StrayTransfer.objects.filter(payer=payer.address).count() == 1


def test_s3_a_return_whose_stray_left_the_chain_is_not_paid_from_other_surplus(chain, payer, stranger, victim):
    usdc = chain.token
    other = Account.create()
    usdc.mint(other.address, PUSHED)
    indexer.index_chain(chain.w3)  # the victim's plain transfer: reviewed, part of the surplus
    before = chain.rpc("evm_snapshot")
    push(chain, payer, PUSHED, stranger)
    indexer.index_chain(chain.w3)
    assert sender.send_operator_actions().confirmed == 1
    assert usdc.balance_of(payer.address) == START

    # A reorganisation drops the push and its return; the push is not mined again (its authorization
    # expired, or the payer used its nonce meanwhile).
    assert chain.rpc("evm_revert", [before]) is True
    for _ in range(3):  # blocks of the new fork where the push and its return were
        chain.rpc("evm_mine")
    assert usdc.balance_of(payer.address) == START, "the push is gone: the payer holds all its money"
    # Any later work wakes the sender (beat, a moderator's approval, ...): here another payer's push.
    push(chain, other, PUSHED, stranger)

    for _ in range(3):
        indexer.index_chain(chain.w3)
        sender.send_operator_actions()

    assert not StrayTransfer.objects.filter(payer=payer.address).exists()
    assert usdc.balance_of(other.address) == PUSHED, "the other payer's push was returned"
    assert usdc.balance_of(payer.address) == START, "nothing is returned for a transfer that is not on the chain"
    assert chain.market.surplus(usdc.address) == PRICE, "the victim's transfer is still in the market"


@pytest.mark.parametrize("ended", ["revoked", "expired"])
def test_k1_a_wallet_whose_key_was_revoked_or_expired_cannot_pay_without_limits(ended):
    created = make_key()
    if ended == "revoked":
        agent_keys.revoke(created.key)
    else:
        type(created.key).objects.filter(pk=created.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(AgentKeyRefused):
        agent_keys.key_for_payment(None, AGENT)


def test_k2_the_api_answer_with_the_secret_is_not_stored_by_caches(client):
    from marketplace.accounts.services import wallet_user

    client.force_login(wallet_user(AGENT))
    response = client.post("/api/v1/me/agent-keys", {
        "name": "bot", "wallet": AGENT, "max_per_purchase": "1", "daily_cap": "2",
        "expires_at": (timezone.now() + timedelta(days=3)).isoformat()}, content_type="application/json")
    assert response.status_code == 201 and response.json()["secret"].startswith("dmk_")
    assert "no-store" in response.get("Cache-Control", "")


# Tried and refused -------------------------------------------------------------------------------


def test_a_return_replayed_after_it_was_answered_is_refused_on_chain(chain, payer, stranger):
    """The contract answers a reference once, whoever sends it: a second returnSurplus of the same
    reference from the arbiter reverts, and the sender's pre-check refuses it before signing."""
    push(chain, payer, PUSHED, stranger)
    indexer.index_chain(chain.w3)
    assert sender.send_operator_actions().confirmed == 1
    (stray,) = strays_of(payer.address)
    call = chain.market.contract.functions.returnSurplus(chain.token.address, payer.address, PUSHED,
                                                         bytes.fromhex(stray.ref[2:]))
    with pytest.raises(ContractCustomError) as reverted:
        call.call({"from": chain.operator.address})
    assert "DataMarketSurplusAlreadyReturned" in reverts.describe(reverted.value, chain.market.contract.abi)
    assert chain.token.balance_of(payer.address) == START


def test_a_plain_transfer_with_an_authorization_of_another_token_is_not_returned(chain, stranger):
    """An AuthorizationUsed naming the sender but emitted by another token (or any other contract)
    does not make a plain transfer 'pushed': only the transfer's own token's counts."""
    wallet = attack_wallet(chain)
    second = deploy_contract(chain.w3, "TestUSDC", [chain.operator.address]).address
    other = chain.w3.eth.contract(address=second, abi=chain.token.contract.abi)
    chain.token.mint(wallet.address, PUSHED)
    chain.send(other.functions.mint(wallet.address, 1), chain.operator.address)
    transfer_with_authorization = other.get_function_by_signature(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)")
    calls = [(chain.token.address, chain.token.contract.functions.transfer(chain.market.address, PUSHED)),
             (second, transfer_with_authorization(wallet.address, stranger, 1, 0, MAX, b"\x02" * 32, b"\x00"))]
    chain.send(wallet.functions.exec([t for t, _ in calls], [data(c) for _, c in calls]), chain.operator.address)

    indexer.index_chain(chain.w3)

    (stray,) = strays_of(wallet.address)
    assert (stray.kind, stray.status, stray.action) == ("plain", "review", None)
    assert chain.market.surplus(chain.token.address) == PUSHED


def test_revoking_or_reading_another_user_s_key_is_a_404(client):
    from marketplace.accounts.services import wallet_user

    created = make_key()
    intruder = wallet_user(Account.create().address)
    client.force_login(intruder)
    assert client.get(f"/api/v1/me/agent-keys/{created.key.pk}").status_code == 404
    assert client.get(f"/api/v1/me/agent-keys/{created.key.pk}/purchases").status_code == 404
    assert client.post(f"/api/v1/me/agent-keys/{created.key.pk}/revoke").status_code == 404
    assert client.post(f"/me/agents/{created.key.pk}/revoke").status_code == 404
    listed = client.get("/api/v1/me/agent-keys")
    assert listed.status_code == 200 and listed.json() == []
    created.key.refresh_from_db()
    assert created.key.revoked_at is None


def test_the_operator_pays_less_gas_per_return_than_an_attacker_pays_per_push(chain, payer, stranger, settings):
    """Dust griefing: each pushed authorization above STRAY_RETURN_DUST costs the operator a return.
    Batched, a return costs the operator less gas than the push cost whoever made it (and the pushed
    money itself comes back), so the marketplace does not lose more than its attacker spends."""
    pushes = []
    for _ in range(5):
        push(chain, payer, settings.STRAY_RETURN_DUST, stranger)
        pushes.append(chain.w3.eth.get_block("latest", full_transactions=True)["gasUsed"])
    indexer.index_chain(chain.w3)
    report = sender.send_operator_actions()
    assert report.confirmed == 5 and len(report.transactions) == 1
    tx = OperatorTransaction.objects.get(kind="return_surplus")
    returned = chain.w3.eth.get_transaction_receipt(tx.mined_hash)["gasUsed"]
    assert returned / 5 < min(pushes), (returned / 5, min(pushes))

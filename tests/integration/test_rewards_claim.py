"""Reward claims on anvil: the same tree built by our Python Merkle module and by npm
@openzeppelin/merkle-tree gives the same root and proofs, both kinds of proof claim on-chain,
a second claim of the same cumulative amount pays nothing; the admin sweeps only what no root
can still pay, and a suspended root pays nothing until a new one matures."""
import json
from pathlib import Path
import subprocess

from eth_account import Account
import pytest
from web3.logs import DISCARD
from web3.exceptions import ContractCustomError

from marketplace.chain.contracts import TestUSDC
from marketplace.chain.services import deploy_contract
from marketplace.rewards.merkle import MerkleTree
from tests.integration.test_token_signatures import reverted_with

pytestmark = pytest.mark.chain
ROOT = Path(__file__).resolve().parents[2]


def npm_tree(entries):
    """Root and proofs from @openzeppelin/merkle-tree (contracts/script/merkle.mjs)."""
    result = subprocess.run(
        ["node", str(ROOT / "contracts" / "script" / "merkle.mjs")],
        input=json.dumps([[account, str(amount)] for account, amount in entries]),
        capture_output=True, text=True, check=True, timeout=60,
    )
    return json.loads(result.stdout)


@pytest.fixture
def accounts():
    return [Account.create().address for _ in range(7)]


def total(entries):
    """What a tree of (account, cumulative amount) entries can pay in all."""
    return sum(amount for _, amount in entries)


def propose(chain, epoch, tree, entries):
    chain.distributor.propose_root(epoch, tree.root_hex, total(entries), chain.operator.address)


def propose_and_mature(chain, epoch, tree, entries):
    propose(chain, epoch, tree, entries)
    chain.advance(chain.distributor.root_delay() + 1)
    assert chain.distributor.current_root() == (epoch, tree.root, total(entries), False)


def claim(chain, account, cumulative, proof, sender):
    receipt = chain.send(chain.distributor.contract.functions.claim(account, cumulative, proof), sender)
    return [e["args"] for e in chain.distributor.contract.events.Claimed().process_receipt(receipt, errors=DISCARD)]


def test_python_and_npm_proofs_are_identical_and_both_claim(chain, accounts):
    entries = [(account, (i + 1) * 1_500_000) for i, account in enumerate(accounts)]
    tree = MerkleTree.of(entries)
    reference = npm_tree(entries)
    assert tree.root_hex == reference["root"]
    assert [tree.proof(a, v) for a, v in entries] == reference["proofs"]

    chain.token.mint(chain.distributor.address, sum(v for _, v in entries))
    propose_and_mature(chain, 1, tree, entries)
    relayer = chain.operator.address  # anyone may submit a claim

    first, second = entries[0], entries[3]
    assert claim(chain, first[0], first[1], reference["proofs"][0], relayer)[0]["amount"] == first[1]
    assert claim(chain, second[0], second[1], tree.proof(*second), relayer)[0]["amount"] == second[1]
    assert chain.token.balance_of(first[0]) == first[1]
    assert chain.token.balance_of(second[0]) == second[1]

    # The same cumulative amount again pays nothing and emits nothing.
    assert claim(chain, first[0], first[1], reference["proofs"][0], relayer) == []
    assert chain.token.balance_of(first[0]) == first[1]
    assert chain.distributor.claimed(first[0]) == first[1]
    assert chain.distributor.total_claimed() == first[1] + second[1]


def test_a_later_epoch_pays_only_the_difference(chain, accounts):
    relayer = chain.operator.address
    epoch_one = [(a, 1_000_000) for a in accounts]
    epoch_two = [(a, 1_000_000 + 250_000 * i) for i, a in enumerate(accounts)]
    chain.token.mint(chain.distributor.address, sum(v for _, v in epoch_two))
    tree_one, tree_two = MerkleTree.of(epoch_one), MerkleTree.of(epoch_two)

    propose_and_mature(chain, 1, tree_one, epoch_one)
    account = accounts[4]
    claim(chain, account, 1_000_000, tree_one.proof(account, 1_000_000), relayer)
    propose_and_mature(chain, 2, tree_two, epoch_two)
    (paid,) = claim(chain, account, 2_000_000, tree_two.proof(account, 2_000_000), relayer)
    assert paid["amount"] == 1_000_000 and paid["cumulativeAmount"] == 2_000_000 and paid["epoch"] == 2
    assert chain.token.balance_of(account) == 2_000_000


def test_a_proof_does_not_pay_another_account_or_amount(chain, accounts):
    entries = [(a, 3_000_000) for a in accounts]
    tree = MerkleTree.of(entries)
    chain.token.mint(chain.distributor.address, 10**12)
    propose_and_mature(chain, 1, tree, entries)
    proof = tree.proof(accounts[0], 3_000_000)
    for account, amount in ((accounts[1], 3_000_000), (accounts[0], 3_000_001)):
        with pytest.raises(ContractCustomError) as error:
            chain.distributor.contract.functions.claim(account, amount, proof).transact({"from": chain.operator.address})
        assert reverted_with(error.value, "RewardDistributorInvalidProof(address,uint256)")


def reverts_with(call, sender, signature):
    with pytest.raises(ContractCustomError) as error:
        call.transact({"from": sender})
    return reverted_with(error.value, signature)


def test_sweep_takes_only_what_no_root_can_still_pay(chain, accounts):
    admin = chain.operator.address  # the admin in tests (CHAIN_ADMIN unset)
    treasury = Account.create().address
    sweep = chain.distributor.contract.functions.sweep
    epoch_one = [(a, 1_000_000) for a in accounts]  # total 7,000,000
    epoch_two = [(a, 2_000_000) for a in accounts]  # total 14,000,000
    tree_one, tree_two = MerkleTree.of(epoch_one), MerkleTree.of(epoch_two)
    chain.token.mint(chain.distributor.address, 20_000_000)

    propose_and_mature(chain, 1, tree_one, epoch_one)
    claim(chain, accounts[0], 1_000_000, tree_one.proof(accounts[0], 1_000_000), admin)
    assert chain.distributor.total_claimed() == 1_000_000
    # Epoch 2 is pending: its total counts, 14,000,000 - 1,000,000 stay.
    propose(chain, 2, tree_two, epoch_two)
    assert chain.distributor.pending_root().total == 14_000_000
    assert sweep(chain.token.address, treasury).call({"from": admin}) == 19_000_000 - 13_000_000
    receipt = chain.distributor.sweep(chain.token.address, treasury, admin)
    (swept,) = chain.distributor.contract.events.Swept().process_receipt(receipt, errors=DISCARD)
    assert swept["args"]["amount"] == 6_000_000 and swept["args"]["to"] == treasury
    assert chain.token.balance_of(chain.distributor.address) == 13_000_000
    assert reverts_with(
        sweep(chain.token.address, treasury), admin, "RewardDistributorNothingToSweep(address)"
    )

    # Once epoch 2 is revoked, only epoch 1's unclaimed 6,000,000 stay.
    chain.distributor.revoke_pending_root(admin)
    chain.distributor.sweep(chain.token.address, treasury, admin)
    assert chain.token.balance_of(chain.distributor.address) == 6_000_000
    assert chain.token.balance_of(treasury) == 13_000_000
    for account, amount in epoch_one[1:]:
        claim(chain, account, amount, tree_one.proof(account, amount), admin)
    assert chain.token.balance_of(chain.distributor.address) == 0

    # Another token goes in full.
    other = TestUSDC(chain.w3, deploy_contract(chain.w3, "TestUSDC", [admin]).address)
    other.mint(chain.distributor.address, 5)
    chain.distributor.sweep(other.address, treasury, admin)
    assert other.balance_of(treasury) == 5


def test_a_suspended_root_pays_nothing_until_a_new_one_matures(chain, accounts):
    admin = relayer = chain.operator.address
    wrong = [(a, 1_000_000) for a in accounts[:-1]] + [(accounts[-1], 900_000_000)]
    fixed = [(a, 1_000_000) for a in accounts]
    tree_wrong, tree_fixed = MerkleTree.of(wrong), MerkleTree.of(fixed)
    chain.token.mint(chain.distributor.address, 10**9)
    propose_and_mature(chain, 1, tree_wrong, wrong)
    claim(chain, accounts[0], 1_000_000, tree_wrong.proof(accounts[0], 1_000_000), relayer)

    receipt = chain.distributor.suspend_current_root(admin)
    (event,) = chain.distributor.contract.events.RootSuspended().process_receipt(
        receipt, errors=DISCARD
    )
    assert event["args"]["epoch"] == 1 and event["args"]["root"] == tree_wrong.root
    assert chain.distributor.current_root().suspended
    greedy = chain.distributor.contract.functions.claim(
        accounts[-1], 900_000_000, tree_wrong.proof(accounts[-1], 900_000_000)
    )
    assert reverts_with(greedy, relayer, "RewardDistributorRootSuspended(uint256)")

    propose(chain, 2, tree_fixed, fixed)
    assert chain.distributor.current_root().suspended  # until epoch 2 matures
    chain.advance(chain.distributor.root_delay() + 1)
    assert chain.distributor.current_root() == (2, tree_fixed.root, total(fixed), False)
    proof = tree_fixed.proof(accounts[-1], 1_000_000)
    (paid,) = claim(chain, accounts[-1], 1_000_000, proof, relayer)
    assert paid["amount"] == 1_000_000 and paid["epoch"] == 2
    assert chain.distributor.total_claimed() == 2_000_000

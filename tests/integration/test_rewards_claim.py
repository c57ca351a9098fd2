"""Reward claims on anvil: the same tree built by our Python Merkle module and by npm
@openzeppelin/merkle-tree gives the same root and proofs, both kinds of proof claim on-chain,
and a second claim of the same cumulative amount pays nothing."""
import json
from pathlib import Path
import subprocess

from eth_account import Account
import pytest
from web3.logs import DISCARD
from web3.exceptions import ContractCustomError

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


def propose_and_mature(chain, epoch, root):
    chain.send(chain.distributor.contract.functions.proposeRoot(epoch, root), chain.operator.address)
    chain.advance(chain.distributor.root_delay() + 1)
    assert chain.distributor.current_root() == (epoch, bytes.fromhex(root.removeprefix("0x")))


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
    propose_and_mature(chain, 1, tree.root_hex)
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


def test_a_later_epoch_pays_only_the_difference(chain, accounts):
    relayer = chain.operator.address
    epoch_one = [(a, 1_000_000) for a in accounts]
    epoch_two = [(a, 1_000_000 + 250_000 * i) for i, a in enumerate(accounts)]
    chain.token.mint(chain.distributor.address, sum(v for _, v in epoch_two))
    tree_one, tree_two = MerkleTree.of(epoch_one), MerkleTree.of(epoch_two)

    propose_and_mature(chain, 1, tree_one.root_hex)
    account = accounts[4]
    claim(chain, account, 1_000_000, tree_one.proof(account, 1_000_000), relayer)
    propose_and_mature(chain, 2, tree_two.root_hex)
    (paid,) = claim(chain, account, 2_000_000, tree_two.proof(account, 2_000_000), relayer)
    assert paid["amount"] == 1_000_000 and paid["cumulativeAmount"] == 2_000_000 and paid["epoch"] == 2
    assert chain.token.balance_of(account) == 2_000_000


def test_a_proof_does_not_pay_another_account_or_amount(chain, accounts):
    entries = [(a, 3_000_000) for a in accounts]
    tree = MerkleTree.of(entries)
    chain.token.mint(chain.distributor.address, 10**12)
    propose_and_mature(chain, 1, tree.root_hex)
    proof = tree.proof(accounts[0], 3_000_000)
    for account, amount in ((accounts[1], 3_000_000), (accounts[0], 3_000_001)):
        with pytest.raises(ContractCustomError) as error:
            chain.distributor.contract.functions.claim(account, amount, proof).transact({"from": chain.operator.address})
        assert reverted_with(error.value, "RewardDistributorInvalidProof(address,uint256)")

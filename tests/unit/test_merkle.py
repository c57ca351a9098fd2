"""marketplace.rewards.merkle against the reference, npm @openzeppelin/merkle-tree (through
contracts/script/merkle.mjs): the same leaves give the same root and the same proof for every
entry. The reference is required: a missing node or npm package fails these tests, never skips."""
import json
from pathlib import Path
import random
import subprocess

from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from marketplace.rewards import merkle
from marketplace.rewards.merkle import MerkleTree, leaf_hash, verify

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "contracts" / "script" / "merkle.mjs"
MAX_UINT = 2**256 - 1

# Anvil's dev accounts 1-3 and the root npm gives for them; contracts/test/RewardDistributor.t.sol
# claims on-chain with this root and its proofs (test_claim_withProofsFromTheNpmPackage).
FIXED = [
    ("0x70997970C51812dc3A010C7d01b50e0d17dc79C8", 1_000_000),
    ("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", 2_500_000),
    ("0x90F79bf6EB2c4f870365E785982E1f101E93b906", 1_000_000),
]
FIXED_ROOT = "0xad09d9c685a53255b23f7536dd39925cf3b25278f127efab94029a532a3ceeba"


def npm_tree(entries):
    """Root and per-entry proofs (input order) from @openzeppelin/merkle-tree."""
    result = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps([[account, str(amount)] for account, amount in entries]),
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert result.returncode == 0, f"merkle.mjs failed (npm ci in contracts/?): {result.stderr}"
    return json.loads(result.stdout)


def random_address(rng):
    return to_checksum_address("0x" + rng.randbytes(20).hex())


def assert_same_as_npm(entries):
    tree = MerkleTree.of(entries)
    reference = npm_tree(entries)
    assert tree.root_hex == reference["root"]
    assert tree.root == bytes.fromhex(reference["root"][2:])
    assert len(tree) == len(entries)
    for (account, amount), npm_proof in zip(entries, reference["proofs"], strict=True):
        assert tree.proof(account, amount) == npm_proof
        assert verify(tree.root, account, amount, npm_proof)
        assert verify(tree.root_hex, account, amount, [bytes.fromhex(p[2:]) for p in npm_proof])
    return tree


def leaf_set(count, seed, amount=None):
    rng = random.Random(seed)
    return [
        (random_address(rng), rng.randrange(1, 10**15) if amount is None else amount)
        for _ in range(count)
    ]


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param(FIXED[:1], id="1 leaf"),
        pytest.param(FIXED[:2], id="2 leaves"),
        pytest.param(FIXED, id="3 leaves"),
        pytest.param(leaf_set(5, seed=5), id="5 leaves"),
        pytest.param(leaf_set(7, seed=7), id="7 leaves"),
        pytest.param(leaf_set(8, seed=8), id="8 leaves"),
        pytest.param(leaf_set(33, seed=33), id="33 leaves"),
        pytest.param(leaf_set(100, seed=100), id="100 random leaves"),
        pytest.param(leaf_set(12, seed=12, amount=5_000_000), id="duplicate amounts"),
        pytest.param(
            [("0x" + "00" * 20, 0), ("0x" + "ff" * 20, MAX_UINT), ("0x" + "ab" * 20, 1)],
            id="extreme values",
        ),
        pytest.param(
            [(a.lower(), v) for a, v in leaf_set(4, seed=4)]
            + [("0x" + a[2:].upper(), v) for a, v in leaf_set(3, seed=3)],
            id="lower and upper case addresses",
        ),
    ],
)
def test_root_and_every_proof_equal_the_npm_package(entries):
    assert_same_as_npm(entries)


def test_fixed_vector_used_by_the_forge_test():
    tree = assert_same_as_npm(FIXED)
    assert tree.root_hex == FIXED_ROOT


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.binary(min_size=20, max_size=20), st.integers(min_value=0, max_value=MAX_UINT)
        ),
        min_size=1, max_size=40, unique_by=lambda entry: entry[0],
    )
)
def test_any_leaf_set_matches_the_npm_package(raw):
    assert_same_as_npm([(to_checksum_address(address), amount) for address, amount in raw])


def test_entry_order_does_not_change_the_tree():
    entries = leaf_set(50, seed=1)
    shuffled = entries[:]
    random.Random(2).shuffle(shuffled)
    first, second = MerkleTree.of(entries), MerkleTree.of(shuffled)
    assert first.root == second.root
    assert all(first.proof(a, v) == second.proof(a, v) for a, v in entries)


def test_leaf_is_the_standard_double_hash_of_the_abi_encoding():
    for account, amount in FIXED + [("0x" + "ff" * 20, MAX_UINT), ("0x" + "00" * 20, 0)]:
        encoded = encode(["address", "uint256"], [account, amount])
        assert merkle._encode(account, amount) == encoded
        assert leaf_hash(account, amount) == keccak(keccak(encoded))


def test_bulk_hasher_agrees_with_eth_utils_and_the_fallback_builds_the_same_tree(monkeypatch):
    fast = merkle._fast_keccak()
    assert fast is not keccak, "pycryptodome changed: builds use the slower eth_utils.keccak"
    for size in (0, 1, 32, 64, 135, 136, 137, 300):
        data = bytes(random.Random(size).randbytes(size))
        assert fast(data) == keccak(data)
    entries = leaf_set(41, seed=41)
    expected = MerkleTree.of(entries)
    monkeypatch.setattr(merkle, "_fast_keccak", lambda: keccak)
    fallback = MerkleTree.of(entries)
    assert fallback.root == expected.root
    assert all(fallback.proof(a, v) == expected.proof(a, v) for a, v in entries)


def test_verify_rejects_a_tampered_amount_account_proof_or_root():
    entries = leaf_set(9, seed=9)
    tree = MerkleTree.of(entries)
    account, amount = entries[4]
    other_account = entries[5][0]
    proof = tree.proof(account, amount)
    assert verify(tree.root, account, amount, proof)

    assert not verify(tree.root, account, amount + 1, proof)
    assert not verify(tree.root, account, amount - 1, proof)
    assert not verify(tree.root, other_account, amount, proof)
    assert not verify(tree.root, other_account, entries[5][1], proof)  # a leaf, not this proof's
    flipped = proof[:]
    flipped[1] = flipped[1][:-1] + ("0" if flipped[1][-1] != "0" else "1")
    assert not verify(tree.root, account, amount, flipped)
    assert not verify(tree.root, account, amount, proof[:-1])
    assert not verify(tree.root, account, amount, proof + [proof[0]])
    assert not verify(tree.root, account, amount, list(reversed(proof)))
    assert not verify(MerkleTree.of(leaf_set(9, seed=10)).root, account, amount, proof)
    # Malformed input is an invalid proof, not an exception.
    assert not verify(tree.root, "0x1234", amount, proof)
    assert not verify(tree.root, account, -1, proof)
    assert not verify(tree.root, account, amount, proof[:1] + ["0x1234"])


def test_a_single_leaf_tree_has_an_empty_proof():
    tree = MerkleTree.of(FIXED[:1])
    assert tree.proof(*FIXED[0]) == []
    assert tree.root == leaf_hash(*FIXED[0])


def test_proof_of_an_entry_not_in_the_tree_raises_key_error():
    tree = MerkleTree.of(FIXED)
    with pytest.raises(KeyError):
        tree.proof(FIXED[0][0], FIXED[0][1] + 1)
    with pytest.raises(KeyError):
        tree.proof("0x" + "00" * 20, 1)
    with pytest.raises(KeyError):
        tree.proof("0x" + "ff" * 20, 1)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "at least one entry"),
        ([("0x1234", 1)], "20-byte hex address"),
        ([("70997970c51812dc3a010c7d01b50e0d17dc79c8", 1)], "20-byte hex address"),
        ([(b"\x01" * 20, 1)], "20-byte hex address"),
        ([("0x70997970C51812dc3A010C7d01b50e0d17dc79c8", 1)], "checksum"),
        ([(FIXED[0][0], -1)], "uint256"),
        ([(FIXED[0][0], 2**256)], "uint256"),
        ([(FIXED[0][0], True)], "uint256"),
        ([(FIXED[0][0], "1")], "uint256"),
        ([FIXED[0], (FIXED[0][0].lower(), 2)], "appears twice"),
    ],
)
def test_invalid_entries_are_rejected(entries, message):
    with pytest.raises(ValueError, match=message):
        MerkleTree.of(entries)

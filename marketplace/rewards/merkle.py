"""Merkle trees of reward leaves, identical to OpenZeppelin's ``StandardMerkleTree``.

``MerkleTree.of(entries)`` builds exactly what the npm package ``@openzeppelin/merkle-tree`` builds
with ``StandardMerkleTree.of(values, ["address", "uint256"])``, so the root, every proof and
``RewardDistributor.sol`` agree:

* leaf = ``keccak256(keccak256(abi.encode(address, uint256)))`` (the standard double hash);
* the leaf hashes are sorted ascending and laid out, reversed, at the end of an array of
  ``2n - 1`` nodes (the array layout of a complete binary tree: node ``i`` has children ``2i + 1``
  and ``2i + 2``); every inner node is the keccak of its two children in ascending byte order; the
  root is node 0;
* a proof is the list of siblings from the leaf up to (excluding) the root.

The tree is one flat ``bytearray`` of 32-byte nodes (64 MB for a million leaves), with no
per-node Python object, and a proof is found by binary search over the sorted leaves, so no lookup
table is kept either.

Pure Python: no Django import, usable from workers, scripts and tests alike.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
import re

from eth_utils import keccak

__all__ = ["MerkleTree", "leaf_hash", "verify"]

Hasher = Callable[[bytes], bytes]

UINT256_LIMIT = 1 << 256
_ADDRESS = re.compile(r"0[xX][0-9a-fA-F]{40}")
_PAD = bytes(12)


def _fast_keccak() -> Hasher:
    """A keccak-256 function for bulk hashing, about four times faster than ``eth_utils.keccak``.

    ``eth_utils.keccak`` (pycryptodome underneath) creates and frees a hash object per call, which
    dominates the cost of hashing 64 bytes. This keeps one pycryptodome Keccak state and resets it
    between inputs. It uses pycryptodome's raw binding, so it checks itself against
    ``eth_utils.keccak`` and returns that instead if anything is missing or differs. Not
    thread-safe: take a new one for every build.
    """
    try:
        from Crypto.Hash import keccak as pycryptodome_keccak
        from Crypto.Util._raw_api import (
            SmartPointer, VoidPointer, c_size_t, c_ubyte, create_string_buffer, get_raw_buffer,
        )

        lib = pycryptodome_keccak._raw_keccak_lib
        pointer = VoidPointer()
        if lib.keccak_init(pointer.address_of(), c_size_t(64), c_ubyte(24)):
            return keccak
        state = SmartPointer(pointer.get(), lib.keccak_destroy)
        handle = state.get()
        out = create_string_buffer(32)
        absorb, digest, reset = lib.keccak_absorb, lib.keccak_digest, lib.keccak_reset

        def hash_(data: bytes) -> bytes:
            absorb(handle, data, len(data))
            digest(handle, out, 32, 1)  # 1: Keccak padding (not SHA-3's)
            reset(handle)
            return get_raw_buffer(out)

        hash_.state = state  # frees the state when the function goes
        for sample in (b"", b"\x01" * 64, bytes(range(200))):
            if hash_(sample) != keccak(sample):
                return keccak
        return hash_
    except Exception:  # noqa: BLE001 - any problem with the private binding: use the public one
        return keccak


def _address_bytes(account: str, hash_: Hasher = keccak) -> bytes:
    """The 20 bytes of a 0x-prefixed hex address; a mixed-case one must be EIP-55 checksummed."""
    if not isinstance(account, str) or not _ADDRESS.fullmatch(account):
        raise ValueError(f"not a 0x-prefixed 20-byte hex address: {account!r}")
    hex_part = account[2:]
    if not (hex_part.islower() or hex_part.isupper() or hex_part.isdigit()):
        lower = hex_part.lower()
        # EIP-55: a letter is upper case where the digest's nibble at its position is >= 8.
        digest = hash_(lower.encode("ascii")).hex()
        expected = "".join([c.upper() if n > "7" else c for c, n in zip(lower, digest)])
        if hex_part != expected:
            raise ValueError(f"bad EIP-55 checksum: {account}")
    return bytes.fromhex(hex_part)


def _amount(amount: int) -> int:
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount < UINT256_LIMIT:
        raise ValueError(f"amount must be an int in the uint256 range: {amount!r}")
    return amount


def _encode(account: str, amount: int, hash_: Hasher = keccak) -> bytes:
    """``abi.encode(address, uint256)``, byte for byte ``eth_abi.encode(["address", "uint256"],
    ...)`` (the tests check it), written out because eth_abi's general encoder would triple the
    time of a million-leaf build."""
    return _PAD + _address_bytes(account, hash_) + _amount(amount).to_bytes(32, "big")


def leaf_hash(account: str, amount: int) -> bytes:
    """The standard leaf ``keccak256(bytes.concat(keccak256(abi.encode(account, amount))))``."""
    return keccak(keccak(_encode(account, amount)))


def _hex32(value: bytes | str) -> bytes:
    if isinstance(value, str):
        value = bytes.fromhex(value.removeprefix("0x").removeprefix("0X"))
    value = bytes(value)
    if len(value) != 32:
        raise ValueError("expected 32 bytes")
    return value


def verify(root: bytes | str, account: str, amount: int, proof: Sequence[bytes | str]) -> bool:
    """True when ``proof`` proves the leaf ``(account, amount)`` under ``root``, as Solidity's
    ``MerkleProof.verify`` decides it.

    ``root`` and the proof's nodes may be bytes or hex strings. Malformed input (a bad address, an
    amount out of range, a node that is not 32 bytes) is not a valid proof: it returns False.
    """
    try:
        node = leaf_hash(account, amount)
        for sibling in map(_hex32, proof):
            node = keccak(node + sibling) if node <= sibling else keccak(sibling + node)
        return node == _hex32(root)
    except (ValueError, TypeError):
        return False


class MerkleTree:
    """A StandardMerkleTree of ``(address, uint256)`` leaves; build it with :meth:`of`."""

    __slots__ = ("_nodes", "_size")

    verify = staticmethod(verify)

    def __init__(self, nodes: bytearray, size: int) -> None:
        # 2 * size - 1 nodes of 32 bytes in array layout; the leaves, sorted descending, at the end.
        self._nodes = nodes
        self._size = size

    @classmethod
    def of(cls, entries: Iterable[tuple[str, int]]) -> MerkleTree:
        """Builds the tree of ``(account, cumulative_amount)`` entries, in any order.

        Raises ValueError for no entries, a malformed address (a mixed-case address must be EIP-55
        checksummed), an amount outside uint256, or the same account twice: a reward tree holds
        one cumulative amount per account (with two leaves, the account could claim the larger).
        """
        return cls._build(entries, positions=False)[0]

    @classmethod
    def with_positions(cls, entries: Iterable[tuple[str, int]]) -> tuple[MerkleTree, list[int]]:
        """:meth:`of`, and for each entry (in the order given) the index of its leaf in the node
        array (:attr:`nodes`): what a store of the tree keeps per account, so that a proof is the
        nodes at :meth:`sibling_indexes` of it, read without the tree in memory."""
        return cls._build(entries, positions=True)

    @classmethod
    def _build(cls, entries, positions: bool):
        hash_ = _fast_keccak()
        leaves = []
        seen = set()
        for account, amount in entries:
            encoded = _encode(account, amount, hash_)
            address = encoded[12:32]
            if address in seen:
                raise ValueError(f"account appears twice: {account}")
            seen.add(address)
            leaves.append(hash_(hash_(encoded)))
        del seen
        size = len(leaves)
        if size == 0:
            raise ValueError("a Merkle tree needs at least one entry")
        in_order = list(leaves) if positions else None
        leaves.sort(reverse=True)
        inner = size - 1
        located = None
        if positions:
            where = {leaf: inner + k for k, leaf in enumerate(leaves)}
            located = [where[leaf] for leaf in in_order]
            del where, in_order
        nodes = bytearray(32 * inner)
        nodes += b"".join(leaves)
        del leaves
        for i in range(inner - 1, -1, -1):
            left = 64 * i + 32
            pair = bytes(nodes[left:left + 64])  # children 2i + 1 and 2i + 2 are adjacent
            a, b = pair[:32], pair[32:]
            nodes[32 * i:32 * i + 32] = hash_(pair if a <= b else b + a)
        return cls(nodes, size), located

    @property
    def nodes(self) -> bytearray:
        """The node array: ``2n - 1`` nodes of 32 bytes, the root first (not a copy)."""
        return self._nodes

    @staticmethod
    def sibling_indexes(index: int) -> list[int]:
        """The indexes of the nodes that make the proof of the leaf at node ``index``, leaf up."""
        siblings = []
        while index > 0:
            siblings.append(index + 1 if index % 2 else index - 1)
            index = (index - 1) // 2
        return siblings

    def __len__(self) -> int:
        return self._size

    @property
    def root(self) -> bytes:
        """The root (32 bytes)."""
        return bytes(self._nodes[:32])

    @property
    def root_hex(self) -> str:
        """The root as 0x-prefixed lowercase hex, as the npm package prints it."""
        return "0x" + self._nodes[:32].hex()

    def _node(self, index: int) -> bytes:
        return bytes(self._nodes[32 * index:32 * index + 32])

    def _leaf_index(self, leaf: bytes) -> int:
        """Array index of ``leaf``, by binary search over the leaves (descending, at the end)."""
        first, end = self._size - 1, 2 * self._size - 1
        lo, hi = first, end
        while lo < hi:
            mid = (lo + hi) // 2
            if self._node(mid) > leaf:
                lo = mid + 1
            else:
                hi = mid
        if lo == end or self._node(lo) != leaf:
            raise KeyError("leaf is not in the tree")
        return lo

    def proof(self, account: str, amount: int) -> list[str]:
        """The proof of ``(account, amount)``: the sibling hashes from the leaf up, as 0x-prefixed
        lowercase hex strings (the npm package's format, accepted by web3 for ``bytes32[]``).

        Raises KeyError when the entry is not in the tree, ValueError when it is malformed.
        """
        index = self._leaf_index(leaf_hash(account, amount))
        proof = []
        while index > 0:
            sibling = index + 1 if index % 2 else index - 1
            proof.append("0x" + self._nodes[32 * sibling:32 * sibling + 32].hex())
            index = (index - 1) // 2
        return proof

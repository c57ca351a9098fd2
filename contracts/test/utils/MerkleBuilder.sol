// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/**
 * @dev Builds Merkle trees of reward leaves in tests exactly as `StandardMerkleTree.of(values, ["address",
 * "uint256"])` of the npm package by OpenZeppelin does (and `marketplace/rewards/merkle.py`): leaf = double keccak of
 * `abi.encode(account, amount)`; leaf hashes sorted ascending and stored reversed at the end of an array of
 * `2n - 1` nodes where node `i` has children `2i + 1` and `2i + 2`; inner node = keccak of its children in ascending
 * order; proof = siblings from the leaf up. Written independently of the contract under test. Quadratic sorting:
 * for the small trees of tests only.
 */
library MerkleBuilder {
    /// @dev The standard leaf of `(account, amount)`.
    function leaf(address account, uint256 amount) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(account, amount))));
    }

    /// @dev Keccak of the pair in ascending order (OpenZeppelin's commutative hash).
    function hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    /// @dev The tree (array layout, root at index 0) of `accounts[i]` with `amounts[i]`.
    function build(address[] memory accounts, uint256[] memory amounts) internal pure returns (bytes32[] memory) {
        require(accounts.length == amounts.length, "MerkleBuilder: length mismatch");
        bytes32[] memory leaves = new bytes32[](accounts.length);
        for (uint256 i; i < accounts.length; ++i) {
            leaves[i] = leaf(accounts[i], amounts[i]);
        }
        return buildFromLeaves(leaves);
    }

    /// @dev The tree (array layout, root at index 0) of already hashed leaves, in any order.
    function buildFromLeaves(bytes32[] memory leaves) internal pure returns (bytes32[] memory tree) {
        uint256 n = leaves.length;
        require(n > 0, "MerkleBuilder: no leaves");
        bytes32[] memory sorted = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            bytes32 value = leaves[i];
            uint256 j = i;
            while (j > 0 && sorted[j - 1] > value) {
                sorted[j] = sorted[j - 1];
                --j;
            }
            sorted[j] = value;
        }
        tree = new bytes32[](2 * n - 1);
        for (uint256 i; i < n; ++i) {
            tree[tree.length - 1 - i] = sorted[i];
        }
        for (uint256 i = n - 1; i > 0; --i) {
            tree[i - 1] = hashPair(tree[2 * i - 1], tree[2 * i]);
        }
    }

    /// @dev The root of `tree`.
    function root(bytes32[] memory tree) internal pure returns (bytes32) {
        return tree[0];
    }

    /// @dev The proof of `leafHash` in `tree`; reverts when the leaf is not in it.
    function proof(bytes32[] memory tree, bytes32 leafHash) internal pure returns (bytes32[] memory path) {
        uint256 index = type(uint256).max;
        for (uint256 i = tree.length / 2; i < tree.length; ++i) {
            if (tree[i] == leafHash) {
                index = i;
                break;
            }
        }
        require(index != type(uint256).max, "MerkleBuilder: leaf not in tree");
        uint256 depth;
        for (uint256 i = index; i > 0; i = (i - 1) / 2) {
            ++depth;
        }
        path = new bytes32[](depth);
        for (uint256 k; index > 0; ++k) {
            path[k] = tree[index % 2 == 1 ? index + 1 : index - 1];
            index = (index - 1) / 2;
        }
    }

    /// @dev The proof of `(account, amount)` in `tree`.
    function proof(bytes32[] memory tree, address account, uint256 amount) internal pure returns (bytes32[] memory) {
        return proof(tree, leaf(account, amount));
    }
}

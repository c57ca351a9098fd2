// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Vm} from "./utils/Test.sol";
import {MerkleBuilder} from "./utils/MerkleBuilder.sol";
import {RewardDistributorBase} from "./RewardDistributor.t.sol";
import {RewardDistributor} from "../src/RewardDistributor.sol";

/**
 * @dev Gas of {RewardDistributor-claim} with a proof of depth 20 (a tree of a million leaves), estimated as a
 * transaction receipt would show it: 21,000 + calldata + the call's own gas (no refunds on this path). Each scene is
 * prepared in `setUp`, a transaction of its own, so the measured call starts on cold accounts and storage. The
 * claimant already holds the token, as in `bench/gas.py`, whose anvil receipts are the authoritative figures; these
 * tests keep a regression from slipping through `forge test`. The limits are what the contract before `totalClaimed`
 * (OpenZeppelin's `MerkleProof`, no state write) cost in the same scenes: tracking the total must not make claims
 * dearer. Run with `-vv` to see the numbers.
 */
abstract contract RewardDistributorGasBase is RewardDistributorBase {
    event log_named_uint(string key, uint256 val);

    uint256 internal constant FIRST_CLAIM_MAX = 82_611;
    uint256 internal constant REPEAT_CLAIM_MAX = 65_499;
    address internal constant CLAIMANT = address(0xC1A1A7);

    bytes internal data;

    function setUp() public virtual override {
        super.setUp();
        vm.prank(owner);
        token.mint(CLAIMANT, 1e6);
    }

    /// @dev A root for `account` and `amount` with a proof of 20 arbitrary siblings.
    function depth20(address account, uint256 amount, uint256 salt)
        internal
        pure
        returns (bytes32 root, bytes32[] memory proof)
    {
        proof = new bytes32[](20);
        root = MerkleBuilder.leaf(account, amount);
        for (uint256 i; i < 20; ++i) {
            proof[i] = keccak256(abi.encode("sibling", salt, i));
            root = MerkleBuilder.hashPair(root, proof[i]);
        }
    }

    function claimData(uint256 epoch, uint256 amount) internal returns (bytes memory) {
        (bytes32 root, bytes32[] memory proof) = depth20(CLAIMANT, amount, epoch);
        proposeAndMature(epoch, root);
        return abi.encodeCall(RewardDistributor.claim, (CLAIMANT, amount, proof));
    }

    function measure(string memory label, uint256 limit) internal {
        (bool ok, bytes memory result) = address(distributor).call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
        Vm.Gas memory g = vm.lastCallGas();
        uint256 gasUsed = 21_000 + g.gasTotalUsed;
        for (uint256 i; i < data.length; ++i) {
            gasUsed += data[i] == 0 ? 4 : 16;
        }
        emit log_named_uint(label, gasUsed);
        assertTrue(gasUsed <= limit, string.concat(label, " costs more than before totalClaimed"));
    }
}

/// @dev The account's first claim: `claimed` goes from zero to non-zero. The root matured, not promoted.
contract RewardDistributorGasFirstClaimTest is RewardDistributorGasBase {
    function setUp() public override {
        super.setUp();
        data = claimData(1, 5_000_000);
    }

    function test_Gas_ClaimFirst() public {
        measure("claim, first (depth 20)", FIRST_CLAIM_MAX);
    }
}

/// @dev The same account again in the next epoch (whose proposal promoted the first root).
contract RewardDistributorGasRepeatClaimTest is RewardDistributorGasBase {
    function setUp() public override {
        super.setUp();
        (bool ok,) = address(distributor).call(claimData(1, 5_000_000));
        assertTrue(ok, "first claim");
        data = claimData(2, 9_000_000);
    }

    function test_Gas_ClaimRepeat() public {
        measure("claim, repeat (depth 20)", REPEAT_CLAIM_MAX);
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/**
 * @dev The subset of Foundry cheatcodes used by our tests (forge-std is not available from npm).
 * See https://getfoundry.sh/reference/cheatcodes/overview for their semantics.
 */
interface Vm {
    function addr(uint256 privateKey) external pure returns (address);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function label(address account, string calldata newLabel) external;
    function assume(bool condition) external pure;
    function warp(uint256 newTimestamp) external;
    function prank(address msgSender) external;
    function startPrank(address msgSender) external;
    function stopPrank() external;
    function expectRevert(bytes4 revertData) external;
    function expectRevert(bytes calldata revertData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData, address emitter) external;
    function toString(address value) external pure returns (string memory);
    function toString(bytes32 value) external pure returns (string memory);
    function toString(uint256 value) external pure returns (string memory);
    function toString(bool value) external pure returns (string memory);

    // State snapshots, gas of the last call and recorded logs (used by the DataMarket tests).
    struct Gas {
        uint64 gasLimit;
        uint64 gasTotalUsed;
        uint64 gasMemoryUsed;
        int64 gasRefunded;
        uint64 gasRemaining;
    }

    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    function snapshotState() external returns (uint256 snapshotId);
    function revertToState(uint256 snapshotId) external returns (bool success);
    function lastCallGas() external view returns (Gas memory gas);
    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory logs);

    // ---- Added for the RewardDistributor tests (packed storage at its limits) ----
    function store(address target, bytes32 slot, bytes32 value) external;
    function load(address target, bytes32 slot) external view returns (bytes32 data);
}

/**
 * @dev Minimal base for forge tests: the cheatcode handle, `bound` for fuzz inputs and assertions that revert with
 * a message showing both values.
 */
abstract contract Test {
    address internal constant VM_ADDRESS = address(uint160(uint256(keccak256("hevm cheat code"))));
    Vm internal constant vm = Vm(VM_ADDRESS);

    /// @dev Maps `x` into the inclusive range [`min`, `max`], keeping small values unchanged when possible.
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        if (min == 0 && max == type(uint256).max) return x;
        if (x >= min && x <= max) return x;
        return min + (x % (max - min + 1));
    }

    function assertTrue(bool condition, string memory err) internal pure {
        if (!condition) revert(string.concat("assertion failed: ", err));
    }

    function assertFalse(bool condition, string memory err) internal pure {
        assertTrue(!condition, err);
    }

    function assertEq(uint256 a, uint256 b, string memory err) internal pure {
        if (a != b) _fail(err, vm.toString(a), vm.toString(b));
    }

    function assertEq(address a, address b, string memory err) internal pure {
        if (a != b) _fail(err, vm.toString(a), vm.toString(b));
    }

    function assertEq(bytes32 a, bytes32 b, string memory err) internal pure {
        if (a != b) _fail(err, vm.toString(a), vm.toString(b));
    }

    function assertEq(bool a, bool b, string memory err) internal pure {
        if (a != b) _fail(err, vm.toString(a), vm.toString(b));
    }

    function assertEq(string memory a, string memory b, string memory err) internal pure {
        if (keccak256(bytes(a)) != keccak256(bytes(b))) _fail(err, a, b);
    }

    function _fail(string memory err, string memory left, string memory right) private pure {
        revert(string.concat("assertion failed: ", err, " (left: ", left, ", right: ", right, ")"));
    }
}

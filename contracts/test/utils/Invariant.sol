// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/**
 * @dev Minimal replacement for forge-std's StdInvariant (forge-std is not available from npm). Forge's invariant
 * runner calls `targetContracts()` and `targetSelectors()` on the test contract when they exist: only the listed
 * contracts and selectors are called at random. Register them in `setUp` with {targetContract} and
 * {targetSelector}.
 */
abstract contract Invariant {
    /// @dev Same layout as forge-std's `StdInvariant.FuzzSelector`, which forge decodes.
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    address[] private _targetedContracts;
    FuzzSelector[] private _targetedSelectors;

    /// @dev Adds `target` to the contracts the invariant runner calls.
    function targetContract(address target) internal {
        _targetedContracts.push(target);
    }

    /// @dev Restricts the calls to `selector.addr` to `selector.selectors`.
    function targetSelector(FuzzSelector memory selector) internal {
        _targetedSelectors.push(selector);
    }

    /// @dev Read by forge: the contracts to call.
    function targetContracts() public view returns (address[] memory) {
        return _targetedContracts;
    }

    /// @dev Read by forge: the functions to call on each targeted contract.
    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetedSelectors;
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {TestUSDC} from "../../src/TestUSDC.sol";

/**
 * @dev TestUSDC with a blocklist of receivers, like USDC's blacklist, for the RewardDistributor tests: `transfer` to
 * a blocked address reverts with {RewardBlocklistTokenBlocked}, or returns false when `returnFalse` is set (the other
 * failure mode SafeERC20 handles). Anyone may change the list.
 */
contract RewardBlocklistToken is TestUSDC {
    mapping(address account => bool) public blocked;
    bool public returnFalse;

    error RewardBlocklistTokenBlocked(address to);

    constructor(address initialOwner) TestUSDC(initialOwner) {}

    function setBlocked(address account, bool isBlocked) external {
        blocked[account] = isBlocked;
    }

    function setReturnFalse(bool value) external {
        returnFalse = value;
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (blocked[to]) {
            if (returnFalse) return false;
            revert RewardBlocklistTokenBlocked(to);
        }
        return super.transfer(to, value);
    }
}

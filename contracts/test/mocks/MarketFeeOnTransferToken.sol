// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {TestUSDC} from "../../src/TestUSDC.sol";

/**
 * @dev TestUSDC (permit and EIP-3009 included) that burns 1% of every transfer between two accounts, so the receiver
 * gets less than the amount sent. {DataMarket} must reject it on every purchase path.
 */
contract MarketFeeOnTransferToken is TestUSDC {
    constructor(address initialOwner) TestUSDC(initialOwner) {}

    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) {
            super._update(from, to, value);
            return;
        }
        uint256 burnt = value / 100;
        super._update(from, address(0), burnt);
        super._update(from, to, value - burnt);
    }
}

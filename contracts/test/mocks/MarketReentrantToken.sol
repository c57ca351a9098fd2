// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {TestUSDC} from "../../src/TestUSDC.sol";

/**
 * @dev TestUSDC that, once armed, calls `target` with `payload` from inside its next transfer and records the
 * outcome: a stand-in for a token with receiver hooks trying to re-enter {DataMarket}.
 */
contract MarketReentrantToken is TestUSDC {
    address public target;
    bytes public payload;
    bool public armed;
    bool public called;
    bool public lastSuccess;
    bytes public lastReturnData;

    constructor(address initialOwner) TestUSDC(initialOwner) {}

    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
        armed = true;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (armed && from != address(0) && to != address(0)) {
            armed = false;
            called = true;
            (lastSuccess, lastReturnData) = target.call(payload);
        }
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {TestUSDC} from "../../src/TestUSDC.sol";

/**
 * @dev TestUSDC whose transfers to a chosen receiver burn a fixed amount of gas first: a stand-in for a token whose
 * transfer costs a lot, which a caller could starve of gas to make it fail on purpose.
 */
contract MarketGasHungryToken is TestUSDC {
    address public hungry;
    uint256 public burn;

    constructor(address initialOwner) TestUSDC(initialOwner) {}

    function setHungry(address receiver, uint256 gasToBurn) external {
        hungry = receiver;
        burn = gasToBurn;
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (to == hungry) {
            uint256 start = gasleft();
            while (start - gasleft() < burn) {} // runs out of gas when given less than `burn`
        }
        return super.transfer(to, value);
    }
}

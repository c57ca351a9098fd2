// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// A 6-decimal token with no EIP-2612 permit and no EIP-5267 domain, for the buying page's
/// approve-then-purchase path (tests only).
contract PlainToken is ERC20 {
    constructor() ERC20("Plain Dollar", "PLAIN") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

interface IBatchedMarket {
    function createListing(address token, uint256 price, address payout, bytes32 contentHash, uint32 disputeWindow)
        external
        returns (uint256 listingId);
    function purchase(uint256 listingId, uint256 maxPrice) external returns (uint256 orderId);
}

/// @notice Bench only (bench/indexer.py): many calls to the real DataMarket in one transaction, so that a bench
/// makes tens of thousands of market events in a few thousand blocks. It owns the listings it creates and the orders
/// it pays for; nothing in the product uses it.
contract MarketBatcher {
    /// @notice Creates `count` listings owned (and paid out) to this contract, with distinct content hashes.
    function createListings(IBatchedMarket market, address token, uint256 price, uint32 window, uint256 count,
        uint256 salt) external returns (uint256 first, uint256 last)
    {
        for (uint256 i = 0; i < count; i++) {
            uint256 id = market.createListing(token, price, address(this), keccak256(abi.encode(salt, i)), window);
            if (i == 0) first = id;
            last = id;
        }
    }

    /// @notice Buys each listing in `ids` at `price` with this contract's tokens.
    function purchaseAll(IBatchedMarket market, IERC20 token, uint256[] calldata ids, uint256 price) external {
        token.approve(address(market), price * ids.length);
        for (uint256 i = 0; i < ids.length; i++) {
            market.purchase(ids[i], price);
        }
    }
}

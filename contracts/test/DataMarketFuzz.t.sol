// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {DataMarketBase} from "./DataMarketBase.t.sol";
import {DataMarket} from "../src/DataMarket.sol";

/// @dev Fuzz tests of {DataMarket} over prices, windows, refund shares, fee rates, times and amounts.
contract DataMarketFuzzTest is DataMarketBase {
    uint256 internal constant MAX_PRICE = type(uint88).max;

    /// @dev Windows of any length down to zero (the admin's minimum is tested in the unit tests).
    function setUp() public override {
        super.setUp();
        _allowAnyWindow();
    }

    /// @dev Any split of a disputed order pays out exactly what the buyer paid, by the documented formulas.
    function testFuzz_Resolve_SplitsExactly(uint256 price, uint256 refundBps, uint256 feeBps) public {
        price = bound(price, 1, MAX_PRICE);
        refundBps = bound(refundBps, 0, 10_000);
        feeBps = bound(feeBps, 0, 1000);
        _setFee(feeBps);
        uint256 listingId = _fundedListing(price, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        uint256 buyerBefore = token.balanceOf(buyer);
        vm.prank(buyer);
        market.dispute(orderId);

        vm.prank(ARBITER);
        // forge-lint: disable-next-line(unsafe-typecast) -- bounded to 10000
        market.resolve(orderId, uint16(refundBps));

        uint256 refund = token.balanceOf(buyer) - buyerBefore;
        uint256 ownerAmount = token.balanceOf(PAYOUT);
        uint256 fee = token.balanceOf(TREASURY);
        assertEq(ownerAmount + fee + refund, price, "owner + treasury + refund == amount");
        assertEq(refund, price * refundBps / 10_000, "refund");
        assertEq(fee, (price - refund) * feeBps / 10_000, "fee on the owner's part only");
        assertEq(token.balanceOf(address(market)), 0, "nothing left behind");
        assertEq(market.totalEscrowed(address(token)), 0, "nothing escrowed");
        assertEq(market.hasAccess(listingId, buyer), refundBps != 10_000, "access unless fully refunded");
        _assertStatus(
            orderId, refundBps == 10_000 ? DataMarket.OrderStatus.Refunded : DataMarket.OrderStatus.Resolved, "status"
        );
    }

    /// @dev A confirmation pays the owner and the treasury exactly the amount, at the order's fee rate.
    function testFuzz_Confirm_PaysExactly(uint256 price, uint256 feeBps, uint256 elapsed) public {
        price = bound(price, 1, MAX_PRICE);
        feeBps = bound(feeBps, 0, 1000);
        _setFee(feeBps);
        uint256 orderId = _buy(buyer, _fundedListing(price, WINDOW));
        vm.warp(START + bound(elapsed, 0, 365 days));
        vm.prank(buyer);
        market.confirm(orderId);

        uint256 fee = price * feeBps / 10_000;
        assertEq(token.balanceOf(TREASURY), fee, "fee");
        assertEq(token.balanceOf(PAYOUT), price - fee, "owner");
        assertEq(token.balanceOf(address(market)), 0, "nothing left behind");
    }

    /// @dev `release` pays exactly once the window has passed, and does nothing before.
    function testFuzz_Release_OnlyOnceMatured(uint256 price, uint256 window, uint256 elapsed, uint256 feeBps) public {
        price = bound(price, 1, MAX_PRICE);
        window = bound(window, 1, 30 days);
        elapsed = bound(elapsed, 0, 60 days);
        feeBps = bound(feeBps, 0, 1000);
        _setFee(feeBps);
        // forge-lint: disable-next-line(unsafe-typecast) -- bounded to 30 days
        uint256 orderId = _buy(buyer, _fundedListing(price, uint32(window)));
        vm.warp(START + elapsed);
        market.release(_one(orderId));

        if (elapsed >= window) {
            uint256 fee = price * feeBps / 10_000;
            _assertStatus(orderId, DataMarket.OrderStatus.Released, "released");
            assertEq(token.balanceOf(PAYOUT), price - fee, "owner");
            assertEq(token.balanceOf(TREASURY), fee, "fee");
            assertEq(market.totalEscrowed(address(token)), 0, "escrow");
        } else {
            _assertStatus(orderId, DataMarket.OrderStatus.Open, "still open");
            assertEq(token.balanceOf(PAYOUT) + token.balanceOf(TREASURY), 0, "nothing paid");
            assertEq(market.totalEscrowed(address(token)), price, "escrow");
        }
    }

    /// @dev A dispute is accepted exactly while the window is open.
    function testFuzz_Dispute_OnlyBeforeWindowCloses(uint256 window, uint256 elapsed) public {
        window = bound(window, 1, 30 days);
        elapsed = bound(elapsed, 0, 60 days);
        // forge-lint: disable-next-line(unsafe-typecast) -- bounded to 30 days
        uint256 orderId = _buy(buyer, _list(PRICE, uint32(window)));
        vm.warp(START + elapsed);
        if (elapsed >= window) {
            vm.expectRevert(
                abi.encodeWithSelector(DataMarket.DataMarketDisputeWindowClosed.selector, orderId, START + window)
            );
        }
        vm.prank(buyer);
        market.dispute(orderId);
        if (elapsed < window) _assertStatus(orderId, DataMarket.OrderStatus.Disputed, "disputed");
    }

    /// @dev The fee rate in force at purchase is the one charged, whatever the admin sets later.
    function testFuzz_FeeRateFixedAtPurchase(uint256 price, uint256 feeAtPurchase, uint256 feeLater) public {
        price = bound(price, 1, MAX_PRICE);
        feeAtPurchase = bound(feeAtPurchase, 0, 1000);
        feeLater = bound(feeLater, 0, 1000);
        _setFee(feeAtPurchase);
        uint256 orderId = _buy(buyer, _fundedListing(price, WINDOW));
        _setFee(feeLater);
        vm.warp(START + WINDOW);
        market.release(_one(orderId));
        assertEq(market.getOrder(orderId).feeBps, feeAtPurchase, "order rate");
        assertEq(token.balanceOf(TREASURY), price * feeAtPurchase / 10_000, "charged at the purchase rate");
    }

    /// @dev `maxPrice` below the price always reverts, at or above it always buys at the price.
    function testFuzz_Purchase_RespectsMaxPrice(uint256 price, uint256 maxPrice) public {
        price = bound(price, 1, MAX_PRICE);
        uint256 listingId = _fundedListing(price, WINDOW);
        if (maxPrice < price) {
            vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketPriceAboveMax.selector, price, maxPrice));
        }
        vm.prank(buyer);
        market.purchase(listingId, maxPrice);
        if (maxPrice >= price) {
            assertEq(market.getOrder(1).amount, price, "charged the price, not the maximum");
            assertEq(token.balanceOf(address(market)), price, "escrowed");
        }
    }

    /// @dev Permits for any `maxPrice` at or above the price buy at the price and leave the rest allowed.
    function testFuzz_PurchaseWithPermit(uint256 price, uint256 slack) public {
        price = bound(price, 1, MAX_PRICE);
        slack = bound(slack, 0, type(uint256).max - price);
        uint256 listingId = _fundedListing(price, WINDOW);
        vm.prank(buyer);
        token.approve(address(market), 0);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _permit(BUYER_PK, address(token), price + slack, deadline);
        vm.prank(buyer);
        market.purchaseWithPermit(listingId, price + slack, deadline, v, r, s);
        uint256 expected = price + slack == type(uint256).max ? type(uint256).max : slack;
        assertEq(token.allowance(buyer, address(market)), expected, "the rest stays allowed");
        assertEq(market.totalEscrowed(address(token)), price, "escrowed");
    }

    /// @dev An authorization pays only if its value is exactly the price. Three runs in four sign the price itself
    /// (so the success branch is taken in most runs), the rest a value near it or anywhere.
    function testFuzz_Authorization_ValueMustEqualPrice(uint256 price, uint256 value, bytes32 nonce) public {
        price = bound(price, 1, MAX_PRICE);
        uint256 kind = uint256(keccak256(abi.encode(value))) % 8;
        if (kind < 6) value = price;
        else if (kind == 6) value = price + 1 - 2 * (value % 2) * (price > 1 ? 1 : 0);
        else value = bound(value, 1, MAX_PRICE);
        uint256 listingId = _fundedListing(price, WINDOW);
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), value, nonce);
        if (value != price) {
            vm.expectRevert(
                abi.encodeWithSelector(DataMarket.DataMarketAuthorizationValueMismatch.selector, value, price)
            );
        }
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);
        assertEq(token.authorizationState(buyer, nonce), value == price, "nonce used only on success");
        assertEq(market.totalEscrowed(address(token)), value == price ? price : 0, "escrowed");
    }

    /// @dev A zero window pays owner and treasury in the purchase itself, exactly.
    function testFuzz_ZeroWindow_PaysAtPurchase(uint256 price, uint256 feeBps) public {
        price = bound(price, 1, MAX_PRICE);
        feeBps = bound(feeBps, 0, 1000);
        _setFee(feeBps);
        uint256 orderId = _buy(buyer, _fundedListing(price, 0));
        uint256 fee = price * feeBps / 10_000;
        assertEq(token.balanceOf(PAYOUT), price - fee, "owner");
        assertEq(token.balanceOf(TREASURY), fee, "fee");
        assertEq(token.balanceOf(address(market)), 0, "nothing held");
        assertEq(market.totalEscrowed(address(token)), 0, "nothing escrowed");
        _assertStatus(orderId, DataMarket.OrderStatus.Released, "released");
    }

    /// @dev Surplus can be returned up to the last unit, and never a unit of escrow.
    function testFuzz_ReturnSurplus_NeverTouchesEscrow(uint256 price, uint256 extra, uint256 amount) public {
        price = bound(price, 1, MAX_PRICE);
        extra = bound(extra, 0, MAX_PRICE);
        uint256 listingId = _fundedListing(price, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        token.mint(address(market), extra);
        amount = bound(amount, 0, price + extra);

        if (amount > extra) {
            vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketSurplusExceeded.selector, amount, extra));
        }
        if (amount == 0) {
            vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketInvalidSurplusReturn.selector, 0, _ref(1)));
        }
        vm.prank(ARBITER);
        market.returnSurplus(address(token), STRANGER, amount, _ref(1));

        uint256 returned = amount > extra ? 0 : amount;
        assertEq(token.balanceOf(STRANGER), returned, "returned");
        assertEq(market.surplus(address(token)), extra - returned, "surplus left");
        assertEq(token.balanceOf(address(market)), price + extra - returned, "balance");
        vm.prank(buyer);
        market.confirm(orderId);
        assertEq(token.balanceOf(PAYOUT) + token.balanceOf(TREASURY), price, "escrow pays out in full");
    }

    /// @dev Hand-packed order slots read back unchanged through the structs, for any field values.
    function testFuzz_PackedRecordsRoundTrip(
        uint256 price,
        uint256 window,
        uint256 feeBps,
        uint256 start,
        uint256 buyerPk,
        uint256 extraListings
    ) public {
        price = bound(price, 1, MAX_PRICE);
        window = bound(window, 0, 30 days);
        feeBps = bound(feeBps, 0, 1000);
        start = bound(start, 1, type(uint40).max);
        buyerPk = bound(buyerPk, 1, 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140);
        extraListings = bound(extraListings, 0, 3);
        address account = vm.addr(buyerPk);
        _setFee(feeBps);
        vm.warp(start);
        for (uint256 i; i < extraListings; ++i) {
            _list(PRICE, WINDOW);
        }
        token.mint(account, price);
        vm.prank(account);
        token.approve(address(market), price);
        // forge-lint: disable-next-line(unsafe-typecast) -- bounded to 30 days
        uint256 listingId = _list(price, uint32(window));
        if (start + window > type(uint40).max) {
            // An order's times are 40 bits: a window ending past 2^40 - 1 is refused, never wrapped.
            vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketTimeOutOfRange.selector, start + window));
            vm.prank(account);
            market.purchase(listingId, type(uint256).max);
            assertEq(market.orderOf(listingId, account), 0, "no order");
            return;
        }
        uint256 orderId = _buy(account, listingId);

        DataMarket.Order memory o = market.getOrder(orderId);
        assertEq(o.listingId, listingId, "listing");
        assertEq(o.buyer, account, "buyer");
        assertEq(o.amount, price, "amount");
        assertEq(o.releaseAt, start + window, "releaseAt");
        assertEq(o.feeBps, feeBps, "fee");
        assertEq(
            uint256(o.status),
            uint256(window == 0 ? DataMarket.OrderStatus.Released : DataMarket.OrderStatus.Open),
            "status"
        );
        assertEq(market.orderOf(listingId, account), orderId, "orderOf");
        assertTrue(market.hasAccess(listingId, account), "access");
        assertEq(market.totalEscrowed(address(token)), window == 0 ? 0 : price, "escrowed");
    }

    function _setFee(uint256 feeBps) internal {
        vm.prank(ADMIN);
        // forge-lint: disable-next-line(unsafe-typecast) -- callers bound it to 1000
        market.setFee(uint16(feeBps));
    }

    /// @dev An approved listing at `price`, with the buyer funded to pay it.
    function _fundedListing(uint256 price, uint32 window) internal returns (uint256) {
        token.mint(buyer, price);
        return _list(price, window);
    }
}

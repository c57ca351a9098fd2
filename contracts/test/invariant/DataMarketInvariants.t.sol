// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "../utils/Test.sol";
import {Invariant} from "../utils/Invariant.sol";
import {DataMarket} from "../../src/DataMarket.sol";
import {TestUSDC} from "../../src/TestUSDC.sol";
import {DataMarketHandler} from "./DataMarketHandler.sol";

/// @dev Invariants of {DataMarket} under the random sequences of {DataMarketHandler} (runs and depth from
/// foundry.toml).
contract DataMarketInvariantTest is Test, Invariant {
    DataMarket internal market;
    DataMarketHandler internal handler;
    TestUSDC[2] internal tokens;
    address internal admin;
    address internal arbiter;

    function setUp() public {
        vm.warp(1_700_000_000);
        tokens[0] = new TestUSDC(address(this));
        tokens[1] = new TestUSDC(address(this));
        market = new DataMarket(address(0xAD), address(0x7EA5), 250);
        handler = new DataMarketHandler(market, tokens[0], tokens[1]);
        tokens[0].transferOwnership(address(handler));
        tokens[1].transferOwnership(address(handler));

        admin = handler.ADMIN();
        arbiter = handler.ARBITER();
        address moderator = handler.MODERATOR();
        address relayer = handler.RELAYER();
        vm.startPrank(admin);
        market.grantRole(market.MODERATOR_ROLE(), moderator);
        market.grantRole(market.RELAYER_ROLE(), relayer);
        market.grantRole(market.ARBITER_ROLE(), arbiter);
        market.setTokenAllowed(address(tokens[0]), true, true);
        market.setTokenAllowed(address(tokens[1]), true, false);
        vm.stopPrank();

        // Weighted by repetition: listings, the three purchase kinds and settlement come up most, so that every run
        // has orders to settle.
        bytes4[40] memory weighted = [
            DataMarketHandler.createListing.selector,
            DataMarketHandler.createListing.selector,
            DataMarketHandler.createListing.selector,
            DataMarketHandler.setApproval.selector,
            DataMarketHandler.setApproval.selector,
            DataMarketHandler.setListingActive.selector,
            DataMarketHandler.updateListing.selector,
            DataMarketHandler.purchase.selector,
            DataMarketHandler.purchase.selector,
            DataMarketHandler.purchase.selector,
            DataMarketHandler.purchase.selector,
            DataMarketHandler.purchaseWithPermit.selector,
            DataMarketHandler.purchaseWithPermit.selector,
            DataMarketHandler.purchaseWithPermit.selector,
            DataMarketHandler.purchaseWithAuthorization.selector,
            DataMarketHandler.purchaseWithAuthorization.selector,
            DataMarketHandler.purchaseWithAuthorization.selector,
            DataMarketHandler.sendAuthorizationToToken.selector,
            DataMarketHandler.cancelAuthorization.selector,
            DataMarketHandler.replayAuthorization.selector,
            DataMarketHandler.transferToMarket.selector,
            DataMarketHandler.confirm.selector,
            DataMarketHandler.confirm.selector,
            DataMarketHandler.confirm.selector,
            DataMarketHandler.dispute.selector,
            DataMarketHandler.dispute.selector,
            DataMarketHandler.dispute.selector,
            DataMarketHandler.resolve.selector,
            DataMarketHandler.resolve.selector,
            DataMarketHandler.resolve.selector,
            DataMarketHandler.release.selector,
            DataMarketHandler.release.selector,
            DataMarketHandler.release.selector,
            DataMarketHandler.warp.selector,
            DataMarketHandler.warp.selector,
            DataMarketHandler.returnSurplus.selector,
            DataMarketHandler.togglePause.selector,
            DataMarketHandler.togglePause.selector,
            DataMarketHandler.setFee.selector,
            DataMarketHandler.setTokenAllowed.selector
        ];
        bytes4[] memory selectors = new bytes4[](weighted.length);
        for (uint256 i; i < weighted.length; ++i) {
            selectors[i] = weighted[i];
        }
        targetContract(address(handler));
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    /// @dev Per token, the escrowed total is the sum of the open and disputed orders' amounts, and the market holds at
    /// least that much.
    function invariant_EscrowIsSumOfOpenOrders() public view {
        uint256[2] memory open;
        for (uint256 i; i < handler.orderCount(); ++i) {
            DataMarket.Order memory o = market.getOrder(handler.orderAt(i));
            if (o.status == DataMarket.OrderStatus.Open || o.status == DataMarket.OrderStatus.Disputed) {
                open[_tokenIndex(market.getListing(o.listingId).token)] += o.amount;
            }
        }
        for (uint256 t; t < 2; ++t) {
            address token = address(tokens[t]);
            assertEq(market.totalEscrowed(token), open[t], "totalEscrowed == sum of open and disputed orders");
            assertTrue(market.totalEscrowed(token) <= tokens[t].balanceOf(address(market)), "escrow <= balance");
        }
    }

    /// @dev Surplus returns never touch escrow: the balance is exactly the escrow plus the surplus that came in minus
    /// what was returned.
    function invariant_SurplusReturnsNeverTouchEscrow() public view {
        for (uint256 t; t < 2; ++t) {
            address token = address(tokens[t]);
            uint256 surplusIn = handler.ghostSurplusIn(token);
            uint256 surplusOut = handler.ghostSurplusOut(token);
            assertTrue(surplusOut <= surplusIn, "returned no more than came in");
            assertEq(
                tokens[t].balanceOf(address(market)),
                market.totalEscrowed(token) + surplusIn - surplusOut,
                "balance == escrow + surplus"
            );
            assertEq(market.surplus(token), surplusIn - surplusOut, "surplus view");
        }
    }

    /// @dev Every settled order paid out exactly its amount (owner + treasury + refund), and every order is either
    /// settled or escrowed.
    function invariant_SettledOrdersPayOutExactly() public view {
        assertEq(handler.violations(), 0, handler.lastViolation());
        for (uint256 t; t < 2; ++t) {
            address token = address(tokens[t]);
            uint256 settled = handler.ghostSettled(token);
            assertEq(
                handler.ghostToOwners(token) + handler.ghostToTreasury(token) + handler.ghostRefunded(token),
                settled,
                "owner + treasury + refund == settled amounts"
            );
            assertEq(handler.ghostPaidIn(token), settled + market.totalEscrowed(token), "paid in == settled + escrow");
        }
    }

    /// @dev No authorization nonce paid for two orders, and no used or cancelled authorization was accepted again.
    function invariant_NoAuthorizationPaysTwice() public view {
        assertEq(handler.reusedAuthorizationSuccesses(), 0, "a used or cancelled authorization was accepted");
        for (uint256 i; i < handler.orderNonceCount(); ++i) {
            assertEq(handler.ordersPaidByNonce(handler.orderNonceAt(i)), 1, "one order per authorization");
        }
    }

    /// @dev The (listing, buyer) index finds every order, and access follows its status.
    function invariant_AccessFollowsOrders() public view {
        assertEq(market.orderCount(), handler.orderCount(), "every order was made by a tracked purchase");
        for (uint256 i; i < handler.orderCount(); ++i) {
            uint256 orderId = handler.orderAt(i);
            DataMarket.Order memory o = market.getOrder(orderId);
            assertEq(market.orderOf(o.listingId, o.buyer), orderId, "orderOf");
            assertEq(
                market.hasAccess(o.listingId, o.buyer), o.status != DataMarket.OrderStatus.Refunded, "hasAccess"
            );
        }
    }

    /**
     * @dev With the market paused, every open order can still be settled: confirmed by its buyer or disputed and
     * resolved before its release time, released after it; every disputed order can be resolved; all surplus can be
     * returned. Afterwards nothing is escrowed and the market is empty. Runs on a snapshot that is thrown away.
     */
    function invariant_PausedMarketStillSettlesEveryOrder() public {
        uint256 snapshot = vm.snapshotState();
        if (!market.paused()) {
            vm.prank(admin);
            market.pause();
        }
        for (uint256 i; i < handler.orderCount(); ++i) {
            _settleWhilePaused(handler.orderAt(i));
        }
        for (uint256 t; t < 2; ++t) {
            address token = address(tokens[t]);
            assertEq(market.totalEscrowed(token), 0, "nothing escrowed once every order is settled");
            uint256 surplus = market.surplus(token);
            vm.prank(arbiter);
            market.returnSurplus(token, address(0x5EED), surplus, keccak256("last"));
            assertEq(tokens[t].balanceOf(address(market)), 0, "the market is empty");
        }
        vm.revertToState(snapshot);
    }

    function _settleWhilePaused(uint256 orderId) internal {
        DataMarket.Order memory o = market.getOrder(orderId);
        if (o.status == DataMarket.OrderStatus.Open) {
            if (block.timestamp >= o.releaseAt) {
                market.release(_single(orderId));
            } else if (orderId % 2 == 0) {
                vm.prank(o.buyer);
                market.confirm(orderId);
            } else {
                vm.prank(o.buyer);
                market.dispute(orderId);
                o.status = DataMarket.OrderStatus.Disputed;
            }
        }
        if (o.status == DataMarket.OrderStatus.Disputed) {
            vm.prank(arbiter);
            // forge-lint: disable-next-line(unsafe-typecast) -- below 10001
            market.resolve(orderId, uint16(orderId % 10_001));
        }
        DataMarket.OrderStatus status = market.getOrder(orderId).status;
        assertTrue(
            status == DataMarket.OrderStatus.Released || status == DataMarket.OrderStatus.Refunded
                || status == DataMarket.OrderStatus.Resolved,
            "settled while paused"
        );
    }

    event log_named_uint(string key, uint256 val);

    /// @dev Shows (with `-vv`) what the last run's handler calls achieved.
    function afterInvariant() public {
        string[20] memory names = [
            "createListing",
            "setApproval",
            "setListingActive",
            "updateListing",
            "purchase",
            "purchaseWithPermit",
            "purchaseWithPermit front-run",
            "purchaseWithAuthorization",
            "sendAuthorizationToToken",
            "cancelAuthorization",
            "replayAuthorization",
            "transferToMarket",
            "confirm",
            "dispute",
            "resolve",
            "release",
            "returnSurplus",
            "togglePause",
            "setFee",
            "setTokenAllowed"
        ];
        for (uint256 i; i < names.length; ++i) {
            emit log_named_uint(names[i], handler.calls(names[i]));
        }
        emit log_named_uint("settlements while paused", handler.pausedSettlements());
        emit log_named_uint("orders", handler.orderCount());
        emit log_named_uint("handler calls", handler.totalCalls());
    }

    function _single(uint256 id) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](1);
        ids[0] = id;
    }

    function _tokenIndex(address token) internal view returns (uint256) {
        return token == address(tokens[0]) ? 0 : 1;
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "../utils/Test.sol";
import {Invariant} from "../utils/Invariant.sol";
import {DataMarket} from "../../src/DataMarket.sol";
import {TestUSDC} from "../../src/TestUSDC.sol";
import {MarketRevertingToken} from "../mocks/MarketRevertingToken.sol";
import {DataMarketHandler} from "./DataMarketHandler.sol";

/**
 * @dev Invariants of {DataMarket} under the random sequences of {DataMarketHandler} (runs and depth from
 * foundry.toml). Each one is shown able to fail by a mutant under `contracts/mutants/` (`script/mutants.sh`). A
 * revert inside the handler fails the run: the handler catches and predicts every revert it expects.
 * forge-config: default.invariant.fail-on-revert = true
 */
contract DataMarketInvariantTest is Test, Invariant {
    DataMarket internal market;
    DataMarketHandler internal handler;
    TestUSDC[3] internal tokens;
    MarketRevertingToken internal blocklist;
    address internal admin;
    address internal arbiter;

    function setUp() public {
        vm.warp(1_700_000_000);
        tokens[0] = new TestUSDC(address(this));
        tokens[1] = new TestUSDC(address(this));
        blocklist = new MarketRevertingToken(address(this));
        tokens[2] = blocklist;
        market = new DataMarket(address(0xAD), address(0x7EA5), 250);
        handler = new DataMarketHandler(market, tokens[0], tokens[1], blocklist);
        for (uint256 t; t < 3; ++t) {
            tokens[t].transferOwnership(address(handler));
        }

        admin = handler.ADMIN();
        arbiter = handler.ARBITER();
        vm.startPrank(admin);
        market.grantRole(market.MODERATOR_ROLE(), handler.MODERATOR());
        market.grantRole(market.RELAYER_ROLE(), handler.RELAYER());
        market.grantRole(market.ARBITER_ROLE(), arbiter);
        market.setTokenAllowed(address(tokens[0]), true, true);
        market.setTokenAllowed(address(tokens[1]), true, false);
        market.setTokenAllowed(address(tokens[2]), true, true);
        market.setMinDisputeWindow(0);
        vm.stopPrank();
        // Some receivers start blocked in the blocklisting token, so that credits come up in short runs too.
        blocklist.setBlocked(handler.payoutAt(2), true);
        blocklist.setBlocked(handler.buyerAt(3), true);
        blocklist.setBlocked(handler.OTHER_TREASURY(), true);

        // Weighted by repetition: listings, the three purchase kinds and settlement come up most, so that every run
        // has orders to settle, credits to withdraw and surplus to return.
        bytes4[52] memory weighted = [
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
            DataMarketHandler.purchaseWithAuthorization.selector,
            DataMarketHandler.purchaseWithAuthorization.selector,
            DataMarketHandler.purchaseWithAuthorization.selector,
            DataMarketHandler.sendAuthorizationToToken.selector,
            DataMarketHandler.cancelAuthorization.selector,
            DataMarketHandler.replayAuthorization.selector,
            DataMarketHandler.replayAuthorization.selector,
            DataMarketHandler.reuseNonce.selector,
            DataMarketHandler.transferToMarket.selector,
            DataMarketHandler.confirm.selector,
            DataMarketHandler.confirm.selector,
            DataMarketHandler.confirm.selector,
            DataMarketHandler.dispute.selector,
            DataMarketHandler.dispute.selector,
            DataMarketHandler.dispute.selector,
            DataMarketHandler.resolve.selector,
            DataMarketHandler.resolve.selector,
            DataMarketHandler.settleExpiredDispute.selector,
            DataMarketHandler.settleExpiredDispute.selector,
            DataMarketHandler.release.selector,
            DataMarketHandler.release.selector,
            DataMarketHandler.release.selector,
            DataMarketHandler.withdraw.selector,
            DataMarketHandler.withdraw.selector,
            DataMarketHandler.returnSurplus.selector,
            DataMarketHandler.returnSurplus.selector,
            DataMarketHandler.returnSurplusBatch.selector,
            DataMarketHandler.setBlocked.selector,
            DataMarketHandler.setBlocked.selector,
            DataMarketHandler.setBlocked.selector,
            DataMarketHandler.setTreasury.selector,
            DataMarketHandler.warp.selector,
            DataMarketHandler.warp.selector,
            DataMarketHandler.togglePause.selector,
            DataMarketHandler.togglePause.selector,
            DataMarketHandler.setFee.selector,
            DataMarketHandler.setTokenAllowed.selector,
            DataMarketHandler.setDisputePeriod.selector,
            DataMarketHandler.setMinDisputeWindow.selector
        ];
        bytes4[] memory selectors = new bytes4[](weighted.length);
        for (uint256 i; i < weighted.length; ++i) {
            selectors[i] = weighted[i];
        }
        targetContract(address(handler));
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    /// @dev Per token, the escrowed total is the sum of the open and disputed orders' amounts (as the market reports
    /// its orders, and as the model expects), and the market holds at least that plus every credit it owes.
    function invariant_EscrowIsSumOfOpenOrders() public view {
        uint256[3] memory open;
        for (uint256 i; i < handler.orderCount(); ++i) {
            DataMarket.Order memory o = market.getOrder(handler.orderAt(i));
            if (o.status == DataMarket.OrderStatus.Open || o.status == DataMarket.OrderStatus.Disputed) {
                open[_tokenIndex(o.token)] += o.amount;
            }
        }
        for (uint256 t; t < 3; ++t) {
            address token = address(tokens[t]);
            assertEq(market.totalEscrowed(token), open[t], "totalEscrowed == sum of open and disputed orders");
            assertEq(market.totalEscrowed(token), handler.expectedEscrow(token), "totalEscrowed == the model's");
            assertTrue(
                market.totalEscrowed(token) + market.totalCredits(token) <= tokens[t].balanceOf(address(market)),
                "escrow + credits <= balance"
            );
        }
    }

    /**
     * @dev Every account holds, in each token, exactly what the model says it was paid, and is owed exactly the
     * credits the model says: a refund goes to that order's buyer, a release to that listing's payout address and
     * the treasury of the moment, a blocked receiver's share to its credit, a withdrawal to the address named.
     */
    function invariant_EveryAccountGetsWhatItIsOwed() public view {
        for (uint256 t; t < 3; ++t) {
            address token = address(tokens[t]);
            for (uint256 i; i < handler.accountCount(); ++i) {
                address account = handler.accountAt(i);
                assertEq(tokens[t].balanceOf(account), handler.expectedBalance(token, account), "balance");
                assertEq(market.creditOf(token, account), handler.expectedCredit(token, account), "credit");
            }
            assertEq(market.totalCredits(token), handler.expectedCredits(token), "total credits");
        }
    }

    /// @dev The market holds exactly its escrow, its credits and the surplus that came in and was not returned;
    /// surplus returns never touch escrow or credits, and each stray transfer is answered once.
    function invariant_SurplusReturnsNeverTouchEscrowOrCredits() public view {
        assertEq(handler.reusedReferenceSuccesses(), 0, "a surplus reference was answered twice");
        for (uint256 t; t < 3; ++t) {
            address token = address(tokens[t]);
            uint256 surplusIn = handler.ghostSurplusIn(token);
            uint256 surplusOut = handler.ghostSurplusOut(token);
            assertTrue(surplusOut <= surplusIn, "returned no more than came in");
            assertEq(
                tokens[t].balanceOf(address(market)),
                market.totalEscrowed(token) + market.totalCredits(token) + surplusIn - surplusOut,
                "balance == escrow + credits + surplus"
            );
            assertEq(market.surplus(token), surplusIn - surplusOut, "surplus view");
        }
    }

    /// @dev Every call did what the model predicted, and every settled order paid out exactly its amount.
    function invariant_SettledOrdersPayOutExactly() public view {
        assertEq(handler.violations(), 0, handler.lastViolation());
        for (uint256 t; t < 3; ++t) {
            address token = address(tokens[t]);
            assertEq(handler.ghostPaidIn(token), handler.ghostSettled(token) + market.totalEscrowed(token), "paid in");
        }
    }

    /// @dev No authorization nonce paid for two orders: replays, cancelled authorizations and new authorizations
    /// reusing a spent nonce were all refused.
    function invariant_NoAuthorizationPaysTwice() public view {
        assertEq(handler.reusedAuthorizationSuccesses(), 0, "a used or cancelled authorization was accepted");
        for (uint256 i; i < handler.orderNonceCount(); ++i) {
            assertEq(handler.ordersPaidByNonce(handler.orderNonceAt(i)), 1, "one order per authorization");
        }
    }

    /**
     * @dev Every order reads back as the model recorded it (an old order keeps its own data after its buyer bought
     * again); the (listing, buyer) index finds the latest order, and access follows that order's status.
     */
    function invariant_AccessFollowsOrders() public view {
        assertEq(market.orderCount(), handler.orderCount(), "every order was made by a tracked purchase");
        for (uint256 i; i < handler.orderCount(); ++i) {
            uint256 orderId = handler.orderAt(i);
            DataMarketHandler.GhostOrder memory g = handler.ghostOrder(orderId);
            DataMarket.Order memory o = market.getOrder(orderId);
            assertEq(o.listingId, g.listingId, "listing");
            assertEq(o.buyer, g.buyer, "buyer");
            assertEq(o.token, address(tokens[g.tokenIndex]), "token");
            assertEq(o.amount, g.amount, "amount");
            assertEq(o.feeBps, g.feeBps, "fee rate");
            assertEq(o.releaseAt, g.releaseAt, "release time");
            assertEq(uint256(o.status), uint256(g.status), "status");
            uint256 latest = handler.latestOrder(g.listingId, g.buyer);
            assertEq(market.orderOf(g.listingId, g.buyer), latest, "orderOf finds the latest order");
            assertEq(
                market.hasAccess(g.listingId, g.buyer),
                handler.ghostOrder(latest).status != DataMarket.OrderStatus.Refunded,
                "hasAccess"
            );
        }
    }

    /// @dev A dispute's deadline is fixed when it opens (a later change of the period never moves it) and is never
    /// more than the longest period away from then.
    function invariant_DisputeDeadlinesNeverMove() public view {
        for (uint256 i; i < handler.orderCount(); ++i) {
            uint256 orderId = handler.orderAt(i);
            DataMarketHandler.GhostOrder memory g = handler.ghostOrder(orderId);
            assertEq(market.getOrder(orderId).disputeDeadline, g.deadline, "dispute deadline");
            if (g.deadline != 0) assertTrue(g.deadline <= g.releaseAt + 30 days, "at most 30 days after opening");
        }
    }

    /**
     * @dev With the market paused, every order can still be settled: an open one confirmed by its buyer, or
     * disputed and resolved, before its release time, released after it; a disputed one resolved before its deadline
     * and refunded after it. Every credit can then be withdrawn (once the blocklisting token lets its receivers go)
     * and all surplus returned. Afterwards the market is empty. Runs on a snapshot that is thrown away.
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
        blocklist.setReturnFalse(false);
        for (uint256 i; i < handler.accountCount(); ++i) {
            blocklist.setBlocked(handler.accountAt(i), false);
        }
        for (uint256 t; t < 3; ++t) {
            address token = address(tokens[t]);
            assertEq(market.totalEscrowed(token), 0, "nothing escrowed once every order is settled");
            for (uint256 i; i < handler.accountCount(); ++i) {
                address account = handler.accountAt(i);
                if (market.creditOf(token, account) == 0) continue;
                if (i % 2 == 0) {
                    vm.prank(account);
                    market.withdraw(token, account);
                } else {
                    market.withdrawFor(token, account); // anyone, to the account itself
                }
            }
            assertEq(market.totalCredits(token), 0, "every credit withdrawn");
            uint256 surplus = market.surplus(token);
            if (surplus != 0) {
                vm.prank(arbiter);
                market.returnSurplus(token, address(0x5EED), surplus, keccak256(abi.encode("the last of it", t)));
            }
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
                o = market.getOrder(orderId);
            }
        }
        if (o.status == DataMarket.OrderStatus.Disputed) {
            if (block.timestamp >= o.disputeDeadline) {
                market.settleExpiredDispute(orderId);
            } else {
                vm.prank(arbiter);
                // forge-lint: disable-next-line(unsafe-typecast) -- below 10001
                market.resolve(orderId, uint16(orderId % 10_001));
            }
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
        string[33] memory names = [
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
            "reuseNonce",
            "transferToMarket",
            "confirm",
            "confirmBySig",
            "dispute",
            "disputeBySig",
            "resolve",
            "settleExpiredDispute",
            "release",
            "withdraw",
            "withdrawFor",
            "returnSurplus",
            "returnSurplusBatch",
            "setBlocked",
            "setTreasury",
            "togglePause",
            "setFee",
            "setTokenAllowed",
            "setDisputePeriod",
            "setMinDisputeWindow",
            "warp",
            "settlements while paused"
        ];
        for (uint256 i; i < names.length - 1; ++i) {
            emit log_named_uint(names[i], handler.calls(names[i]));
        }
        emit log_named_uint(names[names.length - 1], handler.pausedSettlements());
        emit log_named_uint("orders", handler.orderCount());
        emit log_named_uint("handler calls", handler.totalCalls());
    }

    function _single(uint256 id) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](1);
        ids[0] = id;
    }

    function _tokenIndex(address token) internal view returns (uint256) {
        if (token == address(tokens[0])) return 0;
        return token == address(tokens[1]) ? 1 : 2;
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {DataMarketBase} from "./DataMarketBase.t.sol";
import {Vm} from "./utils/Test.sol";
import {DataMarket} from "../src/DataMarket.sol";
import {TestUSDC} from "../src/TestUSDC.sol";
import {ERC1271WalletMock} from "./mocks/ERC1271WalletMock.sol";
import {MarketFeeOnTransferToken} from "./mocks/MarketFeeOnTransferToken.sol";
import {MarketRevertingToken} from "./mocks/MarketRevertingToken.sol";
import {MarketReentrantToken} from "./mocks/MarketReentrantToken.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @dev Unit tests: every function, every revert path, every event of {DataMarket}.
contract DataMarketTest is DataMarketBase {
    uint256 internal constant FEE = PRICE * FEE_BPS / 10_000;
    address internal constant NEW_PAYOUT = address(0xFA71);
    address internal constant NEW_TREASURY = address(0x7EA6);
    uint256 internal constant WALLET_OWNER_PK = 0x0C0FFEE;
    bytes32 internal constant WALLET_TAG = keccak256("wallet tag");
    bytes32 internal constant NONCE = keccak256("nonce");

    // ---------------------------------------------------------------------------------------------------------------
    // Deployment
    // ---------------------------------------------------------------------------------------------------------------

    function test_Constructor() public view {
        assertTrue(market.hasRole(DEFAULT_ADMIN_ROLE, ADMIN), "admin has DEFAULT_ADMIN_ROLE");
        assertEq(market.treasury(), TREASURY, "treasury");
        assertEq(market.feeBps(), FEE_BPS, "fee");
        assertEq(market.MODERATOR_ROLE(), MODERATOR_ROLE, "MODERATOR_ROLE");
        assertEq(market.RELAYER_ROLE(), RELAYER_ROLE, "RELAYER_ROLE");
        assertEq(market.ARBITER_ROLE(), ARBITER_ROLE, "ARBITER_ROLE");
        assertEq(market.MAX_FEE_BPS(), 1000, "MAX_FEE_BPS");
        assertEq(market.MAX_DISPUTE_WINDOW(), 30 days, "MAX_DISPUTE_WINDOW");
        assertEq(market.MAX_PRICE(), type(uint88).max, "MAX_PRICE");
        assertEq(market.listingCount(), 0, "no listings");
        assertEq(market.orderCount(), 0, "no orders");
        assertFalse(market.paused(), "not paused");
        assertTrue(market.supportsInterface(type(IAccessControl).interfaceId), "IAccessControl");
        assertTrue(market.supportsInterface(type(IERC165).interfaceId), "IERC165");
    }

    function test_Constructor_GrantsOnlyAdminRole() public {
        DataMarket fresh = new DataMarket(ADMIN, TREASURY, 1000);
        assertTrue(fresh.hasRole(DEFAULT_ADMIN_ROLE, ADMIN), "admin");
        assertFalse(fresh.hasRole(MODERATOR_ROLE, ADMIN), "not moderator");
        assertFalse(fresh.hasRole(RELAYER_ROLE, ADMIN), "not relayer");
        assertFalse(fresh.hasRole(ARBITER_ROLE, ADMIN), "not arbiter");
        assertFalse(fresh.hasRole(DEFAULT_ADMIN_ROLE, address(this)), "deployer has nothing");
        assertEq(fresh.feeBps(), 1000, "max fee accepted");
    }

    function test_RevertWhen_ConstructorZeroAdmin() public {
        vm.expectRevert(DataMarket.DataMarketZeroAddress.selector);
        new DataMarket(address(0), TREASURY, FEE_BPS);
    }

    function test_RevertWhen_ConstructorZeroTreasury() public {
        vm.expectRevert(DataMarket.DataMarketZeroAddress.selector);
        new DataMarket(ADMIN, address(0), FEE_BPS);
    }

    function test_RevertWhen_ConstructorFeeTooHigh() public {
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketFeeTooHigh.selector, 1001, 1000));
        new DataMarket(ADMIN, TREASURY, 1001);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Administration
    // ---------------------------------------------------------------------------------------------------------------

    function test_SetTokenAllowed() public {
        TestUSDC other = new TestUSDC(address(this));
        (bool allowed, bool bytesSignature) = market.tokenConfig(address(other));
        assertFalse(allowed, "unknown token not allowed");
        assertFalse(bytesSignature, "unknown token flag");

        _expectMarketEmit();
        emit DataMarket.TokenConfigured(address(other), true, false);
        vm.prank(ADMIN);
        market.setTokenAllowed(address(other), true, false);
        (allowed, bytesSignature) = market.tokenConfig(address(other));
        assertTrue(allowed, "allowed");
        assertFalse(bytesSignature, "v, r, s");

        _expectMarketEmit();
        emit DataMarket.TokenConfigured(address(other), false, true);
        vm.prank(ADMIN);
        market.setTokenAllowed(address(other), false, true);
        (allowed, bytesSignature) = market.tokenConfig(address(other));
        assertFalse(allowed, "disallowed");
        assertTrue(bytesSignature, "bytes");

        (allowed, bytesSignature) = market.tokenConfig(address(token));
        assertTrue(allowed && bytesSignature, "first token untouched");
    }

    function test_RevertWhen_SetTokenAllowedNotAdmin() public {
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, MODERATOR, bytes32(0))
        );
        vm.prank(MODERATOR);
        market.setTokenAllowed(address(token), false, false);
    }

    function test_RevertWhen_SetTokenAllowedZeroAddress() public {
        vm.expectRevert(DataMarket.DataMarketZeroAddress.selector);
        vm.prank(ADMIN);
        market.setTokenAllowed(address(0), true, true);
    }

    function test_DisallowedToken_StopsListingAndBuyingButNotSettling() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        vm.prank(ADMIN);
        market.setTokenAllowed(address(token), false, true);

        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketTokenNotAllowed.selector, address(token)));
        vm.prank(SELLER);
        market.createListing(address(token), PRICE, PAYOUT, CONTENT_HASH, WINDOW);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketTokenNotAllowed.selector, address(token)));
        vm.prank(buyer2);
        market.purchase(listingId, PRICE);

        assertEq(market.totalEscrowed(address(token)), PRICE, "escrow kept while disallowed");
        vm.prank(buyer);
        market.confirm(orderId);
        assertEq(market.totalEscrowed(address(token)), 0, "settled while disallowed");

        vm.prank(ADMIN);
        market.setTokenAllowed(address(token), true, true);
        uint256 second = _buy(buyer2, listingId);
        assertEq(market.totalEscrowed(address(token)), PRICE, "same record after re-allowing");
        assertEq(second, 2, "second order");
    }

    function test_SetFee_AppliesToNewOrdersOnly() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 before = _buy(buyer, listingId);

        _expectMarketEmit();
        emit DataMarket.FeeChanged(FEE_BPS, 1000);
        vm.prank(ADMIN);
        market.setFee(1000);
        assertEq(market.feeBps(), 1000, "fee");

        uint256 after_ = _buy(buyer2, listingId);
        assertEq(market.getOrder(before).feeBps, FEE_BPS, "old order keeps its rate");
        assertEq(market.getOrder(after_).feeBps, 1000, "new order gets the new rate");

        vm.prank(buyer);
        market.confirm(before);
        assertEq(token.balanceOf(TREASURY), FEE, "old rate charged");
        vm.prank(buyer2);
        market.confirm(after_);
        assertEq(token.balanceOf(TREASURY), FEE + PRICE / 10, "new rate charged");
    }

    function test_RevertWhen_SetFeeTooHigh() public {
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketFeeTooHigh.selector, 1001, 1000));
        vm.prank(ADMIN);
        market.setFee(1001);
    }

    function test_RevertWhen_SetFeeNotAdmin() public {
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, ARBITER, bytes32(0))
        );
        vm.prank(ARBITER);
        market.setFee(0);
    }

    function test_SetTreasury() public {
        uint256 orderId = _buy(buyer, _list(PRICE, WINDOW));
        _expectMarketEmit();
        emit DataMarket.TreasuryChanged(TREASURY, NEW_TREASURY);
        vm.prank(ADMIN);
        market.setTreasury(NEW_TREASURY);
        assertEq(market.treasury(), NEW_TREASURY, "treasury");

        vm.prank(buyer);
        market.confirm(orderId);
        assertEq(token.balanceOf(NEW_TREASURY), FEE, "fee goes to the new treasury");
        assertEq(token.balanceOf(TREASURY), 0, "old treasury gets nothing");
    }

    function test_RevertWhen_SetTreasuryZero() public {
        vm.expectRevert(DataMarket.DataMarketZeroAddress.selector);
        vm.prank(ADMIN);
        market.setTreasury(address(0));
    }

    function test_RevertWhen_SetTreasuryNotAdmin() public {
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, STRANGER, bytes32(0))
        );
        vm.prank(STRANGER);
        market.setTreasury(STRANGER);
    }

    function test_PauseAndUnpause() public {
        vm.expectEmit(true, true, true, true, address(market));
        emit Pausable.Paused(ADMIN);
        vm.prank(ADMIN);
        market.pause();
        assertTrue(market.paused(), "paused");

        vm.expectEmit(true, true, true, true, address(market));
        emit Pausable.Unpaused(ADMIN);
        vm.prank(ADMIN);
        market.unpause();
        assertFalse(market.paused(), "unpaused");
    }

    function test_RevertWhen_PauseNotAdmin() public {
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, MODERATOR, bytes32(0))
        );
        vm.prank(MODERATOR);
        market.pause();
    }

    function test_RevertWhen_UnpauseNotAdmin() public {
        vm.prank(ADMIN);
        market.pause();
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, ARBITER, bytes32(0))
        );
        vm.prank(ARBITER);
        market.unpause();
    }

    function test_RevertWhen_PauseTwice() public {
        vm.prank(ADMIN);
        market.pause();
        vm.expectRevert(Pausable.EnforcedPause.selector);
        vm.prank(ADMIN);
        market.pause();
    }

    function test_RevertWhen_UnpauseNotPaused() public {
        vm.expectRevert(Pausable.ExpectedPause.selector);
        vm.prank(ADMIN);
        market.unpause();
    }

    function test_RevertWhen_Paused_CreateListingAndPurchases() public {
        uint256 listingId = _list(PRICE, WINDOW);
        vm.prank(ADMIN);
        market.pause();

        vm.expectRevert(Pausable.EnforcedPause.selector);
        vm.prank(SELLER);
        market.createListing(address(token), PRICE, PAYOUT, CONTENT_HASH, WINDOW);

        vm.expectRevert(Pausable.EnforcedPause.selector);
        vm.prank(buyer);
        market.purchase(listingId, PRICE);

        (uint8 v, bytes32 r, bytes32 s) = _permit(BUYER_PK, address(token), PRICE, block.timestamp + 1 hours);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        vm.prank(buyer);
        market.purchaseWithPermit(listingId, PRICE, block.timestamp + 1 hours, v, r, s);

        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);
    }

    function test_Paused_EverythingElseStillWorks() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 toConfirm = _buy(buyer, listingId);
        uint256 toDispute = _buy(buyer2, listingId);
        uint256 otherListing = _list(PRICE, 1 hours);
        uint256 toRelease = _buy(buyer, otherListing);
        vm.prank(buyer2);
        assertTrue(token.transfer(address(market), 1e6), "transfer");

        vm.prank(ADMIN);
        market.pause();

        vm.prank(buyer);
        market.confirm(toConfirm);
        vm.prank(buyer2);
        market.dispute(toDispute);
        vm.prank(ARBITER);
        market.resolve(toDispute, 5000);
        vm.warp(block.timestamp + 1 hours);
        market.release(_one(toRelease));
        vm.prank(ARBITER);
        market.returnSurplus(address(token), buyer2, 1e6);
        vm.prank(SELLER);
        market.updateListing(listingId, PRICE * 2, NEW_PAYOUT);
        vm.prank(SELLER);
        market.setListingActive(listingId, false);
        vm.prank(MODERATOR);
        market.setApproval(_one(listingId), false);

        _assertStatus(toConfirm, DataMarket.OrderStatus.Released, "confirmed while paused");
        _assertStatus(toDispute, DataMarket.OrderStatus.Resolved, "disputed and resolved while paused");
        _assertStatus(toRelease, DataMarket.OrderStatus.Released, "released while paused");
        assertEq(market.totalEscrowed(address(token)), 0, "nothing escrowed");
        assertEq(token.balanceOf(address(market)), 0, "nothing left");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Listings
    // ---------------------------------------------------------------------------------------------------------------

    function test_CreateListing() public {
        _expectMarketEmit();
        emit DataMarket.ListingCreated(1, SELLER, address(token), PRICE, PAYOUT, CONTENT_HASH, WINDOW);
        vm.prank(SELLER);
        uint256 listingId = market.createListing(address(token), PRICE, PAYOUT, CONTENT_HASH, WINDOW);

        assertEq(listingId, 1, "ids start at 1");
        assertEq(market.listingCount(), 1, "count");
        DataMarket.Listing memory l = market.getListing(listingId);
        assertEq(l.owner, SELLER, "owner");
        assertEq(l.token, address(token), "token");
        assertEq(l.payout, PAYOUT, "payout");
        assertEq(l.price, PRICE, "price");
        assertEq(l.contentHash, CONTENT_HASH, "content hash");
        assertEq(l.disputeWindow, WINDOW, "window");
        assertTrue(l.active, "active");
        assertFalse(l.approved, "awaiting approval");

        vm.prank(STRANGER);
        assertEq(market.createListing(address(token), 1, STRANGER, CONTENT_HASH, 0), 2, "anyone lists, same hash too");
        assertEq(market.getListing(2).owner, STRANGER, "second owner");
    }

    function test_CreateListing_Bounds() public {
        uint256 maxPrice = market.MAX_PRICE();
        vm.startPrank(SELLER);
        uint256 a = market.createListing(address(token), maxPrice, PAYOUT, CONTENT_HASH, 30 days);
        uint256 b = market.createListing(address(token), 1, PAYOUT, bytes32(0), 0);
        vm.stopPrank();
        assertEq(market.getListing(a).price, maxPrice, "max price");
        assertEq(market.getListing(a).disputeWindow, 30 days, "max window");
        assertEq(market.getListing(b).price, 1, "min price");
        assertEq(market.getListing(b).disputeWindow, 0, "zero window");
    }

    function test_RevertWhen_CreateListingTokenNotAllowed() public {
        TestUSDC other = new TestUSDC(address(this));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketTokenNotAllowed.selector, address(other)));
        vm.prank(SELLER);
        market.createListing(address(other), PRICE, PAYOUT, CONTENT_HASH, WINDOW);
    }

    function test_RevertWhen_CreateListingZeroPrice() public {
        vm.expectRevert(DataMarket.DataMarketZeroPrice.selector);
        vm.prank(SELLER);
        market.createListing(address(token), 0, PAYOUT, CONTENT_HASH, WINDOW);
    }

    function test_RevertWhen_CreateListingPriceTooHigh() public {
        uint256 maxPrice = market.MAX_PRICE();
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketPriceTooHigh.selector, maxPrice + 1, maxPrice));
        vm.prank(SELLER);
        market.createListing(address(token), maxPrice + 1, PAYOUT, CONTENT_HASH, WINDOW);
    }

    function test_RevertWhen_CreateListingZeroPayout() public {
        vm.expectRevert(DataMarket.DataMarketZeroAddress.selector);
        vm.prank(SELLER);
        market.createListing(address(token), PRICE, address(0), CONTENT_HASH, WINDOW);
    }

    function test_RevertWhen_CreateListingWindowTooLong() public {
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketWindowTooLong.selector, 30 days + 1, 30 days));
        vm.prank(SELLER);
        market.createListing(address(token), PRICE, PAYOUT, CONTENT_HASH, 30 days + 1);
    }

    function test_NewListingIsNotBuyableUntilApproved() public {
        vm.prank(SELLER);
        uint256 listingId = market.createListing(address(token), PRICE, PAYOUT, CONTENT_HASH, WINDOW);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotBuyable.selector, listingId));
        vm.prank(buyer);
        market.purchase(listingId, PRICE);

        vm.prank(MODERATOR);
        market.setApproval(_one(listingId), true);
        assertEq(_buy(buyer, listingId), 1, "buyable once approved");
    }

    function test_UpdateListing() public {
        uint256 listingId = _list(PRICE, WINDOW);
        _expectMarketEmit();
        emit DataMarket.ListingUpdated(listingId, PRICE * 2, NEW_PAYOUT);
        vm.prank(SELLER);
        market.updateListing(listingId, PRICE * 2, NEW_PAYOUT);

        DataMarket.Listing memory l = market.getListing(listingId);
        assertEq(l.price, PRICE * 2, "price");
        assertEq(l.payout, NEW_PAYOUT, "payout");
        assertEq(l.contentHash, CONTENT_HASH, "content hash never changes");
        assertEq(l.owner, SELLER, "owner unchanged");
        assertTrue(l.active && l.approved, "flags unchanged");

        // A buyer who saw the old price is protected.
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketPriceAboveMax.selector, PRICE * 2, PRICE));
        vm.prank(buyer);
        market.purchase(listingId, PRICE);
    }

    function test_UpdateListing_ExistingOrderKeepsAmountAndPaysNewPayout() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        vm.prank(SELLER);
        market.updateListing(listingId, PRICE * 3, NEW_PAYOUT);
        assertEq(market.getOrder(orderId).amount, PRICE, "amount fixed at purchase");

        vm.prank(buyer);
        market.confirm(orderId);
        assertEq(token.balanceOf(NEW_PAYOUT), PRICE - FEE, "paid to the current payout address");
        assertEq(token.balanceOf(PAYOUT), 0, "old payout address gets nothing");
    }

    function test_RevertWhen_UpdateListingNotOwner() public {
        uint256 listingId = _list(PRICE, WINDOW);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketNotListingOwner.selector, listingId, MODERATOR)
        );
        vm.prank(MODERATOR);
        market.updateListing(listingId, PRICE, PAYOUT);

        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotListingOwner.selector, 99, SELLER));
        vm.prank(SELLER);
        market.updateListing(99, PRICE, PAYOUT);
    }

    function test_RevertWhen_UpdateListingBadTerms() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 maxPrice = market.MAX_PRICE();
        vm.startPrank(SELLER);
        vm.expectRevert(DataMarket.DataMarketZeroPrice.selector);
        market.updateListing(listingId, 0, PAYOUT);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketPriceTooHigh.selector, maxPrice + 1, maxPrice));
        market.updateListing(listingId, maxPrice + 1, PAYOUT);
        vm.expectRevert(DataMarket.DataMarketZeroAddress.selector);
        market.updateListing(listingId, PRICE, address(0));
        vm.stopPrank();
    }

    function test_SetListingActive() public {
        uint256 listingId = _list(PRICE, WINDOW);
        _expectMarketEmit();
        emit DataMarket.ListingActiveSet(listingId, false);
        vm.prank(SELLER);
        market.setListingActive(listingId, false);
        assertFalse(market.getListing(listingId).active, "inactive");

        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotBuyable.selector, listingId));
        vm.prank(buyer);
        market.purchase(listingId, PRICE);

        vm.prank(SELLER);
        market.setListingActive(listingId, true);
        assertEq(_buy(buyer, listingId), 1, "buyable again");
    }

    function test_RevertWhen_SetListingActiveNotOwner() public {
        uint256 listingId = _list(PRICE, WINDOW);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketNotListingOwner.selector, listingId, MODERATOR)
        );
        vm.prank(MODERATOR);
        market.setListingActive(listingId, false);
    }

    function test_OwnerCannotUndoDelisting() public {
        uint256 listingId = _list(PRICE, WINDOW);
        vm.prank(MODERATOR);
        market.setApproval(_one(listingId), false);
        vm.prank(SELLER);
        market.setListingActive(listingId, true);

        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotBuyable.selector, listingId));
        vm.prank(buyer);
        market.purchase(listingId, PRICE);
    }

    function test_SetApproval_Batch() public {
        vm.startPrank(SELLER);
        market.createListing(address(token), PRICE, PAYOUT, CONTENT_HASH, WINDOW);
        market.createListing(address(token), PRICE, PAYOUT, CONTENT_HASH, WINDOW);
        market.createListing(address(token), PRICE, PAYOUT, CONTENT_HASH, WINDOW);
        vm.stopPrank();

        uint256[] memory ids = new uint256[](3);
        (ids[0], ids[1], ids[2]) = (1, 2, 3);
        for (uint256 i = 1; i <= 3; ++i) {
            _expectMarketEmit();
            emit DataMarket.ListingApprovalSet(i, true);
        }
        vm.prank(MODERATOR);
        market.setApproval(ids, true);
        for (uint256 i = 1; i <= 3; ++i) {
            assertTrue(market.getListing(i).approved, "approved");
        }

        _expectMarketEmit();
        emit DataMarket.ListingApprovalSet(2, false);
        vm.prank(MODERATOR);
        market.setApproval(_one(2), false);
        assertTrue(market.getListing(1).approved && market.getListing(3).approved, "others untouched");
        assertFalse(market.getListing(2).approved, "delisted");
        assertTrue(market.getListing(2).active, "owner's flag untouched");
    }

    function test_RevertWhen_SetApprovalNotModerator() public {
        uint256 listingId = _list(PRICE, WINDOW);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, ADMIN, MODERATOR_ROLE)
        );
        vm.prank(ADMIN);
        market.setApproval(_one(listingId), false);

        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, SELLER, MODERATOR_ROLE)
        );
        vm.prank(SELLER);
        market.setApproval(_one(listingId), true);
    }

    function test_RevertWhen_SetApprovalUnknownListing() public {
        vm.prank(SELLER);
        uint256 listingId = market.createListing(address(token), PRICE, PAYOUT, CONTENT_HASH, WINDOW);

        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketUnknownListing.selector, 0));
        vm.prank(MODERATOR);
        market.setApproval(_two(listingId, 0), true);

        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketUnknownListing.selector, listingId + 1));
        vm.prank(MODERATOR);
        market.setApproval(_two(listingId, listingId + 1), true);

        assertFalse(market.getListing(listingId).approved, "the whole batch reverted");
    }

    function test_GetListing_Unknown() public view {
        DataMarket.Listing memory l = market.getListing(42);
        assertEq(l.owner, address(0), "owner");
        assertEq(l.token, address(0), "token");
        assertEq(l.payout, address(0), "payout");
        assertEq(l.price, 0, "price");
        assertEq(l.contentHash, bytes32(0), "hash");
        assertEq(l.disputeWindow, 0, "window");
        assertFalse(l.active || l.approved, "flags");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // purchase
    // ---------------------------------------------------------------------------------------------------------------

    function test_Purchase() public {
        uint256 listingId = _list(PRICE, WINDOW);
        _expectMarketEmit();
        emit DataMarket.OrderCreated(1, listingId, buyer, address(token), PRICE, FEE_BPS, RELEASE_AT);
        vm.prank(buyer);
        uint256 orderId = market.purchase(listingId, PRICE);

        assertEq(orderId, 1, "order ids start at 1");
        assertEq(market.orderCount(), 1, "count");
        assertEq(market.orderOf(listingId, buyer), orderId, "orderOf");
        assertEq(market.orderOf(listingId, buyer2), 0, "no order for buyer2");
        assertTrue(market.hasAccess(listingId, buyer), "access");
        assertFalse(market.hasAccess(listingId, buyer2), "no access for buyer2");

        DataMarket.Order memory o = market.getOrder(orderId);
        assertEq(o.listingId, listingId, "listing");
        assertEq(o.buyer, buyer, "buyer");
        assertEq(o.amount, PRICE, "amount");
        assertEq(o.releaseAt, START + WINDOW, "releaseAt");
        assertEq(o.feeBps, FEE_BPS, "fee rate");
        assertEq(uint256(o.status), uint256(DataMarket.OrderStatus.Open), "open");

        assertEq(token.balanceOf(buyer), FUNDS - PRICE, "buyer paid");
        assertEq(token.balanceOf(address(market)), PRICE, "escrowed");
        assertEq(market.totalEscrowed(address(token)), PRICE, "totalEscrowed");
        assertEq(market.surplus(address(token)), 0, "no surplus");
        assertEq(token.balanceOf(PAYOUT), 0, "owner not paid yet");
    }

    function test_Purchase_EachBuyerGetsOneOrder() public {
        uint256 a = _list(PRICE, WINDOW);
        uint256 b = _list(PRICE * 2, WINDOW);
        assertEq(_buy(buyer, a), 1, "buyer a");
        assertEq(_buy(buyer2, a), 2, "buyer2 a");
        assertEq(_buy(buyer, b), 3, "buyer b");
        assertEq(market.orderOf(a, buyer2), 2, "orderOf");
        assertEq(market.orderOf(b, buyer), 3, "orderOf b");
        assertEq(market.totalEscrowed(address(token)), PRICE * 4, "escrowed");
    }

    function test_RevertWhen_PurchaseUnknownListing() public {
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotBuyable.selector, 0));
        vm.prank(buyer);
        market.purchase(0, PRICE);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotBuyable.selector, 7));
        vm.prank(buyer);
        market.purchase(7, PRICE);
    }

    function test_RevertWhen_PurchasePriceAboveMax() public {
        uint256 listingId = _list(PRICE, WINDOW);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketPriceAboveMax.selector, PRICE, PRICE - 1));
        vm.prank(buyer);
        market.purchase(listingId, PRICE - 1);
    }

    function test_RevertWhen_PurchaseTwice() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketAlreadyPurchased.selector, listingId, buyer, orderId)
        );
        vm.prank(buyer);
        market.purchase(listingId, PRICE);
    }

    function test_RevertWhen_PurchaseAgainAfterFullRefund() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        vm.prank(buyer);
        market.dispute(orderId);
        vm.prank(ARBITER);
        market.resolve(orderId, 10_000);
        assertFalse(market.hasAccess(listingId, buyer), "refunded");

        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketAlreadyPurchased.selector, listingId, buyer, orderId)
        );
        vm.prank(buyer);
        market.purchase(listingId, PRICE);
    }

    function test_RevertWhen_PurchaseWithoutAllowance() public {
        uint256 listingId = _list(PRICE, WINDOW);
        vm.prank(buyer);
        token.approve(address(market), PRICE - 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                IERC20Errors.ERC20InsufficientAllowance.selector, address(market), PRICE - 1, PRICE
            )
        );
        vm.prank(buyer);
        market.purchase(listingId, PRICE);
    }

    function test_RevertWhen_PurchaseFeeOnTransferToken() public {
        MarketFeeOnTransferToken fot = _allowFeeOnTransferToken();
        uint256 listingId = _listToken(address(fot), PRICE, WINDOW);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketUnderpaid.selector, PRICE - PRICE / 100, PRICE));
        vm.prank(buyer);
        market.purchase(listingId, PRICE);
    }

    function test_ZeroWindow_PaysOwnerAtPurchase() public {
        uint256 listingId = _list(PRICE, 0);
        _expectMarketEmit();
        emit DataMarket.OrderCreated(1, listingId, buyer, address(token), PRICE, FEE_BPS, START64);
        _expectMarketEmit();
        emit DataMarket.OrderReleased(1, listingId, buyer, PAYOUT, PRICE - FEE, FEE);
        uint256 orderId = _buy(buyer, listingId);

        _assertStatus(orderId, DataMarket.OrderStatus.Released, "released at purchase");
        assertTrue(market.hasAccess(listingId, buyer), "access");
        assertEq(token.balanceOf(PAYOUT), PRICE - FEE, "owner paid");
        assertEq(token.balanceOf(TREASURY), FEE, "fee paid");
        assertEq(token.balanceOf(address(market)), 0, "nothing held");
        assertEq(market.totalEscrowed(address(token)), 0, "nothing escrowed");
        assertEq(market.getOrder(orderId).releaseAt, START, "releaseAt = purchase time");

        vm.expectRevert(
            abi.encodeWithSelector(
                DataMarket.DataMarketOrderNotOpen.selector, orderId, DataMarket.OrderStatus.Released
            )
        );
        vm.prank(buyer);
        market.dispute(orderId);
    }

    function test_ZeroWindow_PermitAndAuthorizationPayAtPurchase() public {
        uint256 listingId = _list(PRICE, 0);
        vm.prank(buyer);
        token.approve(address(market), 0);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _permit(BUYER_PK, address(token), PRICE, deadline);
        vm.prank(buyer);
        uint256 a = market.purchaseWithPermit(listingId, PRICE, deadline, v, r, s);

        DataMarket.Authorization memory auth = _authorization(BUYER2_PK, address(token), PRICE, NONCE);
        vm.prank(RELAYER);
        uint256 b = market.purchaseWithAuthorization(listingId, auth);

        _assertStatus(a, DataMarket.OrderStatus.Released, "permit order released");
        _assertStatus(b, DataMarket.OrderStatus.Released, "authorization order released");
        assertEq(token.balanceOf(PAYOUT), 2 * (PRICE - FEE), "owner paid twice");
        assertEq(token.balanceOf(TREASURY), 2 * FEE, "fee paid twice");
        assertEq(token.balanceOf(address(market)), 0, "nothing held");
    }

    function test_RevertWhen_ZeroWindowPayoutFails() public {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 listingId = _listToken(address(bad), PRICE, 0);
        bad.setBlocked(PAYOUT, true);
        vm.expectRevert(abi.encodeWithSelector(MarketRevertingToken.MarketRevertingTokenBlocked.selector, PAYOUT));
        vm.prank(buyer);
        market.purchase(listingId, PRICE);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // purchaseWithPermit
    // ---------------------------------------------------------------------------------------------------------------

    function test_PurchaseWithPermit() public {
        uint256 listingId = _list(PRICE, WINDOW);
        vm.prank(buyer);
        token.approve(address(market), 0);
        uint256 maxPrice = PRICE + 5e6;
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _permit(BUYER_PK, address(token), maxPrice, deadline);

        _expectMarketEmit();
        emit DataMarket.OrderCreated(1, listingId, buyer, address(token), PRICE, FEE_BPS, RELEASE_AT);
        vm.prank(buyer);
        uint256 orderId = market.purchaseWithPermit(listingId, maxPrice, deadline, v, r, s);

        assertEq(market.orderOf(listingId, buyer), orderId, "orderOf");
        assertEq(token.nonces(buyer), 1, "permit used");
        assertEq(token.allowance(buyer, address(market)), maxPrice - PRICE, "allowance left");
        assertEq(market.totalEscrowed(address(token)), PRICE, "escrowed");
        assertEq(token.balanceOf(buyer), FUNDS - PRICE, "paid");
    }

    function test_PurchaseWithPermit_FrontRunPermitStillBuys() public {
        uint256 listingId = _list(PRICE, WINDOW);
        vm.prank(buyer);
        token.approve(address(market), 0);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _permit(BUYER_PK, address(token), PRICE, deadline);

        // Someone copies the permit from the mempool and submits it first.
        vm.prank(STRANGER);
        token.permit(buyer, address(market), PRICE, deadline, v, r, s);

        vm.prank(buyer);
        uint256 orderId = market.purchaseWithPermit(listingId, PRICE, deadline, v, r, s);
        assertEq(market.orderOf(listingId, buyer), orderId, "bought anyway");
        assertEq(token.allowance(buyer, address(market)), 0, "allowance spent");
    }

    function test_PurchaseWithPermit_BadPermitButEnoughAllowance() public {
        uint256 listingId = _list(PRICE, WINDOW);
        vm.prank(buyer);
        uint256 orderId = market.purchaseWithPermit(listingId, PRICE, 0, 27, bytes32(0), bytes32(0));
        assertEq(market.orderOf(listingId, buyer), orderId, "bought with the existing allowance");
    }

    function test_RevertWhen_PurchaseWithPermitInvalidAndNoAllowance() public {
        uint256 listingId = _list(PRICE, WINDOW);
        vm.prank(buyer);
        token.approve(address(market), PRICE - 1);
        uint256 deadline = block.timestamp + 1 hours;
        // Signed by buyer2 for buyer's tokens: the token rejects it and the allowance is short.
        (uint8 v, bytes32 r, bytes32 s) = _permit(BUYER2_PK, address(token), PRICE, deadline);
        bytes32 digest = _digest(
            address(token),
            keccak256(abi.encode(PERMIT_TYPEHASH, buyer, address(market), PRICE, uint256(0), deadline))
        );
        address recovered = ecrecover(digest, v, r, s);
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.ERC2612InvalidSigner.selector, recovered, buyer));
        vm.prank(buyer);
        market.purchaseWithPermit(listingId, PRICE, deadline, v, r, s);
    }

    function test_RevertWhen_PurchaseWithPermitExpiredAndNoAllowance() public {
        uint256 listingId = _list(PRICE, WINDOW);
        vm.prank(buyer);
        token.approve(address(market), 0);
        uint256 deadline = block.timestamp - 1;
        (uint8 v, bytes32 r, bytes32 s) = _permit(BUYER_PK, address(token), PRICE, deadline);
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.ERC2612ExpiredSignature.selector, deadline));
        vm.prank(buyer);
        market.purchaseWithPermit(listingId, PRICE, deadline, v, r, s);
    }

    function test_RevertWhen_PurchaseWithPermitPriceAboveMax() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _permit(BUYER_PK, address(token), PRICE - 1, deadline);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketPriceAboveMax.selector, PRICE, PRICE - 1));
        vm.prank(buyer);
        market.purchaseWithPermit(listingId, PRICE - 1, deadline, v, r, s);
    }

    function test_RevertWhen_PurchaseWithPermitNotBuyableOrTwice() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _permit(BUYER_PK, address(token), PRICE, deadline);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotBuyable.selector, listingId + 1));
        vm.prank(buyer);
        market.purchaseWithPermit(listingId + 1, PRICE, deadline, v, r, s);

        uint256 orderId = _buy(buyer, listingId);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketAlreadyPurchased.selector, listingId, buyer, orderId)
        );
        vm.prank(buyer);
        market.purchaseWithPermit(listingId, PRICE, deadline, v, r, s);
    }

    function test_RevertWhen_PurchaseWithPermitFeeOnTransferToken() public {
        MarketFeeOnTransferToken fot = _allowFeeOnTransferToken();
        uint256 listingId = _listToken(address(fot), PRICE, WINDOW);
        vm.prank(buyer);
        fot.approve(address(market), 0);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _permit(BUYER_PK, address(fot), PRICE, deadline);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketUnderpaid.selector, PRICE - PRICE / 100, PRICE));
        vm.prank(buyer);
        market.purchaseWithPermit(listingId, PRICE, deadline, v, r, s);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // purchaseWithAuthorization
    // ---------------------------------------------------------------------------------------------------------------

    function test_PurchaseWithAuthorization_BytesSignature() public {
        uint256 listingId = _list(PRICE, WINDOW);
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);

        _expectMarketEmit();
        emit DataMarket.OrderCreated(1, listingId, buyer, address(token), PRICE, FEE_BPS, RELEASE_AT);
        vm.prank(RELAYER);
        uint256 orderId = market.purchaseWithAuthorization(listingId, auth);

        assertEq(market.getOrder(orderId).buyer, buyer, "the order belongs to the signer");
        assertEq(market.orderOf(listingId, buyer), orderId, "orderOf signer");
        assertTrue(market.hasAccess(listingId, buyer), "signer has access");
        assertFalse(market.hasAccess(listingId, RELAYER), "relayer has none");
        assertTrue(token.authorizationState(buyer, NONCE), "nonce used");
        assertEq(token.balanceOf(buyer), FUNDS - PRICE, "paid");
        assertEq(market.totalEscrowed(address(token)), PRICE, "escrowed");
    }

    function test_PurchaseWithAuthorization_VrsSignature() public {
        vm.prank(ADMIN);
        market.setTokenAllowed(address(token), true, false);
        uint256 listingId = _list(PRICE, WINDOW);
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);
        vm.prank(RELAYER);
        uint256 orderId = market.purchaseWithAuthorization(listingId, auth);
        assertEq(market.getOrder(orderId).buyer, buyer, "buyer");
        assertTrue(token.authorizationState(buyer, NONCE), "nonce used");
        assertEq(market.totalEscrowed(address(token)), PRICE, "escrowed");
    }

    function test_PurchaseWithAuthorization_ContractWalletLongSignature() public {
        ERC1271WalletMock wallet = _fundedWallet();
        uint256 listingId = _list(PRICE, WINDOW);
        DataMarket.Authorization memory auth = _walletAuthorization(wallet);
        assertEq(auth.signature.length, 97, "longer than 65 bytes");

        vm.prank(RELAYER);
        uint256 orderId = market.purchaseWithAuthorization(listingId, auth);
        assertEq(market.getOrder(orderId).buyer, address(wallet), "the wallet owns the order");
        assertTrue(market.hasAccess(listingId, address(wallet)), "wallet access");
    }

    function test_RevertWhen_AuthorizationLongSignatureOnVrsToken() public {
        vm.prank(ADMIN);
        market.setTokenAllowed(address(token), true, false);
        ERC1271WalletMock wallet = _fundedWallet();
        uint256 listingId = _list(PRICE, WINDOW);
        DataMarket.Authorization memory auth = _walletAuthorization(wallet);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketBadSignatureLength.selector, 97));
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);
    }

    function test_RevertWhen_AuthorizationNotRelayer() public {
        uint256 listingId = _list(PRICE, WINDOW);
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, buyer, RELAYER_ROLE)
        );
        vm.prank(buyer);
        market.purchaseWithAuthorization(listingId, auth);

        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, ADMIN, RELAYER_ROLE)
        );
        vm.prank(ADMIN);
        market.purchaseWithAuthorization(listingId, auth);
    }

    function test_RevertWhen_AuthorizationValueMismatch() public {
        uint256 listingId = _list(PRICE, WINDOW);
        DataMarket.Authorization memory low = _authorization(BUYER_PK, address(token), PRICE - 1, NONCE);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketAuthorizationValueMismatch.selector, PRICE - 1, PRICE)
        );
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, low);

        DataMarket.Authorization memory high = _authorization(BUYER_PK, address(token), PRICE + 1, NONCE);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketAuthorizationValueMismatch.selector, PRICE + 1, PRICE)
        );
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, high);
    }

    function test_RevertWhen_AuthorizationReused() public {
        uint256 first = _list(PRICE, WINDOW);
        uint256 second = _list(PRICE, WINDOW);
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(first, auth);

        vm.expectRevert(
            abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, buyer, NONCE)
        );
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(second, auth);

        vm.prank(ADMIN);
        market.setTokenAllowed(address(token), true, false);
        vm.expectRevert(
            abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, buyer, NONCE)
        );
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(second, auth);
        assertEq(market.orderCount(), 1, "one order for one authorization");
    }

    function test_RevertWhen_AuthorizationCancelled() public {
        uint256 listingId = _list(PRICE, WINDOW);
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);
        token.cancelAuthorization(buyer, NONCE, _signCancel(BUYER_PK, address(token), NONCE));

        vm.expectRevert(
            abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, buyer, NONCE)
        );
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);
        assertEq(market.orderOf(listingId, buyer), 0, "no order");
    }

    function test_AuthorizationSentStraightToToken_BecomesReturnableSurplus() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 escrowedOrder = _buy(buyer2, listingId);
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);

        // Anyone can submit the authorization to the token directly: the market is paid without an order.
        vm.prank(STRANGER);
        token.transferWithAuthorization(
            auth.from, address(market), auth.value, auth.validAfter, auth.validBefore, auth.nonce, auth.signature
        );
        assertEq(market.surplus(address(token)), PRICE, "surplus");
        assertEq(market.totalEscrowed(address(token)), PRICE, "escrow unchanged");

        vm.expectRevert(
            abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, buyer, NONCE)
        );
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);

        _expectMarketEmit();
        emit DataMarket.SurplusReturned(address(token), buyer, PRICE);
        vm.prank(ARBITER);
        market.returnSurplus(address(token), buyer, PRICE);
        assertEq(token.balanceOf(buyer), FUNDS, "payer made whole");
        assertEq(market.surplus(address(token)), 0, "no surplus left");
        assertEq(token.balanceOf(address(market)), PRICE, "escrow untouched");

        vm.prank(buyer2);
        market.confirm(escrowedOrder);
        assertEq(token.balanceOf(PAYOUT), PRICE - FEE, "escrowed order still pays out");
    }

    function test_RevertWhen_AuthorizationExpiredOrNotYetValid() public {
        uint256 listingId = _list(PRICE, WINDOW);
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);
        uint256 validBefore = auth.validBefore;
        vm.warp(validBefore);
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationExpired.selector, validBefore));
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);

        vm.warp(START);
        auth.validAfter = START + 10;
        auth.signature = _signTransfer(
            BUYER_PK, address(token), address(market), PRICE, auth.validAfter, auth.validBefore, NONCE
        );
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationNotYetValid.selector, START + 10));
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);
    }

    function test_RevertWhen_AuthorizationSignedForAnotherPayee() public {
        uint256 listingId = _list(PRICE, WINDOW);
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);
        auth.signature =
            _signTransfer(BUYER_PK, address(token), STRANGER, PRICE, auth.validAfter, auth.validBefore, NONCE);
        vm.expectRevert(TestUSDC.TestUSDCInvalidSignature.selector);
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);
    }

    function test_RevertWhen_AuthorizationFromZero() public {
        uint256 listingId = _list(PRICE, WINDOW);
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);
        auth.from = address(0);
        vm.expectRevert(DataMarket.DataMarketZeroAddress.selector);
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);
    }

    function test_RevertWhen_AuthorizationNotBuyableOrAlreadyBought() public {
        uint256 listingId = _list(PRICE, WINDOW);
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);
        vm.prank(SELLER);
        market.setListingActive(listingId, false);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotBuyable.selector, listingId));
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);

        vm.prank(SELLER);
        market.setListingActive(listingId, true);
        uint256 orderId = _buy(buyer, listingId);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketAlreadyPurchased.selector, listingId, buyer, orderId)
        );
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);
    }

    function test_RevertWhen_AuthorizationFeeOnTransferToken() public {
        MarketFeeOnTransferToken fot = _allowFeeOnTransferToken();
        uint256 listingId = _listToken(address(fot), PRICE, WINDOW);
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(fot), PRICE, NONCE);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketUnderpaid.selector, PRICE - PRICE / 100, PRICE));
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);

        vm.prank(ADMIN);
        market.setTokenAllowed(address(fot), true, false);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketUnderpaid.selector, PRICE - PRICE / 100, PRICE));
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Reentrancy
    // ---------------------------------------------------------------------------------------------------------------

    function test_ReentrancyIsBlocked() public {
        MarketReentrantToken hook = new MarketReentrantToken(address(this));
        vm.prank(ADMIN);
        market.setTokenAllowed(address(hook), true, true);
        _fund(address(hook), buyer);
        _fund(address(hook), buyer2);
        uint256 listingId = _listToken(address(hook), PRICE, WINDOW);
        uint256 orderId = _buy(buyer2, listingId);
        vm.warp(block.timestamp + WINDOW);

        // While the purchase pulls the price, the token tries to release an order.
        hook.arm(address(market), abi.encodeCall(DataMarket.release, (_one(orderId))));
        _buy(buyer, listingId);
        assertTrue(hook.called(), "hook ran");
        assertFalse(hook.lastSuccess(), "re-entry failed");
        assertEq(
            keccak256(hook.lastReturnData()),
            keccak256(abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)),
            "reentrancy guard"
        );
        _assertStatus(orderId, DataMarket.OrderStatus.Open, "not released by the re-entry");

        // While a release pays out, the token tries to confirm the same order.
        hook.arm(address(market), abi.encodeCall(DataMarket.confirm, (orderId)));
        market.release(_one(orderId));
        assertFalse(hook.lastSuccess(), "re-entry failed");
        _assertStatus(orderId, DataMarket.OrderStatus.Released, "released once");
        assertEq(hook.balanceOf(PAYOUT), PRICE - FEE, "paid once");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // confirm
    // ---------------------------------------------------------------------------------------------------------------

    function test_Confirm() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        _expectMarketEmit();
        emit DataMarket.OrderReleased(orderId, listingId, buyer, PAYOUT, PRICE - FEE, FEE);
        vm.prank(buyer);
        market.confirm(orderId);

        _assertStatus(orderId, DataMarket.OrderStatus.Released, "released");
        assertEq(token.balanceOf(PAYOUT), PRICE - FEE, "owner paid");
        assertEq(token.balanceOf(TREASURY), FEE, "fee paid");
        assertEq(token.balanceOf(address(market)), 0, "nothing held");
        assertEq(market.totalEscrowed(address(token)), 0, "nothing escrowed");
        assertTrue(market.hasAccess(listingId, buyer), "access kept");
    }

    function test_Confirm_AfterReleaseTimeAndWithZeroFee() public {
        vm.prank(ADMIN);
        market.setFee(0);
        uint256 orderId = _buy(buyer, _list(PRICE, WINDOW));
        vm.warp(block.timestamp + WINDOW * 2);
        vm.prank(buyer);
        market.confirm(orderId);
        assertEq(token.balanceOf(PAYOUT), PRICE, "owner gets everything");
        assertEq(token.balanceOf(TREASURY), 0, "no fee");
    }

    function test_RevertWhen_ConfirmNotBuyer() public {
        uint256 orderId = _buy(buyer, _list(PRICE, WINDOW));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotBuyer.selector, orderId, SELLER));
        vm.prank(SELLER);
        market.confirm(orderId);

        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotBuyer.selector, 99, buyer));
        vm.prank(buyer);
        market.confirm(99);
    }

    function test_RevertWhen_ConfirmNotOpen() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 released = _buy(buyer, listingId);
        vm.prank(buyer);
        market.confirm(released);
        vm.expectRevert(
            abi.encodeWithSelector(
                DataMarket.DataMarketOrderNotOpen.selector, released, DataMarket.OrderStatus.Released
            )
        );
        vm.prank(buyer);
        market.confirm(released);

        uint256 disputed = _buy(buyer2, listingId);
        vm.prank(buyer2);
        market.dispute(disputed);
        vm.expectRevert(
            abi.encodeWithSelector(
                DataMarket.DataMarketOrderNotOpen.selector, disputed, DataMarket.OrderStatus.Disputed
            )
        );
        vm.prank(buyer2);
        market.confirm(disputed);
    }

    function test_RevertWhen_ConfirmPayoutTransferFails() public {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 orderId = _buy(buyer, _listToken(address(bad), PRICE, WINDOW));
        bad.setBlocked(PAYOUT, true);
        vm.expectRevert(abi.encodeWithSelector(MarketRevertingToken.MarketRevertingTokenBlocked.selector, PAYOUT));
        vm.prank(buyer);
        market.confirm(orderId);

        bad.setReturnFalse(true);
        vm.expectRevert(abi.encodeWithSelector(SafeERC20.SafeERC20FailedOperation.selector, address(bad)));
        vm.prank(buyer);
        market.confirm(orderId);
        _assertStatus(orderId, DataMarket.OrderStatus.Open, "still open");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // release
    // ---------------------------------------------------------------------------------------------------------------

    function test_Release() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        vm.warp(START + WINDOW);
        _expectMarketEmit();
        emit DataMarket.OrderReleased(orderId, listingId, buyer, PAYOUT, PRICE - FEE, FEE);
        vm.prank(STRANGER);
        market.release(_one(orderId));

        _assertStatus(orderId, DataMarket.OrderStatus.Released, "released");
        assertEq(token.balanceOf(PAYOUT), PRICE - FEE, "owner paid");
        assertEq(token.balanceOf(TREASURY), FEE, "fee paid");
        assertEq(market.totalEscrowed(address(token)), 0, "nothing escrowed");
    }

    function test_Release_SkipsOrdersNotMatured() public {
        uint256 orderId = _buy(buyer, _list(PRICE, WINDOW));
        vm.warp(START + WINDOW - 1);
        _expectMarketEmit();
        emit DataMarket.ReleaseSkipped(orderId);
        market.release(_one(orderId));
        _assertStatus(orderId, DataMarket.OrderStatus.Open, "still open");
        assertEq(market.totalEscrowed(address(token)), PRICE, "still escrowed");
    }

    function test_Release_IgnoresUnknownIds() public {
        _buy(buyer, _list(PRICE, WINDOW));
        vm.warp(START + WINDOW);
        vm.recordLogs();
        market.release(_two(0, 99));
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 0, "no event for ids that do not exist");
        market.release(new uint256[](0));
    }

    function test_Release_SkipsRepeatedDisputedAndSettledIds() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 a = _buy(buyer, listingId);
        uint256 b = _buy(buyer2, listingId);
        vm.prank(buyer2);
        market.dispute(b);
        vm.warp(START + WINDOW);

        uint256[] memory ids = new uint256[](3);
        (ids[0], ids[1], ids[2]) = (a, a, b);
        _expectMarketEmit();
        emit DataMarket.OrderReleased(a, listingId, buyer, PAYOUT, PRICE - FEE, FEE);
        _expectMarketEmit();
        emit DataMarket.ReleaseSkipped(a);
        _expectMarketEmit();
        emit DataMarket.ReleaseSkipped(b);
        market.release(ids);

        assertEq(token.balanceOf(PAYOUT), PRICE - FEE, "paid once");
        _assertStatus(b, DataMarket.OrderStatus.Disputed, "disputed order untouched");
        assertEq(market.totalEscrowed(address(token)), PRICE, "disputed amount still escrowed");
    }

    function test_Release_BatchAcrossListingsAndTokens() public {
        MarketRevertingToken other = _allowRevertingToken();
        uint256 l1 = _list(PRICE, 1 days);
        uint256 l2 = _list(PRICE * 2, 2 days);
        uint256 l3 = _listToken(address(other), PRICE * 3, 1 days);
        uint256[] memory ids = new uint256[](4);
        ids[0] = _buy(buyer, l1);
        ids[1] = _buy(buyer, l2);
        ids[2] = _buy(buyer, l3);
        ids[3] = _buy(buyer2, l1);
        vm.warp(START + 2 days);
        market.release(ids);

        for (uint256 i; i < 4; ++i) {
            _assertStatus(ids[i], DataMarket.OrderStatus.Released, "released");
        }
        uint256 paid = PRICE * 4;
        assertEq(token.balanceOf(PAYOUT) + token.balanceOf(TREASURY), paid, "token paid in full");
        assertEq(token.balanceOf(TREASURY), 2 * FEE + (PRICE * 2) * FEE_BPS / 10_000, "fees");
        assertEq(other.balanceOf(PAYOUT) + other.balanceOf(TREASURY), PRICE * 3, "other token paid in full");
        assertEq(market.totalEscrowed(address(token)) + market.totalEscrowed(address(other)), 0, "nothing escrowed");
    }

    function test_Release_SkipsFailingPayoutAndLeavesItOpen() public {
        _releaseSkipsFailingPayout(false);
    }

    function test_Release_SkipsPayoutReturningFalseAndLeavesItOpen() public {
        _releaseSkipsFailingPayout(true);
    }

    function test_Release_FailingTreasuryLeavesFeeAsSurplus() public {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 listingId = _listToken(address(bad), PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        bad.setBlocked(TREASURY, true);
        vm.warp(START + WINDOW);

        _expectMarketEmit();
        emit DataMarket.OrderReleased(orderId, listingId, buyer, PAYOUT, PRICE - FEE, 0);
        market.release(_one(orderId));

        _assertStatus(orderId, DataMarket.OrderStatus.Released, "released");
        assertEq(bad.balanceOf(PAYOUT), PRICE - FEE, "owner paid");
        assertEq(market.totalEscrowed(address(bad)), 0, "nothing escrowed");
        assertEq(market.surplus(address(bad)), FEE, "unpaid fee is surplus");
        vm.prank(ARBITER);
        market.returnSurplus(address(bad), NEW_TREASURY, FEE);
        assertEq(bad.balanceOf(NEW_TREASURY), FEE, "and can be returned");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // dispute and resolve
    // ---------------------------------------------------------------------------------------------------------------

    function test_Dispute() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        vm.warp(START + WINDOW - 1);
        _expectMarketEmit();
        emit DataMarket.OrderDisputed(orderId, listingId, buyer);
        vm.prank(buyer);
        market.dispute(orderId);

        _assertStatus(orderId, DataMarket.OrderStatus.Disputed, "disputed");
        assertTrue(market.hasAccess(listingId, buyer), "access while disputed");
        assertEq(market.totalEscrowed(address(token)), PRICE, "still escrowed");

        vm.warp(START + WINDOW * 10);
        market.release(_one(orderId));
        _assertStatus(orderId, DataMarket.OrderStatus.Disputed, "release cannot settle a dispute");
    }

    function test_RevertWhen_DisputeWindowClosed() public {
        uint256 orderId = _buy(buyer, _list(PRICE, WINDOW));
        vm.warp(START + WINDOW);
        vm.expectRevert(
            abi.encodeWithSelector(
                DataMarket.DataMarketDisputeWindowClosed.selector, orderId, RELEASE_AT
            )
        );
        vm.prank(buyer);
        market.dispute(orderId);
    }

    function test_RevertWhen_DisputeNotBuyer() public {
        uint256 orderId = _buy(buyer, _list(PRICE, WINDOW));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotBuyer.selector, orderId, ARBITER));
        vm.prank(ARBITER);
        market.dispute(orderId);

        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotBuyer.selector, 5, buyer));
        vm.prank(buyer);
        market.dispute(5);
    }

    function test_RevertWhen_DisputeNotOpen() public {
        uint256 orderId = _buy(buyer, _list(PRICE, WINDOW));
        vm.prank(buyer);
        market.dispute(orderId);
        vm.expectRevert(
            abi.encodeWithSelector(
                DataMarket.DataMarketOrderNotOpen.selector, orderId, DataMarket.OrderStatus.Disputed
            )
        );
        vm.prank(buyer);
        market.dispute(orderId);
    }

    function test_Resolve_FullRefund() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _disputed(listingId);
        _expectMarketEmit();
        emit DataMarket.DisputeResolved(orderId, listingId, buyer, PRICE, 0, 0);
        vm.prank(ARBITER);
        market.resolve(orderId, 10_000);

        _assertStatus(orderId, DataMarket.OrderStatus.Refunded, "refunded");
        assertFalse(market.hasAccess(listingId, buyer), "no access after a full refund");
        assertEq(token.balanceOf(buyer), FUNDS, "buyer made whole");
        assertEq(token.balanceOf(PAYOUT) + token.balanceOf(TREASURY), 0, "nobody else paid");
        assertEq(market.totalEscrowed(address(token)), 0, "nothing escrowed");
    }

    function test_Resolve_PartialRefund() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _disputed(listingId);
        uint256 refund = PRICE * 3000 / 10_000;
        uint256 fee = (PRICE - refund) * FEE_BPS / 10_000;
        _expectMarketEmit();
        emit DataMarket.DisputeResolved(orderId, listingId, buyer, refund, PRICE - refund - fee, fee);
        vm.prank(ARBITER);
        market.resolve(orderId, 3000);

        _assertStatus(orderId, DataMarket.OrderStatus.Resolved, "resolved");
        assertTrue(market.hasAccess(listingId, buyer), "access after a partial refund");
        assertEq(token.balanceOf(buyer), FUNDS - PRICE + refund, "refund");
        assertEq(token.balanceOf(PAYOUT), PRICE - refund - fee, "owner share");
        assertEq(token.balanceOf(TREASURY), fee, "fee on the owner's part");
    }

    function test_Resolve_NoRefund() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _disputed(listingId);
        vm.prank(ARBITER);
        market.resolve(orderId, 0);
        _assertStatus(orderId, DataMarket.OrderStatus.Resolved, "resolved");
        assertTrue(market.hasAccess(listingId, buyer), "access");
        assertEq(token.balanceOf(PAYOUT), PRICE - FEE, "owner paid");
        assertEq(token.balanceOf(TREASURY), FEE, "fee");
    }

    function test_RevertWhen_ResolveNotArbiter() public {
        uint256 orderId = _disputed(_list(PRICE, WINDOW));
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, ADMIN, ARBITER_ROLE)
        );
        vm.prank(ADMIN);
        market.resolve(orderId, 5000);
    }

    function test_RevertWhen_ResolveRefundTooLarge() public {
        uint256 orderId = _disputed(_list(PRICE, WINDOW));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketRefundTooLarge.selector, 10_001));
        vm.prank(ARBITER);
        market.resolve(orderId, 10_001);
    }

    function test_RevertWhen_ResolveNotDisputed() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 open = _buy(buyer2, listingId);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketNotDisputed.selector, open, DataMarket.OrderStatus.Open)
        );
        vm.prank(ARBITER);
        market.resolve(open, 0);

        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketNotDisputed.selector, 77, DataMarket.OrderStatus.None)
        );
        vm.prank(ARBITER);
        market.resolve(77, 0);

        uint256 orderId = _disputed(listingId);
        vm.prank(ARBITER);
        market.resolve(orderId, 10_000);
        vm.expectRevert(
            abi.encodeWithSelector(
                DataMarket.DataMarketNotDisputed.selector, orderId, DataMarket.OrderStatus.Refunded
            )
        );
        vm.prank(ARBITER);
        market.resolve(orderId, 0);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Surplus
    // ---------------------------------------------------------------------------------------------------------------

    function test_ReturnSurplus() public {
        _buy(buyer, _list(PRICE, WINDOW));
        vm.prank(buyer2);
        assertTrue(token.transfer(address(market), 7e6), "transfer");
        assertEq(market.surplus(address(token)), 7e6, "surplus");

        _expectMarketEmit();
        emit DataMarket.SurplusReturned(address(token), buyer2, 4e6);
        vm.prank(ARBITER);
        market.returnSurplus(address(token), buyer2, 4e6);
        assertEq(market.surplus(address(token)), 3e6, "rest of the surplus");
        assertEq(market.totalEscrowed(address(token)), PRICE, "escrow untouched");
        assertEq(token.balanceOf(address(market)), PRICE + 3e6, "balance");
    }

    function test_RevertWhen_ReturnSurplusExceeded() public {
        _buy(buyer, _list(PRICE, WINDOW));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketSurplusExceeded.selector, 1, 0));
        vm.prank(ARBITER);
        market.returnSurplus(address(token), ARBITER, 1);

        vm.prank(buyer2);
        assertTrue(token.transfer(address(market), 5), "transfer");
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketSurplusExceeded.selector, 6, 5));
        vm.prank(ARBITER);
        market.returnSurplus(address(token), ARBITER, 6);
    }

    function test_RevertWhen_ReturnSurplusNotArbiter() public {
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, ADMIN, ARBITER_ROLE)
        );
        vm.prank(ADMIN);
        market.returnSurplus(address(token), ADMIN, 0);
    }

    function test_RevertWhen_ReturnSurplusToZero() public {
        vm.expectRevert(DataMarket.DataMarketZeroAddress.selector);
        vm.prank(ARBITER);
        market.returnSurplus(address(token), address(0), 0);
    }

    function test_Surplus_TokenNeverConfigured() public {
        TestUSDC other = new TestUSDC(address(this));
        other.mint(address(market), 42);
        assertEq(market.surplus(address(other)), 42, "all of it");
        assertEq(market.totalEscrowed(address(other)), 0, "nothing escrowed");
        vm.prank(ARBITER);
        market.returnSurplus(address(other), STRANGER, 42);
        assertEq(other.balanceOf(STRANGER), 42, "returned");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Views and storage packing
    // ---------------------------------------------------------------------------------------------------------------

    function test_Views_Unknown() public view {
        DataMarket.Order memory o = market.getOrder(3);
        assertEq(o.listingId, 0, "listing");
        assertEq(o.buyer, address(0), "buyer");
        assertEq(o.amount, 0, "amount");
        assertEq(o.releaseAt, 0, "releaseAt");
        assertEq(o.feeBps, 0, "fee");
        assertEq(uint256(o.status), uint256(DataMarket.OrderStatus.None), "status");
        assertEq(market.orderOf(1, buyer), 0, "orderOf");
        assertFalse(market.hasAccess(1, buyer), "hasAccess");
        assertEq(market.totalEscrowed(address(token)), 0, "totalEscrowed");
        assertEq(market.surplus(address(token)), 0, "surplus");
    }

    /// @dev The hand-packed order slots read back through the structs with every field at its maximum.
    function test_PackedRecordsAtTheirLimits() public {
        uint256 maxPrice = market.MAX_PRICE();
        vm.prank(ADMIN);
        market.setFee(1000);
        token.mint(buyer, maxPrice);
        uint256 listingId = _list(maxPrice, 30 days);
        uint256 orderId = _buy(buyer, listingId);

        DataMarket.Order memory o = market.getOrder(orderId);
        assertEq(o.listingId, listingId, "listing");
        assertEq(o.buyer, buyer, "buyer");
        assertEq(o.amount, maxPrice, "amount");
        assertEq(o.releaseAt, START + 30 days, "releaseAt");
        assertEq(o.feeBps, 1000, "fee");
        assertEq(uint256(o.status), uint256(DataMarket.OrderStatus.Open), "status");
        assertEq(market.orderOf(listingId, buyer), orderId, "orderOf");
        assertEq(market.totalEscrowed(address(token)), maxPrice, "escrowed");

        // The escrowed total is capped at MAX_PRICE too: a purchase beyond it reverts.
        token.mint(buyer2, maxPrice);
        vm.expectRevert(abi.encodeWithSignature("Panic(uint256)", 0x11));
        vm.prank(buyer2);
        market.purchase(listingId, maxPrice);

        vm.prank(buyer);
        market.confirm(orderId);
        assertEq(token.balanceOf(TREASURY), maxPrice / 10, "fee");
        assertEq(token.balanceOf(PAYOUT), maxPrice - maxPrice / 10, "owner");
        assertEq(market.totalEscrowed(address(token)), 0, "escrow back to 0");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Test helpers
    // ---------------------------------------------------------------------------------------------------------------

    function _disputed(uint256 listingId) internal returns (uint256 orderId) {
        orderId = _buy(buyer, listingId);
        vm.prank(buyer);
        market.dispute(orderId);
    }

    function _allowFeeOnTransferToken() internal returns (MarketFeeOnTransferToken fot) {
        fot = new MarketFeeOnTransferToken(address(this));
        vm.prank(ADMIN);
        market.setTokenAllowed(address(fot), true, true);
        _fund(address(fot), buyer);
    }

    function _allowRevertingToken() internal returns (MarketRevertingToken bad) {
        bad = new MarketRevertingToken(address(this));
        vm.prank(ADMIN);
        market.setTokenAllowed(address(bad), true, true);
        _fund(address(bad), buyer);
        _fund(address(bad), buyer2);
    }

    function _fundedWallet() internal returns (ERC1271WalletMock wallet) {
        wallet = new ERC1271WalletMock(vm.addr(WALLET_OWNER_PK), WALLET_TAG);
        token.mint(address(wallet), FUNDS);
    }

    /// @dev An authorization from `wallet`: its owner's 65-byte signature followed by the wallet's 32-byte tag.
    function _walletAuthorization(ERC1271WalletMock wallet) internal view returns (DataMarket.Authorization memory) {
        uint256 validBefore = block.timestamp + 1 days;
        bytes32 structHash = keccak256(
            abi.encode(TRANSFER_TYPEHASH, address(wallet), address(market), PRICE, uint256(0), validBefore, NONCE)
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(WALLET_OWNER_PK, _digest(address(token), structHash));
        return DataMarket.Authorization({
            from: address(wallet),
            value: PRICE,
            validAfter: 0,
            validBefore: validBefore,
            nonce: NONCE,
            signature: abi.encodePacked(r, s, v, WALLET_TAG)
        });
    }

    function _releaseSkipsFailingPayout(bool returnFalse) internal {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 blockedListing = _listToken(address(bad), PRICE, WINDOW);
        vm.prank(SELLER);
        uint256 fineListing = market.createListing(address(bad), PRICE, NEW_PAYOUT, CONTENT_HASH, WINDOW);
        vm.prank(MODERATOR);
        market.setApproval(_one(fineListing), true);
        uint256 stuck = _buy(buyer, blockedListing);
        uint256 fine = _buy(buyer, fineListing);
        bad.setBlocked(PAYOUT, true);
        bad.setReturnFalse(returnFalse);
        vm.warp(START + WINDOW);

        _expectMarketEmit();
        emit DataMarket.ReleaseSkipped(stuck);
        _expectMarketEmit();
        emit DataMarket.OrderReleased(fine, fineListing, buyer, NEW_PAYOUT, PRICE - FEE, FEE);
        market.release(_two(stuck, fine));

        _assertStatus(stuck, DataMarket.OrderStatus.Open, "blocked payout stays open");
        _assertStatus(fine, DataMarket.OrderStatus.Released, "the rest of the batch is released");
        assertEq(market.totalEscrowed(address(bad)), PRICE, "blocked order still escrowed");
        assertEq(bad.balanceOf(address(market)), PRICE, "its money still held");
        assertEq(bad.balanceOf(TREASURY), FEE, "only the released order's fee");
        assertEq(market.surplus(address(bad)), 0, "no surplus");

        bad.setBlocked(PAYOUT, false);
        market.release(_one(stuck));
        _assertStatus(stuck, DataMarket.OrderStatus.Released, "released once unblocked");
        assertEq(bad.balanceOf(PAYOUT), PRICE - FEE, "owner paid");
    }
}

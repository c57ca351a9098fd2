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
import {MarketGasHungryToken} from "./mocks/MarketGasHungryToken.sol";
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
    // Storage slots of the token mappings, as `forge inspect DataMarket storageLayout` shows them.
    uint256 internal constant TOKEN_RECORDS_SLOT = 6;
    uint256 internal constant TOKEN_TOTALS_SLOT = 7;

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
        assertEq(market.MIN_DISPUTE_PERIOD(), 7 days, "MIN_DISPUTE_PERIOD");
        assertEq(market.MAX_DISPUTE_PERIOD(), 30 days, "MAX_DISPUTE_PERIOD");
        assertEq(market.TRANSFER_GAS_RESERVE(), 30_000, "TRANSFER_GAS_RESERVE");
        assertEq(market.minDisputeWindow(), 1 days, "minimum window starts at 24 hours");
        assertEq(market.disputePeriod(), 14 days, "dispute period starts at 14 days");
        assertEq(market.CONFIRM_ORDER_TYPEHASH(), CONFIRM_ORDER_TYPEHASH, "ConfirmOrder type");
        assertEq(market.DISPUTE_ORDER_TYPEHASH(), DISPUTE_ORDER_TYPEHASH, "DisputeOrder type");
        (, string memory name, string memory version, uint256 chainId, address verifyingContract,,) =
            market.eip712Domain();
        assertEq(name, "DataMarket", "EIP-712 name");
        assertEq(version, "1", "EIP-712 version");
        assertEq(chainId, block.chainid, "EIP-712 chain id");
        assertEq(verifyingContract, address(market), "EIP-712 contract");
        assertEq(market.listingCount(), 0, "no listings");
        assertEq(market.orderCount(), 0, "no orders");
        assertFalse(market.paused(), "not paused");
        assertTrue(market.supportsInterface(type(IAccessControl).interfaceId), "IAccessControl");
        assertTrue(market.supportsInterface(type(IERC165).interfaceId), "IERC165");
    }

    function test_Constructor_EmitsItsSettings() public {
        vm.expectEmit(true, true, true, true);
        emit DataMarket.TreasuryChanged(address(0), TREASURY);
        vm.expectEmit(true, true, true, true);
        emit DataMarket.FeeChanged(0, FEE_BPS);
        vm.expectEmit(true, true, true, true);
        emit DataMarket.MinDisputeWindowChanged(0, 1 days);
        vm.expectEmit(true, true, true, true);
        emit DataMarket.DisputePeriodChanged(0, 14 days);
        new DataMarket(ADMIN, TREASURY, FEE_BPS);
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

    function test_SetMinDisputeWindow() public {
        _expectMarketEmit();
        emit DataMarket.MinDisputeWindowChanged(1 days, 2 days);
        vm.prank(ADMIN);
        market.setMinDisputeWindow(2 days);
        assertEq(market.minDisputeWindow(), 2 days, "minimum");

        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketWindowTooShort.selector, 2 days - 1, 2 days));
        vm.prank(SELLER);
        market.createListing(address(token), PRICE, PAYOUT, CONTENT_HASH, 2 days - 1);
        vm.prank(SELLER);
        uint256 listingId = market.createListing(address(token), PRICE, PAYOUT, CONTENT_HASH, 2 days);
        assertEq(market.getListing(listingId).disputeWindow, 2 days, "the minimum itself is allowed");

        vm.prank(ADMIN);
        market.setMinDisputeWindow(30 days);
        assertEq(market.getListing(listingId).disputeWindow, 2 days, "existing listings keep their window");
        vm.prank(MODERATOR);
        market.setApproval(_one(listingId), true);
        assertEq(market.getOrder(_buy(buyer, listingId)).releaseAt, START + 2 days, "and are bought with it");
    }

    function test_SetMinDisputeWindow_ZeroAllowsPayingAtPurchase() public {
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketWindowTooShort.selector, 0, 1 days));
        vm.prank(SELLER);
        market.createListing(address(token), PRICE, PAYOUT, CONTENT_HASH, 0);
        _allowAnyWindow();
        vm.prank(SELLER);
        market.createListing(address(token), PRICE, PAYOUT, CONTENT_HASH, 0);
    }

    function test_RevertWhen_SetMinDisputeWindowTooLongOrNotAdmin() public {
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketWindowTooLong.selector, 30 days + 1, 30 days));
        vm.prank(ADMIN);
        market.setMinDisputeWindow(30 days + 1);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, MODERATOR, bytes32(0))
        );
        vm.prank(MODERATOR);
        market.setMinDisputeWindow(0);
    }

    function test_SetDisputePeriod() public {
        _expectMarketEmit();
        emit DataMarket.DisputePeriodChanged(14 days, 7 days);
        vm.prank(ADMIN);
        market.setDisputePeriod(7 days);
        assertEq(market.disputePeriod(), 7 days, "lower bound");
        vm.prank(ADMIN);
        market.setDisputePeriod(30 days);
        assertEq(market.disputePeriod(), 30 days, "upper bound");
    }

    function test_RevertWhen_SetDisputePeriodOutOfRangeOrNotAdmin() public {
        vm.startPrank(ADMIN);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketDisputePeriodOutOfRange.selector, 7 days - 1, 7 days, 30 days)
        );
        market.setDisputePeriod(7 days - 1);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketDisputePeriodOutOfRange.selector, 30 days + 1, 7 days, 30 days)
        );
        market.setDisputePeriod(30 days + 1);
        vm.stopPrank();
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, ARBITER, bytes32(0))
        );
        vm.prank(ARBITER);
        market.setDisputePeriod(7 days);
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
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 toConfirm = _buy(buyer, listingId);
        uint256 toDispute = _buy(buyer2, listingId);
        uint256 otherListing = _list(PRICE, 1 days);
        uint256 toRelease = _buy(buyer, otherListing);
        uint256 toExpire = _buy(buyer, _list(PRICE * 2, WINDOW));
        uint256 toCredit = _buy(buyer, _listToken(address(bad), PRICE, WINDOW));
        uint256 bySig = _buy(buyer2, _list(PRICE * 3, WINDOW));
        vm.prank(buyer);
        market.dispute(toExpire);
        bad.setBlocked(PAYOUT, true);
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
        vm.prank(buyer);
        market.confirm(toCredit);
        vm.prank(PAYOUT);
        market.withdraw(address(bad), NEW_PAYOUT);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _signOrder(BUYER2_PK, CONFIRM_ORDER_TYPEHASH, bySig, NONCE, deadline);
        vm.prank(STRANGER);
        market.confirmBySig(bySig, NONCE, deadline, signature);
        vm.warp(block.timestamp + 1 days);
        market.release(_one(toRelease));
        vm.warp(block.timestamp + 14 days);
        market.settleExpiredDispute(toExpire);
        vm.prank(ARBITER);
        market.returnSurplus(address(token), buyer2, 1e6, _ref(1));
        vm.prank(SELLER);
        market.updateListing(listingId, PRICE * 2, NEW_PAYOUT);
        vm.prank(SELLER);
        market.setListingActive(listingId, false);
        vm.prank(MODERATOR);
        market.setApproval(_one(listingId), false);

        _assertStatus(toConfirm, DataMarket.OrderStatus.Released, "confirmed while paused");
        _assertStatus(toDispute, DataMarket.OrderStatus.Resolved, "disputed and resolved while paused");
        _assertStatus(toRelease, DataMarket.OrderStatus.Released, "released while paused");
        _assertStatus(toExpire, DataMarket.OrderStatus.Refunded, "expired dispute refunded while paused");
        _assertStatus(bySig, DataMarket.OrderStatus.Released, "confirmed by signature while paused");
        assertEq(bad.balanceOf(NEW_PAYOUT), PRICE - FEE, "credit withdrawn while paused");
        assertEq(market.totalEscrowed(address(token)), 0, "nothing escrowed");
        assertEq(token.balanceOf(address(market)), 0, "nothing left");
        assertEq(bad.balanceOf(address(market)), 0, "nothing left of the other token");
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
        assertEq(
            market.createListing(address(token), 1, STRANGER, CONTENT_HASH, 1 days), 2, "anyone lists, same hash too"
        );
        assertEq(market.getListing(2).owner, STRANGER, "second owner");
    }

    function test_CreateListing_Bounds() public {
        _allowAnyWindow();
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
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotListingOwner.selector, listingId, MODERATOR));
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
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNotListingOwner.selector, listingId, MODERATOR));
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

    function test_Purchase_AgainAfterFullRefund() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 first = _buy(buyer, listingId);
        vm.prank(buyer);
        market.dispute(first);
        vm.prank(ARBITER);
        market.resolve(first, 10_000);
        assertFalse(market.hasAccess(listingId, buyer), "refunded");

        vm.warp(START + 1 hours);
        vm.prank(SELLER);
        market.updateListing(listingId, PRICE * 2, NEW_PAYOUT);
        _expectMarketEmit();
        emit DataMarket.OrderCreated(2, listingId, buyer, address(token), PRICE * 2, FEE_BPS, RELEASE_AT + 1 hours);
        uint256 second = _buy(buyer, listingId);

        assertEq(market.orderOf(listingId, buyer), second, "orderOf finds the latest order");
        assertTrue(market.hasAccess(listingId, buyer), "access from the new order");
        DataMarket.Order memory old = market.getOrder(first);
        assertEq(old.amount, PRICE, "the old order keeps its amount");
        assertEq(old.releaseAt, RELEASE_AT, "and its release time");
        assertEq(old.disputeDeadline, START + 14 days, "and its dispute deadline");
        assertEq(old.token, address(token), "and its token");
        assertEq(uint256(old.status), uint256(DataMarket.OrderStatus.Refunded), "and its status");
        DataMarket.Order memory current = market.getOrder(second);
        assertEq(current.amount, PRICE * 2, "the new order has its own amount");
        assertEq(current.releaseAt, RELEASE_AT + 1 hours, "and release time");
        assertEq(current.disputeDeadline, 0, "and no dispute");

        // The old order cannot be touched again; the new one settles normally.
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketNotDisputed.selector, first, DataMarket.OrderStatus.Refunded)
        );
        vm.prank(ARBITER);
        market.resolve(first, 0);
        vm.prank(buyer);
        market.confirm(second);
        assertEq(token.balanceOf(NEW_PAYOUT), PRICE * 2 - PRICE * 2 * FEE_BPS / 10_000, "paid for the new order");
        assertEq(market.totalEscrowed(address(token)), 0, "nothing escrowed");

        // A released order is live: buying again reverts.
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketAlreadyPurchased.selector, listingId, buyer, second)
        );
        vm.prank(buyer);
        market.purchase(listingId, PRICE * 2);
    }

    function test_Purchase_AgainAfterExpiredDispute() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 first = _disputed(listingId);
        vm.warp(START + 14 days);
        market.settleExpiredDispute(first);
        uint256 second = _buy(buyer, listingId);
        assertEq(second, first + 1, "bought again");
        assertEq(market.getOrder(first).amount, PRICE, "old order intact");
        assertEq(market.orderOf(listingId, buyer), second, "latest");
    }

    function test_RevertWhen_PurchaseAgainAfterPartialRefundOrRelease() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 resolved = _disputed(listingId);
        vm.prank(ARBITER);
        market.resolve(resolved, 9999);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketAlreadyPurchased.selector, listingId, buyer, resolved)
        );
        vm.prank(buyer);
        market.purchase(listingId, PRICE);

        uint256 released = _buy(buyer2, listingId);
        vm.prank(buyer2);
        market.confirm(released);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketAlreadyPurchased.selector, listingId, buyer2, released)
        );
        vm.prank(buyer2);
        market.purchase(listingId, PRICE);
    }

    function test_RevertWhen_PurchaseWithoutAllowance() public {
        uint256 listingId = _list(PRICE, WINDOW);
        vm.prank(buyer);
        token.approve(address(market), PRICE - 1);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), PRICE - 1, PRICE)
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
        _allowAnyWindow();
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
            abi.encodeWithSelector(DataMarket.DataMarketOrderNotOpen.selector, orderId, DataMarket.OrderStatus.Released)
        );
        vm.prank(buyer);
        market.dispute(orderId);
    }

    function test_ZeroWindow_PermitAndAuthorizationPayAtPurchase() public {
        _allowAnyWindow();
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

    function test_ZeroWindow_BlockedPayoutBecomesCredit() public {
        _allowAnyWindow();
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 listingId = _listToken(address(bad), PRICE, 0);
        bad.setBlocked(PAYOUT, true);
        _expectMarketEmit();
        emit DataMarket.Credited(address(bad), PAYOUT, 1, PRICE - FEE);
        uint256 orderId = _buy(buyer, listingId);

        _assertStatus(orderId, DataMarket.OrderStatus.Released, "bought and released");
        assertEq(market.creditOf(address(bad), PAYOUT), PRICE - FEE, "owner's share credited");
        assertEq(bad.balanceOf(TREASURY), FEE, "fee paid");
        assertEq(market.surplus(address(bad)), 0, "the credit is not surplus");
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
            address(token), keccak256(abi.encode(PERMIT_TYPEHASH, buyer, address(market), PRICE, uint256(0), deadline))
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

        vm.expectRevert(abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, buyer, NONCE));
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(second, auth);

        vm.prank(ADMIN);
        market.setTokenAllowed(address(token), true, false);
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, buyer, NONCE));
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(second, auth);
        assertEq(market.orderCount(), 1, "one order for one authorization");
    }

    function test_RevertWhen_AuthorizationCancelled() public {
        uint256 listingId = _list(PRICE, WINDOW);
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);
        token.cancelAuthorization(buyer, NONCE, _signCancel(BUYER_PK, address(token), NONCE));

        vm.expectRevert(abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, buyer, NONCE));
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

        vm.expectRevert(abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, buyer, NONCE));
        vm.prank(RELAYER);
        market.purchaseWithAuthorization(listingId, auth);

        _expectMarketEmit();
        emit DataMarket.SurplusReturned(address(token), buyer, PRICE, _ref(1));
        vm.prank(ARBITER);
        market.returnSurplus(address(token), buyer, PRICE, _ref(1));
        assertEq(token.balanceOf(buyer), FUNDS, "payer made whole");
        assertTrue(market.surplusReturned(_ref(1)), "reference used");
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
        auth.signature =
            _signTransfer(BUYER_PK, address(token), address(market), PRICE, auth.validAfter, auth.validBefore, NONCE);
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

    /**
     * @dev The token calls back into the market from inside its transfers. Each re-entry would succeed if it were not
     * nested (the same call, made next from outside, does), so only the guard can be what stops it: the callback
     * must fail with the guard's own error. Covers release, settleExpiredDispute, withdraw and confirmBySig.
     */
    function test_ReentrancyIsBlocked() public {
        MarketReentrantToken hook = new MarketReentrantToken(address(this));
        vm.prank(ADMIN);
        market.setTokenAllowed(address(hook), true, true);
        _fund(address(hook), buyer);
        _fund(address(hook), buyer2);
        uint256 listingId = _listToken(address(hook), PRICE, WINDOW);
        uint256 matured = _buy(buyer2, listingId);
        uint256 expired = _buy(buyer2, _listToken(address(hook), PRICE * 2, WINDOW));
        vm.prank(buyer2);
        market.dispute(expired);
        uint256 signed = _buy(buyer2, _listToken(address(hook), PRICE * 3, WINDOW));
        // The token's own address holds a credit of another token, so that it may withdraw.
        MarketRevertingToken bad = _allowRevertingToken();
        vm.prank(SELLER);
        uint256 badListing = market.createListing(address(bad), PRICE, address(hook), CONTENT_HASH, WINDOW);
        vm.prank(MODERATOR);
        market.setApproval(_one(badListing), true);
        uint256 creditOrder = _buy(buyer, badListing);
        bad.setBlocked(address(hook), true);
        vm.prank(buyer);
        market.confirm(creditOrder);
        assertEq(market.creditOf(address(bad), address(hook)), PRICE - FEE, "the token holds a credit");
        vm.warp(START + 14 days);

        // A purchase pulls the price; the token tries to release a matured order.
        hook.arm(address(market), abi.encodeCall(DataMarket.release, (_one(matured))));
        uint256 bought = _buy(buyer, listingId);
        _assertGuardStopped(hook);
        _assertStatus(matured, DataMarket.OrderStatus.Open, "not released by the re-entry");

        // From outside the release works; while it pays out, the token tries to settle an expired dispute.
        hook.arm(address(market), abi.encodeCall(DataMarket.settleExpiredDispute, (expired)));
        market.release(_one(matured));
        _assertStatus(matured, DataMarket.OrderStatus.Released, "released from outside");
        _assertGuardStopped(hook);
        _assertStatus(expired, DataMarket.OrderStatus.Disputed, "not settled by the re-entry");

        // From outside that works; while it refunds, the token tries to withdraw its credit.
        hook.arm(address(market), abi.encodeCall(DataMarket.withdraw, (address(bad), STRANGER)));
        market.settleExpiredDispute(expired);
        _assertStatus(expired, DataMarket.OrderStatus.Refunded, "settled from outside");
        _assertGuardStopped(hook);
        assertEq(market.creditOf(address(bad), address(hook)), PRICE - FEE, "not withdrawn by the re-entry");
        vm.prank(address(hook));
        market.withdraw(address(bad), STRANGER);
        assertEq(bad.balanceOf(STRANGER), PRICE - FEE, "withdrawn from outside");

        // While a confirmation pays out, the token relays the buyer's signed confirmation of another order.
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _signOrder(BUYER2_PK, CONFIRM_ORDER_TYPEHASH, signed, NONCE, deadline);
        hook.arm(address(market), abi.encodeCall(DataMarket.confirmBySig, (signed, NONCE, deadline, signature)));
        vm.prank(buyer);
        market.confirm(bought);
        _assertGuardStopped(hook);
        _assertStatus(signed, DataMarket.OrderStatus.Open, "not confirmed by the re-entry");
        vm.prank(STRANGER);
        market.confirmBySig(signed, NONCE, deadline, signature);
        _assertStatus(signed, DataMarket.OrderStatus.Released, "confirmed from outside");
    }

    function _assertGuardStopped(MarketReentrantToken hook) internal view {
        assertTrue(hook.called(), "hook ran");
        assertFalse(hook.lastSuccess(), "re-entry failed");
        assertEq(
            keccak256(hook.lastReturnData()),
            keccak256(abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)),
            "stopped by the reentrancy guard itself"
        );
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

    function test_Confirm_BlockedPayoutBecomesCredit() public {
        _confirmBlockedPayoutBecomesCredit(false);
    }

    function test_Confirm_PayoutReturningFalseBecomesCredit() public {
        _confirmBlockedPayoutBecomesCredit(true);
    }

    function _confirmBlockedPayoutBecomesCredit(bool returnFalse) internal {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 listingId = _listToken(address(bad), PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        bad.setBlocked(PAYOUT, true);
        bad.setReturnFalse(returnFalse);

        _expectMarketEmit();
        emit DataMarket.OrderReleased(orderId, listingId, buyer, PAYOUT, PRICE - FEE, FEE);
        _expectMarketEmit();
        emit DataMarket.Credited(address(bad), PAYOUT, orderId, PRICE - FEE);
        vm.prank(buyer);
        market.confirm(orderId);

        _assertStatus(orderId, DataMarket.OrderStatus.Released, "released");
        assertEq(bad.balanceOf(TREASURY), FEE, "fee paid");
        assertEq(market.creditOf(address(bad), PAYOUT), PRICE - FEE, "owner's share credited");
        assertEq(market.totalCredits(address(bad)), PRICE - FEE, "total credits");
        assertEq(market.totalEscrowed(address(bad)), 0, "no longer escrowed");
        assertEq(bad.balanceOf(address(market)), PRICE - FEE, "held for the owner");
        assertEq(market.surplus(address(bad)), 0, "a credit is not surplus");

        // The owner withdraws to an address the token accepts.
        _expectMarketEmit();
        emit DataMarket.Withdrawn(address(bad), PAYOUT, NEW_PAYOUT, PRICE - FEE);
        vm.prank(PAYOUT);
        assertEq(market.withdraw(address(bad), NEW_PAYOUT), PRICE - FEE, "withdrawn amount");
        assertEq(bad.balanceOf(NEW_PAYOUT), PRICE - FEE, "owner paid");
        assertEq(market.creditOf(address(bad), PAYOUT), 0, "credit spent");
        assertEq(market.totalCredits(address(bad)), 0, "no credits");
        assertEq(bad.balanceOf(address(market)), 0, "nothing left");
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

    function test_Release_BlockedPayoutBecomesCredit() public {
        _releaseCreditsFailingPayout(false);
    }

    function test_Release_PayoutReturningFalseBecomesCredit() public {
        _releaseCreditsFailingPayout(true);
    }

    function test_Release_FailingTreasuryGetsACredit() public {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 listingId = _listToken(address(bad), PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        bad.setBlocked(TREASURY, true);
        vm.warp(START + WINDOW);

        _expectMarketEmit();
        emit DataMarket.OrderReleased(orderId, listingId, buyer, PAYOUT, PRICE - FEE, FEE);
        _expectMarketEmit();
        emit DataMarket.Credited(address(bad), TREASURY, orderId, FEE);
        market.release(_one(orderId));

        _assertStatus(orderId, DataMarket.OrderStatus.Released, "released");
        assertEq(bad.balanceOf(PAYOUT), PRICE - FEE, "owner paid");
        assertEq(market.totalEscrowed(address(bad)), 0, "nothing escrowed");
        assertEq(market.creditOf(address(bad), TREASURY), FEE, "the fee waits for the treasury");
        assertEq(market.surplus(address(bad)), 0, "and is not surplus");
        vm.prank(TREASURY);
        market.withdraw(address(bad), NEW_TREASURY);
        assertEq(bad.balanceOf(NEW_TREASURY), FEE, "withdrawn by the treasury");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // dispute and resolve
    // ---------------------------------------------------------------------------------------------------------------

    function test_Dispute() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        vm.warp(START + WINDOW - 1);
        _expectMarketEmit();
        emit DataMarket.OrderDisputed(orderId, listingId, buyer, START64 + WINDOW - 1 + 14 days);
        vm.prank(buyer);
        market.dispute(orderId);

        _assertStatus(orderId, DataMarket.OrderStatus.Disputed, "disputed");
        assertEq(market.getOrder(orderId).disputeDeadline, START + WINDOW - 1 + 14 days, "deadline fixed now");
        assertEq(market.getOrder(orderId).releaseAt, RELEASE_AT, "release time kept");
        assertTrue(market.hasAccess(listingId, buyer), "access while disputed");
        assertEq(market.totalEscrowed(address(token)), PRICE, "still escrowed");

        vm.warp(START + WINDOW * 10);
        market.release(_one(orderId));
        _assertStatus(orderId, DataMarket.OrderStatus.Disputed, "release cannot settle a dispute");
    }

    function test_RevertWhen_DisputeWindowClosed() public {
        uint256 orderId = _buy(buyer, _list(PRICE, WINDOW));
        vm.warp(START + WINDOW);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketDisputeWindowClosed.selector, orderId, RELEASE_AT));
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
            abi.encodeWithSelector(DataMarket.DataMarketOrderNotOpen.selector, orderId, DataMarket.OrderStatus.Disputed)
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

    function test_DisputeDeadline_FixedWhenOpenedAndNeverMoved() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 early = _disputed(listingId);
        vm.prank(ADMIN);
        market.setDisputePeriod(30 days);
        uint256 late = _buy(buyer2, listingId);
        vm.prank(buyer2);
        market.dispute(late);
        vm.prank(ADMIN);
        market.setDisputePeriod(7 days);

        assertEq(market.getOrder(early).disputeDeadline, START + 14 days, "opened under 14 days");
        assertEq(market.getOrder(late).disputeDeadline, START + 30 days, "opened under 30 days");

        // Past the first deadline only a full refund remains for it; the second is still the arbiter's.
        vm.warp(START + 14 days);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketDisputeExpired.selector, early, START64 + 14 days));
        vm.prank(ARBITER);
        market.resolve(early, 0);
        vm.prank(ARBITER);
        market.resolve(late, 0);
        _assertStatus(late, DataMarket.OrderStatus.Resolved, "resolved before its own deadline");
    }

    function test_SettleExpiredDispute() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _disputed(listingId);
        vm.warp(START + 14 days - 1);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketDisputeNotExpired.selector, orderId, START64 + 14 days)
        );
        market.settleExpiredDispute(orderId);
        vm.prank(ARBITER);
        market.resolve(orderId, 5000); // the arbiter may still decide up to the last second
        _assertStatus(orderId, DataMarket.OrderStatus.Resolved, "resolved in time");

        uint256 expired = _buy(buyer2, listingId);
        vm.prank(buyer2);
        market.dispute(expired);
        vm.warp(block.timestamp + 14 days);
        _expectMarketEmit();
        emit DataMarket.DisputeExpired(expired, listingId, buyer2, PRICE);
        vm.prank(STRANGER);
        market.settleExpiredDispute(expired);

        _assertStatus(expired, DataMarket.OrderStatus.Refunded, "refunded in full");
        assertEq(token.balanceOf(buyer2), FUNDS, "buyer made whole");
        assertFalse(market.hasAccess(listingId, buyer2), "no access after the refund");
        assertEq(market.totalEscrowed(address(token)), 0, "nothing escrowed");
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketNotDisputed.selector, expired, DataMarket.OrderStatus.Refunded)
        );
        market.settleExpiredDispute(expired);
    }

    function test_RevertWhen_SettleExpiredDisputeNotDisputed() public {
        uint256 orderId = _buy(buyer, _list(PRICE, WINDOW));
        vm.warp(START + 60 days);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketNotDisputed.selector, orderId, DataMarket.OrderStatus.Open)
        );
        market.settleExpiredDispute(orderId);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketNotDisputed.selector, 9, DataMarket.OrderStatus.None)
        );
        market.settleExpiredDispute(9);
    }

    function test_SettleExpiredDispute_BlockedBuyerGetsACredit() public {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 orderId = _buy(buyer, _listToken(address(bad), PRICE, WINDOW));
        vm.prank(buyer);
        market.dispute(orderId);
        bad.setBlocked(buyer, true);
        vm.warp(START + 14 days);
        _expectMarketEmit();
        emit DataMarket.Credited(address(bad), buyer, orderId, PRICE);
        market.settleExpiredDispute(orderId);
        _assertStatus(orderId, DataMarket.OrderStatus.Refunded, "refunded");
        assertEq(market.creditOf(address(bad), buyer), PRICE, "refund credited");
        vm.prank(buyer);
        market.withdraw(address(bad), buyer2);
        assertEq(bad.balanceOf(buyer2), FUNDS + PRICE, "withdrawn elsewhere");
    }

    function test_Resolve_PartialRefundToBlockedBuyerAndOwner() public {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 listingId = _listToken(address(bad), PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        vm.prank(buyer);
        market.dispute(orderId);
        bad.setBlocked(buyer, true);
        bad.setBlocked(PAYOUT, true);
        bad.setBlocked(TREASURY, true);
        uint256 refund = PRICE * 4000 / 10_000;
        uint256 fee = (PRICE - refund) * FEE_BPS / 10_000;
        vm.prank(ARBITER);
        market.resolve(orderId, 4000);

        _assertStatus(orderId, DataMarket.OrderStatus.Resolved, "a blocked party cannot hold up a resolution");
        assertEq(market.creditOf(address(bad), buyer), refund, "refund credited");
        assertEq(market.creditOf(address(bad), PAYOUT), PRICE - refund - fee, "owner's share credited");
        assertEq(market.creditOf(address(bad), TREASURY), fee, "fee credited");
        assertEq(market.totalCredits(address(bad)), PRICE, "all of it credited");
        assertEq(market.totalEscrowed(address(bad)), 0, "nothing escrowed");
        assertEq(bad.balanceOf(address(market)), PRICE, "all of it held");
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
            abi.encodeWithSelector(DataMarket.DataMarketNotDisputed.selector, orderId, DataMarket.OrderStatus.Refunded)
        );
        vm.prank(ARBITER);
        market.resolve(orderId, 0);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Signed confirmations and disputes
    // ---------------------------------------------------------------------------------------------------------------

    function test_ConfirmBySig_RelayedByAnyone() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _signOrder(BUYER_PK, CONFIRM_ORDER_TYPEHASH, orderId, NONCE, deadline);

        _expectMarketEmit();
        emit DataMarket.OrderReleased(orderId, listingId, buyer, PAYOUT, PRICE - FEE, FEE);
        vm.prank(STRANGER);
        market.confirmBySig(orderId, NONCE, deadline, signature);

        _assertStatus(orderId, DataMarket.OrderStatus.Released, "released");
        assertEq(token.balanceOf(PAYOUT), PRICE - FEE, "owner paid");
        assertTrue(market.nonceUsed(buyer, NONCE), "nonce used");
        assertEq(token.balanceOf(STRANGER), 0, "the relayer gets nothing");
    }

    function test_DisputeBySig_RelayedByAnyone() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _signOrder(BUYER_PK, DISPUTE_ORDER_TYPEHASH, orderId, NONCE, deadline);

        _expectMarketEmit();
        emit DataMarket.OrderDisputed(orderId, listingId, buyer, START64 + 14 days);
        vm.prank(STRANGER);
        market.disputeBySig(orderId, NONCE, deadline, signature);
        _assertStatus(orderId, DataMarket.OrderStatus.Disputed, "disputed");
    }

    function test_BySig_ContractWalletSignature() public {
        ERC1271WalletMock wallet = _fundedWallet();
        vm.prank(address(wallet));
        token.approve(address(market), type(uint256).max);
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _buy(address(wallet), listingId);
        uint256 deadline = block.timestamp + 1 hours;
        bytes32 digest = _orderDigest(DISPUTE_ORDER_TYPEHASH, orderId, NONCE, deadline);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(WALLET_OWNER_PK, digest);

        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketInvalidSignature.selector, orderId, address(wallet))
        );
        market.disputeBySig(orderId, NONCE, deadline, abi.encodePacked(r, s, v));

        market.disputeBySig(orderId, NONCE, deadline, abi.encodePacked(r, s, v, WALLET_TAG));
        _assertStatus(orderId, DataMarket.OrderStatus.Disputed, "the wallet disputed");
    }

    function test_RevertWhen_BySigWrongSignerTypeOrOrder() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        uint256 other = _buy(buyer, _list(PRICE, WINDOW));
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory invalid = abi.encodeWithSelector(DataMarket.DataMarketInvalidSignature.selector, orderId, buyer);

        // Signed by someone else, for the other type, for another order, for another deadline, or garbage.
        vm.expectRevert(invalid);
        market.confirmBySig(
            orderId, NONCE, deadline, _signOrder(BUYER2_PK, CONFIRM_ORDER_TYPEHASH, orderId, NONCE, deadline)
        );
        vm.expectRevert(invalid);
        market.confirmBySig(
            orderId, NONCE, deadline, _signOrder(BUYER_PK, DISPUTE_ORDER_TYPEHASH, orderId, NONCE, deadline)
        );
        vm.expectRevert(invalid);
        market.disputeBySig(
            orderId, NONCE, deadline, _signOrder(BUYER_PK, CONFIRM_ORDER_TYPEHASH, orderId, NONCE, deadline)
        );
        vm.expectRevert(invalid);
        market.confirmBySig(
            orderId, NONCE, deadline, _signOrder(BUYER_PK, CONFIRM_ORDER_TYPEHASH, other, NONCE, deadline)
        );
        vm.expectRevert(invalid);
        market.confirmBySig(
            orderId, NONCE, deadline, _signOrder(BUYER_PK, CONFIRM_ORDER_TYPEHASH, orderId, NONCE, deadline + 1)
        );
        vm.expectRevert(invalid);
        market.confirmBySig(orderId, NONCE, deadline, hex"1234");
        _assertStatus(orderId, DataMarket.OrderStatus.Open, "untouched");
        assertFalse(market.nonceUsed(buyer, NONCE), "a failed call uses no nonce");

        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketUnknownOrder.selector, 99));
        market.confirmBySig(99, NONCE, deadline, _signOrder(BUYER_PK, CONFIRM_ORDER_TYPEHASH, 99, NONCE, deadline));
    }

    function test_RevertWhen_BySigExpiredOrNonceReused() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 first = _buy(buyer, listingId);
        uint256 second = _buy(buyer, _list(PRICE, WINDOW));
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory expired = _signOrder(BUYER_PK, CONFIRM_ORDER_TYPEHASH, first, NONCE, deadline);
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketSignatureExpired.selector, deadline));
        market.confirmBySig(first, NONCE, deadline, expired);

        deadline = block.timestamp; // valid through its last second
        market.confirmBySig(
            first, NONCE, deadline, _signOrder(BUYER_PK, CONFIRM_ORDER_TYPEHASH, first, NONCE, deadline)
        );
        bytes memory reused = _signOrder(BUYER_PK, DISPUTE_ORDER_TYPEHASH, second, NONCE, deadline);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNonceUsed.selector, buyer, NONCE));
        market.disputeBySig(second, NONCE, deadline, reused);
    }

    function test_RevertWhen_BySigOrderNotOpenOrWindowClosed() public {
        uint256 orderId = _buy(buyer, _list(PRICE, WINDOW));
        vm.warp(START + WINDOW);
        uint256 deadline = block.timestamp + 1 hours;
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketDisputeWindowClosed.selector, orderId, RELEASE_AT));
        market.disputeBySig(
            orderId, NONCE, deadline, _signOrder(BUYER_PK, DISPUTE_ORDER_TYPEHASH, orderId, NONCE, deadline)
        );

        market.release(_one(orderId));
        bytes32 nonce = keccak256("second");
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.DataMarketOrderNotOpen.selector, orderId, DataMarket.OrderStatus.Released)
        );
        market.confirmBySig(
            orderId, nonce, deadline, _signOrder(BUYER_PK, CONFIRM_ORDER_TYPEHASH, orderId, nonce, deadline)
        );
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Credits and withdrawals
    // ---------------------------------------------------------------------------------------------------------------

    function test_RevertWhen_WithdrawNothingOrToZero() public {
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNothingToWithdraw.selector, address(token), PAYOUT));
        vm.prank(PAYOUT);
        market.withdraw(address(token), PAYOUT);
        vm.expectRevert(DataMarket.DataMarketZeroAddress.selector);
        vm.prank(PAYOUT);
        market.withdraw(address(token), address(0));
    }

    function test_Withdraw_WorksForADisallowedToken() public {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 orderId = _buy(buyer, _listToken(address(bad), PRICE, WINDOW));
        bad.setBlocked(PAYOUT, true);
        vm.prank(buyer);
        market.confirm(orderId);
        vm.prank(ADMIN);
        market.setTokenAllowed(address(bad), false, true);
        vm.prank(PAYOUT);
        market.withdraw(address(bad), NEW_PAYOUT);
        assertEq(bad.balanceOf(NEW_PAYOUT), PRICE - FEE, "withdrawn");
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNothingToWithdraw.selector, address(bad), PAYOUT));
        vm.prank(PAYOUT);
        market.withdraw(address(bad), NEW_PAYOUT);
    }

    function test_RevertWhen_WithdrawTransferFails() public {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 orderId = _buy(buyer, _listToken(address(bad), PRICE, WINDOW));
        bad.setBlocked(PAYOUT, true);
        vm.prank(buyer);
        market.confirm(orderId);
        vm.expectRevert(abi.encodeWithSelector(MarketRevertingToken.MarketRevertingTokenBlocked.selector, PAYOUT));
        vm.prank(PAYOUT);
        market.withdraw(address(bad), PAYOUT);
        assertEq(market.creditOf(address(bad), PAYOUT), PRICE - FEE, "the credit stays");
    }

    function test_WithdrawFor_SendsACreditToItsOwnerOnceTheTokenAcceptsIt() public {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 orderId = _buy(buyer, _listToken(address(bad), PRICE, WINDOW));
        bad.setBlocked(PAYOUT, true);
        vm.prank(buyer);
        market.confirm(orderId);

        // While the token still refuses, nothing changes.
        vm.expectRevert(abi.encodeWithSelector(MarketRevertingToken.MarketRevertingTokenBlocked.selector, PAYOUT));
        vm.prank(STRANGER);
        market.withdrawFor(address(bad), PAYOUT);
        assertEq(market.creditOf(address(bad), PAYOUT), PRICE - FEE, "still credited");

        bad.setBlocked(PAYOUT, false);
        vm.prank(ADMIN);
        market.pause();
        _expectMarketEmit();
        emit DataMarket.Withdrawn(address(bad), PAYOUT, PAYOUT, PRICE - FEE);
        vm.prank(STRANGER);
        assertEq(market.withdrawFor(address(bad), PAYOUT), PRICE - FEE, "amount");
        assertEq(bad.balanceOf(PAYOUT), PRICE - FEE, "paid to the owner itself, while paused too");
        assertEq(bad.balanceOf(STRANGER), 0, "the caller gets nothing");
        assertEq(market.totalCredits(address(bad)), 0, "no credits");

        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketNothingToWithdraw.selector, address(bad), PAYOUT));
        market.withdrawFor(address(bad), PAYOUT);
    }

    function test_Credits_AddUpAcrossOrders() public {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 listingId = _listToken(address(bad), PRICE, WINDOW);
        uint256 a = _buy(buyer, listingId);
        uint256 b = _buy(buyer2, listingId);
        bad.setBlocked(PAYOUT, true);
        vm.prank(buyer);
        market.confirm(a);
        vm.prank(buyer2);
        market.confirm(b);
        assertEq(market.creditOf(address(bad), PAYOUT), 2 * (PRICE - FEE), "two credits");
        assertEq(market.totalCredits(address(bad)), 2 * (PRICE - FEE), "total");
        assertEq(market.totalCredits(address(token)), 0, "per token");
    }

    /// @dev A transfer starved of gas must not become a credit: the whole call reverts instead.
    function test_StarvedTransferRevertsInsteadOfCrediting() public {
        MarketGasHungryToken hungry = new MarketGasHungryToken(address(this));
        vm.prank(ADMIN);
        market.setTokenAllowed(address(hungry), true, true);
        _fund(address(hungry), buyer);
        uint256 orderId = _buy(buyer, _listToken(address(hungry), PRICE, WINDOW));
        hungry.setHungry(PAYOUT, 300_000);
        vm.warp(START + WINDOW);

        // Too little gas for the payout transfer: the release reverts, nothing is credited.
        (bool ok, bytes memory reason) =
            address(market).call{gas: 250_000}(abi.encodeCall(DataMarket.release, (_one(orderId))));
        assertFalse(ok, "starved release reverts");
        // forge-lint: disable-next-line(unsafe-typecast) -- the selector is the first four bytes
        assertEq(bytes4(reason), DataMarket.DataMarketTransferGasTooLow.selector, "with the reserve's error");
        _assertStatus(orderId, DataMarket.OrderStatus.Open, "still open");
        assertEq(market.creditOf(address(hungry), PAYOUT), 0, "no credit forced");

        // With enough gas the same transfer goes through and nothing is credited either.
        market.release{gas: 1_000_000}(_one(orderId));
        _assertStatus(orderId, DataMarket.OrderStatus.Released, "released");
        assertEq(hungry.balanceOf(PAYOUT), PRICE - FEE, "paid, not credited");
        assertEq(market.totalCredits(address(hungry)), 0, "no credits");
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
        emit DataMarket.SurplusReturned(address(token), buyer2, 4e6, _ref(1));
        vm.prank(ARBITER);
        market.returnSurplus(address(token), buyer2, 4e6, _ref(1));
        assertEq(market.surplus(address(token)), 3e6, "rest of the surplus");
        assertEq(market.totalEscrowed(address(token)), PRICE, "escrow untouched");
        assertEq(token.balanceOf(address(market)), PRICE + 3e6, "balance");
        assertTrue(market.surplusReturned(_ref(1)), "reference used");
        assertFalse(market.surplusReturned(_ref(2)), "others not");
    }

    function test_RevertWhen_ReturnSurplusReferenceUsedOrInvalid() public {
        vm.prank(buyer2);
        assertTrue(token.transfer(address(market), 7e6), "transfer");
        vm.prank(ARBITER);
        market.returnSurplus(address(token), buyer2, 1e6, _ref(1));

        vm.startPrank(ARBITER);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketSurplusAlreadyReturned.selector, _ref(1)));
        market.returnSurplus(address(token), buyer2, 1e6, _ref(1));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketInvalidSurplusReturn.selector, 1e6, bytes32(0)));
        market.returnSurplus(address(token), buyer2, 1e6, bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketInvalidSurplusReturn.selector, 0, _ref(2)));
        market.returnSurplus(address(token), buyer2, 0, _ref(2));
        vm.stopPrank();
        assertEq(market.surplus(address(token)), 6e6, "only the first return went out");
    }

    function test_Surplus_ExcludesCredits() public {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 orderId = _buy(buyer, _listToken(address(bad), PRICE, WINDOW));
        bad.setBlocked(PAYOUT, true);
        vm.prank(buyer);
        market.confirm(orderId);
        bad.mint(address(market), 5);
        assertEq(market.surplus(address(bad)), 5, "balance - escrow - credits");
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketSurplusExceeded.selector, 6, 5));
        vm.prank(ARBITER);
        market.returnSurplus(address(bad), STRANGER, 6, _ref(1));
        vm.prank(ARBITER);
        market.returnSurplus(address(bad), STRANGER, 5, _ref(1));
        assertEq(bad.balanceOf(address(market)), PRICE - FEE, "the credit is still held");
    }

    function test_ReturnSurplusBatch() public {
        MarketRevertingToken other = _allowRevertingToken();
        _buy(buyer, _list(PRICE, WINDOW));
        vm.prank(buyer2);
        assertTrue(token.transfer(address(market), 7e6), "transfer");
        other.mint(address(market), 3e6);

        DataMarket.SurplusReturn[] memory items = new DataMarket.SurplusReturn[](3);
        items[0] = DataMarket.SurplusReturn(address(token), buyer2, 5e6, _ref(1));
        items[1] = DataMarket.SurplusReturn(address(other), STRANGER, 3e6, _ref(2));
        items[2] = DataMarket.SurplusReturn(address(token), buyer, 2e6, _ref(3));
        _expectMarketEmit();
        emit DataMarket.SurplusReturned(address(token), buyer2, 5e6, _ref(1));
        _expectMarketEmit();
        emit DataMarket.SurplusReturned(address(other), STRANGER, 3e6, _ref(2));
        _expectMarketEmit();
        emit DataMarket.SurplusReturned(address(token), buyer, 2e6, _ref(3));
        vm.prank(ARBITER);
        market.returnSurplusBatch(items);
        assertEq(market.surplus(address(token)), 0, "token surplus gone");
        assertEq(market.surplus(address(other)), 0, "other surplus gone");
        assertEq(token.balanceOf(address(market)), PRICE, "escrow untouched");
    }

    function test_RevertWhen_ReturnSurplusBatchExceedsOrRepeatsAReference() public {
        vm.prank(buyer2);
        assertTrue(token.transfer(address(market), 7e6), "transfer");
        DataMarket.SurplusReturn[] memory items = new DataMarket.SurplusReturn[](2);
        items[0] = DataMarket.SurplusReturn(address(token), buyer2, 5e6, _ref(1));
        items[1] = DataMarket.SurplusReturn(address(token), buyer2, 3e6, _ref(2));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketSurplusExceeded.selector, 3e6, 2e6));
        vm.prank(ARBITER);
        market.returnSurplusBatch(items);

        items[1] = DataMarket.SurplusReturn(address(token), buyer2, 1e6, _ref(1));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketSurplusAlreadyReturned.selector, _ref(1)));
        vm.prank(ARBITER);
        market.returnSurplusBatch(items);
        assertEq(market.surplus(address(token)), 7e6, "the whole batch reverted");
        assertFalse(market.surplusReturned(_ref(1)), "no reference used");
    }

    function test_RevertWhen_ReturnSurplusExceeded() public {
        _buy(buyer, _list(PRICE, WINDOW));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketSurplusExceeded.selector, 1, 0));
        vm.prank(ARBITER);
        market.returnSurplus(address(token), ARBITER, 1, _ref(1));

        vm.prank(buyer2);
        assertTrue(token.transfer(address(market), 5), "transfer");
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketSurplusExceeded.selector, 6, 5));
        vm.prank(ARBITER);
        market.returnSurplus(address(token), ARBITER, 6, _ref(1));
    }

    function test_RevertWhen_ReturnSurplusNotArbiter() public {
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, ADMIN, ARBITER_ROLE)
        );
        vm.prank(ADMIN);
        market.returnSurplus(address(token), ADMIN, 1, _ref(1));
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, ADMIN, ARBITER_ROLE)
        );
        vm.prank(ADMIN);
        market.returnSurplusBatch(new DataMarket.SurplusReturn[](0));
    }

    function test_RevertWhen_ReturnSurplusToZero() public {
        vm.expectRevert(DataMarket.DataMarketZeroAddress.selector);
        vm.prank(ARBITER);
        market.returnSurplus(address(token), address(0), 1, _ref(1));
    }

    function test_Surplus_TokenNeverConfigured() public {
        TestUSDC other = new TestUSDC(address(this));
        other.mint(address(market), 42);
        assertEq(market.surplus(address(other)), 42, "all of it");
        assertEq(market.totalEscrowed(address(other)), 0, "nothing escrowed");
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketTokenNotConfigured.selector, address(other)));
        vm.prank(ARBITER);
        market.returnSurplus(address(other), STRANGER, 42, _ref(1));

        // Once configured (even if disallowed again), its surplus can be returned.
        vm.startPrank(ADMIN);
        market.setTokenAllowed(address(other), true, true);
        market.setTokenAllowed(address(other), false, true);
        vm.stopPrank();
        vm.prank(ARBITER);
        market.returnSurplus(address(other), STRANGER, 42, _ref(1));
        assertEq(other.balanceOf(STRANGER), 42, "returned");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Views and storage packing
    // ---------------------------------------------------------------------------------------------------------------

    function test_Views_Unknown() public view {
        DataMarket.Order memory o = market.getOrder(3);
        assertEq(o.listingId, 0, "listing");
        assertEq(o.buyer, address(0), "buyer");
        assertEq(o.token, address(0), "token");
        assertEq(o.amount, 0, "amount");
        assertEq(o.releaseAt, 0, "releaseAt");
        assertEq(o.disputeDeadline, 0, "disputeDeadline");
        assertEq(o.feeBps, 0, "fee");
        assertEq(uint256(o.status), uint256(DataMarket.OrderStatus.None), "status");
        assertEq(market.orderOf(1, buyer), 0, "orderOf");
        assertFalse(market.hasAccess(1, buyer), "hasAccess");
        assertEq(market.totalEscrowed(address(token)), 0, "totalEscrowed");
        assertEq(market.totalCredits(address(token)), 0, "totalCredits");
        assertEq(market.creditOf(address(token), buyer), 0, "creditOf");
        assertEq(market.surplus(address(token)), 0, "surplus");
        assertFalse(market.nonceUsed(buyer, NONCE), "nonceUsed");
        assertFalse(market.surplusReturned(NONCE), "surplusReturned");
    }

    /**
     * @dev Buying one's own maximum-price listings used to fill an 88-bit escrowed total and block the token. The
     * total now carries past 88 bits (two maximum orders) and borrows back when they settle.
     */
    function test_EscrowedTotal_GoesBeyond88Bits() public {
        uint256 maxPrice = market.MAX_PRICE();
        token.mint(buyer, 3 * maxPrice);
        uint256 listingId = _list(maxPrice, WINDOW);
        uint256 other = _list(maxPrice, WINDOW);
        uint256 a = _buy(buyer, listingId);
        uint256 b = _buy(buyer, other);
        uint256 c = _buy(buyer2, _list(PRICE, WINDOW));
        assertEq(market.totalEscrowed(address(token)), 2 * maxPrice + PRICE, "beyond 88 bits");
        assertEq(market.surplus(address(token)), 0, "no surplus");

        vm.prank(buyer);
        market.confirm(a);
        assertEq(market.totalEscrowed(address(token)), maxPrice + PRICE, "borrowed back");
        vm.prank(buyer);
        market.dispute(b);
        vm.prank(ARBITER);
        market.resolve(b, 10_000);
        vm.prank(buyer2);
        market.confirm(c);
        assertEq(market.totalEscrowed(address(token)), 0, "back to 0");
        assertEq(token.balanceOf(address(market)), 0, "nothing held");
    }

    /// @dev At 2^128 - 1 the escrowed total stops: a purchase that would pass it reverts (checked arithmetic).
    function test_EscrowedTotal_StopsAt128Bits() public {
        uint256 listingId = _list(PRICE, WINDOW);
        bytes32 recordSlot = keccak256(abi.encode(uint256(1), TOKEN_RECORDS_SLOT));
        bytes32 totalsSlot = keccak256(abi.encode(uint256(1), TOKEN_TOTALS_SLOT));
        uint256 record = uint256(vm.load(address(market), recordSlot));
        // forge-lint: disable-next-line(unsafe-typecast) -- the address is the low 160 bits
        assertEq(address(uint160(record)), address(token), "token record found");
        // escrowedLow (bits 168..256) at 2^88 - 1, escrowedCarries (bits 0..40) at 2^40 - 1.
        vm.store(
            address(market), recordSlot, bytes32((record & type(uint168).max) | (uint256(type(uint88).max) << 168))
        );
        vm.store(address(market), totalsSlot, bytes32(uint256(type(uint40).max)));
        assertEq(market.totalEscrowed(address(token)), type(uint128).max, "a 128-bit total");
        (bool allowed, bool bytesSignature) = market.tokenConfig(address(token));
        assertTrue(allowed && bytesSignature, "flags untouched");

        vm.expectRevert(abi.encodeWithSignature("Panic(uint256)", 0x11));
        vm.prank(buyer);
        market.purchase(listingId, PRICE);
    }

    /**
     * @dev Every hand-packed field at its maximum: the order and listing counters and the token count set just below
     * their limits, a buyer address of all ones, the maximum price, fee rate, and times of 2^40 - 1. Each field reads
     * back exactly and disturbs no neighbour, through every status; the counters then stop with a revert.
     */
    function test_PackedRecordsAtTheirLimits() public {
        uint256 maxPrice = market.MAX_PRICE();
        uint256 maxTime = type(uint40).max;
        address maxBuyer = address(type(uint160).max);
        uint256 first = _list(PRICE, WINDOW);
        vm.startPrank(ADMIN);
        market.setFee(1000);
        market.setDisputePeriod(30 days);
        vm.stopPrank();
        _setCounters(type(uint64).max - 1, type(uint64).max - 1, type(uint16).max - 1);
        assertEq(market.orderCount(), type(uint64).max - 1, "order counter set");
        assertEq(market.listingCount(), type(uint64).max - 1, "listing counter set");
        assertEq(market.treasury(), TREASURY, "treasury untouched");
        assertEq(market.feeBps(), 1000, "fee untouched");
        assertFalse(market.paused(), "pause flag untouched");
        assertEq(market.disputePeriod(), 30 days, "period untouched");

        TestUSDC last = new TestUSDC(address(this));
        vm.prank(ADMIN);
        market.setTokenAllowed(address(last), true, true);
        _fund(address(last), maxBuyer);
        last.mint(maxBuyer, maxPrice);
        vm.warp(maxTime - 30 days);
        uint256 listingId = _listToken(address(last), maxPrice, 30 days);
        assertEq(listingId, type(uint64).max, "the last listing id");
        uint256 orderId = _buy(maxBuyer, listingId);
        assertEq(orderId, type(uint64).max, "the last order id");

        _assertMaxOrder(orderId, listingId, maxBuyer, address(last), 0, DataMarket.OrderStatus.Open);
        vm.prank(maxBuyer);
        market.dispute(orderId);
        _assertMaxOrder(orderId, listingId, maxBuyer, address(last), maxTime, DataMarket.OrderStatus.Disputed);
        vm.prank(ARBITER);
        market.resolve(orderId, 1);
        _assertMaxOrder(orderId, listingId, maxBuyer, address(last), maxTime, DataMarket.OrderStatus.Resolved);
        assertEq(market.totalEscrowed(address(last)), 0, "settled in full");

        // Every counter is at its limit now.
        vm.expectRevert(abi.encodeWithSignature("Panic(uint256)", 0x11));
        vm.prank(SELLER);
        market.createListing(address(last), PRICE, PAYOUT, CONTENT_HASH, 30 days);
        vm.expectRevert(abi.encodeWithSignature("Panic(uint256)", 0x11));
        vm.prank(ADMIN);
        market.setTokenAllowed(address(0xBEEF), true, true);
        vm.expectRevert(abi.encodeWithSignature("Panic(uint256)", 0x11));
        vm.prank(buyer);
        market.purchase(first, PRICE);
    }

    /// @dev A dispute window that would end past 2^40 - 1 seconds is refused, not wrapped to an early release.
    function test_Purchase_RevertsWhenReleaseAtOutOfRange() public {
        uint256 listingId = _list(PRICE, WINDOW);
        uint256 last = type(uint40).max;
        vm.warp(last - WINDOW + 1);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.DataMarketTimeOutOfRange.selector, last + 1));
        vm.prank(buyer);
        market.purchase(listingId, PRICE);
        vm.warp(last - WINDOW);
        uint256 orderId = _buy(buyer, listingId);
        assertEq(market.getOrder(orderId).releaseAt, last, "the last time an order can hold");
    }

    function _assertMaxOrder(
        uint256 orderId,
        uint256 listingId,
        address account,
        address tokenAddress,
        uint256 deadline,
        DataMarket.OrderStatus status
    ) internal view {
        DataMarket.Order memory o = market.getOrder(orderId);
        assertEq(o.listingId, listingId, "listing");
        assertEq(o.buyer, account, "buyer");
        assertEq(o.token, tokenAddress, "token (index 65535)");
        assertEq(o.amount, market.MAX_PRICE(), "amount");
        assertEq(o.releaseAt, type(uint40).max, "releaseAt");
        assertEq(o.disputeDeadline, deadline, "disputeDeadline");
        assertEq(o.feeBps, 1000, "fee");
        assertEq(uint256(o.status), uint256(status), "status");
        assertEq(market.orderOf(listingId, account), orderId, "orderOf");
        assertTrue(market.hasAccess(listingId, account), "access");
    }

    /// @dev Writes the order counter (slot 3, bits 184..248), the listing counter (slot 4, bits 0..64) and the token
    /// counter (slot 4, bits 64..80), keeping their neighbours. Slots as `forge inspect DataMarket storageLayout`.
    function _setCounters(uint256 orders, uint256 listings, uint256 tokens) internal {
        uint256 word = uint256(vm.load(address(market), bytes32(uint256(3))));
        word = (word & ~(uint256(type(uint64).max) << 184)) | (orders << 184);
        vm.store(address(market), bytes32(uint256(3)), bytes32(word));
        word = uint256(vm.load(address(market), bytes32(uint256(4))));
        word = (word & ~uint256(type(uint80).max)) | listings | (tokens << 64);
        vm.store(address(market), bytes32(uint256(4)), bytes32(word));
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

    function _releaseCreditsFailingPayout(bool returnFalse) internal {
        MarketRevertingToken bad = _allowRevertingToken();
        uint256 blockedListing = _listToken(address(bad), PRICE, WINDOW);
        vm.prank(SELLER);
        uint256 fineListing = market.createListing(address(bad), PRICE, NEW_PAYOUT, CONTENT_HASH, WINDOW);
        vm.prank(MODERATOR);
        market.setApproval(_one(fineListing), true);
        uint256 blocked = _buy(buyer, blockedListing);
        uint256 fine = _buy(buyer, fineListing);
        bad.setBlocked(PAYOUT, true);
        bad.setReturnFalse(returnFalse);
        vm.warp(START + WINDOW);

        _expectMarketEmit();
        emit DataMarket.OrderReleased(blocked, blockedListing, buyer, PAYOUT, PRICE - FEE, FEE);
        _expectMarketEmit();
        emit DataMarket.Credited(address(bad), PAYOUT, blocked, PRICE - FEE);
        _expectMarketEmit();
        emit DataMarket.OrderReleased(fine, fineListing, buyer, NEW_PAYOUT, PRICE - FEE, FEE);
        market.release(_two(blocked, fine));

        _assertStatus(blocked, DataMarket.OrderStatus.Released, "a blocked payout no longer holds the order");
        _assertStatus(fine, DataMarket.OrderStatus.Released, "the rest of the batch is released");
        assertEq(market.totalEscrowed(address(bad)), 0, "nothing escrowed");
        assertEq(market.creditOf(address(bad), PAYOUT), PRICE - FEE, "blocked share credited");
        assertEq(bad.balanceOf(address(market)), PRICE - FEE, "held for the owner");
        assertEq(bad.balanceOf(TREASURY), 2 * FEE, "both fees paid");
        assertEq(market.surplus(address(bad)), 0, "no surplus");
    }
}

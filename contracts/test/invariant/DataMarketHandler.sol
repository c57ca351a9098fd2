// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "../utils/Test.sol";
import {DataMarket} from "../../src/DataMarket.sol";
import {TestUSDC} from "../../src/TestUSDC.sol";

/**
 * @dev Drives {DataMarket} at random for the invariant tests: listings, approvals, delistings (owner and moderator),
 * purchases of all three kinds (permits and EIP-3009 authorizations signed with the buyers' keys, front-run permits),
 * authorizations sent straight to the token, cancelled and replayed authorizations, confirmations, disputes,
 * resolutions, releases, time, surplus returns, fee changes, token allow-listing and pauses.
 *
 * Two TestUSDC tokens are allow-listed: one used through the `bytes signature` overload, one through `(v, r, s)`.
 * Every call's outcome is predicted from the market's state beforehand; a call that succeeds when it should fail (or
 * the reverse), or that moves other amounts than the formulas say, counts as a violation, which an invariant checks
 * (a revert inside a handler would be swallowed by the runner). Ghost variables add up what was paid in, paid out and
 * sent or returned as surplus, per token.
 */
contract DataMarketHandler is Test {
    struct SignedAuthorization {
        uint256 pk;
        uint256 tokenIndex;
        DataMarket.Authorization auth;
    }

    struct PermitCall {
        uint256 listingId;
        address buyer;
        uint256 maxPrice;
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    struct Balances {
        uint256 payouts;
        uint256 treasury;
        uint256 buyers;
    }

    uint256 public constant BUYERS = 4;
    uint256 public constant PAYOUTS = 3;
    uint256 public constant MAX_LISTINGS = 12;
    uint256 internal constant FIRST_BUYER_PK = 0xB0B0;

    address public constant ADMIN = address(0xAD);
    address public constant MODERATOR = address(0x40D);
    address public constant RELAYER = address(0x7E1A7);
    address public constant ARBITER = address(0xA7B);
    address public constant TREASURY = address(0x7EA5);
    address public constant SURPLUS_RECEIVER = address(0x5EED);
    address public constant STRANGER = address(0x5757);

    bytes32 internal constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
    bytes32 internal constant TRANSFER_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    bytes32 internal constant CANCEL_TYPEHASH = keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");

    DataMarket public immutable market;
    TestUSDC[2] internal tokens;

    uint256[] internal listingIds;
    uint256[] internal orderIds;
    SignedAuthorization[] internal spentAuthorizations;
    uint256 internal nonceCounter;

    // Ghost accounting, per token.
    mapping(address token => uint256) public ghostPaidIn;
    mapping(address token => uint256) public ghostSettled;
    mapping(address token => uint256) public ghostToOwners;
    mapping(address token => uint256) public ghostToTreasury;
    mapping(address token => uint256) public ghostRefunded;
    mapping(address token => uint256) public ghostSurplusIn;
    mapping(address token => uint256) public ghostSurplusOut;

    // How many orders each authorization nonce paid for, and attempts to reuse one that went through.
    mapping(bytes32 nonce => uint256) public ordersPaidByNonce;
    bytes32[] internal orderNonces;
    uint256 public reusedAuthorizationSuccesses;

    uint256 public totalCalls;
    uint256 public pausedSettlements;
    uint256 public violations;
    string public lastViolation;
    mapping(string action => uint256) public calls;

    constructor(DataMarket market_, TestUSDC bytesToken, TestUSDC vrsToken) {
        market = market_;
        tokens[0] = bytesToken;
        tokens[1] = vrsToken;
        for (uint256 i; i < BUYERS; ++i) {
            address b = buyerAt(i);
            for (uint256 t; t < 2; ++t) {
                vm.prank(b);
                tokens[t].approve(address(market_), type(uint256).max);
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Views for the invariants
    // ---------------------------------------------------------------------------------------------------------------

    function buyerAt(uint256 i) public pure returns (address) {
        return vm.addr(FIRST_BUYER_PK + i);
    }

    function payoutAt(uint256 i) public pure returns (address) {
        // forge-lint: disable-next-line(unsafe-typecast) -- small constants
        return address(uint160(0xFA01 + i));
    }

    function tokenAt(uint256 i) external view returns (TestUSDC) {
        return tokens[i];
    }

    function orderCount() external view returns (uint256) {
        return orderIds.length;
    }

    function orderAt(uint256 i) external view returns (uint256) {
        return orderIds[i];
    }

    function orderNonceCount() external view returns (uint256) {
        return orderNonces.length;
    }

    function orderNonceAt(uint256 i) external view returns (bytes32) {
        return orderNonces[i];
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Listings
    // ---------------------------------------------------------------------------------------------------------------

    function createListing(uint256 sellerSeed, uint256 tokenSeed, uint256 price, uint256 payoutSeed, uint256 window)
        external
    {
        totalCalls++;
        if (listingIds.length >= MAX_LISTINGS) return;
        TestUSDC token = tokens[tokenSeed % 2];
        price = bound(price, 1, 1_000e6);
        uint32 disputeWindow = _window(window);
        // forge-lint: disable-next-line(unsafe-typecast) -- small constants
        address seller = address(uint160(0x5E11 + sellerSeed % 3));
        (bool allowed,) = market.tokenConfig(address(token));
        bool expectOk = allowed && !market.paused();

        vm.prank(seller);
        try market.createListing(address(token), price, payoutAt(payoutSeed % PAYOUTS), keccak256(abi.encode(price)), disputeWindow)
        returns (uint256 listingId) {
            _expect(expectOk, "createListing succeeded when it should not");
            listingIds.push(listingId);
            calls["createListing"]++;
            if (_chance(sellerSeed, 4)) _setApproval(_single(listingId), true);
        } catch {
            _expect(!expectOk, "createListing failed");
        }
    }

    /// @dev Approves (three times in four) or delists one to three listings.
    function setApproval(uint256 seed, uint256 count, uint256 approvedSeed) external {
        totalCalls++;
        if (listingIds.length == 0) return;
        count = bound(count, 1, 3);
        uint256[] memory ids = new uint256[](count);
        for (uint256 i; i < count; ++i) {
            ids[i] = listingIds[(seed % listingIds.length + i * 7) % listingIds.length];
        }
        _setApproval(ids, _chance(approvedSeed, 4));
    }

    /// @dev The owner deactivates (one time in four) or reactivates a listing.
    function setListingActive(uint256 seed, uint256 activeSeed) external {
        totalCalls++;
        if (listingIds.length == 0) return;
        uint256 listingId = listingIds[seed % listingIds.length];
        vm.prank(market.getListing(listingId).owner);
        market.setListingActive(listingId, _chance(activeSeed, 4));
        calls["setListingActive"]++;
    }

    function updateListing(uint256 seed, uint256 price, uint256 payoutSeed) external {
        totalCalls++;
        if (listingIds.length == 0) return;
        uint256 listingId = listingIds[seed % listingIds.length];
        price = bound(price, 1, 1_000e6);
        vm.prank(market.getListing(listingId).owner);
        market.updateListing(listingId, price, payoutAt(payoutSeed % PAYOUTS));
        calls["updateListing"]++;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Purchases
    // ---------------------------------------------------------------------------------------------------------------

    function purchase(uint256 buyerSeed, uint256 listingSeed, uint256 slack) external {
        totalCalls++;
        if (listingIds.length == 0) return;
        uint256 listingId = listingIds[listingSeed % listingIds.length];
        address buyer = vm.addr(_buyerPk(buyerSeed, listingId));
        DataMarket.Listing memory l = market.getListing(listingId);
        _fundBuyer(l.token, buyer, l.price);
        vm.prank(buyer);
        TestUSDC(l.token).approve(address(market), type(uint256).max);
        bool expectOk = _buyable(listingId, l, buyer);
        Balances memory before = _balances(l.token);

        vm.prank(buyer);
        try market.purchase(listingId, l.price + bound(slack, 0, 1e6)) returns (uint256 orderId) {
            _expect(expectOk, "purchase succeeded when it should not");
            _recordOrder(orderId, l, before);
            calls["purchase"]++;
        } catch {
            _expect(!expectOk, "purchase failed");
        }
    }

    function purchaseWithPermit(uint256 buyerSeed, uint256 listingSeed, uint256 slack, bool frontRun) external {
        totalCalls++;
        if (listingIds.length == 0) return;
        PermitCall memory c;
        c.listingId = listingIds[listingSeed % listingIds.length];
        uint256 pk = _buyerPk(buyerSeed, c.listingId);
        c.buyer = vm.addr(pk);
        DataMarket.Listing memory l = market.getListing(c.listingId);
        TestUSDC token = TestUSDC(l.token);
        _fundBuyer(l.token, c.buyer, l.price);
        vm.prank(c.buyer);
        token.approve(address(market), 0);

        c.maxPrice = l.price + bound(slack, 0, 1e6);
        c.deadline = block.timestamp + 1 hours;
        bytes32 structHash = keccak256(
            abi.encode(PERMIT_TYPEHASH, c.buyer, address(market), c.maxPrice, token.nonces(c.buyer), c.deadline)
        );
        (c.v, c.r, c.s) = vm.sign(pk, _digest(token, structHash));
        if (frontRun) {
            vm.prank(STRANGER);
            token.permit(c.buyer, address(market), c.maxPrice, c.deadline, c.v, c.r, c.s);
        }
        _purchaseWithPermit(c, l, frontRun);
    }

    function purchaseWithAuthorization(uint256 buyerSeed, uint256 listingSeed) external {
        totalCalls++;
        if (listingIds.length == 0) return;
        uint256 listingId = listingIds[listingSeed % listingIds.length];
        DataMarket.Listing memory l = market.getListing(listingId);
        SignedAuthorization memory signed = _sign(_buyerPk(buyerSeed, listingId), _indexOf(l.token), l.price);
        address buyer = signed.auth.from;
        _fundBuyer(l.token, buyer, l.price);
        bool expectOk = _buyable(listingId, l, buyer);
        Balances memory before = _balances(l.token);

        vm.prank(RELAYER);
        try market.purchaseWithAuthorization(listingId, signed.auth) returns (uint256 orderId) {
            _expect(expectOk, "purchaseWithAuthorization succeeded when it should not");
            _expect(market.getOrder(orderId).buyer == buyer, "authorization order not owned by the signer");
            _recordOrder(orderId, l, before);
            ordersPaidByNonce[signed.auth.nonce]++;
            orderNonces.push(signed.auth.nonce);
            spentAuthorizations.push(signed);
            calls["purchaseWithAuthorization"]++;
        } catch {
            _expect(!expectOk, "purchaseWithAuthorization failed");
        }
    }

    /// @dev Someone submits a buyer's authorization to the token directly: the market is paid without an order.
    function sendAuthorizationToToken(uint256 buyerSeed, uint256 tokenSeed, uint256 amount) external {
        totalCalls++;
        uint256 tokenIndex = tokenSeed % 2;
        amount = bound(amount, 1, 1_000e6);
        SignedAuthorization memory signed = _sign(FIRST_BUYER_PK + buyerSeed % BUYERS, tokenIndex, amount);
        TestUSDC token = tokens[tokenIndex];
        _fundBuyer(address(token), signed.auth.from, amount);
        DataMarket.Authorization memory a = signed.auth;
        vm.prank(STRANGER);
        token.transferWithAuthorization(
            a.from, address(market), a.value, a.validAfter, a.validBefore, a.nonce, a.signature
        );
        ghostSurplusIn[address(token)] += amount;
        spentAuthorizations.push(signed);
        calls["sendAuthorizationToToken"]++;
    }

    /// @dev A buyer cancels an authorization; the relayer then tries to use it, which must fail.
    function cancelAuthorization(uint256 buyerSeed, uint256 listingSeed) external {
        totalCalls++;
        if (listingIds.length == 0) return;
        uint256 listingId = listingIds[listingSeed % listingIds.length];
        DataMarket.Listing memory l = market.getListing(listingId);
        uint256 pk = FIRST_BUYER_PK + buyerSeed % BUYERS;
        SignedAuthorization memory signed = _sign(pk, _indexOf(l.token), l.price);
        TestUSDC token = TestUSDC(l.token);
        _fundBuyer(l.token, signed.auth.from, l.price);
        bytes32 structHash = keccak256(abi.encode(CANCEL_TYPEHASH, signed.auth.from, signed.auth.nonce));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, _digest(token, structHash));
        token.cancelAuthorization(signed.auth.from, signed.auth.nonce, v, r, s);
        spentAuthorizations.push(signed);

        vm.prank(RELAYER);
        try market.purchaseWithAuthorization(listingId, signed.auth) {
            reusedAuthorizationSuccesses++;
            _violation("a cancelled authorization paid for an order");
        } catch {}
        calls["cancelAuthorization"]++;
    }

    /**
     * @dev Replays an authorization that was already used (for an order or straight at the token) or cancelled, on a
     * fresh listing with the same token and price, so that the token's nonce is the only thing that can stop it.
     */
    function replayAuthorization(uint256 seed) external {
        totalCalls++;
        if (spentAuthorizations.length == 0 || market.paused()) return;
        SignedAuthorization memory signed = spentAuthorizations[seed % spentAuthorizations.length];
        TestUSDC token = tokens[signed.tokenIndex];
        (bool allowed,) = market.tokenConfig(address(token));
        if (!allowed) return;
        vm.prank(address(uint160(0x5E11)));
        uint256 listingId =
            market.createListing(address(token), signed.auth.value, payoutAt(0), keccak256("replay"), 1 days);
        _setApproval(_single(listingId), true);
        _fundBuyer(address(token), signed.auth.from, signed.auth.value);

        vm.prank(RELAYER);
        try market.purchaseWithAuthorization(listingId, signed.auth) {
            reusedAuthorizationSuccesses++;
            _violation("an authorization paid twice");
        } catch {}
        vm.prank(market.getListing(listingId).owner);
        market.setListingActive(listingId, false);
        calls["replayAuthorization"]++;
    }

    /// @dev Plain transfer into the market: surplus.
    function transferToMarket(uint256 tokenSeed, uint256 amount) external {
        totalCalls++;
        TestUSDC token = tokens[tokenSeed % 2];
        amount = bound(amount, 1, 100e6);
        token.mint(address(market), amount);
        ghostSurplusIn[address(token)] += amount;
        calls["transferToMarket"]++;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Settlement
    // ---------------------------------------------------------------------------------------------------------------

    function confirm(uint256 orderSeed) external {
        totalCalls++;
        if (orderIds.length == 0) return;
        uint256 orderId = _pickOrder(orderSeed, DataMarket.OrderStatus.Open, false);
        DataMarket.Order memory o = market.getOrder(orderId);
        if (o.status != DataMarket.OrderStatus.Open) return;
        address token = market.getListing(o.listingId).token;
        Balances memory before = _balances(token);

        vm.prank(o.buyer);
        try market.confirm(orderId) {
            Balances memory after_ = _balances(token);
            uint256 fee = o.amount * o.feeBps / 10_000;
            _expect(after_.treasury - before.treasury == fee, "confirm: wrong fee");
            _expect(after_.payouts - before.payouts == o.amount - fee, "confirm: wrong owner share");
            _expect(after_.buyers == before.buyers, "confirm: buyer balance moved");
            _settled(token, o.amount, before, after_);
            _countPaused();
            calls["confirm"]++;
        } catch {
            _violation("confirm of an open order failed");
        }
    }

    /// @dev Mostly disputes an open order within its window; one time in four any order (which may have to fail).
    function dispute(uint256 orderSeed) external {
        totalCalls++;
        if (orderIds.length == 0) return;
        uint256 orderId = _chance(orderSeed, 4)
            ? _pickOrder(orderSeed, DataMarket.OrderStatus.Open, true)
            : orderIds[orderSeed % orderIds.length];
        DataMarket.Order memory o = market.getOrder(orderId);
        bool expectOk = o.status == DataMarket.OrderStatus.Open && block.timestamp < o.releaseAt;
        vm.prank(o.buyer);
        try market.dispute(orderId) {
            _expect(expectOk, "dispute succeeded when it should not");
            _countPaused();
            calls["dispute"]++;
        } catch {
            _expect(!expectOk, "dispute of an open order within its window failed");
        }
    }

    function resolve(uint256 orderSeed, uint256 refundBps) external {
        totalCalls++;
        if (orderIds.length == 0) return;
        uint256 orderId = _pickOrder(orderSeed, DataMarket.OrderStatus.Disputed, false);
        DataMarket.Order memory o = market.getOrder(orderId);
        if (o.status != DataMarket.OrderStatus.Disputed) return;
        // Full refunds, no refund and everything in between.
        refundBps = refundBps % 3 == 0 ? (refundBps % 2) * 10_000 : bound(refundBps, 0, 10_000);
        address token = market.getListing(o.listingId).token;
        Balances memory before = _balances(token);

        vm.prank(ARBITER);
        // forge-lint: disable-next-line(unsafe-typecast) -- at most 10000
        try market.resolve(orderId, uint16(refundBps)) {
            Balances memory after_ = _balances(token);
            uint256 refund = o.amount * refundBps / 10_000;
            uint256 fee = (o.amount - refund) * o.feeBps / 10_000;
            _expect(after_.buyers - before.buyers == refund, "resolve: wrong refund");
            _expect(after_.treasury - before.treasury == fee, "resolve: wrong fee");
            _expect(after_.payouts - before.payouts == o.amount - refund - fee, "resolve: wrong owner share");
            _expect(market.hasAccess(o.listingId, o.buyer) == (refundBps != 10_000), "resolve: access");
            _settled(token, o.amount, before, after_);
            _countPaused();
            calls["resolve"]++;
        } catch {
            _violation("resolve of a disputed order failed");
        }
    }

    /// @dev Lets time pass, then releases a few orders (matured or not, settled or not, unknown ids too).
    function release(uint256 seed, uint256 count, uint256 elapsed) external {
        totalCalls++;
        vm.warp(block.timestamp + bound(elapsed, 0, 4 days));
        if (orderIds.length == 0) return;
        count = bound(count, 1, 5);
        uint256[] memory ids = new uint256[](count + 1);
        for (uint256 i; i < count; ++i) {
            ids[i] = orderIds[(seed % orderIds.length + i * 13) % orderIds.length];
        }
        ids[count] = orderIds.length + 100; // an id that does not exist
        _release(ids);
    }

    function warp(uint256 elapsed) external {
        totalCalls++;
        vm.warp(block.timestamp + bound(elapsed, 1, 2 days));
        calls["warp"]++;
    }

    function returnSurplus(uint256 tokenSeed, uint256 amount, bool tooMuch) external {
        totalCalls++;
        TestUSDC token = tokens[tokenSeed % 2];
        uint256 available = market.surplus(address(token));
        amount = tooMuch ? available + bound(amount, 1, 1_000e6) : bound(amount, 0, available);
        vm.prank(ARBITER);
        try market.returnSurplus(address(token), SURPLUS_RECEIVER, amount, keccak256(abi.encode(totalCalls))) {
            _expect(!tooMuch, "returned more than the surplus");
            ghostSurplusOut[address(token)] += amount;
            calls["returnSurplus"]++;
        } catch {
            _expect(tooMuch, "returning surplus failed");
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Administration
    // ---------------------------------------------------------------------------------------------------------------

    /// @dev Unpauses a paused market; pauses a running one a third of the time, so it mostly runs.
    function togglePause(uint256 seed) external {
        totalCalls++;
        bool paused = market.paused();
        if (!paused && _chance(seed, 3)) return;
        vm.prank(ADMIN);
        if (paused) market.unpause();
        else market.pause();
        calls["togglePause"]++;
    }

    function setFee(uint256 feeBps) external {
        totalCalls++;
        vm.prank(ADMIN);
        // forge-lint: disable-next-line(unsafe-typecast) -- at most 1000
        market.setFee(uint16(bound(feeBps, 0, 1000)));
        calls["setFee"]++;
    }

    function setTokenAllowed(uint256 tokenSeed, bool allowed) external {
        totalCalls++;
        uint256 tokenIndex = tokenSeed % 2;
        vm.prank(ADMIN);
        market.setTokenAllowed(address(tokens[tokenIndex]), allowed, tokenIndex == 0);
        calls["setTokenAllowed"]++;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------------------------

    function _setApproval(uint256[] memory ids, bool approved) internal {
        vm.prank(MODERATOR);
        market.setApproval(ids, approved);
        calls["setApproval"]++;
    }

    function _release(uint256[] memory ids) internal {
        address token0 = address(tokens[0]);
        address token1 = address(tokens[1]);
        Balances memory before0 = _balances(token0);
        Balances memory before1 = _balances(token1);
        DataMarket.Order[] memory orders = new DataMarket.Order[](ids.length);
        for (uint256 i; i < ids.length; ++i) {
            orders[i] = market.getOrder(ids[i]);
        }

        try market.release(ids) {
            uint256[2] memory settled;
            for (uint256 i; i < ids.length; ++i) {
                DataMarket.Order memory o = orders[i];
                DataMarket.OrderStatus status = market.getOrder(ids[i]).status;
                bool releasable = o.status == DataMarket.OrderStatus.Open && block.timestamp >= o.releaseAt;
                if (releasable && _firstOccurrence(ids, i)) {
                    _expect(status == DataMarket.OrderStatus.Released, "release: matured open order not released");
                    settled[market.getListing(o.listingId).token == token0 ? 0 : 1] += o.amount;
                } else if (!releasable) {
                    _expect(status == o.status, "release: touched an order it could not release");
                }
            }
            _settled(token0, settled[0], before0, _balances(token0));
            _settled(token1, settled[1], before1, _balances(token1));
            _countPaused();
            calls["release"]++;
        } catch {
            _violation("release reverted");
        }
    }

    function _purchaseWithPermit(PermitCall memory c, DataMarket.Listing memory l, bool frontRun) internal {
        bool expectOk = _buyable(c.listingId, l, c.buyer);
        Balances memory before = _balances(l.token);
        vm.prank(c.buyer);
        try market.purchaseWithPermit(c.listingId, c.maxPrice, c.deadline, c.v, c.r, c.s) returns (uint256 orderId) {
            _expect(expectOk, "purchaseWithPermit succeeded when it should not");
            _recordOrder(orderId, l, before);
            calls[frontRun ? "purchaseWithPermit front-run" : "purchaseWithPermit"]++;
        } catch {
            _expect(!expectOk, "purchaseWithPermit failed");
        }
    }

    /// @dev Three times in four, the first buyer from `seed` on without an order for `listingId` (if any); otherwise
    /// the buyer `seed` picks, who may have bought already.
    function _buyerPk(uint256 seed, uint256 listingId) internal view returns (uint256) {
        if (_chance(seed, 4)) {
            for (uint256 i; i < BUYERS; ++i) {
                uint256 pk = FIRST_BUYER_PK + (seed % BUYERS + i) % BUYERS;
                if (market.orderOf(listingId, vm.addr(pk)) == 0) return pk;
            }
        }
        return FIRST_BUYER_PK + seed % BUYERS;
    }

    /// @dev The first order from `seed` on with `status` (and, if `beforeRelease`, still in its window), else the one
    /// `seed` picks.
    function _pickOrder(uint256 seed, DataMarket.OrderStatus status, bool beforeRelease)
        internal
        view
        returns (uint256)
    {
        uint256 n = orderIds.length;
        for (uint256 i; i < n; ++i) {
            uint256 orderId = orderIds[(seed % n + i) % n];
            DataMarket.Order memory o = market.getOrder(orderId);
            if (o.status == status && (!beforeRelease || block.timestamp < o.releaseAt)) return orderId;
        }
        return orderIds[seed % n];
    }

    function _firstOccurrence(uint256[] memory ids, uint256 i) internal pure returns (bool) {
        for (uint256 j; j < i; ++j) {
            if (ids[j] == ids[i]) return false;
        }
        return true;
    }

    function _buyable(uint256 listingId, DataMarket.Listing memory l, address buyer) internal view returns (bool) {
        (bool allowed,) = market.tokenConfig(l.token);
        return l.active && l.approved && allowed && !market.paused() && market.orderOf(listingId, buyer) == 0;
    }

    function _recordOrder(uint256 orderId, DataMarket.Listing memory l, Balances memory before) internal {
        orderIds.push(orderId);
        ghostPaidIn[l.token] += l.price;
        DataMarket.Order memory o = market.getOrder(orderId);
        _expect(o.amount == l.price && o.feeBps == market.feeBps(), "order recorded wrongly");
        if (l.disputeWindow == 0) {
            Balances memory after_ = _balances(l.token);
            uint256 fee = l.price * o.feeBps / 10_000;
            _expect(after_.treasury - before.treasury == fee, "zero window: wrong fee");
            _expect(after_.payouts - before.payouts == l.price - fee, "zero window: wrong owner share");
            ghostSettled[l.token] += l.price;
            ghostToOwners[l.token] += after_.payouts - before.payouts;
            ghostToTreasury[l.token] += after_.treasury - before.treasury;
        }
    }

    /// @dev Adds a call's payouts to the ghosts and checks they add up to the amounts it settled.
    function _settled(address token, uint256 amount, Balances memory before, Balances memory after_) internal {
        uint256 toOwners = after_.payouts - before.payouts;
        uint256 toTreasury = after_.treasury - before.treasury;
        uint256 refunded = after_.buyers - before.buyers;
        _expect(toOwners + toTreasury + refunded == amount, "owner + treasury + refund != amount settled");
        ghostSettled[token] += amount;
        ghostToOwners[token] += toOwners;
        ghostToTreasury[token] += toTreasury;
        ghostRefunded[token] += refunded;
    }

    function _balances(address token) internal view returns (Balances memory b) {
        for (uint256 i; i < PAYOUTS; ++i) {
            b.payouts += TestUSDC(token).balanceOf(payoutAt(i));
        }
        for (uint256 i; i < BUYERS; ++i) {
            b.buyers += TestUSDC(token).balanceOf(buyerAt(i));
        }
        b.treasury = TestUSDC(token).balanceOf(TREASURY);
    }

    function _fundBuyer(address token, address buyer, uint256 amount) internal {
        if (TestUSDC(token).balanceOf(buyer) < amount) TestUSDC(token).mint(buyer, amount);
    }

    function _sign(uint256 pk, uint256 tokenIndex, uint256 value) internal returns (SignedAuthorization memory s) {
        TestUSDC token = tokens[tokenIndex];
        bytes32 nonce = keccak256(abi.encode("nonce", ++nonceCounter));
        address from = vm.addr(pk);
        uint256 validBefore = block.timestamp + 1 days;
        bytes32 structHash =
            keccak256(abi.encode(TRANSFER_TYPEHASH, from, address(market), value, uint256(0), validBefore, nonce));
        (uint8 v, bytes32 r, bytes32 sig) = vm.sign(pk, _digest(token, structHash));
        s.pk = pk;
        s.tokenIndex = tokenIndex;
        s.auth = DataMarket.Authorization({
            from: from,
            value: value,
            validAfter: 0,
            validBefore: validBefore,
            nonce: nonce,
            signature: abi.encodePacked(r, sig, v)
        });
    }

    function _digest(TestUSDC token, bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
    }

    function _indexOf(address token) internal view returns (uint256) {
        return token == address(tokens[0]) ? 0 : 1;
    }

    function _window(uint256 seed) internal pure returns (uint32) {
        uint256 kind = seed % 5;
        if (kind == 0) return 0;
        if (kind == 1) return 1 hours;
        if (kind == 2) return 1 days;
        if (kind == 3) return 3 days;
        // forge-lint: disable-next-line(unsafe-typecast) -- at most 30 days
        return uint32(bound(seed, 1, 30 days));
    }

    /// @dev True (n - 1) times in n, spread evenly whatever the fuzzer's favourite values are.
    function _chance(uint256 seed, uint256 n) internal pure returns (bool) {
        return uint256(keccak256(abi.encode(seed))) % n != 0;
    }

    function _single(uint256 id) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](1);
        ids[0] = id;
    }

    function _countPaused() internal {
        if (market.paused()) pausedSettlements++;
    }

    function _expect(bool condition, string memory message) internal {
        if (!condition) _violation(message);
    }

    function _violation(string memory message) internal {
        violations++;
        lastViolation = message;
    }
}

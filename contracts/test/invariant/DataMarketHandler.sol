// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "../utils/Test.sol";
import {DataMarket} from "../../src/DataMarket.sol";
import {TestUSDC} from "../../src/TestUSDC.sol";
import {MarketRevertingToken} from "../mocks/MarketRevertingToken.sol";

/**
 * @dev Drives {DataMarket} at random for the invariant tests and keeps a model of everything it should do.
 *
 * Actions: listings, approvals, delistings (owner and moderator), price and payout changes, purchases of all three
 * kinds (permits and EIP-3009 authorizations signed with the buyers' keys, front-run permits), buying again after a
 * full refund, authorizations sent straight to the token, cancelled, replayed and nonce-reusing authorizations,
 * confirmations and disputes (direct or signed and relayed), resolutions, expired disputes, releases, withdrawals,
 * surplus returns (single, batched, with reused references), a token that blocklists receivers (reverting or
 * returning false), a treasury that it blocks, time, fee, treasury, window and period changes, token allow-listing
 * and pauses.
 *
 * The model is the handler's own: listings (owner, token, price, payout, window, flags), orders (listing, buyer,
 * token, amount, fee rate, release time, dispute deadline, status), the settings, and what every account should hold
 * in each token and as a credit. It is updated from the handler's inputs only, never from what the market reports,
 * so that a market paying the wrong account, the wrong amount or at the wrong time disagrees with it. Every call's
 * outcome (success or revert) is predicted beforehand; a surprise counts as a violation. The handler never reverts
 * itself (the invariant test runs with fail-on-revert).
 */
contract DataMarketHandler is Test {
    struct GhostListing {
        address owner;
        uint256 tokenIndex;
        uint256 price;
        address payout;
        uint32 window;
        bool active;
        bool approved;
    }

    struct GhostOrder {
        uint256 listingId;
        address buyer;
        uint256 tokenIndex;
        uint256 amount;
        uint256 feeBps;
        uint256 releaseAt;
        uint256 deadline;
        DataMarket.OrderStatus status;
    }

    struct SignedAuthorization {
        uint256 pk;
        uint256 tokenIndex;
        DataMarket.Authorization auth;
    }

    struct PermitCall {
        uint256 listingId;
        uint256 pk;
        address buyer;
        uint256 maxPrice;
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    uint256 public constant TOKENS = 3;
    /// @dev Index of the token that blocklists receivers.
    uint256 public constant BLOCKLIST = 2;
    uint256 public constant BUYERS = 4;
    uint256 public constant PAYOUTS = 3;
    uint256 public constant MAX_LISTINGS = 12;
    uint256 internal constant FIRST_BUYER_PK = 0xB0B0;
    uint256 internal constant BPS = 10_000;

    address public constant ADMIN = address(0xAD);
    address public constant MODERATOR = address(0x40D);
    address public constant RELAYER = address(0x7E1A7);
    address public constant ARBITER = address(0xA7B);
    address public constant TREASURY = address(0x7EA5);
    address public constant OTHER_TREASURY = address(0x7EA6);
    address public constant SURPLUS_RECEIVER = address(0x5EED);
    /// @dev A receiver no token ever blocks: withdrawals to it always go through.
    address public constant SAFE = address(0x5AFE);
    address public constant STRANGER = address(0x5757);

    bytes32 internal constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
    bytes32 internal constant TRANSFER_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    bytes32 internal constant CANCEL_TYPEHASH = keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");
    bytes32 internal constant CONFIRM_ORDER_TYPEHASH =
        keccak256("ConfirmOrder(uint256 orderId,bytes32 nonce,uint256 deadline)");
    bytes32 internal constant DISPUTE_ORDER_TYPEHASH =
        keccak256("DisputeOrder(uint256 orderId,bytes32 nonce,uint256 deadline)");

    DataMarket public immutable market;
    TestUSDC[TOKENS] internal tokens;
    MarketRevertingToken public immutable blocklist;

    // The model.
    uint256[] internal listingIds;
    mapping(uint256 listingId => GhostListing) internal listings;
    uint256[] internal orderIds;
    mapping(uint256 orderId => GhostOrder) internal orders;
    mapping(uint256 listingId => mapping(address buyer => uint256 orderId)) public latestOrder;
    mapping(address token => mapping(address account => uint256)) public expectedBalance;
    mapping(address token => mapping(address account => uint256)) public expectedCredit;
    mapping(address token => uint256) public expectedEscrow;
    mapping(address token => uint256) public expectedCredits;
    mapping(address token => uint256) public expectedSurplus;
    bool[TOKENS] internal allowed;
    bool public paused;
    address public treasuryNow = TREASURY;
    uint256 public feeNow;
    uint32 public periodNow = 14 days;
    uint32 public minWindowNow;

    // Sums per token, for the "pays out exactly" invariant.
    mapping(address token => uint256) public ghostPaidIn;
    mapping(address token => uint256) public ghostSettled;
    mapping(address token => uint256) public ghostPaidOut;
    mapping(address token => uint256) public ghostSurplusIn;
    mapping(address token => uint256) public ghostSurplusOut;

    // Authorizations: how many orders each nonce paid for, and reuses that went through.
    SignedAuthorization[] internal spentAuthorizations;
    mapping(bytes32 nonce => uint256) public ordersPaidByNonce;
    bytes32[] internal orderNonces;
    uint256 public reusedAuthorizationSuccesses;
    uint256 internal nonceCounter;

    // Surplus references used, and reuses that went through.
    bytes32[] internal usedRefs;
    uint256 public reusedReferenceSuccesses;
    uint256 internal refCounter;

    uint256 public totalCalls;
    uint256 public pausedSettlements;
    uint256 public violations;
    string public lastViolation;
    mapping(string action => uint256) public calls;

    constructor(DataMarket market_, TestUSDC bytesToken, TestUSDC vrsToken, MarketRevertingToken blocklist_) {
        market = market_;
        tokens[0] = bytesToken;
        tokens[1] = vrsToken;
        tokens[2] = blocklist_;
        blocklist = blocklist_;
        allowed[0] = allowed[1] = allowed[2] = true;
        feeNow = 250;
        for (uint256 i; i < BUYERS; ++i) {
            address b = buyerAt(i);
            for (uint256 t; t < TOKENS; ++t) {
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

    /// @dev Every account the market may pay: buyers, payouts, both treasuries, the surplus receiver, SAFE.
    function accountCount() public pure returns (uint256) {
        return BUYERS + PAYOUTS + 4;
    }

    function accountAt(uint256 i) public pure returns (address) {
        if (i < BUYERS) return buyerAt(i);
        if (i < BUYERS + PAYOUTS) return payoutAt(i - BUYERS);
        if (i == BUYERS + PAYOUTS) return TREASURY;
        if (i == BUYERS + PAYOUTS + 1) return OTHER_TREASURY;
        if (i == BUYERS + PAYOUTS + 2) return SURPLUS_RECEIVER;
        return SAFE;
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

    function ghostOrder(uint256 orderId) external view returns (GhostOrder memory) {
        return orders[orderId];
    }

    function orderNonceCount() external view returns (uint256) {
        return orderNonces.length;
    }

    function orderNonceAt(uint256 i) external view returns (bytes32) {
        return orderNonces[i];
    }

    function buyerPk(address account) external pure returns (uint256) {
        for (uint256 i; i < BUYERS; ++i) {
            if (buyerAt(i) == account) return FIRST_BUYER_PK + i;
        }
        return 0;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Listings
    // ---------------------------------------------------------------------------------------------------------------

    function createListing(uint256 sellerSeed, uint256 tokenSeed, uint256 price, uint256 payoutSeed, uint256 window)
        external
    {
        totalCalls++;
        if (listingIds.length >= MAX_LISTINGS) return;
        uint256 tokenIndex = tokenSeed % TOKENS;
        price = bound(price, 1, 1_000e6);
        uint32 disputeWindow = _window(window);
        // forge-lint: disable-next-line(unsafe-typecast) -- small constants
        address seller = address(uint160(0x5E11 + sellerSeed % 3));
        address payout = payoutAt(payoutSeed % PAYOUTS);
        bool expectOk = allowed[tokenIndex] && !paused && disputeWindow >= minWindowNow;

        vm.prank(seller);
        try market.createListing(
            address(tokens[tokenIndex]), price, payout, keccak256(abi.encode(price)), disputeWindow
        ) returns (
            uint256 listingId
        ) {
            _expect(expectOk, "createListing succeeded when it should not");
            _expect(listingId == listingIds.length + 1, "createListing: unexpected id");
            listingIds.push(listingId);
            listings[listingId] = GhostListing(seller, tokenIndex, price, payout, disputeWindow, true, false);
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
        bool active = _chance(activeSeed, 4);
        vm.prank(listings[listingId].owner);
        try market.setListingActive(listingId, active) {
            listings[listingId].active = active;
            calls["setListingActive"]++;
        } catch {
            _violation("setListingActive by the owner failed");
        }
    }

    function updateListing(uint256 seed, uint256 price, uint256 payoutSeed) external {
        totalCalls++;
        if (listingIds.length == 0) return;
        uint256 listingId = listingIds[seed % listingIds.length];
        price = bound(price, 1, 1_000e6);
        address payout = payoutAt(payoutSeed % PAYOUTS);
        vm.prank(listings[listingId].owner);
        try market.updateListing(listingId, price, payout) {
            listings[listingId].price = price;
            listings[listingId].payout = payout;
            calls["updateListing"]++;
        } catch {
            _violation("updateListing by the owner failed");
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Purchases
    // ---------------------------------------------------------------------------------------------------------------

    function purchase(uint256 buyerSeed, uint256 listingSeed, uint256 slack) external {
        totalCalls++;
        if (listingIds.length == 0) return;
        uint256 listingId = listingIds[listingSeed % listingIds.length];
        GhostListing memory l = listings[listingId];
        address buyer = buyerAt(_buyerIndex(buyerSeed, listingId));
        _fundBuyer(l.tokenIndex, buyer, l.price);
        bool expectOk = _buyable(listingId, buyer);

        vm.prank(buyer);
        try market.purchase(listingId, l.price + bound(slack, 0, 1e6)) returns (uint256 orderId) {
            _expect(expectOk, "purchase succeeded when it should not");
            _recordPurchase(orderId, listingId, buyer);
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
        GhostListing memory l = listings[c.listingId];
        c.pk = FIRST_BUYER_PK + _buyerIndex(buyerSeed, c.listingId);
        c.buyer = vm.addr(c.pk);
        TestUSDC token = tokens[l.tokenIndex];
        _fundBuyer(l.tokenIndex, c.buyer, l.price);
        vm.prank(c.buyer);
        token.approve(address(market), 0);

        c.maxPrice = l.price + bound(slack, 0, 1e6);
        c.deadline = block.timestamp + 1 hours;
        bytes32 structHash = keccak256(
            abi.encode(PERMIT_TYPEHASH, c.buyer, address(market), c.maxPrice, token.nonces(c.buyer), c.deadline)
        );
        (c.v, c.r, c.s) = vm.sign(c.pk, _digest(token, structHash));
        if (frontRun) {
            vm.prank(STRANGER);
            token.permit(c.buyer, address(market), c.maxPrice, c.deadline, c.v, c.r, c.s);
        }
        bool expectOk = _buyable(c.listingId, c.buyer);
        vm.prank(c.buyer);
        try market.purchaseWithPermit(c.listingId, c.maxPrice, c.deadline, c.v, c.r, c.s) returns (uint256 orderId) {
            _expect(expectOk, "purchaseWithPermit succeeded when it should not");
            _recordPurchase(orderId, c.listingId, c.buyer);
            calls[frontRun ? "purchaseWithPermit front-run" : "purchaseWithPermit"]++;
        } catch {
            _expect(!expectOk, "purchaseWithPermit failed");
        }
        vm.prank(c.buyer);
        token.approve(address(market), type(uint256).max);
    }

    function purchaseWithAuthorization(uint256 buyerSeed, uint256 listingSeed) external {
        totalCalls++;
        if (listingIds.length == 0) return;
        uint256 listingId = listingIds[listingSeed % listingIds.length];
        GhostListing memory l = listings[listingId];
        SignedAuthorization memory signed =
            _sign(FIRST_BUYER_PK + _buyerIndex(buyerSeed, listingId), l.tokenIndex, l.price, _freshNonce());
        address buyer = signed.auth.from;
        _fundBuyer(l.tokenIndex, buyer, l.price);
        bool expectOk = _buyable(listingId, buyer);

        vm.prank(RELAYER);
        try market.purchaseWithAuthorization(listingId, signed.auth) returns (uint256 orderId) {
            _expect(expectOk, "purchaseWithAuthorization succeeded when it should not");
            _recordPurchase(orderId, listingId, buyer);
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
        uint256 tokenIndex = tokenSeed % TOKENS;
        amount = bound(amount, 1, 1_000e6);
        SignedAuthorization memory signed =
            _sign(FIRST_BUYER_PK + buyerSeed % BUYERS, tokenIndex, amount, _freshNonce());
        TestUSDC token = tokens[tokenIndex];
        _fundBuyer(tokenIndex, signed.auth.from, amount);
        DataMarket.Authorization memory a = signed.auth;
        vm.prank(STRANGER);
        try token.transferWithAuthorization(
            a.from, address(market), a.value, a.validAfter, a.validBefore, a.nonce, a.signature
        ) {
            expectedBalance[address(token)][a.from] = _less(expectedBalance[address(token)][a.from], amount);
            expectedSurplus[address(token)] += amount;
            ghostSurplusIn[address(token)] += amount;
            spentAuthorizations.push(signed);
            calls["sendAuthorizationToToken"]++;
        } catch {
            _violation("transferWithAuthorization straight to the token failed");
        }
    }

    /// @dev A buyer cancels an authorization; the relayer then tries to use it, which must fail.
    function cancelAuthorization(uint256 buyerSeed, uint256 listingSeed) external {
        totalCalls++;
        if (listingIds.length == 0) return;
        uint256 listingId = listingIds[listingSeed % listingIds.length];
        GhostListing memory l = listings[listingId];
        uint256 pk = FIRST_BUYER_PK + buyerSeed % BUYERS;
        SignedAuthorization memory signed = _sign(pk, l.tokenIndex, l.price, _freshNonce());
        TestUSDC token = tokens[l.tokenIndex];
        _fundBuyer(l.tokenIndex, signed.auth.from, l.price);
        bytes32 structHash = keccak256(abi.encode(CANCEL_TYPEHASH, signed.auth.from, signed.auth.nonce));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, _digest(token, structHash));
        token.cancelAuthorization(signed.auth.from, signed.auth.nonce, v, r, s);
        spentAuthorizations.push(signed);
        _tryReusedAuthorization(listingId, signed.auth, "a cancelled authorization paid for an order");
        calls["cancelAuthorization"]++;
    }

    /**
     * @dev Replays an authorization that was already used (for an order or straight at the token) or cancelled, on a
     * fresh listing with the same token and price bought by nobody, so that the token's nonce is the only thing that
     * can stop it.
     */
    function replayAuthorization(uint256 seed) external {
        totalCalls++;
        if (spentAuthorizations.length == 0) return;
        SignedAuthorization memory signed = spentAuthorizations[seed % spentAuthorizations.length];
        uint256 listingId = _freshListingFor(signed.tokenIndex, signed.auth.value);
        if (listingId == 0) return;
        _tryReusedAuthorization(listingId, signed.auth, "an authorization paid twice");
        calls["replayAuthorization"]++;
    }

    /// @dev Signs a new authorization (another value and validity) with a nonce already spent: the token must refuse.
    function reuseNonce(uint256 seed, uint256 price) external {
        totalCalls++;
        if (spentAuthorizations.length == 0) return;
        SignedAuthorization memory spent = spentAuthorizations[seed % spentAuthorizations.length];
        price = bound(price, 1, 1_000e6);
        uint256 listingId = _freshListingFor(spent.tokenIndex, price);
        if (listingId == 0) return;
        SignedAuthorization memory signed = _sign(spent.pk, spent.tokenIndex, price, spent.auth.nonce);
        _tryReusedAuthorization(listingId, signed.auth, "a reused authorization nonce paid for an order");
        calls["reuseNonce"]++;
    }

    /// @dev Plain transfer into the market: surplus.
    function transferToMarket(uint256 tokenSeed, uint256 amount) external {
        totalCalls++;
        TestUSDC token = tokens[tokenSeed % TOKENS];
        amount = bound(amount, 1, 100e6);
        token.mint(address(market), amount);
        expectedSurplus[address(token)] += amount;
        ghostSurplusIn[address(token)] += amount;
        calls["transferToMarket"]++;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Settlement
    // ---------------------------------------------------------------------------------------------------------------

    /// @dev Mostly confirms an open order; one time in four any order (which may have to fail). Signed and relayed
    /// one time in two.
    function confirm(uint256 orderSeed, bool bySig) external {
        totalCalls++;
        if (orderIds.length == 0) return;
        uint256 orderId = _chance(orderSeed, 4)
            ? _pickOrder(orderSeed, DataMarket.OrderStatus.Open, false)
            : orderIds[orderSeed % orderIds.length];
        GhostOrder memory o = orders[orderId];
        bool expectOk = o.status == DataMarket.OrderStatus.Open;
        bool ok;
        if (bySig) {
            (bytes32 nonce, uint256 deadline, bytes memory signature) =
                _signOrder(o.buyer, CONFIRM_ORDER_TYPEHASH, orderId);
            vm.prank(STRANGER);
            try market.confirmBySig(orderId, nonce, deadline, signature) {
                ok = true;
            } catch {}
        } else {
            vm.prank(o.buyer);
            try market.confirm(orderId) {
                ok = true;
            } catch {}
        }
        _expect(ok == expectOk, ok ? "confirm succeeded when it should not" : "confirm of an open order failed");
        if (ok) {
            _payOwner(orderId);
            _countPaused();
            calls[bySig ? "confirmBySig" : "confirm"]++;
        }
    }

    /// @dev Mostly disputes an open order within its window; one time in four any order (which may have to fail).
    /// Signed and relayed one time in two.
    function dispute(uint256 orderSeed, bool bySig) external {
        totalCalls++;
        if (orderIds.length == 0) return;
        uint256 orderId = _chance(orderSeed, 4)
            ? _pickOrder(orderSeed, DataMarket.OrderStatus.Open, true)
            : orderIds[orderSeed % orderIds.length];
        GhostOrder memory o = orders[orderId];
        bool expectOk = o.status == DataMarket.OrderStatus.Open && block.timestamp < o.releaseAt;
        bool ok;
        if (bySig) {
            (bytes32 nonce, uint256 deadline, bytes memory signature) =
                _signOrder(o.buyer, DISPUTE_ORDER_TYPEHASH, orderId);
            vm.prank(STRANGER);
            try market.disputeBySig(orderId, nonce, deadline, signature) {
                ok = true;
            } catch {}
        } else {
            vm.prank(o.buyer);
            try market.dispute(orderId) {
                ok = true;
            } catch {}
        }
        _expect(ok == expectOk, ok ? "dispute succeeded when it should not" : "dispute of an open order failed");
        if (ok) {
            orders[orderId].status = DataMarket.OrderStatus.Disputed;
            orders[orderId].deadline = block.timestamp + periodNow;
            _countPaused();
            calls[bySig ? "disputeBySig" : "dispute"]++;
        }
    }

    function resolve(uint256 orderSeed, uint256 refundBps) external {
        totalCalls++;
        if (orderIds.length == 0) return;
        uint256 orderId = _pickOrder(orderSeed, DataMarket.OrderStatus.Disputed, false);
        GhostOrder memory o = orders[orderId];
        if (o.status != DataMarket.OrderStatus.Disputed) return;
        // Full refunds, no refund and everything in between.
        refundBps = refundBps % 3 == 0 ? (refundBps % 2) * BPS : bound(refundBps, 0, BPS);
        bool expectOk = block.timestamp < o.deadline;

        vm.prank(ARBITER);
        // forge-lint: disable-next-line(unsafe-typecast) -- at most 10000
        try market.resolve(orderId, uint16(refundBps)) {
            _expect(expectOk, "resolve succeeded after the deadline");
            uint256 refund = o.amount * refundBps / BPS;
            _settle(orderId, refund, (o.amount - refund) * o.feeBps / BPS);
            orders[orderId].status =
                refundBps == BPS ? DataMarket.OrderStatus.Refunded : DataMarket.OrderStatus.Resolved;
            _countPaused();
            calls["resolve"]++;
        } catch {
            _expect(!expectOk, "resolve of a disputed order before its deadline failed");
        }
    }

    /// @dev Refunds an expired dispute, or tries one that has not expired (which must fail). Two times in three,
    /// first lets time pass to the chosen dispute's deadline.
    function settleExpiredDispute(uint256 orderSeed) external {
        totalCalls++;
        if (orderIds.length == 0) return;
        uint256 orderId = _pickOrder(orderSeed, DataMarket.OrderStatus.Disputed, false);
        GhostOrder memory o = orders[orderId];
        if (o.status == DataMarket.OrderStatus.Disputed && block.timestamp < o.deadline && _chance(orderSeed, 3)) {
            vm.warp(o.deadline);
        }
        bool expectOk = o.status == DataMarket.OrderStatus.Disputed && block.timestamp >= o.deadline;
        vm.prank(STRANGER);
        try market.settleExpiredDispute(orderId) {
            _expect(expectOk, "settleExpiredDispute succeeded when it should not");
            _settle(orderId, o.amount, 0);
            orders[orderId].status = DataMarket.OrderStatus.Refunded;
            _countPaused();
            calls["settleExpiredDispute"]++;
        } catch {
            _expect(!expectOk, "settleExpiredDispute of an expired dispute failed");
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
        bool[] memory releasable = new bool[](count);
        for (uint256 i; i < count; ++i) {
            GhostOrder memory o = orders[ids[i]];
            releasable[i] =
                o.status == DataMarket.OrderStatus.Open && block.timestamp >= o.releaseAt && _firstOccurrence(ids, i);
        }
        try market.release(ids) {
            for (uint256 i; i < count; ++i) {
                if (releasable[i]) _payOwner(ids[i]);
            }
            _countPaused();
            calls["release"]++;
        } catch {
            _violation("release reverted");
        }
    }

    /// @dev An account withdraws its credit of a token (mostly the blocklisting one, which is where credits come
    /// from), mostly to SAFE, else to itself (which the token may block); or, one time in three, a stranger sends
    /// the credit to the account itself.
    function withdraw(uint256 accountSeed, uint256 tokenSeed) external {
        totalCalls++;
        address account = accountAt(accountSeed % accountCount());
        uint256 tokenIndex = _chance(tokenSeed, 4) ? BLOCKLIST : tokenSeed % TOKENS;
        address token = address(tokens[tokenIndex]);
        if (expectedCredit[token][account] == 0 && _chance(accountSeed, 8)) {
            account = _someCreditor(tokenIndex, accountSeed);
        }
        bool forAccount = !_chance(tokenSeed / 3, 3);
        address to = !forAccount && _chance(tokenSeed / 7, 4) ? SAFE : account;
        uint256 credit = expectedCredit[token][account];
        bool expectOk = credit != 0 && !_blocked(tokenIndex, to);
        try this.callWithdraw(token, account, to, forAccount) returns (uint256 amount) {
            _expect(expectOk, "withdraw succeeded when it should not");
            _expect(amount == credit, "withdraw: wrong amount");
            expectedCredit[token][account] = 0;
            expectedCredits[token] = _less(expectedCredits[token], credit);
            expectedBalance[token][to] += credit;
            ghostPaidOut[token] += credit;
            _countPaused();
            calls[forAccount ? "withdrawFor" : "withdraw"]++;
        } catch {
            _expect(!expectOk, "withdraw of a credit failed");
        }
    }

    /// @dev `withdraw` by `account`, or `withdrawFor` by a stranger (called through `this` so that one try/catch
    /// covers both; the prank applies to the market call).
    function callWithdraw(address token, address account, address to, bool forAccount) external returns (uint256) {
        require(msg.sender == address(this), "handler only");
        vm.prank(forAccount ? STRANGER : account);
        return forAccount ? market.withdrawFor(token, account) : market.withdraw(token, to);
    }

    /// @dev Returns part of a token's surplus, or too much, or under a reference already answered.
    function returnSurplus(uint256 tokenSeed, uint256 amount, bool tooMuch, bool reuseRef) external {
        totalCalls++;
        uint256 tokenIndex = tokenSeed % TOKENS;
        address token = address(tokens[tokenIndex]);
        uint256 available = expectedSurplus[token];
        amount = tooMuch || available == 0 ? available + bound(amount, 1, 1_000e6) : bound(amount, 1, available);
        bool reusing = reuseRef && usedRefs.length != 0;
        bytes32 ref = reusing ? usedRefs[amount % usedRefs.length] : _freshRef();
        bool expectOk = amount <= available && !reusing && !_blocked(tokenIndex, SURPLUS_RECEIVER);
        uint256 escrowBefore = market.totalEscrowed(token);
        uint256 creditsBefore = market.totalCredits(token);

        vm.prank(ARBITER);
        try market.returnSurplus(token, SURPLUS_RECEIVER, amount, ref) {
            if (reusing) reusedReferenceSuccesses++;
            _expect(expectOk, "returnSurplus succeeded when it should not");
            _surplusReturned(tokenIndex, SURPLUS_RECEIVER, amount, ref);
            _expect(market.totalEscrowed(token) == escrowBefore, "returnSurplus touched the escrow");
            _expect(market.totalCredits(token) == creditsBefore, "returnSurplus touched the credits");
            calls["returnSurplus"]++;
        } catch {
            _expect(!expectOk, "returning surplus failed");
        }
    }

    /// @dev Returns up to half of two tokens' surplus in one batch (sometimes repeating a reference in it).
    function returnSurplusBatch(uint256 seed, bool repeatRef) external {
        totalCalls++;
        uint256 first = seed % TOKENS;
        uint256 second = (seed / TOKENS) % TOKENS;
        DataMarket.SurplusReturn[] memory items = new DataMarket.SurplusReturn[](2);
        uint256[TOKENS] memory taken;
        bool expectOk = !repeatRef;
        for (uint256 i; i < 2; ++i) {
            uint256 tokenIndex = i == 0 ? first : second;
            address token = address(tokens[tokenIndex]);
            uint256 amount = _less(expectedSurplus[token], taken[tokenIndex]) / 2;
            if (amount == 0) return;
            taken[tokenIndex] += amount;
            items[i] = DataMarket.SurplusReturn(
                token, SURPLUS_RECEIVER, amount, i == 1 && repeatRef ? items[0].ref : _freshRef()
            );
            if (_blocked(tokenIndex, SURPLUS_RECEIVER)) expectOk = false;
        }
        vm.prank(ARBITER);
        try market.returnSurplusBatch(items) {
            if (repeatRef) reusedReferenceSuccesses++;
            _expect(expectOk, "returnSurplusBatch succeeded when it should not");
            for (uint256 i; i < 2; ++i) {
                uint256 tokenIndex = i == 0 ? first : second;
                _surplusReturned(tokenIndex, SURPLUS_RECEIVER, items[i].amount, items[i].ref);
            }
            calls["returnSurplusBatch"]++;
        } catch {
            _expect(!expectOk, "returnSurplusBatch failed");
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // The blocklisting token and administration
    // ---------------------------------------------------------------------------------------------------------------

    /// @dev Blocks or unblocks a receiver in the blocklisting token (the treasuries too), reverting or returning false.
    function setBlocked(uint256 accountSeed, uint256 blockSeed, bool returnFalse) external {
        totalCalls++;
        address account = accountAt(accountSeed % (accountCount() - 1)); // never SAFE
        blocklist.setBlocked(account, !_chance(blockSeed, 3));
        blocklist.setReturnFalse(returnFalse);
        calls["setBlocked"]++;
    }

    function setTreasury(uint256 seed) external {
        totalCalls++;
        address next = seed % 2 == 0 ? TREASURY : OTHER_TREASURY;
        vm.prank(ADMIN);
        try market.setTreasury(next) {
            treasuryNow = next;
            calls["setTreasury"]++;
        } catch {
            _violation("setTreasury failed");
        }
    }

    /// @dev Unpauses a paused market; pauses a running one a third of the time, so it mostly runs.
    function togglePause(uint256 seed) external {
        totalCalls++;
        if (!paused && _chance(seed, 3)) return;
        vm.prank(ADMIN);
        if (paused) {
            try market.unpause() {
                paused = false;
            } catch {
                _violation("unpause failed");
            }
        } else {
            try market.pause() {
                paused = true;
            } catch {
                _violation("pause failed");
            }
        }
        calls["togglePause"]++;
    }

    function setFee(uint256 feeBps) external {
        totalCalls++;
        feeBps = bound(feeBps, 0, 1000);
        vm.prank(ADMIN);
        // forge-lint: disable-next-line(unsafe-typecast) -- at most 1000
        try market.setFee(uint16(feeBps)) {
            feeNow = feeBps;
            calls["setFee"]++;
        } catch {
            _violation("setFee failed");
        }
    }

    function setTokenAllowed(uint256 tokenSeed, bool isAllowed) external {
        totalCalls++;
        uint256 tokenIndex = tokenSeed % TOKENS;
        vm.prank(ADMIN);
        try market.setTokenAllowed(address(tokens[tokenIndex]), isAllowed, tokenIndex != 1) {
            allowed[tokenIndex] = isAllowed;
            calls["setTokenAllowed"]++;
        } catch {
            _violation("setTokenAllowed failed");
        }
    }

    /// @dev A new dispute period: it must never move disputes already open.
    function setDisputePeriod(uint256 period) external {
        totalCalls++;
        // forge-lint: disable-next-line(unsafe-typecast) -- at most 30 days
        uint32 next = uint32(bound(period, 7 days, 30 days));
        vm.prank(ADMIN);
        try market.setDisputePeriod(next) {
            periodNow = next;
            calls["setDisputePeriod"]++;
        } catch {
            _violation("setDisputePeriod failed");
        }
    }

    function setMinDisputeWindow(uint256 seed) external {
        totalCalls++;
        uint32 next = seed % 3 == 0 ? 0 : (seed % 3 == 1 ? 1 hours : 1 days);
        vm.prank(ADMIN);
        try market.setMinDisputeWindow(next) {
            minWindowNow = next;
            calls["setMinDisputeWindow"]++;
        } catch {
            _violation("setMinDisputeWindow failed");
        }
    }

    /// @dev Mostly up to two days; one time in four up to 30 days, past dispute deadlines.
    function warp(uint256 elapsed) external {
        totalCalls++;
        vm.warp(block.timestamp + bound(elapsed, 1, _chance(elapsed, 4) ? 2 days : 30 days));
        calls["warp"]++;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // The model
    // ---------------------------------------------------------------------------------------------------------------

    /// @dev A purchase went through: the buyer paid the listing's price; the order is open (or, with a zero window,
    /// paid out at once).
    function _recordPurchase(uint256 orderId, uint256 listingId, address buyer) internal {
        GhostListing memory l = listings[listingId];
        address token = address(tokens[l.tokenIndex]);
        _expect(orderId == orderIds.length + 1, "purchase: unexpected order id");
        orderIds.push(orderId);
        latestOrder[listingId][buyer] = orderId;
        orders[orderId] = GhostOrder({
            listingId: listingId,
            buyer: buyer,
            tokenIndex: l.tokenIndex,
            amount: l.price,
            feeBps: feeNow,
            releaseAt: block.timestamp + l.window,
            deadline: 0,
            status: DataMarket.OrderStatus.Open
        });
        expectedBalance[token][buyer] = _less(expectedBalance[token][buyer], l.price);
        ghostPaidIn[token] += l.price;
        expectedEscrow[token] += l.price;
        if (l.window == 0) _payOwner(orderId);
    }

    /// @dev The order is released: the owner's share to the listing's payout address of now, the fee to the treasury.
    function _payOwner(uint256 orderId) internal {
        GhostOrder memory o = orders[orderId];
        _settle(orderId, 0, o.amount * o.feeBps / BPS);
        orders[orderId].status = DataMarket.OrderStatus.Released;
    }

    /// @dev Takes the order out of escrow and pays `refund` to its buyer, `fee` to the treasury and the rest to its
    /// listing's payout address; a receiver the token blocks gets a credit instead.
    function _settle(uint256 orderId, uint256 refund, uint256 fee) internal {
        GhostOrder memory o = orders[orderId];
        address token = address(tokens[o.tokenIndex]);
        expectedEscrow[token] = _less(expectedEscrow[token], o.amount);
        ghostSettled[token] += o.amount;
        _pay(o.tokenIndex, o.buyer, refund);
        _pay(o.tokenIndex, listings[o.listingId].payout, o.amount - refund - fee);
        _pay(o.tokenIndex, treasuryNow, fee);
    }

    function _pay(uint256 tokenIndex, address to, uint256 amount) internal {
        if (amount == 0) return;
        address token = address(tokens[tokenIndex]);
        if (_blocked(tokenIndex, to)) {
            expectedCredit[token][to] += amount;
            expectedCredits[token] += amount;
        } else {
            expectedBalance[token][to] += amount;
            ghostPaidOut[token] += amount;
        }
    }

    function _surplusReturned(uint256 tokenIndex, address to, uint256 amount, bytes32 ref) internal {
        address token = address(tokens[tokenIndex]);
        expectedSurplus[token] = _less(expectedSurplus[token], amount);
        expectedBalance[token][to] += amount;
        ghostSurplusOut[token] += amount;
        usedRefs.push(ref);
    }

    function _blocked(uint256 tokenIndex, address account) internal view returns (bool) {
        return tokenIndex == BLOCKLIST && blocklist.blocked(account);
    }

    function _buyable(uint256 listingId, address buyer) internal view returns (bool) {
        GhostListing memory l = listings[listingId];
        uint256 previous = latestOrder[listingId][buyer];
        return l.active && l.approved && allowed[l.tokenIndex] && !paused
            && (previous == 0 || orders[previous].status == DataMarket.OrderStatus.Refunded);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------------------------

    function _setApproval(uint256[] memory ids, bool approved) internal {
        vm.prank(MODERATOR);
        try market.setApproval(ids, approved) {
            for (uint256 i; i < ids.length; ++i) {
                listings[ids[i]].approved = approved;
            }
            calls["setApproval"]++;
        } catch {
            _violation("setApproval of existing listings failed");
        }
    }

    /// @dev Tries `auth`, which was already used, cancelled or carries a spent nonce, on `listingId`: it must fail.
    function _tryReusedAuthorization(uint256 listingId, DataMarket.Authorization memory auth, string memory message)
        internal
    {
        GhostListing memory l = listings[listingId];
        _fundBuyer(l.tokenIndex, auth.from, auth.value);
        vm.prank(RELAYER);
        try market.purchaseWithAuthorization(listingId, auth) returns (uint256 orderId) {
            reusedAuthorizationSuccesses++;
            ordersPaidByNonce[auth.nonce]++;
            _violation(message);
            // Keep the model whole, so that only the invariant about authorizations reports this.
            _recordPurchase(orderId, listingId, auth.from);
        } catch {}
    }

    /**
     * @dev An approved listing of `tokenIndex` at `price` that `tokenIndex`'s buyers never bought, created for the
     * purpose (0 when the market is paused or the token disallowed, or the listings ran out).
     */
    function _freshListingFor(uint256 tokenIndex, uint256 price) internal returns (uint256 listingId) {
        if (paused || !allowed[tokenIndex] || listingIds.length >= MAX_LISTINGS * 2) return 0;
        // forge-lint: disable-next-line(unsafe-typecast) -- a small constant
        address seller = address(uint160(0x5E11));
        vm.prank(seller);
        try market.createListing(address(tokens[tokenIndex]), price, payoutAt(0), keccak256("replay"), 1 days) returns (
            uint256 id
        ) {
            listingId = id;
            listingIds.push(id);
            listings[id] = GhostListing(seller, tokenIndex, price, payoutAt(0), 1 days, true, false);
            _setApproval(_single(id), true);
        } catch {
            _violation("creating a listing for a replay failed");
        }
    }

    /// @dev Three times in four, a buyer from `seed` on who may buy `listingId` (if any); otherwise the buyer `seed`
    /// picks, who may hold a live order already.
    function _buyerIndex(uint256 seed, uint256 listingId) internal view returns (uint256) {
        if (_chance(seed, 4)) {
            for (uint256 i; i < BUYERS; ++i) {
                uint256 index = (seed % BUYERS + i) % BUYERS;
                uint256 previous = latestOrder[listingId][buyerAt(index)];
                if (previous == 0 || orders[previous].status == DataMarket.OrderStatus.Refunded) return index;
            }
        }
        return seed % BUYERS;
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
            GhostOrder memory o = orders[orderId];
            if (o.status == status && (!beforeRelease || block.timestamp < o.releaseAt)) return orderId;
        }
        return orderIds[seed % n];
    }

    /// @dev An account holding a credit of the token, from `seed` on (the first account if none does).
    function _someCreditor(uint256 tokenIndex, uint256 seed) internal view returns (address) {
        address token = address(tokens[tokenIndex]);
        uint256 n = accountCount();
        for (uint256 i; i < n; ++i) {
            address account = accountAt((seed % n + i) % n);
            if (expectedCredit[token][account] != 0) return account;
        }
        return accountAt(seed % n);
    }

    function _firstOccurrence(uint256[] memory ids, uint256 i) internal pure returns (bool) {
        for (uint256 j; j < i; ++j) {
            if (ids[j] == ids[i]) return false;
        }
        return true;
    }

    function _fundBuyer(uint256 tokenIndex, address buyer, uint256 amount) internal {
        TestUSDC token = tokens[tokenIndex];
        uint256 balance = token.balanceOf(buyer);
        if (balance < amount) {
            token.mint(buyer, amount - balance);
            expectedBalance[address(token)][buyer] += amount - balance;
        }
    }

    function _freshNonce() internal returns (bytes32) {
        return keccak256(abi.encode("nonce", ++nonceCounter));
    }

    function _freshRef() internal returns (bytes32) {
        return keccak256(abi.encode("stray transfer", ++refCounter));
    }

    function _sign(uint256 pk, uint256 tokenIndex, uint256 value, bytes32 nonce)
        internal
        view
        returns (SignedAuthorization memory s)
    {
        TestUSDC token = tokens[tokenIndex];
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

    /// @dev The buyer's signed `ConfirmOrder` or `DisputeOrder` of `orderId`, with a fresh nonce, valid for an hour.
    function _signOrder(address buyer, bytes32 typehash, uint256 orderId)
        internal
        returns (bytes32 nonce, uint256 deadline, bytes memory signature)
    {
        nonce = _freshNonce();
        deadline = block.timestamp + 1 hours;
        bytes32 domainSeparator = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("DataMarket"),
                keccak256("1"),
                block.chainid,
                address(market)
            )
        );
        bytes32 digest = keccak256(
            abi.encodePacked("\x19\x01", domainSeparator, keccak256(abi.encode(typehash, orderId, nonce, deadline)))
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(this.buyerPk(buyer), digest);
        signature = abi.encodePacked(r, s, v);
    }

    function _digest(TestUSDC token, bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
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
        if (paused) pausedSettlements++;
    }

    /// @dev `a - b`, or 0: the model never reverts, even when the market it checks has gone wrong.
    function _less(uint256 a, uint256 b) internal pure returns (uint256) {
        return a > b ? a - b : 0;
    }

    function _expect(bool condition, string memory message) internal {
        if (!condition) _violation(message);
    }

    function _violation(string memory message) internal {
        violations++;
        lastViolation = message;
    }
}

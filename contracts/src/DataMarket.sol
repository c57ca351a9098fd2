// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IERC3009} from "./interfaces/IERC3009.sol";

/**
 * @title DataMarket
 * @notice Listings of datasets and escrowed orders paid in allow-listed ERC-20 tokens.
 *
 * A listing is created by any wallet (its owner), which sets the price, the payout address and its own `active` flag;
 * moderators set a separate `approved` flag, so an owner cannot undo a delisting. A listing is buyable while it is
 * active and approved and the market is not paused. A purchase pulls the price into escrow and records an order with
 * `releaseAt = now + disputeWindow`; the buyer may confirm it (paying the owner at once), anyone may release it once
 * `releaseAt` has passed, and the buyer may dispute it before then, after which an arbiter splits it between a refund
 * and the owner. The treasury takes the fee rate that was in force at purchase from whatever the owner receives. A
 * listing with a zero dispute window pays its owner at purchase. Each buyer has at most one order per listing, found
 * by {orderOf}; {hasAccess} reads it.
 *
 * Trust assumptions:
 *
 * - The admin (DEFAULT_ADMIN_ROLE) grants every role, sets the fee (capped at {MAX_FEE_BPS}) and the treasury, pauses,
 *   and decides which tokens may be used. Allow-listed tokens must be plain ERC-20s: no fee on transfer (a purchase
 *   that delivers less than the price reverts anyway), no rebasing, no callbacks into this contract, and transfers
 *   that cost a bounded amount of gas. An allow-listed token's own admin can freeze the escrow (e.g. USDC's
 *   blacklist); nothing here can prevent that.
 * - Moderators (MODERATOR_ROLE) decide which listings are approved. They cannot touch funds.
 * - Relayers (RELAYER_ROLE) choose the listing an EIP-3009 authorization pays for, which the buyer's signature does
 *   not cover; they cannot move more than the buyer signed, nor to anyone but this contract, and the order belongs to
 *   the signer. A relayer is trusted to pick the listing the buyer asked for, at its current price.
 * - Arbiters (ARBITER_ROLE) decide disputed orders (any split between buyer and owner) and return surplus, i.e.
 *   tokens held beyond the escrowed total (authorizations sent straight to the token, plain transfers). They can
 *   never move escrowed money to anyone else.
 * - The treasury is trusted to accept the fee. If the fee transfer of a {release} fails after the owner was paid, the
 *   fee stays in the contract as surplus (the event reports the fee actually paid, 0) for an arbiter to return.
 * - Pausing stops only listing creation and purchases; confirmations, disputes, releases, resolutions and surplus
 *   returns keep working, so no buyer loses the right to dispute and no funds get stuck.
 *
 * Storage is laid out for gas. An order takes two slots: one keyed by order id (buyer, listing, fee rate, status) and
 * one keyed by (listing, buyer), which is also the only access index (order id, amount, release time, token index).
 * Allow-listed tokens get a 16-bit index; the token's address, flags and escrowed total share one slot. A purchase
 * reads one listing slot (price, window, flags, token index), a settlement another (payout). The pause flag,
 * treasury, fee rate and order counter share one slot.
 */
contract DataMarket is AccessControl, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Role that approves and un-approves listings.
    bytes32 public constant MODERATOR_ROLE = keccak256("MODERATOR_ROLE");
    /// @notice Role that submits EIP-3009 authorizations on behalf of buyers.
    bytes32 public constant RELAYER_ROLE = keccak256("RELAYER_ROLE");
    /// @notice Role that resolves disputes and returns surplus.
    bytes32 public constant ARBITER_ROLE = keccak256("ARBITER_ROLE");

    /// @notice Highest fee rate, in basis points (10%).
    uint16 public constant MAX_FEE_BPS = 1000;
    /// @notice Longest dispute window a listing may have.
    uint32 public constant MAX_DISPUTE_WINDOW = 30 days;
    /// @notice Highest listing price, in token units (3.09e26: 309 million tokens of 18 decimals). Prices, order
    /// amounts and each token's escrowed total are stored in 88 bits; a purchase that would take a token's escrowed
    /// total beyond this reverts.
    uint256 public constant MAX_PRICE = type(uint88).max;

    uint256 private constant BPS = 10_000;

    /// @notice Status of an order.
    /// @dev Released: the owner was paid (confirm, release or zero window). Refunded: resolved with a full refund.
    /// Resolved: resolved with a partial (or no) refund.
    enum OrderStatus {
        None,
        Open,
        Disputed,
        Released,
        Refunded,
        Resolved
    }

    /// @notice A listing as returned by {getListing}.
    struct Listing {
        address owner;
        address token;
        address payout;
        uint256 price;
        bytes32 contentHash;
        uint32 disputeWindow;
        bool active;
        bool approved;
    }

    /// @notice An order as returned by {getOrder}.
    struct Order {
        uint256 listingId;
        address buyer;
        uint256 amount;
        uint64 releaseAt;
        uint16 feeBps;
        OrderStatus status;
    }

    /// @notice An EIP-3009 `TransferWithAuthorization` signed by `from` with `to` = this contract.
    struct Authorization {
        address from;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
        bytes signature;
    }

    /// @dev Listing storage. Slot 0 is all a purchase reads; slot 1 is all a settlement reads.
    struct ListingRecord {
        uint88 price; // slot 0
        uint32 disputeWindow;
        bool active;
        bool approved;
        uint16 tokenIndex;
        address payout; // slot 1
        address owner; // slot 2
        bytes32 contentHash; // slot 3
    }

    /// @dev First order slot, keyed by order id.
    struct OrderRecord {
        address buyer;
        uint64 listingId;
        uint16 feeBps;
        OrderStatus status;
    }

    /// @dev Second order slot, keyed by (listing id, buyer): the access index, and what settlement needs besides the
    /// first slot and the payout address.
    struct PurchaseRecord {
        uint64 orderId;
        uint88 amount;
        uint64 releaseAt;
        uint16 tokenIndex;
    }

    /// @dev A token's address, allow-list flags and escrowed total, in one slot keyed by the token's index.
    struct TokenRecord {
        address token;
        uint8 flags;
        uint88 escrowed;
    }

    uint8 private constant ALLOWED = 1;
    uint8 private constant BYTES_SIGNATURE = 2;

    // Packed into Pausable's slot after its `_paused` flag: a purchase reads them together.
    address private _treasury;
    uint16 private _feeBps;
    uint64 private _orderCount;

    uint64 private _listingCount;
    uint16 private _tokenCount;
    mapping(address token => uint16 tokenIndex) private _tokenIndex;
    mapping(uint256 tokenIndex => TokenRecord) private _tokenRecords;
    mapping(uint256 listingId => ListingRecord) private _listings;
    mapping(uint256 orderId => OrderRecord) private _orders;
    mapping(uint256 listingId => mapping(address buyer => PurchaseRecord)) private _purchases;

    /// @notice `token` was allowed or disallowed, with the `transferWithAuthorization` flavour to use.
    event TokenConfigured(address indexed token, bool allowed, bool bytesSignature);
    /// @notice The fee rate for new orders changed.
    event FeeChanged(uint16 oldFeeBps, uint16 newFeeBps);
    /// @notice The treasury changed.
    event TreasuryChanged(address indexed oldTreasury, address indexed newTreasury);
    /// @notice A listing was created, active and not yet approved.
    event ListingCreated(
        uint256 indexed listingId,
        address indexed owner,
        address indexed token,
        uint256 price,
        address payout,
        bytes32 contentHash,
        uint32 disputeWindow
    );
    /// @notice The owner changed a listing's price or payout address.
    event ListingUpdated(uint256 indexed listingId, uint256 price, address payout);
    /// @notice The owner set a listing's active flag.
    event ListingActiveSet(uint256 indexed listingId, bool active);
    /// @notice A moderator set a listing's approved flag.
    event ListingApprovalSet(uint256 indexed listingId, bool approved);
    /// @notice An order was paid; `releaseAt` is the end of its dispute window.
    event OrderCreated(
        uint256 indexed orderId,
        uint256 indexed listingId,
        address indexed buyer,
        address token,
        uint256 amount,
        uint16 feeBps,
        uint64 releaseAt
    );
    /// @notice An order's owner share went to `payout` and `fee` to the treasury.
    event OrderReleased(
        uint256 indexed orderId,
        uint256 indexed listingId,
        address indexed buyer,
        address payout,
        uint256 ownerAmount,
        uint256 fee
    );
    /// @notice {release} skipped an existing order (not open, not matured, or the payout transfer failed).
    event ReleaseSkipped(uint256 indexed orderId);
    /// @notice The buyer disputed an order.
    event OrderDisputed(uint256 indexed orderId, uint256 indexed listingId, address indexed buyer);
    /// @notice An arbiter resolved a disputed order.
    event DisputeResolved(
        uint256 indexed orderId,
        uint256 indexed listingId,
        address indexed buyer,
        uint256 refund,
        uint256 ownerAmount,
        uint256 fee
    );
    /// @notice An arbiter returned surplus `amount` of `token` to `to`.
    event SurplusReturned(address indexed token, address indexed to, uint256 amount);

    /// @notice `maxPrice` is below the listing's current `price`.
    error DataMarketPriceAboveMax(uint256 price, uint256 maxPrice);
    /// @notice The listing does not exist, is inactive or is not approved.
    error DataMarketNotBuyable(uint256 listingId);
    /// @notice `buyer` already holds order `orderId` for the listing.
    error DataMarketAlreadyPurchased(uint256 listingId, address buyer, uint256 orderId);
    /// @notice `token` is not allow-listed.
    error DataMarketTokenNotAllowed(address token);
    /// @notice The token delivered `received` instead of `price`.
    error DataMarketUnderpaid(uint256 received, uint256 price);
    /// @notice The authorization's `value` is not the listing's `price`.
    error DataMarketAuthorizationValueMismatch(uint256 value, uint256 price);
    /// @notice `caller` is not the buyer of `orderId`.
    error DataMarketNotBuyer(uint256 orderId, address caller);
    /// @notice `caller` is not the owner of `listingId`.
    error DataMarketNotListingOwner(uint256 listingId, address caller);
    /// @notice The order is not open.
    error DataMarketOrderNotOpen(uint256 orderId, OrderStatus status);
    /// @notice The order's dispute window ended at `releaseAt`.
    error DataMarketDisputeWindowClosed(uint256 orderId, uint64 releaseAt);
    /// @notice The order is not disputed.
    error DataMarketNotDisputed(uint256 orderId, OrderStatus status);
    /// @notice A refund share above 10000 basis points.
    error DataMarketRefundTooLarge(uint16 refundBps);
    /// @notice A fee rate above {MAX_FEE_BPS}.
    error DataMarketFeeTooHigh(uint16 feeBps, uint16 maxFeeBps);
    /// @notice A dispute window above {MAX_DISPUTE_WINDOW}.
    error DataMarketWindowTooLong(uint32 disputeWindow, uint32 maxDisputeWindow);
    /// @notice An address that must not be zero was zero.
    error DataMarketZeroAddress();
    /// @notice A zero price.
    error DataMarketZeroPrice();
    /// @notice A price above {MAX_PRICE}.
    error DataMarketPriceTooHigh(uint256 price, uint256 maxPrice);
    /// @notice No listing has id `listingId`.
    error DataMarketUnknownListing(uint256 listingId);
    /// @notice `amount` is more than the token's `surplus`.
    error DataMarketSurplusExceeded(uint256 amount, uint256 surplus);
    /// @notice A `(v, r, s)` token needs a 65-byte signature.
    error DataMarketBadSignatureLength(uint256 length);

    /**
     * @notice Deploys the market with `admin` holding DEFAULT_ADMIN_ROLE (and nothing else), the fee going to
     * `treasury_` at `feeBps_` basis points.
     * @param admin Account that administers roles, fee, treasury, tokens and pausing; not zero.
     * @param treasury_ Receiver of fees; not zero.
     * @param feeBps_ Fee rate in basis points, at most {MAX_FEE_BPS}.
     */
    constructor(address admin, address treasury_, uint16 feeBps_) {
        if (admin == address(0) || treasury_ == address(0)) revert DataMarketZeroAddress();
        if (feeBps_ > MAX_FEE_BPS) revert DataMarketFeeTooHigh(feeBps_, MAX_FEE_BPS);
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _treasury = treasury_;
        _feeBps = feeBps_;
        emit TreasuryChanged(address(0), treasury_);
        emit FeeChanged(0, feeBps_);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Administration
    // ---------------------------------------------------------------------------------------------------------------

    /**
     * @notice Allows or disallows `token` for new listings and purchases; settlements of existing orders are never
     * affected. Admin only.
     * @param token The ERC-20 token; not zero. At most 65535 distinct tokens can ever be configured.
     * @param allowed Whether listings may be created and bought in it.
     * @param bytesSignature Whether {purchaseWithAuthorization} calls the token's `bytes signature` overload of
     * `transferWithAuthorization` (FiatToken v2.2 style) rather than the `(v, r, s)` one.
     */
    function setTokenAllowed(address token, bool allowed, bool bytesSignature) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (token == address(0)) revert DataMarketZeroAddress();
        uint16 index = _tokenIndex[token];
        if (index == 0) {
            index = ++_tokenCount;
            _tokenIndex[token] = index;
            _tokenRecords[index].token = token;
        }
        _tokenRecords[index].flags = (allowed ? ALLOWED : 0) | (bytesSignature ? BYTES_SIGNATURE : 0);
        emit TokenConfigured(token, allowed, bytesSignature);
    }

    /**
     * @notice Returns how `token` is configured (both false for a token never configured).
     * @return allowed Whether the token is allow-listed.
     * @return bytesSignature Whether authorizations use the `bytes signature` overload.
     */
    function tokenConfig(address token) external view returns (bool allowed, bool bytesSignature) {
        uint8 flags = _tokenRecords[_tokenIndex[token]].flags;
        return (flags & ALLOWED != 0, flags & BYTES_SIGNATURE != 0);
    }

    /**
     * @notice Sets the fee rate copied into orders from now on. Admin only.
     * @param newFeeBps Basis points, at most {MAX_FEE_BPS}.
     */
    function setFee(uint16 newFeeBps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (newFeeBps > MAX_FEE_BPS) revert DataMarketFeeTooHigh(newFeeBps, MAX_FEE_BPS);
        emit FeeChanged(_feeBps, newFeeBps);
        _feeBps = newFeeBps;
    }

    /**
     * @notice Sets the receiver of fees, for every settlement from now on. Admin only.
     * @param newTreasury Not zero.
     */
    function setTreasury(address newTreasury) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (newTreasury == address(0)) revert DataMarketZeroAddress();
        emit TreasuryChanged(_treasury, newTreasury);
        _treasury = newTreasury;
    }

    /**
     * @notice Stops listing creation and purchases. Admin only. Reverts with `EnforcedPause` if already paused.
     */
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /**
     * @notice Lifts a pause. Admin only. Reverts with `ExpectedPause` if not paused.
     */
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    /**
     * @notice Returns the fee rate, in basis points, that new orders get.
     */
    function feeBps() external view returns (uint16) {
        return _feeBps;
    }

    /**
     * @notice Returns the receiver of fees.
     */
    function treasury() external view returns (address) {
        return _treasury;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Listings
    // ---------------------------------------------------------------------------------------------------------------

    /**
     * @notice Creates a listing owned by the caller: active, waiting for a moderator's approval. Not while paused.
     * @param token An allow-listed ERC-20 token the price is paid in.
     * @param price In token units; above zero and at most {MAX_PRICE}.
     * @param payout Receiver of the owner's share; not zero.
     * @param contentHash Hash of the dataset version; never changes.
     * @param disputeWindow Seconds a buyer may dispute, at most {MAX_DISPUTE_WINDOW}; 0 pays the owner at purchase.
     * @return listingId The new listing's id (ids start at 1).
     */
    function createListing(address token, uint256 price, address payout, bytes32 contentHash, uint32 disputeWindow)
        external
        whenNotPaused
        returns (uint256 listingId)
    {
        uint16 tokenIndex = _tokenIndex[token];
        if (_tokenRecords[tokenIndex].flags & ALLOWED == 0) revert DataMarketTokenNotAllowed(token);
        _checkTerms(price, payout);
        if (disputeWindow > MAX_DISPUTE_WINDOW) revert DataMarketWindowTooLong(disputeWindow, MAX_DISPUTE_WINDOW);
        listingId = ++_listingCount;
        _listings[listingId] = ListingRecord({
            // forge-lint: disable-next-line(unsafe-typecast) -- _checkTerms bounds price by MAX_PRICE
            price: uint88(price),
            disputeWindow: disputeWindow,
            active: true,
            approved: false,
            tokenIndex: tokenIndex,
            payout: payout,
            owner: msg.sender,
            contentHash: contentHash
        });
        emit ListingCreated(listingId, msg.sender, token, price, payout, contentHash, disputeWindow);
    }

    /**
     * @notice Changes a listing's price and payout address. The price applies to purchases from now on; the payout
     * address to every settlement from now on, of existing orders too. Listing owner only; works while paused.
     * @param listingId The listing.
     * @param price Above zero and at most {MAX_PRICE}.
     * @param payout Not zero.
     */
    function updateListing(uint256 listingId, uint256 price, address payout) external {
        ListingRecord storage l = _ownedListing(listingId);
        _checkTerms(price, payout);
        // forge-lint: disable-next-line(unsafe-typecast) -- _checkTerms bounds price by MAX_PRICE
        l.price = uint88(price);
        l.payout = payout;
        emit ListingUpdated(listingId, price, payout);
    }

    /**
     * @notice Sets a listing's active flag (an inactive listing cannot be bought). Listing owner only; works while
     * paused.
     * @param listingId The listing.
     * @param active The new flag.
     */
    function setListingActive(uint256 listingId, bool active) external {
        _ownedListing(listingId).active = active;
        emit ListingActiveSet(listingId, active);
    }

    /**
     * @notice Sets the approved flag of each listing in `listingIds` (an unapproved listing cannot be bought).
     * Moderator only. Reverts with {DataMarketUnknownListing} if any id does not exist.
     * @param listingIds Existing listing ids.
     * @param approved The new flag.
     */
    function setApproval(uint256[] calldata listingIds, bool approved) external onlyRole(MODERATOR_ROLE) {
        uint256 count = _listingCount;
        for (uint256 i = 0; i < listingIds.length; ++i) {
            uint256 listingId = listingIds[i];
            if (listingId == 0 || listingId > count) revert DataMarketUnknownListing(listingId);
            _listings[listingId].approved = approved;
            emit ListingApprovalSet(listingId, approved);
        }
    }

    /**
     * @notice Returns listing `listingId` (all zero if it does not exist).
     */
    function getListing(uint256 listingId) external view returns (Listing memory) {
        ListingRecord storage l = _listings[listingId];
        return Listing({
            owner: l.owner,
            token: _tokenRecords[l.tokenIndex].token,
            payout: l.payout,
            price: l.price,
            contentHash: l.contentHash,
            disputeWindow: l.disputeWindow,
            active: l.active,
            approved: l.approved
        });
    }

    /**
     * @notice Returns the number of listings, which is also the highest listing id.
     */
    function listingCount() external view returns (uint256) {
        return _listingCount;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Purchases
    // ---------------------------------------------------------------------------------------------------------------

    /**
     * @notice Buys listing `listingId` for the caller, pulling the price with `transferFrom` (approve the market
     * first). Not while paused.
     * @param listingId An active, approved listing the caller has not bought yet.
     * @param maxPrice The most the caller pays; protects against a price raised before the transaction lands.
     * @return orderId The new order's id.
     */
    function purchase(uint256 listingId, uint256 maxPrice)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 orderId)
    {
        TokenRecord storage t;
        uint256 price;
        (t, price, orderId) = _recordOrder(listingId, msg.sender, maxPrice);
        IERC20 token = IERC20(t.token);
        uint256 balanceBefore = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), price);
        _finishPurchase(token, balanceBefore, price, orderId, listingId, msg.sender);
    }

    /**
     * @notice Like {purchase}, with an EIP-2612 permit for `maxPrice` signed by the caller, in one transaction. If the
     * permit fails (e.g. someone front-ran it), the purchase still goes through when the allowance already covers
     * the price; otherwise the permit's revert is bubbled up. Not while paused.
     * @param listingId An active, approved listing the caller has not bought yet.
     * @param maxPrice The most the caller pays, and the permit's value.
     * @param deadline The permit's deadline.
     * @param v Permit signature.
     * @param r Permit signature.
     * @param s Permit signature.
     * @return orderId The new order's id.
     */
    function purchaseWithPermit(uint256 listingId, uint256 maxPrice, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 orderId)
    {
        TokenRecord storage t;
        uint256 price;
        (t, price, orderId) = _recordOrder(listingId, msg.sender, maxPrice);
        IERC20 token = IERC20(t.token);
        try IERC20Permit(address(token)).permit(msg.sender, address(this), maxPrice, deadline, v, r, s) {}
        catch (bytes memory reason) {
            if (token.allowance(msg.sender, address(this)) < price) {
                assembly ("memory-safe") {
                    revert(add(reason, 0x20), mload(reason))
                }
            }
        }
        uint256 balanceBefore = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), price);
        _finishPurchase(token, balanceBefore, price, orderId, listingId, msg.sender);
    }

    /**
     * @notice Buys listing `listingId` for `auth.from` with an EIP-3009 `TransferWithAuthorization` it signed with
     * `to` = this contract and `value` = the price (what x402's `exact` scheme produces). Relayer only; the relayer
     * picks the listing. Calls the token's `bytes signature` overload or, for a `(v, r, s)` token, splits a 65-byte
     * `r || s || v` signature. A used, cancelled, expired or not yet valid authorization reverts in the token. Not
     * while paused.
     * @param listingId An active, approved listing `auth.from` has not bought yet.
     * @param auth The signed authorization.
     * @return orderId The new order's id, owned by `auth.from`.
     */
    function purchaseWithAuthorization(uint256 listingId, Authorization calldata auth)
        external
        onlyRole(RELAYER_ROLE)
        whenNotPaused
        nonReentrant
        returns (uint256 orderId)
    {
        if (auth.from == address(0)) revert DataMarketZeroAddress();
        TokenRecord storage t;
        uint256 price;
        (t, price, orderId) = _recordOrder(listingId, auth.from, type(uint256).max);
        if (auth.value != price) revert DataMarketAuthorizationValueMismatch(auth.value, price);
        IERC20 token = IERC20(t.token);
        uint256 balanceBefore = token.balanceOf(address(this));
        if (t.flags & BYTES_SIGNATURE != 0) {
            IERC3009(address(token)).transferWithAuthorization(
                auth.from, address(this), price, auth.validAfter, auth.validBefore, auth.nonce, auth.signature
            );
        } else {
            bytes calldata signature = auth.signature;
            if (signature.length != 65) revert DataMarketBadSignatureLength(signature.length);
            IERC3009(address(token)).transferWithAuthorization(
                auth.from,
                address(this),
                price,
                auth.validAfter,
                auth.validBefore,
                auth.nonce,
                uint8(signature[64]),
                bytes32(signature[0:32]),
                bytes32(signature[32:64])
            );
        }
        _finishPurchase(token, balanceBefore, price, orderId, listingId, auth.from);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Settlement
    // ---------------------------------------------------------------------------------------------------------------

    /**
     * @notice Pays an open order out now: the owner's share to the listing's payout address, the fee to the
     * treasury. Buyer only; works while paused. Reverts if a transfer fails.
     * @param orderId An open order of the caller.
     */
    function confirm(uint256 orderId) external nonReentrant {
        OrderRecord storage o = _orders[orderId];
        (address buyer, uint256 listingId, uint256 feeRate, OrderStatus status) = _readOrder(o);
        if (buyer != msg.sender) revert DataMarketNotBuyer(orderId, msg.sender);
        if (status != OrderStatus.Open) revert DataMarketOrderNotOpen(orderId, status);
        o.status = OrderStatus.Released;
        (uint256 amount,, uint256 tokenIndex) = _readPurchase(listingId, buyer);
        uint256 fee = amount * feeRate / BPS;
        address payout = _listings[listingId].payout;
        emit OrderReleased(orderId, listingId, buyer, payout, amount - fee, fee);
        _settle(tokenIndex, amount, buyer, 0, payout, fee);
    }

    /**
     * @notice Pays out every open order in `orderIds` whose dispute window has passed, like {confirm}. Anyone may
     * call it; works while paused. Never reverts because of one order: ids that do not exist are ignored, and orders
     * that are not open, not matured or whose payout transfer fails are left unchanged, with a {ReleaseSkipped}
     * event. If the fee transfer fails after the owner was paid, the order is released, the fee stays behind as
     * surplus and {OrderReleased} reports a fee of 0.
     * @param orderIds Order ids (a repeated id is skipped after its first release).
     */
    function release(uint256[] calldata orderIds) external nonReentrant {
        for (uint256 i = 0; i < orderIds.length; ++i) {
            _release(orderIds[i]);
        }
    }

    /**
     * @notice Freezes an open order before its release time, for an arbiter to resolve. Buyer only; works while
     * paused.
     * @param orderId An open order of the caller whose dispute window has not ended.
     */
    function dispute(uint256 orderId) external nonReentrant {
        OrderRecord storage o = _orders[orderId];
        (address buyer, uint256 listingId,, OrderStatus status) = _readOrder(o);
        if (buyer != msg.sender) revert DataMarketNotBuyer(orderId, msg.sender);
        if (status != OrderStatus.Open) revert DataMarketOrderNotOpen(orderId, status);
        uint64 releaseAt = _purchases[listingId][buyer].releaseAt;
        if (block.timestamp >= releaseAt) revert DataMarketDisputeWindowClosed(orderId, releaseAt);
        o.status = OrderStatus.Disputed;
        emit OrderDisputed(orderId, listingId, buyer);
    }

    /**
     * @notice Settles a disputed order: `refund = amount * refundBps / 10000` to the buyer, `fee = (amount - refund)
     * * order fee rate / 10000` to the treasury, the rest to the listing's payout address. The order becomes Refunded
     * (no more access) for a full refund, Resolved otherwise. Arbiter only; works while paused. Reverts if a transfer
     * fails.
     * @param orderId A disputed order.
     * @param refundBps The buyer's share, in basis points (at most 10000).
     */
    function resolve(uint256 orderId, uint16 refundBps) external onlyRole(ARBITER_ROLE) nonReentrant {
        if (refundBps > BPS) revert DataMarketRefundTooLarge(refundBps);
        OrderRecord storage o = _orders[orderId];
        (address buyer, uint256 listingId, uint256 feeRate, OrderStatus status) = _readOrder(o);
        if (status != OrderStatus.Disputed) revert DataMarketNotDisputed(orderId, status);
        o.status = refundBps == BPS ? OrderStatus.Refunded : OrderStatus.Resolved;
        (uint256 amount,, uint256 tokenIndex) = _readPurchase(listingId, buyer);
        uint256 refund = amount * refundBps / BPS;
        uint256 fee = (amount - refund) * feeRate / BPS;
        address payout = _listings[listingId].payout;
        emit DisputeResolved(orderId, listingId, buyer, refund, amount - refund - fee, fee);
        _settle(tokenIndex, amount, buyer, refund, payout, fee);
    }

    /**
     * @notice Sends `amount` of `token`'s surplus (balance beyond the escrowed total) to `to`, e.g. back to whoever
     * sent an authorization straight to the token. Arbiter only; works while paused.
     * @param token The token.
     * @param to The receiver; not zero.
     * @param amount At most {surplus}.
     */
    function returnSurplus(address token, address to, uint256 amount) external onlyRole(ARBITER_ROLE) nonReentrant {
        if (to == address(0)) revert DataMarketZeroAddress();
        uint256 available = surplus(token);
        if (amount > available) revert DataMarketSurplusExceeded(amount, available);
        emit SurplusReturned(token, to, amount);
        IERC20(token).safeTransfer(to, amount);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------------------------

    /**
     * @notice Returns the market's balance of `token` beyond what its open and disputed orders hold (0 if it holds
     * less).
     */
    function surplus(address token) public view returns (uint256) {
        uint256 balance = IERC20(token).balanceOf(address(this));
        uint256 escrowed = _tokenRecords[_tokenIndex[token]].escrowed;
        return balance > escrowed ? balance - escrowed : 0;
    }

    /**
     * @notice Returns the sum of the amounts of `token`'s open and disputed orders.
     */
    function totalEscrowed(address token) external view returns (uint256) {
        return _tokenRecords[_tokenIndex[token]].escrowed;
    }

    /**
     * @notice Returns the id of `buyer`'s order for `listingId`, 0 if there is none.
     */
    function orderOf(uint256 listingId, address buyer) external view returns (uint256 orderId) {
        return _purchases[listingId][buyer].orderId;
    }

    /**
     * @notice Returns order `orderId` (all zero if it does not exist).
     */
    function getOrder(uint256 orderId) external view returns (Order memory order) {
        OrderRecord storage o = _orders[orderId];
        if (o.buyer == address(0)) return order;
        PurchaseRecord storage p = _purchases[o.listingId][o.buyer];
        return Order({
            listingId: o.listingId,
            buyer: o.buyer,
            amount: p.amount,
            releaseAt: p.releaseAt,
            feeBps: o.feeBps,
            status: o.status
        });
    }

    /**
     * @notice Returns the number of orders, which is also the highest order id.
     */
    function orderCount() external view returns (uint256) {
        return _orderCount;
    }

    /**
     * @notice Returns whether `account` paid for `listingId` and was not fully refunded: its order is open, disputed,
     * released or resolved.
     */
    function hasAccess(uint256 listingId, address account) external view returns (bool) {
        uint256 orderId = _purchases[listingId][account].orderId;
        return orderId != 0 && _orders[orderId].status != OrderStatus.Refunded;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------------------------

    /// @dev Validates a price and a payout address.
    function _checkTerms(uint256 price, address payout) private pure {
        if (price == 0) revert DataMarketZeroPrice();
        if (price > MAX_PRICE) revert DataMarketPriceTooHigh(price, MAX_PRICE);
        if (payout == address(0)) revert DataMarketZeroAddress();
    }

    /// @dev Returns listing `listingId` after checking that the caller owns it.
    function _ownedListing(uint256 listingId) private view returns (ListingRecord storage l) {
        l = _listings[listingId];
        if (l.owner != msg.sender) revert DataMarketNotListingOwner(listingId, msg.sender);
    }

    /**
     * @dev Checks that `buyer` may buy `listingId` for at most `maxPrice` and records the order (Open, or Released
     * for a zero dispute window), before any token moves. Returns the token's record, the price and the order id.
     */
    function _recordOrder(uint256 listingId, address buyer, uint256 maxPrice)
        private
        returns (TokenRecord storage t, uint256 price, uint256 orderId)
    {
        ListingRecord storage l = _listings[listingId];
        if (!(l.active && l.approved)) revert DataMarketNotBuyable(listingId);
        uint88 listedPrice = l.price;
        price = listedPrice;
        if (price > maxPrice) revert DataMarketPriceAboveMax(price, maxPrice);
        uint16 tokenIndex = l.tokenIndex;
        t = _tokenRecords[tokenIndex];
        if (t.flags & ALLOWED == 0) revert DataMarketTokenNotAllowed(t.token);
        orderId = _purchases[listingId][buyer].orderId;
        if (orderId != 0) revert DataMarketAlreadyPurchased(listingId, buyer, orderId);

        uint32 window = l.disputeWindow;
        uint64 releaseAt = uint64(block.timestamp) + window;
        uint16 fee = _feeBps;
        orderId = ++_orderCount;
        if (window != 0) t.escrowed += listedPrice;
        _writeOrder(orderId, listingId, buyer, fee, window == 0 ? OrderStatus.Released : OrderStatus.Open);
        _writePurchase(listingId, buyer, orderId, price, releaseAt, tokenIndex);
        emit OrderCreated(orderId, listingId, buyer, t.token, price, fee, releaseAt);
    }

    /**
     * @dev Stores a new order's first slot with one SSTORE (a struct assignment writes member by member). Solidity
     * packs struct members from the least significant bits: `buyer` [0, 160), `listingId` [160, 224), `feeBps`
     * [224, 240), `status` [240, 248). Every other access goes through {OrderRecord}, and the tests check both agree.
     * `listingId` is below 2^64 (it is an existing listing's id), `fee` below 2^16.
     */
    function _writeOrder(uint256 orderId, uint256 listingId, address buyer, uint16 fee, OrderStatus status) private {
        OrderRecord storage o = _orders[orderId];
        assembly ("memory-safe") {
            sstore(
                o.slot,
                or(
                    or(and(buyer, 0xffffffffffffffffffffffffffffffffffffffff), shl(160, listingId)),
                    or(shl(224, fee), shl(240, status))
                )
            )
        }
    }

    /**
     * @dev Stores a new order's second slot, keyed by (`listingId`, `buyer`), with one SSTORE. Layout as
     * {PurchaseRecord}: `orderId` [0, 64), `amount` [64, 152), `releaseAt` [152, 216), `tokenIndex` [216, 232).
     * `orderId` is below 2^64 (a uint64 counter), `price` at most {MAX_PRICE} < 2^88.
     */
    function _writePurchase(
        uint256 listingId,
        address buyer,
        uint256 orderId,
        uint256 price,
        uint64 releaseAt,
        uint16 tokenIndex
    ) private {
        PurchaseRecord storage p = _purchases[listingId][buyer];
        assembly ("memory-safe") {
            sstore(p.slot, or(or(orderId, shl(64, price)), or(shl(152, releaseAt), shl(216, tokenIndex))))
        }
    }

    /**
     * @dev Takes a settled order's `amount` out of its token's escrowed total, then pays `refund` to `buyer`, `fee` to
     * the treasury and the rest to `payout`, skipping zero transfers. Reverts if a transfer fails.
     */
    function _settle(uint256 tokenIndex, uint256 amount, address buyer, uint256 refund, address payout, uint256 fee)
        private
    {
        TokenRecord storage t = _tokenRecords[tokenIndex];
        // forge-lint: disable-next-line(unsafe-typecast) -- an order's amount is at most MAX_PRICE (88 bits)
        t.escrowed -= uint88(amount);
        IERC20 token = IERC20(t.token);
        if (refund != 0) token.safeTransfer(buyer, refund);
        uint256 ownerAmount = amount - refund - fee;
        if (ownerAmount != 0) token.safeTransfer(payout, ownerAmount);
        if (fee != 0) token.safeTransfer(_treasury, fee);
    }

    /// @dev Reads an order's first slot with one SLOAD (layout in {_writeOrder}).
    function _readOrder(OrderRecord storage o)
        private
        view
        returns (address buyer, uint256 listingId, uint256 feeRate, OrderStatus status)
    {
        uint256 statusValue;
        assembly ("memory-safe") {
            let word := sload(o.slot)
            buyer := and(word, 0xffffffffffffffffffffffffffffffffffffffff)
            listingId := and(shr(160, word), 0xffffffffffffffff)
            feeRate := and(shr(224, word), 0xffff)
            statusValue := and(shr(240, word), 0xff)
        }
        // forge-lint: disable-next-line(unsafe-typecast) -- only OrderStatus values are ever stored
        status = OrderStatus(uint8(statusValue));
    }

    /// @dev Reads the second slot of `buyer`'s order for `listingId` with one SLOAD (layout in {_writePurchase}).
    function _readPurchase(uint256 listingId, address buyer)
        private
        view
        returns (uint256 amount, uint256 releaseAt, uint256 tokenIndex)
    {
        PurchaseRecord storage p = _purchases[listingId][buyer];
        assembly ("memory-safe") {
            let word := sload(p.slot)
            amount := and(shr(64, word), 0xffffffffffffffffffffff)
            releaseAt := and(shr(152, word), 0xffffffffffffffff)
            tokenIndex := and(shr(216, word), 0xffff)
        }
    }

    /**
     * @dev Checks that the token delivered the full price and, for a zero dispute window, pays the owner and the fee
     * at once.
     */
    function _finishPurchase(
        IERC20 token,
        uint256 balanceBefore,
        uint256 price,
        uint256 orderId,
        uint256 listingId,
        address buyer
    ) private {
        uint256 balanceAfter = token.balanceOf(address(this));
        uint256 received = balanceAfter > balanceBefore ? balanceAfter - balanceBefore : 0;
        if (received < price) revert DataMarketUnderpaid(received, price);
        ListingRecord storage l = _listings[listingId];
        if (l.disputeWindow == 0) {
            uint256 fee = price * _orders[orderId].feeBps / BPS;
            address payout = l.payout;
            emit OrderReleased(orderId, listingId, buyer, payout, price - fee, fee);
            token.safeTransfer(payout, price - fee);
            if (fee != 0) token.safeTransfer(_treasury, fee);
        }
    }

    /**
     * @dev Releases one order for {release}, or leaves it unchanged (with {ReleaseSkipped} if it exists). The effects
     * come first and are undone if the payout transfer fails.
     */
    function _release(uint256 orderId) private {
        OrderRecord storage o = _orders[orderId];
        (address buyer, uint256 listingId, uint256 feeRate, OrderStatus status) = _readOrder(o);
        if (buyer == address(0)) return;
        (uint256 amount, uint256 releaseAt, uint256 tokenIndex) = _readPurchase(listingId, buyer);
        if (status != OrderStatus.Open || block.timestamp < releaseAt) {
            emit ReleaseSkipped(orderId);
            return;
        }
        uint256 fee = amount * feeRate / BPS;
        uint256 ownerAmount = amount - fee;
        TokenRecord storage t = _tokenRecords[tokenIndex];
        IERC20 token = IERC20(t.token);
        address payout = _listings[listingId].payout;

        o.status = OrderStatus.Released;
        // forge-lint: disable-next-line(unsafe-typecast) -- an order's amount is at most MAX_PRICE (88 bits)
        t.escrowed -= uint88(amount);
        if (!token.trySafeTransfer(payout, ownerAmount)) {
            o.status = OrderStatus.Open;
            // forge-lint: disable-next-line(unsafe-typecast) -- as above
            t.escrowed += uint88(amount);
            emit ReleaseSkipped(orderId);
            return;
        }
        // The owner is paid and a failing treasury must not undo that: an unpaid fee stays behind as surplus.
        if (fee != 0 && !token.trySafeTransfer(_treasury, fee)) fee = 0;
        emit OrderReleased(orderId, listingId, buyer, payout, ownerAmount, fee);
    }
}

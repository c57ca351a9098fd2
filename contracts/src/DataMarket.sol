// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
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
 * `releaseAt` has passed, and the buyer may dispute it before then. A dispute gets a deadline when it opens (now +
 * {disputePeriod}); before it an arbiter splits the order between a refund and the owner, after it anyone settles it
 * as a full refund, so no order waits forever. The treasury takes the fee rate that was in force at purchase from
 * whatever the owner receives. A listing is created with at least the admin's {minDisputeWindow} of the moment
 * (raising it later leaves existing listings as they are: moderators may un-approve them); a listing with a zero
 * window (only while that minimum is zero) pays its owner at purchase. Buyers who hold no ETH confirm and dispute
 * with EIP-712 signatures that anyone may submit ({confirmBySig}, {disputeBySig}; EIP-1271 for contract wallets).
 * A signature cannot be withdrawn once given except by using its nonce: sign with short deadlines, and only what is
 * meant to be submitted. A contract wallet that accepts any signature lets anyone confirm or dispute its orders.
 *
 * Each buyer has at most one live order per listing, found by {orderOf}; {hasAccess} reads it. A buyer whose order
 * was fully refunded may buy the listing again: the new order becomes the one {orderOf} finds, and {getOrder} keeps
 * answering for the old one.
 *
 * No transfer out can block a settlement: a refund, payout or fee transfer that fails becomes a credit of its
 * recipient ({Credited}), which that account withdraws with {withdraw} (also while paused), to an address of its
 * choice, or which anyone sends to the account itself with {withdrawFor} once the token accepts the transfer again
 * (a token paused for a while turns every settlement during the pause into credits). A failed transfer becomes a
 * credit only if at least {TRANSFER_GAS_RESERVE} gas is left after it; a call given less gas reverts instead, so
 * nobody can force a credit by starving the transfer of gas. A transfer that runs out of gas leaves this contract
 * the 1/64 it kept back (EIP-150), plus about as much per call nested inside the token (a proxy's delegatecall), so a
 * failure with R left means the token had at least about 63 R / (1 + nesting) gas: 945,000 with a proxy, far more
 * than any transfer needs. The credit's own bookkeeping needs most of R anyway.
 *
 * Trust assumptions:
 *
 * - The admin (DEFAULT_ADMIN_ROLE) grants every role, sets the fee (capped at {MAX_FEE_BPS}), the treasury, the
 *   minimum dispute window and the dispute period (within fixed bounds), pauses, and decides which tokens may be
 *   used. Allow-listed tokens must be plain ERC-20s: no fee on transfer (a purchase that delivers less than the price
 *   reverts anyway), no rebasing, no callbacks into this contract, and transfers that need far less gas than the
 *   reserve above guarantees them. The admin never configures two addresses of one ledger (a token with two entry
 *   points): escrow and credits are counted per address, so the second address's surplus would include the first's
 *   escrow. An allow-listed token's own admin can freeze the escrow (e.g. USDC's blacklist); nothing here can
 *   prevent that, but a blocked recipient's share waits as a credit instead of blocking the order. A blocked account
 *   may withdraw its credit to another address; an issuer that objects could block this contract.
 * - Moderators (MODERATOR_ROLE) decide which listings are approved. They cannot touch funds.
 * - Relayers (RELAYER_ROLE) choose the listing an EIP-3009 authorization pays for, which the buyer's signature does
 *   not cover; they cannot move more than the buyer signed, nor to anyone but this contract, and the order belongs to
 *   the signer. A relayer is trusted to pick the listing the buyer asked for, at its current price.
 * - Arbiters (ARBITER_ROLE) decide disputed orders before their deadline (any split between buyer and owner) and
 *   return surplus: tokens held beyond the escrowed total and the credits (authorizations sent straight to the
 *   token, plain transfers), each return naming the stray transfer it answers so that none is returned twice. They
 *   can never move escrowed or credited money.
 * - Pausing stops only listing creation and purchases; confirmations, disputes, releases, resolutions, expired
 *   disputes, withdrawals and surplus returns keep working, so no buyer loses the right to dispute and no funds get
 *   stuck.
 *
 * Storage is laid out for gas. An order takes two slots: one keyed by order id (buyer, listing, fee rate, status) and
 * one keyed by (listing, buyer), which is also the only access index (order id, amount, release time, dispute
 * deadline, token index); a fully refunded order's second slot is copied under its id when its buyer buys again.
 * Allow-listed tokens get a 16-bit index; the token's address, flags and the low 88 bits of its escrowed total share
 * one slot, which every purchase and settlement reads anyway. A token's escrowed total is 128 bits: the carries out
 * of those 88 bits are counted in a second slot beside the token's total credits, written only when the low part
 * wraps (a whole 128-bit total would not fit beside the address, and a slot of its own would cost every purchase and
 * settlement another 2,100 gas). A purchase reads one listing slot (price, window, flags, token index), a settlement
 * another (payout). The pause flag, treasury, fee rate and order counter share one slot; the listing counter, token
 * counter, minimum dispute window and dispute period another.
 */
contract DataMarket is AccessControl, EIP712, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Role that approves and un-approves listings.
    bytes32 public constant MODERATOR_ROLE = keccak256("MODERATOR_ROLE");
    /// @notice Role that submits EIP-3009 authorizations on behalf of buyers.
    bytes32 public constant RELAYER_ROLE = keccak256("RELAYER_ROLE");
    /// @notice Role that resolves disputes and returns surplus.
    bytes32 public constant ARBITER_ROLE = keccak256("ARBITER_ROLE");

    /// @notice EIP-712 type of a buyer's signed confirmation ({confirmBySig}).
    bytes32 public constant CONFIRM_ORDER_TYPEHASH =
        keccak256("ConfirmOrder(uint256 orderId,bytes32 nonce,uint256 deadline)");
    /// @notice EIP-712 type of a buyer's signed dispute ({disputeBySig}).
    bytes32 public constant DISPUTE_ORDER_TYPEHASH =
        keccak256("DisputeOrder(uint256 orderId,bytes32 nonce,uint256 deadline)");

    /// @notice Highest fee rate, in basis points (10%).
    uint16 public constant MAX_FEE_BPS = 1000;
    /// @notice Longest dispute window a listing may have (and so the highest {minDisputeWindow}).
    uint32 public constant MAX_DISPUTE_WINDOW = 30 days;
    /// @notice Shortest and longest {disputePeriod}: how long an arbiter has to decide an opened dispute.
    uint32 public constant MIN_DISPUTE_PERIOD = 7 days;
    uint32 public constant MAX_DISPUTE_PERIOD = 30 days;
    /// @notice Highest listing price, in token units (3.09e26: 309 million tokens of 18 decimals). Prices and order
    /// amounts are stored in 88 bits; each token's escrowed total and credits in 128.
    uint256 public constant MAX_PRICE = type(uint88).max;
    /// @notice Gas that must be left after a failed transfer for its amount to become a credit (else the call
    /// reverts).
    uint256 public constant TRANSFER_GAS_RESERVE = 30_000;

    uint256 private constant BPS = 10_000;
    uint256 private constant LOW_ESCROW_LIMIT = 1 << 88;

    /// @notice Status of an order.
    /// @dev Released: the owner was paid (confirm, release or zero window). Refunded: a full refund (resolved so, or
    /// an expired dispute). Resolved: resolved with a partial (or no) refund.
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

    /// @notice An order as returned by {getOrder}. `disputeDeadline` is 0 until the order is disputed.
    struct Order {
        uint256 listingId;
        address buyer;
        address token;
        uint256 amount;
        uint64 releaseAt;
        uint64 disputeDeadline;
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

    /// @notice One surplus return of {returnSurplusBatch}: the arguments of {returnSurplus}.
    struct SurplusReturn {
        address token;
        address to;
        uint256 amount;
        bytes32 ref;
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

    /// @dev First order slot, keyed by order id. Bits: buyer [0, 160), listingId [160, 224), feeBps [224, 240),
    /// status [240, 248).
    struct OrderRecord {
        address buyer;
        uint64 listingId;
        uint16 feeBps;
        OrderStatus status;
    }

    /// @dev Second order slot, keyed by (listing id, buyer): the access index, and what settlement needs besides the
    /// first slot and the payout address. Bits: orderId [0, 64), amount [64, 152), releaseAt [152, 192),
    /// disputeDeadline [192, 232), tokenIndex [232, 248). Times are seconds (40 bits last until the year 36812).
    struct PurchaseRecord {
        uint64 orderId;
        uint88 amount;
        uint40 releaseAt;
        uint40 disputeDeadline;
        uint16 tokenIndex;
    }

    /// @dev A token's address, allow-list flags and escrowed total modulo 2^88, in one slot keyed by its index.
    struct TokenRecord {
        address token;
        uint8 flags;
        uint88 escrowedLow;
    }

    /// @dev The rest of a token's totals: how often `escrowedLow` wrapped (its escrowed total is `escrowedCarries *
    /// 2^88 + escrowedLow`, 128 bits) and the sum of its credits.
    struct TokenTotals {
        uint40 escrowedCarries;
        uint128 credits;
    }

    uint8 private constant ALLOWED = 1;
    uint8 private constant BYTES_SIGNATURE = 2;

    // Packed into Pausable's slot after its `_paused` flag: a purchase reads them together.
    address private _treasury;
    uint16 private _feeBps;
    uint64 private _orderCount;

    // One slot: what createListing reads, and the dispute period.
    uint64 private _listingCount;
    uint16 private _tokenCount;
    uint32 private _minDisputeWindow;
    uint32 private _disputePeriod;

    mapping(address token => uint16 tokenIndex) private _tokenIndex;
    mapping(uint256 tokenIndex => TokenRecord) private _tokenRecords;
    mapping(uint256 tokenIndex => TokenTotals) private _tokenTotals;
    mapping(uint256 listingId => ListingRecord) private _listings;
    mapping(uint256 orderId => OrderRecord) private _orders;
    mapping(uint256 listingId => mapping(address buyer => PurchaseRecord)) private _purchases;
    mapping(uint256 orderId => PurchaseRecord) private _refundedPurchases;
    mapping(address token => mapping(address account => uint256)) private _credits;
    mapping(bytes32 ref => bool) private _surplusReturned;
    mapping(address buyer => mapping(bytes32 nonce => bool)) private _usedNonces;

    /// @notice `token` was allowed or disallowed, with the `transferWithAuthorization` flavour to use.
    event TokenConfigured(address indexed token, bool allowed, bool bytesSignature);
    /// @notice The fee rate for new orders changed.
    event FeeChanged(uint16 oldFeeBps, uint16 newFeeBps);
    /// @notice The treasury changed.
    event TreasuryChanged(address indexed oldTreasury, address indexed newTreasury);
    /// @notice The shortest dispute window new listings may have changed.
    event MinDisputeWindowChanged(uint32 oldWindow, uint32 newWindow);
    /// @notice The time disputes opened from now on get before they expire changed.
    event DisputePeriodChanged(uint32 oldPeriod, uint32 newPeriod);
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
    /// @notice An order was settled in the owner's favour: `ownerAmount` for `payout` and `fee` for the treasury
    /// (each transferred, or credited if its transfer failed: see {Credited}).
    event OrderReleased(
        uint256 indexed orderId,
        uint256 indexed listingId,
        address indexed buyer,
        address payout,
        uint256 ownerAmount,
        uint256 fee
    );
    /// @notice {release} skipped an existing order that is not open or not matured.
    event ReleaseSkipped(uint256 indexed orderId);
    /// @notice The buyer disputed an order; an arbiter may resolve it before `deadline`, anyone refund it after.
    event OrderDisputed(uint256 indexed orderId, uint256 indexed listingId, address indexed buyer, uint64 deadline);
    /// @notice An arbiter resolved a disputed order.
    event DisputeResolved(
        uint256 indexed orderId,
        uint256 indexed listingId,
        address indexed buyer,
        uint256 refund,
        uint256 ownerAmount,
        uint256 fee
    );
    /// @notice A disputed order passed its deadline undecided and was refunded in full.
    event DisputeExpired(uint256 indexed orderId, uint256 indexed listingId, address indexed buyer, uint256 refund);
    /// @notice A transfer of `amount` of `token` to `account` for order `orderId` failed; `account` may withdraw it.
    event Credited(address indexed token, address indexed account, uint256 indexed orderId, uint256 amount);
    /// @notice `account` withdrew its credit of `amount` of `token` to `to`.
    event Withdrawn(address indexed token, address indexed account, address to, uint256 amount);
    /// @notice An arbiter returned surplus `amount` of `token` to `to`, answering the stray transfer `ref`.
    event SurplusReturned(address indexed token, address indexed to, uint256 amount, bytes32 indexed ref);

    /// @notice `maxPrice` is below the listing's current `price`.
    error DataMarketPriceAboveMax(uint256 price, uint256 maxPrice);
    /// @notice The listing does not exist, is inactive or is not approved.
    error DataMarketNotBuyable(uint256 listingId);
    /// @notice `buyer` holds the live order `orderId` for the listing (only a fully refunded buyer may buy again).
    error DataMarketAlreadyPurchased(uint256 listingId, address buyer, uint256 orderId);
    /// @notice `token` is not allow-listed.
    error DataMarketTokenNotAllowed(address token);
    /// @notice `token` was never configured in this market.
    error DataMarketTokenNotConfigured(address token);
    /// @notice The token delivered `received` instead of `price`.
    error DataMarketUnderpaid(uint256 received, uint256 price);
    /// @notice The authorization's `value` is not the listing's `price`.
    error DataMarketAuthorizationValueMismatch(uint256 value, uint256 price);
    /// @notice No order has id `orderId`.
    error DataMarketUnknownOrder(uint256 orderId);
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
    /// @notice The dispute's deadline passed: it can only be refunded ({settleExpiredDispute}).
    error DataMarketDisputeExpired(uint256 orderId, uint64 deadline);
    /// @notice The dispute's deadline has not passed yet.
    error DataMarketDisputeNotExpired(uint256 orderId, uint64 deadline);
    /// @notice A refund share above 10000 basis points.
    error DataMarketRefundTooLarge(uint16 refundBps);
    /// @notice A fee rate above {MAX_FEE_BPS}.
    error DataMarketFeeTooHigh(uint16 feeBps, uint16 maxFeeBps);
    /// @notice A dispute window above {MAX_DISPUTE_WINDOW}.
    error DataMarketWindowTooLong(uint32 disputeWindow, uint32 maxDisputeWindow);
    /// @notice A dispute window below {minDisputeWindow}.
    error DataMarketWindowTooShort(uint32 disputeWindow, uint32 minDisputeWindow);
    /// @notice A dispute period outside [{MIN_DISPUTE_PERIOD}, {MAX_DISPUTE_PERIOD}].
    error DataMarketDisputePeriodOutOfRange(uint32 period, uint32 minPeriod, uint32 maxPeriod);
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
    /// @notice A surplus return of zero, or with a zero reference.
    error DataMarketInvalidSurplusReturn(uint256 amount, bytes32 ref);
    /// @notice Surplus was already returned for the stray transfer `ref`.
    error DataMarketSurplusAlreadyReturned(bytes32 ref);
    /// @notice `account` has no credit of `token`.
    error DataMarketNothingToWithdraw(address token, address account);
    /// @notice A transfer failed with less than {TRANSFER_GAS_RESERVE} gas left: send the call with more gas.
    error DataMarketTransferGasTooLow(uint256 gasLeft);
    /// @notice A `(v, r, s)` token needs a 65-byte signature.
    error DataMarketBadSignatureLength(uint256 length);
    /// @notice A buyer's signature whose deadline has passed.
    error DataMarketSignatureExpired(uint256 deadline);
    /// @notice A purchase whose dispute window would end past the last time an order can hold (2^40 - 1 seconds).
    error DataMarketTimeOutOfRange(uint256 releaseAt);
    /// @notice `buyer` already used `nonce` for a signed confirmation or dispute.
    error DataMarketNonceUsed(address buyer, bytes32 nonce);
    /// @notice The signature is not `buyer`'s (ECDSA, or EIP-1271 for a contract wallet) for this order.
    error DataMarketInvalidSignature(uint256 orderId, address buyer);

    /**
     * @notice Deploys the market with `admin` holding DEFAULT_ADMIN_ROLE (and nothing else), the fee going to
     * `treasury_` at `feeBps_` basis points. The minimum dispute window starts at 24 hours and the dispute period at
     * 14 days; the admin may change both.
     * @param admin Account that administers roles, fee, treasury, windows, tokens and pausing; not zero.
     * @param treasury_ Receiver of fees; not zero.
     * @param feeBps_ Fee rate in basis points, at most {MAX_FEE_BPS}.
     */
    constructor(address admin, address treasury_, uint16 feeBps_) EIP712("DataMarket", "1") {
        if (admin == address(0) || treasury_ == address(0)) revert DataMarketZeroAddress();
        if (feeBps_ > MAX_FEE_BPS) revert DataMarketFeeTooHigh(feeBps_, MAX_FEE_BPS);
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _treasury = treasury_;
        _feeBps = feeBps_;
        _minDisputeWindow = 1 days;
        _disputePeriod = 14 days;
        emit TreasuryChanged(address(0), treasury_);
        emit FeeChanged(0, feeBps_);
        emit MinDisputeWindowChanged(0, 1 days);
        emit DisputePeriodChanged(0, 14 days);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Administration
    // ---------------------------------------------------------------------------------------------------------------

    /**
     * @notice Allows or disallows `token` for new listings and purchases; settlements of existing orders, withdrawals
     * and surplus returns are never affected. Admin only.
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
     * @notice Sets the shortest dispute window {createListing} accepts. Existing listings keep their window. Admin
     * only.
     * @param newWindow Seconds, at most {MAX_DISPUTE_WINDOW}; 0 also allows listings that pay at purchase.
     */
    function setMinDisputeWindow(uint32 newWindow) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (newWindow > MAX_DISPUTE_WINDOW) revert DataMarketWindowTooLong(newWindow, MAX_DISPUTE_WINDOW);
        emit MinDisputeWindowChanged(_minDisputeWindow, newWindow);
        _minDisputeWindow = newWindow;
    }

    /**
     * @notice Sets how long an arbiter has to decide a dispute, for disputes opened from now on; open disputes keep
     * the deadline they got. Admin only.
     * @param newPeriod Seconds, from {MIN_DISPUTE_PERIOD} to {MAX_DISPUTE_PERIOD}.
     */
    function setDisputePeriod(uint32 newPeriod) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (newPeriod < MIN_DISPUTE_PERIOD || newPeriod > MAX_DISPUTE_PERIOD) {
            revert DataMarketDisputePeriodOutOfRange(newPeriod, MIN_DISPUTE_PERIOD, MAX_DISPUTE_PERIOD);
        }
        emit DisputePeriodChanged(_disputePeriod, newPeriod);
        _disputePeriod = newPeriod;
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

    /**
     * @notice Returns the shortest dispute window, in seconds, that new listings may have.
     */
    function minDisputeWindow() external view returns (uint32) {
        return _minDisputeWindow;
    }

    /**
     * @notice Returns how long, in seconds, a dispute opened now has before anyone may refund it.
     */
    function disputePeriod() external view returns (uint32) {
        return _disputePeriod;
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
     * @param disputeWindow Seconds a buyer may dispute, from {minDisputeWindow} to {MAX_DISPUTE_WINDOW}; 0 (allowed
     * only while the minimum is 0) pays the owner at purchase.
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
        uint32 minWindow = _minDisputeWindow;
        if (disputeWindow < minWindow) revert DataMarketWindowTooShort(disputeWindow, minWindow);
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
     * @param listingId An active, approved listing the caller holds no live order for.
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
     * @param listingId An active, approved listing the caller holds no live order for.
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
     * @param listingId An active, approved listing `auth.from` holds no live order for.
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
            IERC3009(address(token))
                .transferWithAuthorization(
                    auth.from, address(this), price, auth.validAfter, auth.validBefore, auth.nonce, auth.signature
                );
        } else {
            bytes calldata signature = auth.signature;
            if (signature.length != 65) revert DataMarketBadSignatureLength(signature.length);
            IERC3009(address(token))
                .transferWithAuthorization(
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
     * treasury (a failing transfer becomes a credit). Buyer only; works while paused.
     * @param orderId An open order of the caller.
     */
    function confirm(uint256 orderId) external nonReentrant {
        _confirm(orderId, msg.sender);
    }

    /**
     * @notice {confirm} with the buyer's EIP-712 `ConfirmOrder(orderId, nonce, deadline)` signature, submitted by
     * anyone (so a buyer without ETH can confirm). Works while paused.
     * @param orderId An open order.
     * @param nonce Any value the buyer has not used for a signed confirmation or dispute before.
     * @param deadline Last second the signature is valid.
     * @param signature The buyer's signature: 65-byte ECDSA, or anything its EIP-1271 wallet accepts.
     */
    function confirmBySig(uint256 orderId, bytes32 nonce, uint256 deadline, bytes calldata signature)
        external
        nonReentrant
    {
        _confirm(orderId, _useBuyerSignature(CONFIRM_ORDER_TYPEHASH, orderId, nonce, deadline, signature));
    }

    /**
     * @notice Pays out every open order in `orderIds` whose dispute window has passed, like {confirm}. Anyone may
     * call it; works while paused. Never reverts because of one order: ids that do not exist are ignored, and orders
     * that are not open or not matured are left unchanged, with a {ReleaseSkipped} event; a failing payout or fee
     * transfer becomes a credit.
     * @param orderIds Order ids (a repeated id is skipped after its first release).
     */
    function release(uint256[] calldata orderIds) external nonReentrant {
        for (uint256 i = 0; i < orderIds.length; ++i) {
            _release(orderIds[i]);
        }
    }

    /**
     * @notice Freezes an open order before its release time, for an arbiter to resolve before the dispute's deadline
     * (now + {disputePeriod}). Buyer only; works while paused.
     * @param orderId An open order of the caller whose dispute window has not ended.
     */
    function dispute(uint256 orderId) external nonReentrant {
        _dispute(orderId, msg.sender);
    }

    /**
     * @notice {dispute} with the buyer's EIP-712 `DisputeOrder(orderId, nonce, deadline)` signature, submitted by
     * anyone (so a buyer without ETH can dispute). Works while paused.
     * @param orderId An open order whose dispute window has not ended.
     * @param nonce Any value the buyer has not used for a signed confirmation or dispute before.
     * @param deadline Last second the signature is valid.
     * @param signature The buyer's signature: 65-byte ECDSA, or anything its EIP-1271 wallet accepts.
     */
    function disputeBySig(uint256 orderId, bytes32 nonce, uint256 deadline, bytes calldata signature)
        external
        nonReentrant
    {
        _dispute(orderId, _useBuyerSignature(DISPUTE_ORDER_TYPEHASH, orderId, nonce, deadline, signature));
    }

    /**
     * @notice Settles a disputed order before its deadline: `refund = amount * refundBps / 10000` to the buyer,
     * `fee = (amount - refund) * order fee rate / 10000` to the treasury, the rest to the listing's payout address (a
     * failing transfer becomes a credit). The order becomes Refunded (no more access) for a full refund, Resolved
     * otherwise. Arbiter only; works while paused.
     * @param orderId A disputed order whose deadline has not passed.
     * @param refundBps The buyer's share, in basis points (at most 10000).
     */
    function resolve(uint256 orderId, uint16 refundBps) external onlyRole(ARBITER_ROLE) nonReentrant {
        if (refundBps > BPS) revert DataMarketRefundTooLarge(refundBps);
        OrderRecord storage o = _orders[orderId];
        (address buyer, uint256 listingId, uint256 feeRate, OrderStatus status) = _readOrder(o);
        if (status != OrderStatus.Disputed) revert DataMarketNotDisputed(orderId, status);
        (uint256 amount,, uint256 deadline, uint256 tokenIndex) = _readPurchase(listingId, buyer);
        // forge-lint: disable-next-line(unsafe-typecast) -- a 40-bit time
        if (block.timestamp >= deadline) revert DataMarketDisputeExpired(orderId, uint64(deadline));
        o.status = refundBps == BPS ? OrderStatus.Refunded : OrderStatus.Resolved;
        uint256 refund = amount * refundBps / BPS;
        uint256 fee = (amount - refund) * feeRate / BPS;
        address payout = _listings[listingId].payout;
        emit DisputeResolved(orderId, listingId, buyer, refund, amount - refund - fee, fee);
        _settle(orderId, tokenIndex, amount, buyer, refund, payout, fee);
    }

    /**
     * @notice Refunds a disputed order in full once its deadline has passed without an arbiter's decision (a failing
     * refund becomes the buyer's credit). Anyone may call it; works while paused.
     * @param orderId A disputed order whose deadline has passed.
     */
    function settleExpiredDispute(uint256 orderId) external nonReentrant {
        OrderRecord storage o = _orders[orderId];
        (address buyer, uint256 listingId,, OrderStatus status) = _readOrder(o);
        if (status != OrderStatus.Disputed) revert DataMarketNotDisputed(orderId, status);
        (uint256 amount,, uint256 deadline, uint256 tokenIndex) = _readPurchase(listingId, buyer);
        // forge-lint: disable-next-line(unsafe-typecast) -- a 40-bit time
        if (block.timestamp < deadline) revert DataMarketDisputeNotExpired(orderId, uint64(deadline));
        o.status = OrderStatus.Refunded;
        emit DisputeExpired(orderId, listingId, buyer, amount);
        _settle(orderId, tokenIndex, amount, buyer, amount, address(0), 0);
    }

    /**
     * @notice Sends the caller's whole credit of `token` (transfers to it that failed) to `to`. Works while paused.
     * @param token The token of the credit.
     * @param to The receiver; not zero.
     * @return amount The amount withdrawn.
     */
    function withdraw(address token, address to) external nonReentrant returns (uint256 amount) {
        if (to == address(0)) revert DataMarketZeroAddress();
        return _withdraw(token, msg.sender, to);
    }

    /**
     * @notice Sends `account`'s whole credit of `token` to `account` itself. Anyone may call it, e.g. a keeper once a
     * token that refused the transfer (paused, or blocking the account for a while) accepts it again, so that an
     * account that cannot call {withdraw} (a contract, an exchange's deposit address, a buyer without ETH) is still
     * paid. Only the account itself may send its credit elsewhere. Works while paused.
     * @param token The token of the credit.
     * @param account The account credited, and the receiver.
     * @return amount The amount sent.
     */
    function withdrawFor(address token, address account) external nonReentrant returns (uint256 amount) {
        return _withdraw(token, account, account);
    }

    /**
     * @notice Sends `amount` of `token`'s surplus (balance beyond the escrowed total and the credits) to `to`,
     * answering the stray transfer `ref`, e.g. back to whoever sent an authorization straight to the token. Each
     * reference is answered once. Arbiter only; works while paused.
     * @param token A token this market has configured (now or before).
     * @param to The receiver; not zero.
     * @param amount Above zero and at most {surplus}.
     * @param ref The stray transfer: `keccak256(abi.encode(txHash, logIndex))` of its `Transfer` log; not zero.
     */
    function returnSurplus(address token, address to, uint256 amount, bytes32 ref)
        external
        onlyRole(ARBITER_ROLE)
        nonReentrant
    {
        _returnSurplus(token, to, amount, ref);
    }

    /**
     * @notice {returnSurplus} for each of `items`, in order; reverts as a whole if one fails.
     * @param items The returns.
     */
    function returnSurplusBatch(SurplusReturn[] calldata items) external onlyRole(ARBITER_ROLE) nonReentrant {
        for (uint256 i = 0; i < items.length; ++i) {
            SurplusReturn calldata r = items[i];
            _returnSurplus(r.token, r.to, r.amount, r.ref);
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------------------------

    /**
     * @notice Returns the market's balance of `token` beyond what its open and disputed orders hold and what it owes
     * as credits (0 if it holds less).
     */
    function surplus(address token) public view returns (uint256) {
        uint256 balance = IERC20(token).balanceOf(address(this));
        uint256 tokenIndex = _tokenIndex[token];
        uint256 owed = _totalEscrowed(tokenIndex) + _tokenTotals[tokenIndex].credits;
        return balance > owed ? balance - owed : 0;
    }

    /**
     * @notice Returns the sum of the amounts of `token`'s open and disputed orders.
     */
    function totalEscrowed(address token) external view returns (uint256) {
        return _totalEscrowed(_tokenIndex[token]);
    }

    /**
     * @notice Returns the sum of every account's credit of `token`.
     */
    function totalCredits(address token) external view returns (uint256) {
        return _tokenTotals[_tokenIndex[token]].credits;
    }

    /**
     * @notice Returns what `account` may withdraw of `token`.
     */
    function creditOf(address token, address account) external view returns (uint256) {
        return _credits[token][account];
    }

    /**
     * @notice Returns whether surplus was returned for the stray transfer `ref`.
     */
    function surplusReturned(bytes32 ref) external view returns (bool) {
        return _surplusReturned[ref];
    }

    /**
     * @notice Returns whether `buyer` used `nonce` for a signed confirmation or dispute.
     */
    function nonceUsed(address buyer, bytes32 nonce) external view returns (bool) {
        return _usedNonces[buyer][nonce];
    }

    /**
     * @notice Returns the id of `buyer`'s latest order for `listingId`, 0 if there is none.
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
        if (p.orderId != orderId) p = _refundedPurchases[orderId];
        return Order({
            listingId: o.listingId,
            buyer: o.buyer,
            token: _tokenRecords[p.tokenIndex].token,
            amount: p.amount,
            releaseAt: p.releaseAt,
            disputeDeadline: p.disputeDeadline,
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
     * @notice Returns whether `account` paid for `listingId` and its latest order was not fully refunded: it is
     * open, disputed, released or resolved.
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
        PurchaseRecord storage p = _purchases[listingId][buyer];
        orderId = p.orderId;
        if (orderId != 0) _keepRefundedPurchase(p, listingId, buyer, orderId);

        uint32 window = l.disputeWindow;
        uint256 releaseAt = block.timestamp + window;
        if (releaseAt > type(uint40).max) revert DataMarketTimeOutOfRange(releaseAt);
        uint16 fee = _feeBps;
        orderId = ++_orderCount;
        if (window != 0) _addEscrow(t, tokenIndex, price);
        _writeOrder(orderId, listingId, buyer, fee, window == 0 ? OrderStatus.Released : OrderStatus.Open);
        _writePurchase(p, orderId, price, releaseAt, tokenIndex);
        // forge-lint: disable-next-line(unsafe-typecast) -- a time a window past now
        emit OrderCreated(orderId, listingId, buyer, t.token, price, fee, uint64(releaseAt));
    }

    /**
     * @dev Before `buyer` buys `listingId` again: reverts unless its previous order `previous` was fully refunded, and
     * keeps that order's second slot under its id, so that {getOrder} still finds it.
     */
    function _keepRefundedPurchase(PurchaseRecord storage p, uint256 listingId, address buyer, uint256 previous)
        private
    {
        if (_orders[previous].status != OrderStatus.Refunded) {
            revert DataMarketAlreadyPurchased(listingId, buyer, previous);
        }
        PurchaseRecord storage kept = _refundedPurchases[previous];
        assembly ("memory-safe") {
            sstore(kept.slot, sload(p.slot))
        }
    }

    /**
     * @dev Stores a new order's first slot with one SSTORE (a struct assignment writes member by member), every field
     * masked to its width (layout in {OrderRecord}). Every other access goes through {OrderRecord}, and the tests
     * check both agree.
     */
    function _writeOrder(uint256 orderId, uint256 listingId, address buyer, uint16 fee, OrderStatus status) private {
        OrderRecord storage o = _orders[orderId];
        assembly ("memory-safe") {
            sstore(
                o.slot,
                or(
                    or(
                        and(buyer, 0xffffffffffffffffffffffffffffffffffffffff),
                        shl(160, and(listingId, 0xffffffffffffffff))
                    ),
                    or(shl(224, and(fee, 0xffff)), shl(240, and(status, 0xff)))
                )
            )
        }
    }

    /**
     * @dev Stores a new order's second slot with one SSTORE, every field masked to its width (layout in
     * {PurchaseRecord}); the dispute deadline starts at 0.
     */
    function _writePurchase(
        PurchaseRecord storage p,
        uint256 orderId,
        uint256 price,
        uint256 releaseAt,
        uint16 tokenIndex
    ) private {
        assembly ("memory-safe") {
            sstore(
                p.slot,
                or(
                    or(and(orderId, 0xffffffffffffffff), shl(64, and(price, 0xffffffffffffffffffffff))),
                    or(shl(152, and(releaseAt, 0xffffffffff)), shl(232, and(tokenIndex, 0xffff)))
                )
            )
        }
    }

    /// @dev Reads an order's first slot with one SLOAD (layout in {OrderRecord}).
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

    /**
     * @dev Reads the second slot of `buyer`'s latest order for `listingId` with one SLOAD (layout in
     * {PurchaseRecord}). Settlement only acts on open and disputed orders, which are always their buyer's latest
     * (buying again needs a fully refunded order, and a refunded order never changes again).
     */
    function _readPurchase(uint256 listingId, address buyer)
        private
        view
        returns (uint256 amount, uint256 releaseAt, uint256 disputeDeadline, uint256 tokenIndex)
    {
        PurchaseRecord storage p = _purchases[listingId][buyer];
        assembly ("memory-safe") {
            let word := sload(p.slot)
            amount := and(shr(64, word), 0xffffffffffffffffffffff)
            releaseAt := and(shr(152, word), 0xffffffffff)
            disputeDeadline := and(shr(192, word), 0xffffffffff)
            tokenIndex := and(shr(232, word), 0xffff)
        }
    }

    /// @dev Adds `amount` (below 2^88) to a token's escrowed total; a carry out of the low 88 bits goes to the second
    /// slot (checked: a total beyond 128 bits reverts).
    function _addEscrow(TokenRecord storage t, uint256 tokenIndex, uint256 amount) private {
        uint256 low = uint256(t.escrowedLow) + amount;
        if (low >= LOW_ESCROW_LIMIT) {
            _tokenTotals[tokenIndex].escrowedCarries += 1;
            low -= LOW_ESCROW_LIMIT;
        }
        // forge-lint: disable-next-line(unsafe-typecast) -- below 2^88 after the carry
        t.escrowedLow = uint88(low);
    }

    /// @dev Takes `amount` (below 2^88, and never more than the total) out of a token's escrowed total, borrowing
    /// from the carries when the low 88 bits hold less.
    function _removeEscrow(TokenRecord storage t, uint256 tokenIndex, uint256 amount) private {
        uint256 low = t.escrowedLow;
        if (low < amount) {
            _tokenTotals[tokenIndex].escrowedCarries -= 1;
            low += LOW_ESCROW_LIMIT;
        }
        // forge-lint: disable-next-line(unsafe-typecast) -- below 2^88: low < 2^89 and amount > low - 2^88
        t.escrowedLow = uint88(low - amount);
    }

    /// @dev A token's escrowed total: the carries times 2^88 plus the low part.
    function _totalEscrowed(uint256 tokenIndex) private view returns (uint256) {
        uint256 carries = _tokenTotals[tokenIndex].escrowedCarries;
        return carries * LOW_ESCROW_LIMIT + _tokenRecords[tokenIndex].escrowedLow;
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
            uint256 tokenIndex = l.tokenIndex;
            _pay(token, tokenIndex, payout, price - fee, orderId);
            if (fee != 0) _pay(token, tokenIndex, _treasury, fee, orderId);
        }
    }

    /// @dev {confirm} of `orderId` by `caller` (its buyer, or whoever signed for it).
    function _confirm(uint256 orderId, address caller) private {
        OrderRecord storage o = _orders[orderId];
        (address buyer, uint256 listingId, uint256 feeRate, OrderStatus status) = _readOrder(o);
        if (buyer != caller) revert DataMarketNotBuyer(orderId, caller);
        if (status != OrderStatus.Open) revert DataMarketOrderNotOpen(orderId, status);
        (uint256 amount,,, uint256 tokenIndex) = _readPurchase(listingId, buyer);
        _payOwner(o, orderId, listingId, buyer, feeRate, amount, tokenIndex);
    }

    /// @dev Releases one order for {release}, or leaves it unchanged (with {ReleaseSkipped} if it exists).
    function _release(uint256 orderId) private {
        OrderRecord storage o = _orders[orderId];
        (address buyer, uint256 listingId, uint256 feeRate, OrderStatus status) = _readOrder(o);
        if (buyer == address(0)) return;
        (uint256 amount, uint256 releaseAt,, uint256 tokenIndex) = _readPurchase(listingId, buyer);
        if (status != OrderStatus.Open || block.timestamp < releaseAt) {
            emit ReleaseSkipped(orderId);
            return;
        }
        _payOwner(o, orderId, listingId, buyer, feeRate, amount, tokenIndex);
    }

    /// @dev Settles an open order in the owner's favour: Released, the owner's share to the payout, the fee to the
    /// treasury.
    function _payOwner(
        OrderRecord storage o,
        uint256 orderId,
        uint256 listingId,
        address buyer,
        uint256 feeRate,
        uint256 amount,
        uint256 tokenIndex
    ) private {
        o.status = OrderStatus.Released;
        uint256 fee = amount * feeRate / BPS;
        address payout = _listings[listingId].payout;
        emit OrderReleased(orderId, listingId, buyer, payout, amount - fee, fee);
        _settle(orderId, tokenIndex, amount, buyer, 0, payout, fee);
    }

    /// @dev {dispute} of `orderId` by `caller` (its buyer, or whoever signed for it): the deadline is fixed now.
    function _dispute(uint256 orderId, address caller) private {
        OrderRecord storage o = _orders[orderId];
        (address buyer, uint256 listingId,, OrderStatus status) = _readOrder(o);
        if (buyer != caller) revert DataMarketNotBuyer(orderId, caller);
        if (status != OrderStatus.Open) revert DataMarketOrderNotOpen(orderId, status);
        PurchaseRecord storage p = _purchases[listingId][buyer];
        uint40 releaseAt = p.releaseAt;
        if (block.timestamp >= releaseAt) revert DataMarketDisputeWindowClosed(orderId, releaseAt);
        o.status = OrderStatus.Disputed;
        uint40 deadline = uint40(block.timestamp) + _disputePeriod;
        p.disputeDeadline = deadline;
        emit OrderDisputed(orderId, listingId, buyer, deadline);
    }

    /**
     * @dev Checks the buyer's EIP-712 signature of `typehash(orderId, nonce, deadline)` and uses the nonce; returns
     * the buyer.
     */
    function _useBuyerSignature(
        bytes32 typehash,
        uint256 orderId,
        bytes32 nonce,
        uint256 deadline,
        bytes calldata signature
    ) private returns (address buyer) {
        buyer = _orders[orderId].buyer;
        if (buyer == address(0)) revert DataMarketUnknownOrder(orderId);
        if (block.timestamp > deadline) revert DataMarketSignatureExpired(deadline);
        if (_usedNonces[buyer][nonce]) revert DataMarketNonceUsed(buyer, nonce);
        _usedNonces[buyer][nonce] = true;
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(typehash, orderId, nonce, deadline)));
        if (!SignatureChecker.isValidSignatureNowCalldata(buyer, digest, signature)) {
            revert DataMarketInvalidSignature(orderId, buyer);
        }
    }

    /**
     * @dev Takes a settled order's `amount` out of its token's escrowed total, then pays `refund` to `buyer`, `fee` to
     * the treasury and the rest to `payout`, skipping zero amounts; a failing transfer becomes a credit.
     */
    function _settle(
        uint256 orderId,
        uint256 tokenIndex,
        uint256 amount,
        address buyer,
        uint256 refund,
        address payout,
        uint256 fee
    ) private {
        TokenRecord storage t = _tokenRecords[tokenIndex];
        _removeEscrow(t, tokenIndex, amount);
        IERC20 token = IERC20(t.token);
        _pay(token, tokenIndex, buyer, refund, orderId);
        _pay(token, tokenIndex, payout, amount - refund - fee, orderId);
        if (fee != 0) _pay(token, tokenIndex, _treasury, fee, orderId);
    }

    /**
     * @dev Transfers `amount` (below 2^88) of `token` to `to` for order `orderId`; if the transfer fails, credits it
     * to `to` instead, provided {TRANSFER_GAS_RESERVE} gas is left (else reverts: the transfer may have been starved).
     */
    function _pay(IERC20 token, uint256 tokenIndex, address to, uint256 amount, uint256 orderId) private {
        if (amount == 0 || token.trySafeTransfer(to, amount)) return;
        uint256 gasLeft = gasleft();
        if (gasLeft < TRANSFER_GAS_RESERVE) revert DataMarketTransferGasTooLow(gasLeft);
        _credits[address(token)][to] += amount;
        // forge-lint: disable-next-line(unsafe-typecast) -- amount is below 2^88; the sum is checked
        _tokenTotals[tokenIndex].credits += uint128(amount);
        emit Credited(address(token), to, orderId, amount);
    }

    /// @dev Sends `account`'s whole credit of `token` to `to` (reverts if the transfer fails: nothing changes).
    function _withdraw(address token, address account, address to) private returns (uint256 amount) {
        amount = _credits[token][account];
        if (amount == 0) revert DataMarketNothingToWithdraw(token, account);
        _credits[token][account] = 0;
        // forge-lint: disable-next-line(unsafe-typecast) -- a credit is part of the 128-bit total
        _tokenTotals[_tokenIndex[token]].credits -= uint128(amount);
        emit Withdrawn(token, account, to, amount);
        IERC20(token).safeTransfer(to, amount);
    }

    /// @dev {returnSurplus} without the role and reentrancy checks.
    function _returnSurplus(address token, address to, uint256 amount, bytes32 ref) private {
        if (_tokenIndex[token] == 0) revert DataMarketTokenNotConfigured(token);
        if (to == address(0)) revert DataMarketZeroAddress();
        if (amount == 0 || ref == bytes32(0)) revert DataMarketInvalidSurplusReturn(amount, ref);
        if (_surplusReturned[ref]) revert DataMarketSurplusAlreadyReturned(ref);
        uint256 available = surplus(token);
        if (amount > available) revert DataMarketSurplusExceeded(amount, available);
        _surplusReturned[ref] = true;
        emit SurplusReturned(token, to, amount, ref);
        IERC20(token).safeTransfer(to, amount);
    }
}

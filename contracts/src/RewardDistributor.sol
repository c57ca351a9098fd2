// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/**
 * @title RewardDistributor
 * @notice Pays contributor rewards from Merkle roots of cumulative amounts, one root per epoch.
 *
 * Each epoch the publisher proposes the root of a tree whose leaves are `(account, cumulativeAmount)`: everything
 * the account has earned since the first epoch, never less than in an earlier epoch, with the tree's total (the sum
 * of its cumulative amounts: what the root can pay in all, counting what was already paid). A proposed root becomes
 * claimable `rootDelay` seconds after it was proposed; until then the admin can revoke it. Anyone may then call
 * {claim} for an account with the account's leaf and proof: the account is paid `cumulativeAmount -
 * claimed(account)`, so an account that skips epochs loses nothing and no account can be paid twice for the same
 * amount.
 *
 * Leaves are OpenZeppelin's standard double hash `keccak256(bytes.concat(keccak256(abi.encode(account,
 * cumulativeAmount))))` with sorted-pair hashing, so trees and proofs made by OpenZeppelin's npm `merkle-tree` package
 * (`StandardMerkleTree.of(values, ["address", "uint256"])`) and by `marketplace/rewards/merkle.py` work as they are.
 *
 * Funding: anyone transfers {token} to this contract; there is no deposit function. A {claim} that the balance
 * cannot cover reverts (nothing is recorded) and succeeds once the contract is topped up; {claimMany} skips it. The
 * admin can {sweep} what no root can still pay: all of any other token, and of {token} only the balance above
 * `max(current root's total, pending root's total) - totalClaimed`.
 *
 * Suspension: a wrong root found after it matured is suspended with {suspendCurrentRoot}. Claims then revert until a
 * root that was not yet claimable at the suspension matures: a new proposal, or the root that was pending at the
 * time, which is not suspended (revoke it with {revokePendingRoot} if it is wrong too).
 *
 * Trust assumptions:
 *
 * * The PUBLISHER (the server's operator key) is trusted to publish correct trees and totals: the contract cannot
 *   check that amounts are earned, that cumulative amounts never decrease or that the total is the tree's sum. It
 *   only rejects a total below {totalClaimed}, which no correct tree can have. A leaf with a smaller cumulative
 *   amount than the account already claimed simply pays nothing. A tree must hold at most one leaf per account; with
 *   two, the account can claim the larger amount. Claims are not capped at their root's total: both roots' totals
 *   do not fit in the state word next to the rest, and a third storage read would cost every claim 2,100 gas.
 *   Totals bound what {sweep} leaves in the contract.
 * * The admin (DEFAULT_ADMIN_ROLE) watches proposals and revokes a wrong one before it matures; `rootDelay` is that
 *   window (0 disables it). A wrong root found later is suspended. So a compromised publisher key alone can only
 *   propose roots the admin may revoke or suspend. The admin is trusted with the funds: it grants and revokes roles
 *   and sets the delay (at most {MAX_ROOT_DELAY}), so it could make itself publisher, set the delay to 0, publish any
 *   root and total and sweep the rest (every step emits an event).
 * * The {token} is a standard ERC-20 without transfer hooks or fees (USDC). It is fixed at deployment. It may refuse
 *   transfers to some accounts (USDC's blocklist): such an account's {claim} reverts and {claimMany} skips it.
 * * Only the latest matured root is claimable: a leaf of an older epoch stops working once a newer root matures,
 *   which is harmless because the newer leaf carries the account's full cumulative amount.
 *
 * Epoch numbers start at 1 and strictly increase with every proposal, including proposals that were later revoked
 * or replaced; 0 means "no epoch". Epochs and `validAt` are stored in 40 bits (a trillion epochs; timestamps until
 * the year 36812), totals and {totalClaimed} in 128 bits; larger values revert
 * ({SafeCast-SafeCastOverflowedUintDowncast}, {RewardDistributorTotalClaimedOverflow}).
 *
 * Storage is laid out for {claim}, which reads three slots (the state word, the claimable root and
 * `claimed[account]`) and writes two (`claimed[account]` and the state word, with the new {totalClaimed}):
 *
 * * `_roots`: a double buffer. One entry holds the current root (the last promoted one; 0 before the first
 *   promotion), the other the pending root, or a stale one while nothing is pending. Promoting the matured pending
 *   root flips which entry is which instead of copying the root, and the next proposal overwrites the stale entry,
 *   a cheap non-zero to non-zero write.
 * * `_state`: one word with everything else a claim needs. From the lowest bit: `totalClaimed` (128 bits; lowest, so
 *   that a claim adds its payment to the word), `validAt` (40 bits: when the pending root becomes claimable; 0 when
 *   nothing is pending), `currentEpoch` (40), `lastEpoch` (40: the last proposed epoch, the pending root's while
 *   `validAt != 0`), `pendingIndex` (1: the pending root's entry of `_roots`) and `suspended` (1: the current root is
 *   suspended); the top 6 bits are 0. A pending root is never suspended: suspending a matured pending root promotes
 *   it first.
 * * `_totals`: the two roots' totals, same indexes as `_roots`, in one slot that only {proposeRoot}, {sweep} and the
 *   views read.
 *
 * A matured pending root is not promoted by claims (that would cost them more writes); the next {proposeRoot} or
 * {suspendCurrentRoot} promotes it.
 *
 * Gas: {claim} is the hot path (trees of a million leaves, see `bench/gas.py`); it is the one place written for gas.
 * It reads the state word once and picks the root from it inline, hashes `claimed[account]`'s slot once, checks the
 * proof in assembly in the scratch space (see {_verify}) and calls the token in assembly; {claimMany} calls it per
 * entry (see {claim} for how a batch skips a refused transfer). The views are few on purpose: {currentRoot} and
 * {pendingRoot} also return totals and suspension, because solc's dispatcher compares selectors in sorted chunks
 * (22 gas each) and with 23 external functions it finds {claim}'s after 3 comparisons, with three more views after
 * 8. The rest is plain Solidity.
 */
contract RewardDistributor is AccessControl {
    using SafeERC20 for IERC20;

    /// @notice One entry of a {claimMany} batch: the arguments of {claim}.
    /// @param account The account that is paid.
    /// @param cumulativeAmount The account's cumulative amount in the claimable root's tree.
    /// @param proof The account's Merkle proof (sibling hashes from the leaf up) in that tree.
    struct Claim {
        address account;
        uint256 cumulativeAmount;
        bytes32[] proof;
    }

    /// @dev `_state` unpacked, for the functions other than {claim}.
    struct State {
        uint256 totalClaimed;
        uint256 validAt;
        uint256 currentEpoch;
        uint256 lastEpoch;
        uint256 pendingIndex;
        bool suspended;
    }

    /// @notice Role allowed to propose roots.
    bytes32 public constant PUBLISHER_ROLE = keccak256("PUBLISHER_ROLE");

    /// @notice Upper bound of {rootDelay}.
    uint64 public constant MAX_ROOT_DELAY = 30 days;

    /// @dev Bit offsets of the fields of `_state` above `totalClaimed` (bits 0-127); see the contract's header.
    uint256 private constant _VALID_AT = 128;
    uint256 private constant _CURRENT_EPOCH = 168;
    uint256 private constant _LAST_EPOCH = 208;
    uint256 private constant _PENDING_INDEX = 248;
    uint256 private constant _SUSPENDED = 249;

    /// @notice The ERC-20 token rewards are paid in.
    address public immutable token;

    /// @dev The current root and the pending (or a stale) root; `pendingIndex` in `_state` says which is which.
    bytes32[2] private _roots;

    /// @dev Packed state; see the contract's header.
    uint256 private _state;

    /// @dev The totals of the roots in `_roots`, same indexes.
    uint128[2] private _totals;

    /// @notice Seconds between a proposal and the moment its root becomes claimable.
    uint64 public rootDelay;

    /// @notice Cumulative amount already paid to each account.
    mapping(address account => uint256) public claimed;

    /// @notice Emitted when the delay changes (also at deployment, from 0).
    event RootDelayChanged(uint64 oldDelay, uint64 newDelay);

    /// @notice Emitted when `root` is proposed for `epoch` with the sum `total` of its cumulative amounts; it
    /// becomes claimable at `validAt`.
    event RootProposed(uint256 indexed epoch, bytes32 root, uint256 total, uint64 validAt);

    /// @notice Emitted when a pending, not yet claimable `root` of `epoch` is replaced by a newer proposal.
    event RootReplaced(uint256 indexed epoch, bytes32 root);

    /// @notice Emitted when the admin revokes the pending `root` of `epoch` before it became claimable.
    event RootRevoked(uint256 indexed epoch, bytes32 root);

    /// @notice Emitted when the admin suspends the claimable `root` of `epoch`.
    event RootSuspended(uint256 indexed epoch, bytes32 root);

    /// @notice Emitted when `account` is paid `amount`, bringing its claimed total to `cumulativeAmount`, against
    /// the root of `epoch`.
    event Claimed(address indexed account, uint256 indexed epoch, uint256 amount, uint256 cumulativeAmount);

    /// @notice Emitted by {claimMany} when the token refused the transfer to `account` (blocklisted account,
    /// underfunded distributor): nothing was recorded, the account can claim `cumulativeAmount` later.
    event ClaimSkipped(address indexed account, uint256 cumulativeAmount);

    /// @notice Emitted when the admin sends `amount` of `token` that no root can still pay to `to`.
    event Swept(address indexed token, address indexed to, uint256 amount);

    /// @notice The proof does not prove the leaf `(account, cumulativeAmount)` in the claimable root.
    error RewardDistributorInvalidProof(address account, uint256 cumulativeAmount);

    /// @notice No root is claimable yet (nor suspended).
    error RewardDistributorNoRoot();

    /// @notice The root of `epoch`, the latest that matured, is suspended: nothing is claimable until a newer root
    /// matures.
    error RewardDistributorRootSuspended(uint256 epoch);

    /// @notice `epoch` is not greater than the `last` proposed epoch.
    error RewardDistributorEpochNotIncreasing(uint256 epoch, uint256 last);

    /// @notice The proposed root is zero.
    error RewardDistributorZeroRoot();

    /// @notice The proposed `total` is below the `totalClaimed` already paid, so the tree cannot be right.
    error RewardDistributorTotalBelowClaimed(uint256 total, uint256 totalClaimed);

    /// @notice There is no pending root to revoke.
    error RewardDistributorNothingPending();

    /// @notice The pending root is already claimable and can no longer be revoked.
    error RewardDistributorRootAlreadyMatured();

    /// @notice The delay exceeds {MAX_ROOT_DELAY}.
    error RewardDistributorDelayTooLong();

    /// @notice The admin, the token or the sweep's recipient is the zero address.
    error RewardDistributorZeroAddress();

    /// @notice {totalClaimed} would exceed 2^128 - 1 (only a wrong tree can pay that much).
    error RewardDistributorTotalClaimedOverflow();

    /// @notice The contract holds no `token` that {sweep} may take.
    error RewardDistributorNothingToSweep(address token);

    /**
     * @notice Deploys the distributor.
     * @param admin Receives DEFAULT_ADMIN_ROLE (grants PUBLISHER_ROLE, revokes and suspends roots, sets the delay,
     * sweeps).
     * @param token_ The reward token, fixed for the contract's life.
     * @param rootDelay_ Initial {rootDelay}, at most {MAX_ROOT_DELAY}.
     */
    constructor(address admin, address token_, uint64 rootDelay_) {
        if (admin == address(0) || token_ == address(0)) revert RewardDistributorZeroAddress();
        if (rootDelay_ > MAX_ROOT_DELAY) revert RewardDistributorDelayTooLong();
        token = token_;
        rootDelay = rootDelay_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        emit RootDelayChanged(0, rootDelay_);
    }

    /**
     * @notice Sets the delay applied to later proposals; a pending root keeps its `validAt`.
     * @dev Only DEFAULT_ADMIN_ROLE. Emits {RootDelayChanged}.
     * @param delay New delay in seconds, at most {MAX_ROOT_DELAY}.
     */
    function setRootDelay(uint64 delay) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (delay > MAX_ROOT_DELAY) revert RewardDistributorDelayTooLong();
        emit RootDelayChanged(rootDelay, delay);
        rootDelay = delay;
    }

    /**
     * @notice Proposes `root` for `epoch`, able to pay `total` in all; it becomes claimable `rootDelay` seconds from
     * now.
     * @dev Only PUBLISHER_ROLE. A pending root that has matured is promoted to current first; one that has not is
     * replaced (emits {RootReplaced} for it) and never becomes claimable. Emits {RootProposed}.
     * @param epoch Must be greater than every epoch proposed before (see {lastProposedEpoch}), below 2^40.
     * @param root Root of the epoch's tree of cumulative amounts; not zero.
     * @param total The sum of the tree's cumulative amounts, what was already paid included: at least
     * {totalClaimed}, below 2^128.
     */
    function proposeRoot(uint256 epoch, bytes32 root, uint256 total) external onlyRole(PUBLISHER_ROLE) {
        if (root == bytes32(0)) revert RewardDistributorZeroRoot();
        State memory s = _loadState();
        if (epoch <= s.lastEpoch) revert RewardDistributorEpochNotIncreasing(epoch, s.lastEpoch);
        if (total < s.totalClaimed) revert RewardDistributorTotalBelowClaimed(total, s.totalClaimed);
        if (s.validAt != 0) {
            if (_matured(s.validAt)) {
                _promote(s);
            } else {
                emit RootReplaced(s.lastEpoch, _roots[s.pendingIndex]);
            }
        }
        _roots[s.pendingIndex] = root;
        _totals[s.pendingIndex] = SafeCast.toUint128(total);
        s.validAt = block.timestamp + rootDelay;
        s.lastEpoch = epoch;
        _storeState(s);
        // forge-lint: disable-next-line(unsafe-typecast) -- _storeState checked that validAt fits in 40 bits
        emit RootProposed(epoch, root, total, uint64(s.validAt));
    }

    /**
     * @notice Revokes the pending root before it becomes claimable. The revoked epoch number stays used, and the
     * root's total no longer counts in what {sweep} leaves.
     * @dev Only DEFAULT_ADMIN_ROLE. Emits {RootRevoked}.
     */
    function revokePendingRoot() external onlyRole(DEFAULT_ADMIN_ROLE) {
        State memory s = _loadState();
        if (s.validAt == 0) revert RewardDistributorNothingPending();
        if (_matured(s.validAt)) revert RewardDistributorRootAlreadyMatured();
        s.validAt = 0;
        _storeState(s);
        emit RootRevoked(s.lastEpoch, _roots[s.pendingIndex]);
    }

    /**
     * @notice Suspends the claimable root, for a wrong root found after it matured: claims revert until a root that
     * is not claimable now matures. A matured pending root is the claimable one, so it is the root suspended; a
     * pending root that has not matured is not suspended (revoke it with {revokePendingRoot} if it is wrong too).
     * A suspended root stays suspended: propose a corrected one. Its total still counts in what {sweep} leaves until
     * a newer root is promoted.
     * @dev Only DEFAULT_ADMIN_ROLE. Reverts with {RewardDistributorNoRoot} when no root has matured and with
     * {RewardDistributorRootSuspended} when the claimable root is already suspended. Emits {RootSuspended}.
     */
    function suspendCurrentRoot() external onlyRole(DEFAULT_ADMIN_ROLE) {
        State memory s = _loadState();
        if (_matured(s.validAt)) _promote(s);
        if (s.currentEpoch == 0) revert RewardDistributorNoRoot();
        if (s.suspended) revert RewardDistributorRootSuspended(s.currentEpoch);
        s.suspended = true;
        _storeState(s);
        emit RootSuspended(s.currentEpoch, _roots[s.pendingIndex ^ 1]);
    }

    /**
     * @notice Sends `to` what the contract holds of `token_` that no root can still pay: all of a token other than
     * {token}; of {token}, the balance above `max(current total, pending total) - totalClaimed` (the totals
     * {currentRoot} and {pendingRoot} return: a revoked or replaced root's total does not count, a suspended one's
     * does). An `eth_call` from the admin previews the amount.
     * @dev Only DEFAULT_ADMIN_ROLE. Reverts with {RewardDistributorNothingToSweep} instead of sweeping nothing, so
     * that every {Swept} moves tokens, and with {RewardDistributorZeroAddress} when `to` is zero. Emits {Swept}.
     * @param token_ The token to sweep.
     * @param to The recipient.
     * @return amount The amount sent.
     */
    function sweep(address token_, address to) external onlyRole(DEFAULT_ADMIN_ROLE) returns (uint256 amount) {
        if (to == address(0)) revert RewardDistributorZeroAddress();
        amount = IERC20(token_).balanceOf(address(this));
        if (token_ == token) {
            uint256 reserved = _reserved(_state);
            amount = amount > reserved ? amount - reserved : 0;
        }
        if (amount == 0) revert RewardDistributorNothingToSweep(token_);
        emit Swept(token_, to, amount);
        IERC20(token_).safeTransfer(to, amount);
    }

    /**
     * @notice Pays `account` what it has not yet claimed of `cumulativeAmount`. Anyone may call it.
     * @dev Returns 0 without reverting and without an event when `cumulativeAmount <= claimed(account)` (the proof
     * is only checked when something is owed). Reverts with {RewardDistributorNoRoot} before the first root is
     * claimable, {RewardDistributorRootSuspended} while the latest matured root is suspended,
     * {RewardDistributorInvalidProof} for a leaf not in the claimable root, and with the token's error (or
     * {SafeERC20-SafeERC20FailedOperation} when it returns false) when the token refuses the transfer: the contract
     * holds too little, the account is blocklisted. Emits {Claimed} after the token's `Transfer`.
     *
     * {claimMany} calls it for each entry. Inside a batch (`msg.sig` is {claimMany}'s selector) a refused transfer
     * does not revert: the entry's effects are undone, {ClaimSkipped} is emitted and 0 is returned.
     *
     * The hot path, written for gas: the state word is read once and written once, the claimable root is picked from
     * it as {_latest} does (inlined), the slot of `claimed[account]` is hashed once and the token is called in
     * assembly, with OpenZeppelin's `SafeERC20` rules (a token returning nothing succeeds, one returning false fails).
     * Effects come before the transfer.
     * @param account The account to pay (the tokens always go to it, whoever calls).
     * @param cumulativeAmount The account's cumulative amount in the claimable root's tree.
     * @param proof The leaf's Merkle proof in that tree.
     * @return paid The amount transferred to `account`.
     */
    function claim(address account, uint256 cumulativeAmount, bytes32[] calldata proof) public returns (uint256 paid) {
        uint256 state = _state;
        uint256 epoch;
        uint256 claimedSlot;
        uint256 already;
        {
            uint256 index = _pendingIndex(state);
            if (_matured(_validAt(state))) {
                epoch = _lastEpoch(state);
            } else {
                index ^= 1;
                epoch = _currentEpoch(state);
                if (_isSuspended(state)) revert RewardDistributorRootSuspended(epoch);
            }
            bytes32 root;
            assembly ("memory-safe") {
                root := sload(add(_roots.slot, index))
                mstore(0x00, account)
                mstore(0x20, claimed.slot)
                claimedSlot := keccak256(0x00, 0x40)
                already := sload(claimedSlot)
            }
            if (root == bytes32(0)) revert RewardDistributorNoRoot();
            if (cumulativeAmount <= already) return 0;
            if (!_verify(proof, root, account, cumulativeAmount)) {
                revert RewardDistributorInvalidProof(account, cumulativeAmount);
            }
        }
        unchecked {
            paid = cumulativeAmount - already;
            if (paid > type(uint128).max - _totalClaimed(state)) revert RewardDistributorTotalClaimedOverflow();
        }
        address token_ = token;
        bool called;
        bool transferred;
        assembly ("memory-safe") {
            sstore(claimedSlot, cumulativeAmount)
            // totalClaimed is the word's low 128 bits and the new sum fits in them: the other fields stay as they are.
            sstore(_state.slot, add(state, paid))

            // token_.transfer(account, paid) from the scratch space (0x40 holds the free memory pointer meanwhile).
            let freeMemoryPointer := mload(0x40)
            mstore(0x00, 0xa9059cbb) // the selector, in bytes 0x1c-0x1f
            mstore(0x20, account)
            mstore(0x40, paid)
            called := call(gas(), token_, 0, 0x1c, 0x44, 0x00, 0x20)
            transferred := and(called, eq(mload(0x00), 1))
            if iszero(transferred) {
                transferred := and(called, and(iszero(returndatasize()), gt(extcodesize(token_), 0)))
            }
            mstore(0x40, freeMemoryPointer)
        }
        if (transferred) {
            emit Claimed(account, epoch, paid, cumulativeAmount);
            return paid;
        }
        if (msg.sig != this.claimMany.selector) {
            if (!called) {
                assembly ("memory-safe") {
                    // The token's error.
                    returndatacopy(0x00, 0x00, returndatasize())
                    revert(0x00, returndatasize())
                }
            }
            revert SafeERC20.SafeERC20FailedOperation(token_);
        }
        claimed[account] = already;
        _state -= paid;
        emit ClaimSkipped(account, cumulativeAmount);
        return 0;
    }

    /**
     * @notice {claim} for many accounts. An entry whose transfer the token refuses (the account is blocklisted, the
     * contract holds too little) is skipped: nothing is recorded for it, {ClaimSkipped} is emitted and the batch goes
     * on. Any other revert of {claim} (no claimable root, suspended root, invalid proof) reverts the whole batch.
     * @param claims The entries; an entry with nothing owed pays 0 (an empty batch pays 0 and checks nothing).
     * @return totalPaid The sum paid to all entries.
     */
    function claimMany(Claim[] calldata claims) external returns (uint256 totalPaid) {
        uint256 count = claims.length;
        for (uint256 i; i < count; ++i) {
            Claim calldata c = claims[i];
            totalPaid += claim(c.account, c.cumulativeAmount, c.proof);
        }
    }

    /**
     * @notice The latest matured root: the pending one once `block.timestamp >= validAt`, else the last promoted
     * one. Claims are checked against it unless it is suspended.
     * @return epoch Its epoch (0 when there is none).
     * @return root The root (0 when there is none).
     * @return total The total proposed with it (0 when there is none).
     * @return suspended Whether it is suspended: claims revert until a newer root matures.
     */
    function currentRoot() external view returns (uint256 epoch, bytes32 root, uint256 total, bool suspended) {
        uint256 index;
        (index, epoch, suspended) = _latest(_state);
        return (epoch, _roots[index], _totals[index], suspended);
    }

    /**
     * @notice The proposed root that is not claimable yet (and can still be revoked).
     * @dev All zero when nothing is pending, including once the pending root has matured ({currentRoot} returns it
     * then).
     * @return epoch Its epoch.
     * @return root The root.
     * @return total The total proposed with it.
     * @return validAt When it becomes claimable.
     */
    function pendingRoot() external view returns (uint256 epoch, bytes32 root, uint256 total, uint64 validAt) {
        uint256 state = _state;
        validAt = _validAt(state);
        if (validAt == 0 || _matured(validAt)) return (0, bytes32(0), 0, 0);
        uint256 index = _pendingIndex(state);
        return (_lastEpoch(state), _roots[index], _totals[index], validAt);
    }

    /// @notice The sum of all amounts ever paid by claims.
    function totalClaimed() external view returns (uint256) {
        return _totalClaimed(_state);
    }

    /**
     * @notice The last proposed epoch, whether it is pending, claimable, replaced or revoked; the next proposal
     * must use a greater one. 0 before the first proposal.
     */
    function lastProposedEpoch() external view returns (uint256) {
        return _lastEpoch(_state);
    }

    /**
     * @dev Whether `proof` proves the standard leaf of `(account, cumulativeAmount)` under `root`: what
     * OpenZeppelin's `MerkleProof.verifyCalldata(proof, root, keccak256(bytes.concat(keccak256(abi.encode(account,
     * cumulativeAmount)))))` returns. In assembly, as Solady's `MerkleProofLib.verifyCalldata`: the leaf and every
     * sorted pair are hashed in the scratch space, without memory allocation or a call per level. The loop takes four
     * levels per iteration (a tree of a million leaves has 20): about 14 gas less per level than one at a time.
     */
    function _verify(bytes32[] calldata proof, bytes32 root, address account, uint256 cumulativeAmount)
        private
        pure
        returns (bool valid)
    {
        assembly ("memory-safe") {
            mstore(0x00, account)
            mstore(0x20, cumulativeAmount)
            mstore(0x00, keccak256(0x00, 0x40))
            let node := keccak256(0x00, 0x20)
            // A level stores the node at 0x00 and its sibling at 0x20 when the node is not greater, the other way
            // round when it is (`nodeAt`), and hashes the 64 bytes.
            let offset := proof.offset
            let end := add(offset, shl(5, proof.length))
            let endOfFours := sub(end, and(shl(5, proof.length), 0x60))
            if lt(offset, endOfFours) {
                for {} 1 {} {
                    let nodeAt := shl(5, gt(node, calldataload(offset)))
                    mstore(nodeAt, node)
                    mstore(xor(nodeAt, 0x20), calldataload(offset))
                    node := keccak256(0x00, 0x40)
                    nodeAt := shl(5, gt(node, calldataload(add(offset, 0x20))))
                    mstore(nodeAt, node)
                    mstore(xor(nodeAt, 0x20), calldataload(add(offset, 0x20)))
                    node := keccak256(0x00, 0x40)
                    nodeAt := shl(5, gt(node, calldataload(add(offset, 0x40))))
                    mstore(nodeAt, node)
                    mstore(xor(nodeAt, 0x20), calldataload(add(offset, 0x40)))
                    node := keccak256(0x00, 0x40)
                    nodeAt := shl(5, gt(node, calldataload(add(offset, 0x60))))
                    mstore(nodeAt, node)
                    mstore(xor(nodeAt, 0x20), calldataload(add(offset, 0x60)))
                    node := keccak256(0x00, 0x40)
                    offset := add(offset, 0x80)
                    if iszero(lt(offset, endOfFours)) { break }
                }
            }
            // The last `proof.length % 4` levels.
            for {} lt(offset, end) { offset := add(offset, 0x20) } {
                let nodeAt := shl(5, gt(node, calldataload(offset)))
                mstore(nodeAt, node)
                mstore(xor(nodeAt, 0x20), calldataload(offset))
                node := keccak256(0x00, 0x40)
            }
            valid := eq(node, root)
        }
    }

    /// @dev The latest matured root in the packed `state`: its index in `_roots` and `_totals`, its epoch (0 before
    /// the first root matured) and whether it is suspended. The pending root from its `validAt` on (never
    /// suspended), else the current root.
    function _latest(uint256 state) private view returns (uint256 index, uint256 epoch, bool isSuspended) {
        index = _pendingIndex(state);
        if (_matured(_validAt(state))) return (index, _lastEpoch(state), false);
        return (index ^ 1, _currentEpoch(state), _isSuspended(state));
    }

    /// @dev What the roots in the packed `state` can still pay: the larger of the latest matured root's total and the
    /// pending root's, less {totalClaimed} (0 when that is more).
    function _reserved(uint256 state) private view returns (uint256) {
        (uint256 index,,) = _latest(state);
        uint256 total = _totals[index];
        uint256 validAt = _validAt(state);
        if (validAt != 0 && !_matured(validAt)) {
            uint256 pendingTotal = _totals[_pendingIndex(state)];
            if (pendingTotal > total) total = pendingTotal;
        }
        uint256 paid = _totalClaimed(state);
        return total > paid ? total - paid : 0;
    }

    /// @dev Makes the matured pending root in `s` the current one (in memory: the caller stores `s`). The old current
    /// root's entry of `_roots` becomes the stale one, which the next proposal overwrites.
    function _promote(State memory s) private pure {
        s.pendingIndex ^= 1;
        s.currentEpoch = s.lastEpoch;
        s.validAt = 0;
        s.suspended = false;
    }

    /// @dev `_state` unpacked.
    function _loadState() private view returns (State memory s) {
        uint256 state = _state;
        s.totalClaimed = _totalClaimed(state);
        s.validAt = _validAt(state);
        s.currentEpoch = _currentEpoch(state);
        s.lastEpoch = _lastEpoch(state);
        s.pendingIndex = _pendingIndex(state);
        s.suspended = _isSuspended(state);
    }

    /// @dev Packs `s` into `_state`; reverts when a field does not fit its width.
    function _storeState(State memory s) private {
        _state = uint256(SafeCast.toUint128(s.totalClaimed)) | (uint256(SafeCast.toUint40(s.validAt)) << _VALID_AT)
            | (uint256(SafeCast.toUint40(s.currentEpoch)) << _CURRENT_EPOCH)
            | (uint256(SafeCast.toUint40(s.lastEpoch)) << _LAST_EPOCH) | ((s.pendingIndex & 1) << _PENDING_INDEX)
            | ((s.suspended ? uint256(1) : 0) << _SUSPENDED);
    }

    /// @dev Whether a pending root with this `validAt` (0: none) is claimable now.
    function _matured(uint256 validAt) private view returns (bool) {
        // `validAt != 0 && block.timestamp >= validAt` in one comparison: 0 - 1 wraps to the largest number.
        unchecked {
            return validAt - 1 < block.timestamp;
        }
    }

    // The fields of a packed state word. Small enough for the optimizer to inline them, also into {claim}.

    function _totalClaimed(uint256 state) private pure returns (uint256) {
        // forge-lint: disable-next-line(unsafe-typecast) -- the field's bits
        return uint128(state);
    }

    function _validAt(uint256 state) private pure returns (uint40) {
        // forge-lint: disable-next-line(unsafe-typecast) -- the field's bits
        return uint40(state >> _VALID_AT);
    }

    function _currentEpoch(uint256 state) private pure returns (uint256) {
        // forge-lint: disable-next-line(unsafe-typecast) -- the field's bits
        return uint40(state >> _CURRENT_EPOCH);
    }

    function _lastEpoch(uint256 state) private pure returns (uint256) {
        // forge-lint: disable-next-line(unsafe-typecast) -- the field's bits
        return uint40(state >> _LAST_EPOCH);
    }

    function _pendingIndex(uint256 state) private pure returns (uint256) {
        return (state >> _PENDING_INDEX) & 1;
    }

    function _isSuspended(uint256 state) private pure returns (bool) {
        return (state >> _SUSPENDED) & 1 == 1;
    }
}

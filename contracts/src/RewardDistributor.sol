// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/**
 * @title RewardDistributor
 * @notice Pays contributor rewards from Merkle roots of cumulative amounts, one root per epoch.
 *
 * Each epoch the publisher proposes the root of a tree whose leaves are `(account, cumulativeAmount)`: everything
 * the account has earned since the first epoch, never less than in an earlier epoch. A proposed root becomes
 * claimable `rootDelay` seconds after it was proposed; until then the admin can revoke it. Anyone may then call
 * {claim} for an account with the account's leaf and proof: the account is paid `cumulativeAmount - claimed(account)`,
 * so an account that skips epochs loses nothing and no account can be paid twice for the same amount.
 *
 * Leaves are OpenZeppelin's standard double hash `keccak256(bytes.concat(keccak256(abi.encode(account,
 * cumulativeAmount))))` with sorted-pair hashing, so trees and proofs made by OpenZeppelin's npm `merkle-tree` package
 * (`StandardMerkleTree.of(values, ["address", "uint256"])`) and by `marketplace/rewards/merkle.py` work as they are.
 *
 * Funding: anyone transfers {token} to this contract; there is no deposit function. A claim that the balance cannot
 * cover reverts (nothing is recorded) and succeeds once the contract is topped up.
 *
 * Trust assumptions:
 *
 * * The PUBLISHER (the server's operator key) is trusted to publish correct trees: the contract cannot check that
 *   amounts are earned or that cumulative amounts never decrease. A leaf with a smaller cumulative amount than the
 *   account already claimed simply pays nothing. A tree must hold at most one leaf per account; with two, the
 *   account can claim the larger amount.
 * * The admin (DEFAULT_ADMIN_ROLE) watches proposals and revokes a wrong one before it matures; `rootDelay` is that
 *   window (0 disables it). So a compromised publisher key alone can only propose roots the admin may revoke. The
 *   admin is trusted with the funds: it grants and revokes roles and sets the delay (at most {MAX_ROOT_DELAY}), so it
 *   could make itself publisher, set the delay to 0 and publish any root (every step emits an event).
 * * The {token} is a standard ERC-20 without transfer hooks or fees (USDC). It is fixed at deployment.
 * * Only the latest matured root is claimable: a leaf of an older epoch stops working once a newer root matures,
 *   which is harmless because the newer leaf carries the account's full cumulative amount.
 *
 * Epoch numbers start at 1 and strictly increase with every proposal, including proposals that were later revoked
 * or replaced; 0 means "no epoch". Epochs are stored in 96 bits (larger numbers revert with
 * {SafeCast-SafeCastOverflowedUintDowncast}).
 *
 * Storage: the current root and the pending root take one slot each, and the three epoch/timing fields share one
 * slot, so a claim reads two slots to find its root (whether or not the pending root was promoted) besides the
 * account's claimed amount. A matured pending root is not promoted by claims (that would cost two writes on the
 * claimant); the next {proposeRoot} promotes it.
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

    /// @dev Epoch and timing fields packed in one slot.
    /// @param currentEpoch Epoch of `_currentRoot` (0 while no root was ever promoted).
    /// @param lastEpoch Last proposed epoch: the pending root's epoch while `validAt != 0`.
    /// @param validAt When the pending root becomes claimable; 0 when nothing is pending.
    struct Epochs {
        uint96 currentEpoch;
        uint96 lastEpoch;
        uint64 validAt;
    }

    /// @notice Role allowed to propose roots.
    bytes32 public constant PUBLISHER_ROLE = keccak256("PUBLISHER_ROLE");

    /// @notice Upper bound of {rootDelay}.
    uint64 public constant MAX_ROOT_DELAY = 30 days;

    /// @notice The ERC-20 token rewards are paid in.
    address public immutable token;

    /// @dev Last promoted root; claimable while no pending root has matured.
    bytes32 private _currentRoot;

    /// @dev Proposed root (0 when nothing is pending); claimable from `_epochs.validAt` on.
    bytes32 private _pendingRoot;

    /// @dev Epochs of the roots above and the pending root's `validAt`.
    Epochs private _epochs;

    /// @notice Seconds between a proposal and the moment its root becomes claimable.
    uint64 public rootDelay;

    /// @notice Cumulative amount already paid to each account.
    mapping(address account => uint256) public claimed;

    /// @notice Emitted when the delay changes (also at deployment, from 0).
    event RootDelayChanged(uint64 oldDelay, uint64 newDelay);

    /// @notice Emitted when `root` is proposed for `epoch`; it becomes claimable at `validAt`.
    event RootProposed(uint256 indexed epoch, bytes32 root, uint64 validAt);

    /// @notice Emitted when a pending, not yet claimable `root` of `epoch` is replaced by a newer proposal.
    event RootReplaced(uint256 indexed epoch, bytes32 root);

    /// @notice Emitted when the admin revokes the pending `root` of `epoch` before it became claimable.
    event RootRevoked(uint256 indexed epoch, bytes32 root);

    /// @notice Emitted when `account` is paid `amount`, bringing its claimed total to `cumulativeAmount`, against
    /// the root of `epoch`.
    event Claimed(address indexed account, uint256 indexed epoch, uint256 amount, uint256 cumulativeAmount);

    /// @notice The proof does not prove the leaf `(account, cumulativeAmount)` in the claimable root.
    error RewardDistributorInvalidProof(address account, uint256 cumulativeAmount);

    /// @notice No root is claimable yet.
    error RewardDistributorNoRoot();

    /// @notice `epoch` is not greater than the `last` proposed epoch.
    error RewardDistributorEpochNotIncreasing(uint256 epoch, uint256 last);

    /// @notice The proposed root is zero.
    error RewardDistributorZeroRoot();

    /// @notice There is no pending root to revoke.
    error RewardDistributorNothingPending();

    /// @notice The pending root is already claimable and can no longer be revoked.
    error RewardDistributorRootAlreadyMatured();

    /// @notice The delay exceeds {MAX_ROOT_DELAY}.
    error RewardDistributorDelayTooLong();

    /// @notice The admin or the token is the zero address.
    error RewardDistributorZeroAddress();

    /**
     * @notice Deploys the distributor.
     * @param admin Receives DEFAULT_ADMIN_ROLE (grants PUBLISHER_ROLE, revokes roots, sets the delay).
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
     * @notice Proposes `root` for `epoch`; it becomes claimable `rootDelay` seconds from now.
     * @dev Only PUBLISHER_ROLE. A pending root that has matured is promoted to current first; one that has not is
     * replaced (emits {RootReplaced} for it) and never becomes claimable. Emits {RootProposed}.
     * @param epoch Must be greater than every epoch proposed before (see {lastProposedEpoch}).
     * @param root Root of the epoch's tree of cumulative amounts; not zero.
     */
    function proposeRoot(uint256 epoch, bytes32 root) external onlyRole(PUBLISHER_ROLE) {
        if (root == bytes32(0)) revert RewardDistributorZeroRoot();
        Epochs memory e = _epochs;
        if (epoch <= e.lastEpoch) revert RewardDistributorEpochNotIncreasing(epoch, e.lastEpoch);
        if (e.validAt != 0) {
            if (block.timestamp >= e.validAt) {
                _currentRoot = _pendingRoot;
                e.currentEpoch = e.lastEpoch;
            } else {
                emit RootReplaced(e.lastEpoch, _pendingRoot);
            }
        }
        uint64 validAt = uint64(block.timestamp) + rootDelay;
        _pendingRoot = root;
        _epochs = Epochs({currentEpoch: e.currentEpoch, lastEpoch: SafeCast.toUint96(epoch), validAt: validAt});
        emit RootProposed(epoch, root, validAt);
    }

    /**
     * @notice Revokes the pending root before it becomes claimable. The revoked epoch number stays used.
     * @dev Only DEFAULT_ADMIN_ROLE. Emits {RootRevoked}.
     */
    function revokePendingRoot() external onlyRole(DEFAULT_ADMIN_ROLE) {
        Epochs memory e = _epochs;
        if (e.validAt == 0) revert RewardDistributorNothingPending();
        if (block.timestamp >= e.validAt) revert RewardDistributorRootAlreadyMatured();
        bytes32 root = _pendingRoot;
        _pendingRoot = bytes32(0);
        _epochs.validAt = 0;
        emit RootRevoked(e.lastEpoch, root);
    }

    /**
     * @notice Pays `account` what it has not yet claimed of `cumulativeAmount`. Anyone may call it.
     * @dev Returns 0 without reverting and without an event when `cumulativeAmount <= claimed(account)` (the proof
     * is only checked when something is owed). Reverts with {RewardDistributorNoRoot} before the first root is
     * claimable, {RewardDistributorInvalidProof} for a leaf not in the claimable root, and with the token's error
     * when the contract holds too little. Emits {Claimed}.
     * @param account The account to pay (the tokens always go to it, whoever calls).
     * @param cumulativeAmount The account's cumulative amount in the claimable root's tree.
     * @param proof The leaf's Merkle proof in that tree.
     * @return paid The amount transferred to `account`.
     */
    function claim(address account, uint256 cumulativeAmount, bytes32[] calldata proof)
        external
        returns (uint256 paid)
    {
        (uint256 epoch, bytes32 root) = _claimableRoot();
        if (root == bytes32(0)) revert RewardDistributorNoRoot();
        return _claim(epoch, root, account, cumulativeAmount, proof);
    }

    /**
     * @notice {claim} for many accounts against the same root. Reverts as a whole if one entry reverts.
     * @param claims The entries; an entry with nothing owed pays 0.
     * @return totalPaid The sum paid to all entries.
     */
    function claimMany(Claim[] calldata claims) external returns (uint256 totalPaid) {
        (uint256 epoch, bytes32 root) = _claimableRoot();
        if (root == bytes32(0)) revert RewardDistributorNoRoot();
        uint256 count = claims.length;
        for (uint256 i; i < count; ++i) {
            Claim calldata c = claims[i];
            totalPaid += _claim(epoch, root, c.account, c.cumulativeAmount, c.proof);
        }
    }

    /**
     * @notice The claimable root: the pending one once `block.timestamp >= validAt`, else the last promoted one.
     * @return epoch Its epoch (0 when there is none).
     * @return root The root (0 when there is none).
     */
    function currentRoot() external view returns (uint256 epoch, bytes32 root) {
        return _claimableRoot();
    }

    /**
     * @notice The proposed root that is not claimable yet (and can still be revoked).
     * @dev All zero when nothing is pending, including once the pending root has matured ({currentRoot} returns it
     * then).
     * @return epoch Its epoch.
     * @return root The root.
     * @return validAt When it becomes claimable.
     */
    function pendingRoot() external view returns (uint256 epoch, bytes32 root, uint64 validAt) {
        Epochs memory e = _epochs;
        if (e.validAt == 0 || block.timestamp >= e.validAt) return (0, bytes32(0), 0);
        return (e.lastEpoch, _pendingRoot, e.validAt);
    }

    /**
     * @notice The last proposed epoch, whether it is pending, claimable, replaced or revoked; the next proposal
     * must use a greater one. 0 before the first proposal.
     */
    function lastProposedEpoch() external view returns (uint256) {
        return _epochs.lastEpoch;
    }

    /// @dev The matured pending root if there is one, else the current root (epoch 0 and root 0 when none).
    function _claimableRoot() private view returns (uint256 epoch, bytes32 root) {
        Epochs memory e = _epochs;
        if (e.validAt != 0 && block.timestamp >= e.validAt) return (e.lastEpoch, _pendingRoot);
        return (e.currentEpoch, _currentRoot);
    }

    /// @dev Pays `account` against `root` of `epoch`; see {claim}. Effects before the transfer.
    function _claim(uint256 epoch, bytes32 root, address account, uint256 cumulativeAmount, bytes32[] calldata proof)
        private
        returns (uint256 paid)
    {
        uint256 already = claimed[account];
        if (cumulativeAmount <= already) return 0;
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) {
            revert RewardDistributorInvalidProof(account, cumulativeAmount);
        }
        unchecked {
            paid = cumulativeAmount - already;
        }
        claimed[account] = cumulativeAmount;
        emit Claimed(account, epoch, paid, cumulativeAmount);
        IERC20(token).safeTransfer(account, paid);
    }
}

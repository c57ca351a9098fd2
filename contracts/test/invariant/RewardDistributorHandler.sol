// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "../utils/Test.sol";
import {MerkleBuilder} from "../utils/MerkleBuilder.sol";
import {RewardDistributor} from "../../src/RewardDistributor.sol";
import {TestUSDC} from "../../src/TestUSDC.sol";
import {RewardBlocklistToken} from "../mocks/RewardBlocklistToken.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

/**
 * @dev Drives a {RewardDistributor} at random for the invariant test: proposals of trees of four accounts with
 * growing cumulative amounts (and their totals), revocations, suspensions, delay changes, time passing (also to a
 * pending root's `validAt` and the second before), funding, sweeps of the reward token and of another token, a
 * blocklist in the token, single and batch claims, and claims that must fail (a wrong amount, another account's
 * proof, a root that is not yet valid, revoked, replaced or suspended).
 *
 * The handler keeps its own model of the roots: each proposed epoch's amounts, tree, total and `validAt` (the time of
 * the proposal plus the delay the handler set), and which epoch is pending, current, revoked, replaced or suspended.
 * Every call to the distributor is predicted from the model: an expected revert must carry the expected error, an
 * expected success must pay what the model says. After every action the handler compares the distributor's views
 * with the model. Whatever disagrees is counted in a ghost variable that an invariant requires to stay 0; the
 * handler itself never reverts (the invariant test runs with fail-on-revert, which catches the handler's own bugs).
 */
contract RewardDistributorHandler is Test {
    uint256 public constant ACTORS = 4;
    /// @dev A fifth leaf with the epoch as its amount makes every proposed root unique; nobody claims it.
    address public constant SALT = address(0x5A17);

    RewardDistributor public immutable distributor;
    RewardBlocklistToken public immutable token;
    TestUSDC public immutable otherToken;
    address public immutable tokenOwner;
    address public immutable admin;
    address public immutable publisher;
    address public constant TREASURY = address(0x7EA5);

    address[ACTORS] public actors;
    bool[ACTORS] public blocked;

    // ---- What went in and out.
    uint256 public ghostFunded;
    uint256 public ghostPaid;
    uint256 public ghostSwept;

    // ---- Must stay 0.
    /// @dev A claim or a sweep paid another amount than the model says (or than the balances moved).
    uint256 public ghostWrongPayouts;
    /// @dev A call reverted although the model expected it to succeed, succeeded although it expected a revert, or
    /// reverted with another error.
    uint256 public ghostUnexpectedOutcomes;
    /// @dev The distributor showed as claimable, or paid from, a root before its `validAt`.
    uint256 public ghostClaimableBeforeValidAt;
    /// @dev The distributor showed as claimable, or paid from, a revoked, replaced or suspended root.
    uint256 public ghostDeadRootClaimable;
    /// @dev totalClaimed exceeded the total of the latest matured root.
    uint256 public ghostClaimedAboveTotal;
    /// @dev A sweep left less of the reward token than the roots can still pay.
    uint256 public ghostSweepShortfall;
    /// @dev The last unexpected revert, to debug a failure.
    bytes public lastUnexpectedRevert;

    // ---- The model.
    /// @dev The latest cumulative amount proposed per actor (never decreases).
    uint256[ACTORS] public latest;
    mapping(uint256 epoch => uint256[ACTORS]) internal _amounts;
    mapping(uint256 epoch => bytes32[]) internal _trees;
    mapping(uint256 epoch => uint256) public totalOf;
    mapping(uint256 epoch => uint256) public validAtOf;
    /// @dev Revoked, replaced or suspended.
    mapping(uint256 epoch => bool) public dead;
    uint256[] public deadEpochs;
    uint256 public lastEpoch;
    /// @dev The pending epoch (0 when none), matured or not.
    uint256 public pendingEpoch;
    /// @dev The last promoted epoch (0 when none) and whether it is suspended.
    uint256 public currentEpoch;
    bool public currentSuspended;
    uint256 public delay;
    /// @dev Kept by the handler and re-applied on every call, so that time only moves forward through the warps.
    uint256 public currentTime;

    // ---- Coverage (shown by forge's call summary and checked by nothing).
    uint256 public successfulClaims;
    uint256 public skippedClaims;
    uint256 public sweeps;
    uint256 public suspensions;
    uint256 public revocations;

    constructor(
        RewardDistributor distributor_,
        RewardBlocklistToken token_,
        TestUSDC otherToken_,
        address tokenOwner_,
        address admin_,
        address publisher_
    ) {
        distributor = distributor_;
        token = token_;
        otherToken = otherToken_;
        tokenOwner = tokenOwner_;
        admin = admin_;
        publisher = publisher_;
        for (uint256 i; i < ACTORS; ++i) {
            actors[i] = vm.addr(0xA11CE + i);
        }
        currentTime = block.timestamp;
        delay = distributor_.rootDelay();
    }

    /// @dev Runs an action at the handler's time, then compares the distributor's views with the model.
    modifier step() {
        vm.warp(currentTime);
        _;
        _checkViews();
    }

    // ------------------------------------------------------------------ model queries

    /// @dev The cumulative amount of actor `i` in the tree of `epoch` (0 for epoch 0).
    function amountOf(uint256 epoch, uint256 i) external view returns (uint256) {
        return _amounts[epoch][i];
    }

    function pendingMatured() public view returns (bool) {
        return pendingEpoch != 0 && currentTime >= validAtOf[pendingEpoch];
    }

    /// @dev The latest matured epoch, suspended or not (0 when none).
    function latestEpoch() public view returns (uint256) {
        return pendingMatured() ? pendingEpoch : currentEpoch;
    }

    /// @dev The epoch claims are paid against (0 when none, or when it is suspended).
    function claimableEpoch() public view returns (uint256) {
        if (pendingMatured()) return pendingEpoch;
        return currentSuspended ? 0 : currentEpoch;
    }

    /// @dev What the roots can still pay: the larger of the latest matured root's total and the pending root's, less
    /// what was paid.
    function reserved() public view returns (uint256) {
        uint256 total = totalOf[latestEpoch()];
        if (pendingEpoch != 0 && !pendingMatured() && totalOf[pendingEpoch] > total) total = totalOf[pendingEpoch];
        return total > ghostPaid ? total - ghostPaid : 0;
    }

    // ------------------------------------------------------------------ roots

    function propose(uint256 seed, uint256 epochStep) external step {
        uint256 epoch = lastEpoch + bound(epochStep, 1, 3);
        address[] memory accounts = new address[](ACTORS + 1);
        uint256[] memory amounts = new uint256[](ACTORS + 1);
        uint256 total;
        for (uint256 i; i < ACTORS; ++i) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            if (r % 3 != 0) latest[i] += bound(r >> 8, 0, 1_000e6);
            accounts[i] = actors[i];
            amounts[i] = latest[i];
            _amounts[epoch][i] = latest[i];
            total += latest[i];
        }
        (accounts[ACTORS], amounts[ACTORS]) = (SALT, epoch);
        total += epoch;
        bytes32[] memory tree = MerkleBuilder.build(accounts, amounts);
        vm.prank(publisher);
        try distributor.proposeRoot(epoch, tree[0], total) {
            if (pendingEpoch != 0) {
                if (pendingMatured()) {
                    (currentEpoch, currentSuspended) = (pendingEpoch, false);
                } else {
                    _kill(pendingEpoch);
                }
            }
            _trees[epoch] = tree;
            totalOf[epoch] = total;
            validAtOf[epoch] = currentTime + delay;
            pendingEpoch = epoch;
            lastEpoch = epoch;
        } catch (bytes memory err) {
            _unexpected(err);
        }
    }

    /// @dev A total below totalClaimed must be refused.
    function proposeBelowClaimed() external step {
        if (ghostPaid == 0) return;
        vm.prank(publisher);
        try distributor.proposeRoot(lastEpoch + 1, keccak256(abi.encode(lastEpoch)), ghostPaid - 1) {
            ++ghostUnexpectedOutcomes;
        } catch (bytes memory err) {
            _expect(
                err,
                abi.encodeWithSelector(
                    RewardDistributor.RewardDistributorTotalBelowClaimed.selector, ghostPaid - 1, ghostPaid
                )
            );
        }
    }

    function revoke() external step {
        bytes memory expected;
        if (pendingEpoch == 0) {
            expected = abi.encodeWithSelector(RewardDistributor.RewardDistributorNothingPending.selector);
        } else if (pendingMatured()) {
            expected = abi.encodeWithSelector(RewardDistributor.RewardDistributorRootAlreadyMatured.selector);
        }
        vm.prank(admin);
        try distributor.revokePendingRoot() {
            if (expected.length != 0) {
                _unexpected("");
                return;
            }
            _kill(pendingEpoch);
            pendingEpoch = 0;
            ++revocations;
        } catch (bytes memory err) {
            _expect(err, expected);
        }
    }

    function suspend() external step {
        uint256 epoch = latestEpoch();
        bytes memory expected;
        if (epoch == 0) {
            expected = abi.encodeWithSelector(RewardDistributor.RewardDistributorNoRoot.selector);
        } else if (!pendingMatured() && currentSuspended) {
            expected = abi.encodeWithSelector(RewardDistributor.RewardDistributorRootSuspended.selector, epoch);
        }
        vm.prank(admin);
        try distributor.suspendCurrentRoot() {
            if (expected.length != 0) {
                _unexpected("");
                return;
            }
            if (pendingMatured()) (currentEpoch, pendingEpoch) = (pendingEpoch, 0);
            currentSuspended = true;
            _kill(currentEpoch);
            ++suspensions;
        } catch (bytes memory err) {
            _expect(err, expected);
        }
    }

    function setDelay(uint256 newDelay) external step {
        newDelay = bound(newDelay, 0, 2 days);
        vm.prank(admin);
        // forge-lint: disable-next-line(unsafe-typecast) -- bounded above
        try distributor.setRootDelay(uint64(newDelay)) {
            delay = newDelay;
        } catch (bytes memory err) {
            _unexpected(err);
        }
    }

    // ------------------------------------------------------------------ time and money

    function warp(uint256 secs) external step {
        currentTime += bound(secs, 0, 2 days);
    }

    /// @dev To the pending root's `validAt`, or the second before: where an off-by-one would show.
    function warpToValidAt(bool secondBefore) external step {
        if (pendingEpoch == 0) return;
        uint256 target = validAtOf[pendingEpoch] - (secondBefore ? 1 : 0);
        if (target > currentTime) currentTime = target;
    }

    function fund(uint256 amount) external step {
        amount = bound(amount, 0, 5_000e6);
        vm.prank(tokenOwner);
        token.mint(address(distributor), amount);
        ghostFunded += amount;
    }

    function fundOther(uint256 amount) external step {
        amount = bound(amount, 1, 1_000e6);
        vm.prank(tokenOwner);
        otherToken.mint(address(distributor), amount);
    }

    function sweep(bool other) external step {
        TestUSDC swept = other ? TestUSDC(otherToken) : TestUSDC(token);
        uint256 balance = swept.balanceOf(address(distributor));
        uint256 keep = other ? 0 : reserved();
        uint256 expected = balance > keep ? balance - keep : 0;
        uint256 before = swept.balanceOf(TREASURY);
        vm.prank(admin);
        try distributor.sweep(address(swept), TREASURY) returns (uint256 amount) {
            if (!other) {
                ghostSwept += amount;
                if (token.balanceOf(address(distributor)) < keep) ++ghostSweepShortfall;
            }
            if (expected == 0) {
                _unexpected("");
                return;
            }
            if (amount != expected || swept.balanceOf(TREASURY) - before != amount) ghostWrongPayouts += amount + 1;
            ++sweeps;
        } catch (bytes memory err) {
            _expect(
                err,
                expected == 0
                    ? abi.encodeWithSelector(RewardDistributor.RewardDistributorNothingToSweep.selector, address(swept))
                    : bytes("")
            );
        }
    }

    function setBlocked(uint256 actorSeed, bool isBlocked) external step {
        uint256 i = actorSeed % ACTORS;
        token.setBlocked(actors[i], isBlocked);
        blocked[i] = isBlocked;
    }

    // ------------------------------------------------------------------ claims

    function claim(uint256 actorSeed, address caller) external step {
        uint256 epoch = claimableEpoch();
        uint256 i = actorSeed % ACTORS;
        address account = actors[i];
        if (epoch == 0) {
            _claimWithoutClaimableRoot(i, false);
            return;
        }
        uint256 amount = _amounts[epoch][i];
        bytes32[] memory proof = MerkleBuilder.proof(_trees[epoch], account, amount);
        uint256 already = distributor.claimed(account);
        uint256 owed = amount > already ? amount - already : 0;
        uint256 balance = token.balanceOf(address(distributor));
        bytes memory expected;
        if (owed != 0 && blocked[i]) {
            expected = abi.encodeWithSelector(RewardBlocklistToken.RewardBlocklistTokenBlocked.selector, account);
        } else if (owed > balance) {
            expected = abi.encodeWithSelector(
                IERC20Errors.ERC20InsufficientBalance.selector, address(distributor), balance, owed
            );
        }
        uint256 before = token.balanceOf(account);
        vm.prank(caller);
        try distributor.claim(account, amount, proof) returns (uint256 paid) {
            ghostPaid += paid;
            if (expected.length != 0) {
                _unexpected("");
                return;
            }
            if (paid != owed || token.balanceOf(account) - before != paid) ghostWrongPayouts += paid + 1;
            if (paid > 0) ++successfulClaims;
        } catch (bytes memory err) {
            _expect(err, expected);
        }
    }

    function claimMany(uint256 mask) external step {
        uint256 epoch = claimableEpoch();
        if (epoch == 0) {
            _claimWithoutClaimableRoot(mask % ACTORS, true);
            return;
        }
        uint256 count;
        for (uint256 i; i < ACTORS; ++i) {
            if ((mask >> i) & 1 == 1) ++count;
        }
        RewardDistributor.Claim[] memory claims = new RewardDistributor.Claim[](count);
        // What the batch pays: entries in order, skipping the blocked ones and those the balance left cannot cover.
        uint256 balance = token.balanceOf(address(distributor));
        uint256 owed;
        uint256 k;
        for (uint256 i; i < ACTORS; ++i) {
            if ((mask >> i) & 1 == 0) continue;
            uint256 amount = _amounts[epoch][i];
            claims[k++] =
                RewardDistributor.Claim(actors[i], amount, MerkleBuilder.proof(_trees[epoch], actors[i], amount));
            uint256 already = distributor.claimed(actors[i]);
            uint256 due = amount > already ? amount - already : 0;
            if (due == 0) continue;
            if (blocked[i] || due > balance - owed) {
                ++skippedClaims;
                continue;
            }
            owed += due;
        }
        try distributor.claimMany(claims) returns (uint256 paid) {
            ghostPaid += paid;
            if (paid != owed || balance - token.balanceOf(address(distributor)) != paid) ghostWrongPayouts += paid + 1;
            if (paid > 0) ++successfulClaims;
        } catch (bytes memory err) {
            _unexpected(err);
        }
    }

    /// @dev Claims more than the tree gives, or with another actor's proof: must revert.
    function claimInvalid(uint256 actorSeed, uint256 otherSeed, uint256 extra) external step {
        uint256 epoch = claimableEpoch();
        if (epoch == 0) return;
        uint256 i = actorSeed % ACTORS;
        uint256 j = otherSeed % ACTORS;
        uint256 amount = _amounts[epoch][i];
        bytes32[] memory proof = MerkleBuilder.proof(_trees[epoch], actors[i], amount);
        address account = actors[j];
        uint256 claimedAmount = i == j ? amount + bound(extra, 1, 1_000e6) : amount;
        if (claimedAmount <= distributor.claimed(account)) return; // would pay nothing without checking the proof
        try distributor.claim(account, claimedAmount, proof) returns (uint256 paid) {
            ghostPaid += paid;
            ghostWrongPayouts += paid + 1;
        } catch (bytes memory err) {
            _expect(
                err,
                abi.encodeWithSelector(RewardDistributor.RewardDistributorInvalidProof.selector, account, claimedAmount)
            );
        }
    }

    /// @dev A valid leaf of the pending root before its `validAt`: must not pay.
    function claimPending(uint256 actorSeed) external step {
        if (pendingEpoch == 0 || pendingMatured()) return;
        _claimFrom(pendingEpoch, actorSeed % ACTORS, false);
    }

    /// @dev A valid leaf of a revoked, replaced or suspended root: must not pay.
    function claimDead(uint256 seed, uint256 actorSeed) external step {
        if (deadEpochs.length == 0) return;
        _claimFrom(deadEpochs[seed % deadEpochs.length], actorSeed % ACTORS, true);
    }

    // ------------------------------------------------------------------ internals

    /// @dev No root is claimable (none matured, or it is suspended): a claim (in a `batch` of one or not) against the
    /// latest root must revert.
    function _claimWithoutClaimableRoot(uint256 i, bool batch) internal {
        uint256 epoch = latestEpoch();
        RewardDistributor.Claim[] memory claims = new RewardDistributor.Claim[](1);
        claims[0] = RewardDistributor.Claim(actors[i], latest[i] + 1, new bytes32[](0));
        if (epoch != 0) {
            uint256 amount = _amounts[epoch][i];
            claims[0] =
                RewardDistributor.Claim(actors[i], amount, MerkleBuilder.proof(_trees[epoch], actors[i], amount));
        }
        bytes memory expected = epoch == 0
            ? abi.encodeWithSelector(RewardDistributor.RewardDistributorNoRoot.selector)
            : abi.encodeWithSelector(RewardDistributor.RewardDistributorRootSuspended.selector, epoch);
        if (batch) {
            try distributor.claimMany(claims) returns (uint256 paid) {
                _paidWithoutClaimableRoot(epoch, paid);
            } catch (bytes memory err) {
                _expect(err, expected);
            }
        } else {
            try distributor.claim(claims[0].account, claims[0].cumulativeAmount, claims[0].proof) returns (
                uint256 paid
            ) {
                _paidWithoutClaimableRoot(epoch, paid);
            } catch (bytes memory err) {
                _expect(err, expected);
            }
        }
    }

    function _paidWithoutClaimableRoot(uint256 epoch, uint256 paid) internal {
        ghostPaid += paid;
        if (epoch == 0) ++ghostClaimableBeforeValidAt;
        else if (paid > 0) ++ghostDeadRootClaimable;
        else ++ghostUnexpectedOutcomes;
    }

    /// @dev Claims actor `i`'s leaf of `epoch`, which must not pay: any revert is fine.
    function _claimFrom(uint256 epoch, uint256 i, bool isDead) internal {
        uint256 amount = _amounts[epoch][i];
        if (amount <= distributor.claimed(actors[i])) return; // would pay nothing without checking the proof
        bytes32[] memory proof = MerkleBuilder.proof(_trees[epoch], actors[i], amount);
        try distributor.claim(actors[i], amount, proof) returns (uint256 paid) {
            ghostPaid += paid;
            if (isDead) ++ghostDeadRootClaimable;
            else ++ghostClaimableBeforeValidAt;
        } catch {}
    }

    /// @dev The distributor's views against the model, after every action.
    function _checkViews() internal {
        (uint256 epoch, bytes32 root, uint256 total, bool isSuspended) = distributor.currentRoot();
        if (root != bytes32(0) && !isSuspended) {
            if (validAtOf[epoch] > currentTime) ++ghostClaimableBeforeValidAt;
            if (dead[epoch]) ++ghostDeadRootClaimable;
        }
        uint256 latestEpoch_ = latestEpoch();
        if (latestEpoch_ != 0) {
            uint256 paid = distributor.totalClaimed();
            if (paid > totalOf[latestEpoch_] || (root != bytes32(0) && paid > total)) ++ghostClaimedAboveTotal;
        }
    }

    function _kill(uint256 epoch) internal {
        if (dead[epoch]) return;
        dead[epoch] = true;
        deadEpochs.push(epoch);
    }

    /// @dev A revert: fine when `expected` is its exact data, unexpected otherwise (also when `expected` is empty).
    function _expect(bytes memory err, bytes memory expected) internal {
        if (expected.length == 0 || keccak256(err) != keccak256(expected)) _unexpected(err);
    }

    function _unexpected(bytes memory err) internal {
        ++ghostUnexpectedOutcomes;
        lastUnexpectedRevert = err;
    }
}

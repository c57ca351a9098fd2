// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "../utils/Test.sol";
import {MerkleBuilder} from "../utils/MerkleBuilder.sol";
import {RewardDistributor} from "../../src/RewardDistributor.sol";
import {TestUSDC} from "../../src/TestUSDC.sol";

/**
 * @dev Drives a {RewardDistributor} at random for the invariant test: proposals of trees of four accounts with
 * growing cumulative amounts, revocations, delay changes, time passing, funding, single and batch claims, and
 * claims that must fail (a wrong amount, another account's proof). Records what went in and out in ghost variables.
 */
contract RewardDistributorHandler is Test {
    uint256 public constant ACTORS = 4;

    RewardDistributor public immutable distributor;
    TestUSDC public immutable token;
    address public immutable tokenOwner;
    address public immutable admin;
    address public immutable publisher;

    address[ACTORS] public actors;

    /// @dev Total minted to the distributor and total it paid out.
    uint256 public ghostFunded;
    uint256 public ghostPaid;
    /// @dev Must stay 0: amounts paid by claims that should have reverted, claims that reverted although the
    /// distributor could pay them, and payouts that differed from the balance change.
    uint256 public ghostWrongPayouts;
    uint256 public ghostUnexpectedReverts;

    /// @dev The latest cumulative amount proposed per actor (never decreases).
    uint256[ACTORS] public latest;
    /// @dev Per proposed epoch: the actors' cumulative amounts and the tree.
    mapping(uint256 epoch => uint256[ACTORS]) internal _amounts;
    mapping(uint256 epoch => bytes32[]) internal _trees;
    uint256 public lastEpoch;
    /// @dev Kept by the handler and re-applied on every call, so that time only moves forward through {warp}.
    uint256 public currentTime;

    uint256 public successfulClaims;
    uint256 public proposals;
    uint256 public revocations;

    constructor(
        RewardDistributor distributor_,
        TestUSDC token_,
        address tokenOwner_,
        address admin_,
        address publisher_
    ) {
        distributor = distributor_;
        token = token_;
        tokenOwner = tokenOwner_;
        admin = admin_;
        publisher = publisher_;
        for (uint256 i; i < ACTORS; ++i) {
            actors[i] = vm.addr(0xA11CE + i);
        }
        currentTime = block.timestamp;
    }

    modifier atCurrentTime() {
        vm.warp(currentTime);
        _;
    }

    /// @dev The cumulative amount of actor `i` in the tree of `epoch` (0 for epoch 0).
    function amountOf(uint256 epoch, uint256 i) external view returns (uint256) {
        return _amounts[epoch][i];
    }

    function propose(uint256 seed, uint256 epochStep) external atCurrentTime {
        uint256 epoch = lastEpoch + bound(epochStep, 1, 3);
        address[] memory accounts = new address[](ACTORS);
        uint256[] memory amounts = new uint256[](ACTORS);
        for (uint256 i; i < ACTORS; ++i) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            if (r % 3 != 0) latest[i] += bound(r >> 8, 0, 1_000e6);
            accounts[i] = actors[i];
            amounts[i] = latest[i];
            _amounts[epoch][i] = latest[i];
        }
        bytes32[] memory tree = MerkleBuilder.build(accounts, amounts);
        _trees[epoch] = tree;
        vm.prank(publisher);
        distributor.proposeRoot(epoch, tree[0]);
        lastEpoch = epoch;
        ++proposals;
    }

    function revoke() external atCurrentTime {
        (,, uint64 validAt) = distributor.pendingRoot();
        if (validAt == 0) return;
        vm.prank(admin);
        distributor.revokePendingRoot();
        ++revocations;
    }

    function setDelay(uint256 delay) external atCurrentTime {
        vm.prank(admin);
        distributor.setRootDelay(uint64(bound(delay, 0, 2 days)));
    }

    function warp(uint256 secs) external {
        currentTime += bound(secs, 0, 2 days);
        vm.warp(currentTime);
    }

    function fund(uint256 amount) external atCurrentTime {
        amount = bound(amount, 0, 3_000e6);
        vm.prank(tokenOwner);
        token.mint(address(distributor), amount);
        ghostFunded += amount;
    }

    function claim(uint256 actorSeed, address caller) external atCurrentTime {
        (uint256 epoch, bytes32 root) = distributor.currentRoot();
        if (root == bytes32(0)) return;
        uint256 i = actorSeed % ACTORS;
        address account = actors[i];
        uint256 amount = _amounts[epoch][i];
        bytes32[] memory proof = MerkleBuilder.proof(_trees[epoch], account, amount);
        uint256 owed = amount > distributor.claimed(account) ? amount - distributor.claimed(account) : 0;
        uint256 before = token.balanceOf(account);
        vm.prank(caller);
        try distributor.claim(account, amount, proof) returns (uint256 paid) {
            ghostPaid += paid;
            if (paid != owed || token.balanceOf(account) - before != paid) ghostWrongPayouts += paid + 1;
            if (paid > 0) ++successfulClaims;
        } catch {
            if (owed <= token.balanceOf(address(distributor))) ++ghostUnexpectedReverts;
        }
    }

    function claimMany(uint256 mask) external atCurrentTime {
        (uint256 epoch, bytes32 root) = distributor.currentRoot();
        if (root == bytes32(0)) return;
        uint256 count;
        for (uint256 i; i < ACTORS; ++i) {
            if ((mask >> i) & 1 == 1) ++count;
        }
        RewardDistributor.Claim[] memory claims = new RewardDistributor.Claim[](count);
        uint256 owed;
        uint256 k;
        for (uint256 i; i < ACTORS; ++i) {
            if ((mask >> i) & 1 == 0) continue;
            uint256 amount = _amounts[epoch][i];
            claims[k++] =
                RewardDistributor.Claim(actors[i], amount, MerkleBuilder.proof(_trees[epoch], actors[i], amount));
            uint256 already = distributor.claimed(actors[i]);
            if (amount > already) owed += amount - already;
        }
        uint256 before = token.balanceOf(address(distributor));
        try distributor.claimMany(claims) returns (uint256 paid) {
            ghostPaid += paid;
            if (paid != owed || before - token.balanceOf(address(distributor)) != paid) ghostWrongPayouts += paid + 1;
            if (paid > 0) ++successfulClaims;
        } catch {
            if (owed <= before) ++ghostUnexpectedReverts;
        }
    }

    /// @dev Claims more than the tree gives, or with another actor's proof: must revert.
    function claimInvalid(uint256 actorSeed, uint256 otherSeed, uint256 extra) external atCurrentTime {
        (uint256 epoch, bytes32 root) = distributor.currentRoot();
        if (root == bytes32(0)) return;
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
        } catch {}
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "../utils/Test.sol";
import {Invariant} from "../utils/Invariant.sol";
import {RewardDistributor} from "../../src/RewardDistributor.sol";
import {TestUSDC} from "../../src/TestUSDC.sol";
import {RewardBlocklistToken} from "../mocks/RewardBlocklistToken.sol";
import {RewardDistributorHandler} from "./RewardDistributorHandler.sol";

/**
 * @dev Invariants of {RewardDistributor} under random proposals, revocations, suspensions, time, funding, sweeps, a
 * token blocklist and claims (runs and depth from foundry.toml). The handler predicts every outcome from its own
 * model and never reverts, so any revert is a bug of the handler: fail-on-revert is on.
 * `contracts/mutants/RewardDistributor-*.patch` show that each invariant below added with suspensions and sweeps can
 * fail (`script/mutants.sh`).
 */
/// forge-config: default.invariant.fail-on-revert = true
contract RewardDistributorInvariantTest is Test, Invariant {
    address internal constant OWNER = address(0x0123);
    address internal constant ADMIN = address(0xAD);
    address internal constant PUBLISHER = address(0xB0B1);

    RewardBlocklistToken internal token;
    RewardDistributor internal distributor;
    RewardDistributorHandler internal handler;

    function setUp() public {
        vm.warp(1_700_000_000);
        token = new RewardBlocklistToken(OWNER);
        TestUSDC otherToken = new TestUSDC(OWNER);
        distributor = new RewardDistributor(ADMIN, address(token), 1 days);
        handler = new RewardDistributorHandler(distributor, token, otherToken, OWNER, ADMIN, PUBLISHER);
        vm.startPrank(ADMIN);
        distributor.grantRole(distributor.PUBLISHER_ROLE(), PUBLISHER);
        vm.stopPrank();

        bytes4[] memory selectors = new bytes4[](22);
        selectors[0] = RewardDistributorHandler.propose.selector;
        selectors[1] = RewardDistributorHandler.proposeBelowClaimed.selector;
        selectors[2] = RewardDistributorHandler.revoke.selector;
        selectors[3] = RewardDistributorHandler.suspend.selector;
        selectors[4] = RewardDistributorHandler.setDelay.selector;
        selectors[5] = RewardDistributorHandler.warp.selector;
        selectors[6] = RewardDistributorHandler.warpToValidAt.selector;
        selectors[7] = RewardDistributorHandler.fund.selector;
        selectors[8] = RewardDistributorHandler.fundOther.selector;
        selectors[9] = RewardDistributorHandler.sweep.selector;
        selectors[10] = RewardDistributorHandler.setBlocked.selector;
        selectors[11] = RewardDistributorHandler.claim.selector;
        selectors[12] = RewardDistributorHandler.claimMany.selector;
        selectors[13] = RewardDistributorHandler.claimInvalid.selector;
        selectors[14] = RewardDistributorHandler.claimPending.selector;
        selectors[15] = RewardDistributorHandler.claimDead.selector;
        // Proposals, time, funding and valid claims twice as often as the rest.
        selectors[16] = RewardDistributorHandler.propose.selector;
        selectors[17] = RewardDistributorHandler.warp.selector;
        selectors[18] = RewardDistributorHandler.warpToValidAt.selector;
        selectors[19] = RewardDistributorHandler.fund.selector;
        selectors[20] = RewardDistributorHandler.claim.selector;
        selectors[21] = RewardDistributorHandler.claimMany.selector;
        targetContract(address(handler));
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    /// @dev The distributor holds exactly what was funded less what claims paid and sweeps took.
    function invariant_neverPaysMoreThanFunded() public view {
        uint256 funded = handler.ghostFunded();
        uint256 out = handler.ghostPaid() + handler.ghostSwept();
        assertTrue(funded >= out, "paid and swept more than funded");
        assertEq(token.balanceOf(address(distributor)), funded - out, "balance = funded - paid - swept");
    }

    /// @dev No account's claimed amount exceeds its cumulative amount in the latest matured root, and the claimed
    /// amounts add up to what was paid and to totalClaimed.
    function invariant_claimedNeverExceedsLatestCumulative() public view {
        uint256 epoch = handler.latestEpoch();
        uint256 sum;
        for (uint256 i; i < handler.ACTORS(); ++i) {
            address account = handler.actors(i);
            uint256 claimed = distributor.claimed(account);
            assertTrue(claimed <= handler.amountOf(epoch, i), "claimed > cumulative of the latest matured root");
            assertTrue(claimed <= handler.latest(i), "claimed > latest proposed cumulative");
            assertEq(token.balanceOf(account), claimed, "an actor's balance is what it claimed");
            sum += claimed;
        }
        assertEq(sum, handler.ghostPaid(), "sum of claimed = paid");
        assertEq(distributor.totalClaimed(), sum, "totalClaimed = sum of claimed");
    }

    /// @dev Claims pay exactly what is owed and sweeps exactly the excess; every call succeeds or reverts, with the
    /// expected error, as the model says (a blocklisted or unfunded entry of a batch is skipped, not reverted).
    function invariant_paysExactlyWhatIsOwed() public view {
        assertEq(handler.ghostWrongPayouts(), 0, "a claim or a sweep paid a wrong amount");
        assertEq(handler.ghostUnexpectedOutcomes(), 0, "a call did not succeed or revert as the model says");
    }

    /// @dev The latest matured epoch never exceeds the last proposed one.
    function invariant_claimableEpochIsAProposedOne() public view {
        (uint256 epoch,,,) = distributor.currentRoot();
        assertTrue(epoch <= handler.lastEpoch(), "claimable epoch was never proposed");
        assertEq(distributor.lastProposedEpoch(), handler.lastEpoch(), "last epoch");
    }

    /// @dev A root is never claimable before the `validAt` the handler computed at its proposal: not in the views,
    /// and no claim against it pays.
    function invariant_rootNeverClaimableBeforeValidAt() public view {
        assertEq(handler.ghostClaimableBeforeValidAt(), 0, "a root was claimable before its validAt");
    }

    /// @dev A revoked, replaced or suspended root is never claimable: not in the views, and no claim against it pays.
    function invariant_revokedOrSuspendedRootNeverClaimable() public view {
        assertEq(handler.ghostDeadRootClaimable(), 0, "a revoked, replaced or suspended root was claimable");
    }

    /// @dev totalClaimed never exceeds the proposed total of the latest matured root (as proposed, and as the
    /// distributor recorded it).
    function invariant_claimedNeverExceedsProposedTotal() public view {
        assertEq(handler.ghostClaimedAboveTotal(), 0, "totalClaimed exceeded the claimable root's total");
        uint256 epoch = handler.latestEpoch();
        if (epoch != 0) {
            assertTrue(distributor.totalClaimed() <= handler.totalOf(epoch), "totalClaimed > total");
        }
    }

    /// @dev A sweep never takes what a root can still pay: after it, the balance is at least
    /// `max(current total, pending total) - totalClaimed`.
    function invariant_sweepNeverTakesWhatARootCanStillPay() public view {
        assertEq(handler.ghostSweepShortfall(), 0, "a sweep left less than the roots can still pay");
    }
}

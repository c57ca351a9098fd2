// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "../utils/Test.sol";
import {Invariant} from "../utils/Invariant.sol";
import {RewardDistributor} from "../../src/RewardDistributor.sol";
import {TestUSDC} from "../../src/TestUSDC.sol";
import {RewardDistributorHandler} from "./RewardDistributorHandler.sol";

/// @dev Invariants of {RewardDistributor} under random proposals, revocations, time, funding and claims (runs and
/// depth from foundry.toml).
contract RewardDistributorInvariantTest is Test, Invariant {
    address internal constant OWNER = address(0x0123);
    address internal constant ADMIN = address(0xAD);
    address internal constant PUBLISHER = address(0xB0B1);

    TestUSDC internal token;
    RewardDistributor internal distributor;
    RewardDistributorHandler internal handler;

    function setUp() public {
        vm.warp(1_700_000_000);
        token = new TestUSDC(OWNER);
        distributor = new RewardDistributor(ADMIN, address(token), 1 days);
        handler = new RewardDistributorHandler(distributor, token, OWNER, ADMIN, PUBLISHER);
        vm.startPrank(ADMIN);
        distributor.grantRole(distributor.PUBLISHER_ROLE(), PUBLISHER);
        vm.stopPrank();

        bytes4[] memory selectors = new bytes4[](11);
        selectors[0] = RewardDistributorHandler.propose.selector;
        selectors[1] = RewardDistributorHandler.revoke.selector;
        selectors[2] = RewardDistributorHandler.setDelay.selector;
        selectors[3] = RewardDistributorHandler.warp.selector;
        selectors[4] = RewardDistributorHandler.fund.selector;
        selectors[5] = RewardDistributorHandler.claim.selector;
        selectors[6] = RewardDistributorHandler.claimMany.selector;
        selectors[7] = RewardDistributorHandler.claimInvalid.selector;
        // Time passes and valid claims are made twice as often as the rest.
        selectors[8] = RewardDistributorHandler.warp.selector;
        selectors[9] = RewardDistributorHandler.claim.selector;
        selectors[10] = RewardDistributorHandler.claimMany.selector;
        targetContract(address(handler));
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    /// @dev The distributor never pays out more than it was funded, and holds exactly the difference.
    function invariant_neverPaysMoreThanFunded() public view {
        uint256 funded = handler.ghostFunded();
        uint256 paid = handler.ghostPaid();
        assertTrue(funded >= paid, "paid more than funded");
        assertEq(token.balanceOf(address(distributor)), funded - paid, "balance = funded - paid");
    }

    /// @dev No account's claimed amount exceeds its cumulative amount in the claimable root, and the claimed amounts
    /// add up to what was paid.
    function invariant_claimedNeverExceedsLatestCumulative() public view {
        (uint256 epoch, bytes32 root) = distributor.currentRoot();
        uint256 sum;
        for (uint256 i; i < handler.ACTORS(); ++i) {
            address account = handler.actors(i);
            uint256 claimed = distributor.claimed(account);
            uint256 cumulative = root == bytes32(0) ? 0 : handler.amountOf(epoch, i);
            assertTrue(claimed <= cumulative, "claimed > cumulative of the claimable root");
            assertTrue(claimed <= handler.latest(i), "claimed > latest proposed cumulative");
            assertEq(token.balanceOf(account), claimed, "an actor's balance is what it claimed");
            sum += claimed;
        }
        assertEq(sum, handler.ghostPaid(), "sum of claimed = paid");
    }

    /// @dev Claims pay exactly what is owed, invalid ones pay nothing, and a funded claim never reverts.
    function invariant_claimsPayExactlyWhatIsOwed() public view {
        assertEq(handler.ghostWrongPayouts(), 0, "a claim paid a wrong amount");
        assertEq(handler.ghostUnexpectedReverts(), 0, "a funded valid claim reverted");
    }

    /// @dev The claimable epoch never exceeds the last proposed one.
    function invariant_claimableEpochIsAProposedOne() public view {
        (uint256 epoch,) = distributor.currentRoot();
        assertTrue(epoch <= handler.lastEpoch(), "claimable epoch was never proposed");
        assertEq(distributor.lastProposedEpoch(), handler.lastEpoch(), "last epoch");
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "./utils/Test.sol";
import {MerkleBuilder} from "./utils/MerkleBuilder.sol";
import {RewardDistributor} from "../src/RewardDistributor.sol";
import {TestUSDC} from "../src/TestUSDC.sol";
import {RewardBlocklistToken} from "./mocks/RewardBlocklistToken.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @dev Cheatcodes missing from ./utils/Test.sol's `Vm` (same address): log recording, to check that a call emitted
/// nothing, and `expectEmit` without an emitter, for a constructor's event.
interface VmExtra {
    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory);
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData) external;
}

/// @dev Shared set-up: a funded distributor with a one-day delay, an admin and a publisher.
abstract contract RewardDistributorBase is Test {
    VmExtra internal constant vmx = VmExtra(VM_ADDRESS);

    uint64 internal constant START = 1_700_000_000;
    uint64 internal constant DELAY = 1 days;
    uint256 internal constant FUNDING = 1_000_000e6;
    uint256 internal constant ANY_TOTAL = type(uint128).max;

    address internal owner = address(0x0123);
    address internal admin = address(0xAD);
    address internal publisher = address(0xB0B1);
    address internal alice = address(0xA11CE);
    address internal bob = address(0xB0B);
    address internal carol = address(0xCA401);
    address internal relayer = address(0x7E1A7E);

    TestUSDC internal token;
    RewardDistributor internal distributor;
    bytes32 internal adminRole;
    bytes32 internal publisherRole;

    function setUp() public virtual {
        vm.warp(START);
        token = deployToken();
        distributor = new RewardDistributor(admin, address(token), DELAY);
        adminRole = distributor.DEFAULT_ADMIN_ROLE();
        publisherRole = distributor.PUBLISHER_ROLE();
        vm.prank(admin);
        distributor.grantRole(publisherRole, publisher);
        fund(FUNDING);
    }

    /// @dev The reward token; a test contract may deploy a variant.
    function deployToken() internal virtual returns (TestUSDC) {
        return new TestUSDC(owner);
    }

    function fund(uint256 amount) internal {
        vm.prank(owner);
        token.mint(address(distributor), amount);
    }

    function accounts3() internal view returns (address[] memory list) {
        list = new address[](3);
        (list[0], list[1], list[2]) = (alice, bob, carol);
    }

    function amounts3(uint256 a, uint256 b, uint256 c) internal pure returns (uint256[] memory list) {
        list = new uint256[](3);
        (list[0], list[1], list[2]) = (a, b, c);
    }

    function tree3(uint256 a, uint256 b, uint256 c) internal view returns (bytes32[] memory) {
        return MerkleBuilder.build(accounts3(), amounts3(a, b, c));
    }

    /// @dev Proposes `root` with the largest total, for the tests where the total plays no part.
    function propose(uint256 epoch, bytes32 root) internal {
        propose(epoch, root, ANY_TOTAL);
    }

    function propose(uint256 epoch, bytes32 root, uint256 total) internal {
        vm.prank(publisher);
        distributor.proposeRoot(epoch, root, total);
    }

    function proposeAndMature(uint256 epoch, bytes32 root) internal {
        proposeAndMature(epoch, root, ANY_TOTAL);
    }

    function proposeAndMature(uint256 epoch, bytes32 root, uint256 total) internal {
        propose(epoch, root, total);
        vm.warp(block.timestamp + DELAY);
    }

    function assertCurrent(uint256 epoch, bytes32 root, string memory err) internal view {
        (uint256 e, bytes32 r,,) = distributor.currentRoot();
        assertEq(e, epoch, string.concat(err, ": current epoch"));
        assertEq(r, root, string.concat(err, ": current root"));
    }

    function assertCurrent(uint256 epoch, bytes32 root, uint256 total, bool isSuspended, string memory err)
        internal
        view
    {
        assertCurrent(epoch, root, err);
        (,, uint256 t, bool s) = distributor.currentRoot();
        assertEq(t, total, string.concat(err, ": current total"));
        assertEq(s, isSuspended, string.concat(err, ": current suspended"));
    }

    function assertPending(uint256 epoch, bytes32 root, uint256 validAt, string memory err) internal view {
        (uint256 e, bytes32 r,, uint64 v) = distributor.pendingRoot();
        assertEq(e, epoch, string.concat(err, ": pending epoch"));
        assertEq(r, root, string.concat(err, ": pending root"));
        assertEq(v, validAt, string.concat(err, ": pending validAt"));
    }

    function assertPending(uint256 epoch, bytes32 root, uint256 total, uint256 validAt, string memory err)
        internal
        view
    {
        assertPending(epoch, root, validAt, err);
        (,, uint256 t,) = distributor.pendingRoot();
        assertEq(t, total, string.concat(err, ": pending total"));
    }

    function suspend() internal {
        vm.prank(admin);
        distributor.suspendCurrentRoot();
    }

    function claimOf(bytes32[] memory tree, address account, uint256 amount) internal returns (uint256) {
        return distributor.claim(account, amount, MerkleBuilder.proof(tree, account, amount));
    }

    function unauthorized(address account, bytes32 role) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, account, role);
    }

    function invalidProof(address account, uint256 amount) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(RewardDistributor.RewardDistributorInvalidProof.selector, account, amount);
    }
}

contract RewardDistributorTest is RewardDistributorBase {
    // ---------------------------------------------------------------- constructor

    function test_constructor_setsTokenDelayAndAdmin() public view {
        assertEq(distributor.token(), address(token), "token");
        assertEq(distributor.rootDelay(), DELAY, "rootDelay");
        assertEq(distributor.MAX_ROOT_DELAY(), 30 days, "max delay");
        assertEq(publisherRole, keccak256("PUBLISHER_ROLE"), "publisher role id");
        assertTrue(distributor.hasRole(adminRole, admin), "admin has the admin role");
        assertFalse(distributor.hasRole(publisherRole, admin), "admin is not a publisher");
        assertFalse(distributor.hasRole(adminRole, address(this)), "deployer has no role");
        assertCurrent(0, bytes32(0), 0, false, "fresh");
        assertPending(0, bytes32(0), 0, 0, "fresh");
        assertEq(distributor.lastProposedEpoch(), 0, "no epoch");
        assertEq(distributor.claimed(alice), 0, "nothing claimed");
        assertEq(distributor.totalClaimed(), 0, "nothing claimed in all");
    }

    function test_constructor_emitsRootDelayChanged() public {
        vmx.expectEmit(false, false, false, true);
        emit RewardDistributor.RootDelayChanged(0, 7 days);
        RewardDistributor other = new RewardDistributor(admin, address(token), 7 days);
        assertEq(other.rootDelay(), 7 days, "delay");
    }

    function test_constructor_acceptsZeroAndMaxDelay() public {
        assertEq(new RewardDistributor(admin, address(token), 0).rootDelay(), 0, "zero");
        assertEq(new RewardDistributor(admin, address(token), 30 days).rootDelay(), 30 days, "max");
    }

    function test_constructor_revertsOnZeroAdmin() public {
        vm.expectRevert(RewardDistributor.RewardDistributorZeroAddress.selector);
        new RewardDistributor(address(0), address(token), DELAY);
    }

    function test_constructor_revertsOnZeroToken() public {
        vm.expectRevert(RewardDistributor.RewardDistributorZeroAddress.selector);
        new RewardDistributor(admin, address(0), DELAY);
    }

    function test_constructor_revertsOnTooLongDelay() public {
        vm.expectRevert(RewardDistributor.RewardDistributorDelayTooLong.selector);
        new RewardDistributor(admin, address(token), 30 days + 1);
    }

    // ---------------------------------------------------------------- setRootDelay

    function test_setRootDelay_updatesAndEmits() public {
        vm.expectEmit(false, false, false, true, address(distributor));
        emit RewardDistributor.RootDelayChanged(DELAY, 2 hours);
        vm.prank(admin);
        distributor.setRootDelay(2 hours);
        assertEq(distributor.rootDelay(), 2 hours, "delay");

        vm.prank(admin);
        distributor.setRootDelay(30 days);
        assertEq(distributor.rootDelay(), 30 days, "max delay accepted");
    }

    function test_setRootDelay_appliesToLaterProposalsOnly() public {
        bytes32 root = tree3(1, 2, 3)[0];
        propose(1, root);
        vm.prank(admin);
        distributor.setRootDelay(0);
        assertPending(1, root, START + DELAY, "pending keeps its validAt");
        vm.warp(START + DELAY - 1);
        assertCurrent(0, bytes32(0), "not yet");

        vm.warp(START + DELAY);
        propose(2, tree3(4, 5, 6)[0]);
        assertCurrent(2, tree3(4, 5, 6)[0], "zero delay: claimable at once");
    }

    function test_setRootDelay_revertsAboveMax() public {
        vm.prank(admin);
        vm.expectRevert(RewardDistributor.RewardDistributorDelayTooLong.selector);
        distributor.setRootDelay(30 days + 1);
    }

    function test_setRootDelay_revertsForNonAdmin() public {
        vm.prank(publisher);
        vm.expectRevert(unauthorized(publisher, adminRole));
        distributor.setRootDelay(0);
    }

    // ---------------------------------------------------------------- proposeRoot

    function test_proposeRoot_setsPendingAndEmits() public {
        bytes32 root = tree3(1, 2, 3)[0];
        vm.expectEmit(true, false, false, true, address(distributor));
        emit RewardDistributor.RootProposed(1, root, 6, START + DELAY);
        propose(1, root, 6);

        assertPending(1, root, 6, START + DELAY, "proposed");
        assertCurrent(0, bytes32(0), 0, false, "not claimable yet");
        assertEq(distributor.lastProposedEpoch(), 1, "last epoch");
    }

    function test_proposeRoot_becomesClaimableExactlyAtValidAt() public {
        bytes32 root = tree3(1, 2, 3)[0];
        propose(1, root);
        vm.warp(START + DELAY - 1);
        assertCurrent(0, bytes32(0), "one second early");
        assertPending(1, root, START + DELAY, "still pending");

        vm.warp(START + DELAY);
        assertCurrent(1, root, ANY_TOTAL, false, "at validAt");
        assertPending(0, bytes32(0), 0, 0, "nothing pending once matured");
    }

    function test_proposeRoot_promotesAMaturedPendingRoot() public {
        bytes32 root1 = tree3(1, 2, 3)[0];
        bytes32 root2 = tree3(10, 20, 30)[0];
        proposeAndMature(1, root1);

        vmx.recordLogs();
        propose(2, root2);
        assertEq(vmx.getRecordedLogs().length, 1, "only RootProposed: a matured root is not replaced");

        assertCurrent(1, root1, "epoch 1 stays claimable while 2 is pending");
        assertPending(2, root2, block.timestamp + DELAY, "epoch 2 pending");
        vm.warp(block.timestamp + DELAY);
        assertCurrent(2, root2, "epoch 2 matured");

        // A third proposal promotes epoch 2; epoch 2 stays claimable while epoch 3 is pending.
        propose(3, tree3(11, 21, 31)[0]);
        assertCurrent(2, root2, "epoch 2 promoted");
    }

    function test_proposeRoot_replacesAPendingRootThatHasNotMatured() public {
        bytes32 root1 = tree3(1, 2, 3)[0];
        bytes32 root2 = tree3(10, 20, 30)[0];
        propose(1, root1);
        vm.warp(START + DELAY - 1);

        vm.expectEmit(true, false, false, true, address(distributor));
        emit RewardDistributor.RootReplaced(1, root1);
        vm.expectEmit(true, false, false, true, address(distributor));
        emit RewardDistributor.RootProposed(2, root2, ANY_TOTAL, uint64(block.timestamp + DELAY));
        propose(2, root2);

        vm.warp(START + DELAY);
        assertCurrent(0, bytes32(0), "the replaced root never becomes claimable");
        vm.warp(START + 2 * DELAY - 1);
        assertCurrent(2, root2, "the new root after its own delay");
    }

    function test_proposeRoot_replacingKeepsTheCurrentRoot() public {
        bytes32 root1 = tree3(1, 2, 3)[0];
        proposeAndMature(1, root1);
        propose(2, tree3(10, 20, 30)[0]); // promotes epoch 1
        bytes32 root3 = tree3(11, 21, 31)[0];
        propose(3, root3); // replaces epoch 2 before it matured
        assertCurrent(1, root1, "epoch 1 still claimable");
        vm.warp(block.timestamp + DELAY);
        assertCurrent(3, root3, "epoch 3");
    }

    function test_proposeRoot_epochsMayJump() public {
        propose(5, tree3(1, 2, 3)[0]);
        propose(100, tree3(1, 2, 4)[0]);
        assertEq(distributor.lastProposedEpoch(), 100, "last epoch");
    }

    function test_proposeRoot_revertsForNonPublisher() public {
        bytes32 root = tree3(1, 2, 3)[0];
        vm.prank(alice);
        vm.expectRevert(unauthorized(alice, publisherRole));
        distributor.proposeRoot(1, root, 0);

        vm.prank(admin); // the admin is not a publisher unless it grants itself the role
        vm.expectRevert(unauthorized(admin, publisherRole));
        distributor.proposeRoot(1, root, 0);
    }

    function test_proposeRoot_revertsOnZeroRoot() public {
        vm.prank(publisher);
        vm.expectRevert(RewardDistributor.RewardDistributorZeroRoot.selector);
        distributor.proposeRoot(1, bytes32(0), 0);
    }

    function test_proposeRoot_revertsOnEpochZero() public {
        vm.prank(publisher);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.RewardDistributorEpochNotIncreasing.selector, 0, 0));
        distributor.proposeRoot(0, bytes32(uint256(1)), 0);
    }

    function test_proposeRoot_revertsOnSameOrLowerEpoch() public {
        propose(3, tree3(1, 2, 3)[0]);
        vm.startPrank(publisher);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.RewardDistributorEpochNotIncreasing.selector, 3, 3));
        distributor.proposeRoot(3, bytes32(uint256(1)), 0);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.RewardDistributorEpochNotIncreasing.selector, 2, 3));
        distributor.proposeRoot(2, bytes32(uint256(1)), 0);
        vm.stopPrank();

        vm.warp(START + DELAY); // also once epoch 3 is claimable
        vm.prank(publisher);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.RewardDistributorEpochNotIncreasing.selector, 3, 3));
        distributor.proposeRoot(3, bytes32(uint256(1)), 0);
    }

    function test_proposeRoot_revertsOnARevokedEpochNumber() public {
        propose(1, tree3(1, 2, 3)[0]);
        vm.prank(admin);
        distributor.revokePendingRoot();
        vm.prank(publisher);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.RewardDistributorEpochNotIncreasing.selector, 1, 1));
        distributor.proposeRoot(1, tree3(1, 2, 4)[0], 0);
    }

    function test_proposeRoot_revertsOnEpochBeyond40Bits() public {
        uint256 epoch = uint256(type(uint40).max) + 1;
        vm.prank(publisher);
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 40, epoch));
        distributor.proposeRoot(epoch, bytes32(uint256(1)), 0);

        propose(type(uint40).max, bytes32(uint256(1)));
        assertEq(distributor.lastProposedEpoch(), type(uint40).max, "largest epoch");
    }

    function test_proposeRoot_revertsOnTotalBeyond128Bits() public {
        uint256 total = uint256(type(uint128).max) + 1;
        vm.prank(publisher);
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 128, total));
        distributor.proposeRoot(1, bytes32(uint256(1)), total);
    }

    function test_proposeRoot_revertsWhenValidAtExceeds40Bits() public {
        uint256 last = type(uint40).max; // the last second a root can become claimable
        vm.warp(last - DELAY);
        propose(1, bytes32(uint256(1)));
        assertPending(1, bytes32(uint256(1)), last, "matures at the last second");

        vm.warp(last - DELAY + 1);
        vm.prank(publisher);
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 40, last + 1));
        distributor.proposeRoot(2, bytes32(uint256(2)), 0);
    }

    function test_proposeRoot_recordsTheTotalWithTheRoot() public {
        bytes32[] memory tree1 = tree3(1e6, 2e6, 3e6);
        bytes32[] memory tree2 = tree3(4e6, 5e6, 6e6);
        propose(1, tree1[0], 6e6);
        assertPending(1, tree1[0], 6e6, START + DELAY, "pending");
        vm.warp(START + DELAY);
        assertCurrent(1, tree1[0], 6e6, false, "matured");
        propose(2, tree2[0], 15e6); // promotes epoch 1
        assertCurrent(1, tree1[0], 6e6, false, "promoted");
        assertPending(2, tree2[0], 15e6, block.timestamp + DELAY, "next pending");
        propose(3, tree1[0], 7e6); // replaces epoch 2, in the same entry
        assertPending(3, tree1[0], 7e6, block.timestamp + DELAY, "replacement");
        assertCurrent(1, tree1[0], 6e6, false, "current kept");
    }

    function test_proposeRoot_revertsOnATotalBelowTotalClaimed() public {
        bytes32[] memory tree1 = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree1[0], 6e6);
        claimOf(tree1, alice, 1e6);
        claimOf(tree1, carol, 3e6);

        bytes32[] memory tree2 = tree3(1e6, 2e6, 4e6);
        vm.prank(publisher);
        vm.expectRevert(
            abi.encodeWithSelector(RewardDistributor.RewardDistributorTotalBelowClaimed.selector, 4e6 - 1, 4e6)
        );
        distributor.proposeRoot(2, tree2[0], 4e6 - 1);

        propose(2, tree2[0], 4e6); // exactly what was claimed is a possible total
        assertPending(2, tree2[0], 4e6, block.timestamp + DELAY, "accepted");
    }

    // ---------------------------------------------------------------- revokePendingRoot

    function test_revokePendingRoot_revokesAndEmits() public {
        bytes32 root1 = tree3(1, 2, 3)[0];
        bytes32 root2 = tree3(10, 20, 30)[0];
        proposeAndMature(1, root1);
        propose(2, root2);

        vm.expectEmit(true, false, false, true, address(distributor));
        emit RewardDistributor.RootRevoked(2, root2);
        vm.prank(admin);
        distributor.revokePendingRoot();

        assertPending(0, bytes32(0), 0, "nothing pending");
        assertCurrent(1, root1, "current unchanged");
        vm.warp(block.timestamp + 30 days);
        assertCurrent(1, root1, "the revoked root never becomes claimable");
        assertEq(distributor.lastProposedEpoch(), 2, "the revoked epoch stays used");

        // The next proposal is neither a replacement nor blocked.
        bytes32 root3 = tree3(11, 21, 31)[0];
        vmx.recordLogs();
        propose(3, root3);
        assertEq(vmx.getRecordedLogs().length, 1, "only RootProposed");
        vm.warp(block.timestamp + DELAY);
        assertCurrent(3, root3, "epoch 3");
    }

    function test_revokePendingRoot_worksUntilTheLastSecond() public {
        propose(1, tree3(1, 2, 3)[0]);
        vm.warp(START + DELAY - 1);
        vm.prank(admin);
        distributor.revokePendingRoot();
        vm.warp(START + DELAY);
        assertCurrent(0, bytes32(0), "revoked");
    }

    function test_revokePendingRoot_revertsWhenNothingPending() public {
        vm.startPrank(admin);
        vm.expectRevert(RewardDistributor.RewardDistributorNothingPending.selector);
        distributor.revokePendingRoot();
        vm.stopPrank();

        propose(1, tree3(1, 2, 3)[0]);
        vm.startPrank(admin);
        distributor.revokePendingRoot();
        vm.expectRevert(RewardDistributor.RewardDistributorNothingPending.selector);
        distributor.revokePendingRoot();
        vm.stopPrank();
    }

    function test_revokePendingRoot_revertsOnceMatured() public {
        propose(1, tree3(1, 2, 3)[0]);
        vm.warp(START + DELAY);
        vm.prank(admin);
        vm.expectRevert(RewardDistributor.RewardDistributorRootAlreadyMatured.selector);
        distributor.revokePendingRoot();
    }

    function test_revokePendingRoot_revertsAfterPromotion() public {
        proposeAndMature(1, tree3(1, 2, 3)[0]);
        propose(2, tree3(4, 5, 6)[0]);
        vm.warp(block.timestamp + DELAY);
        propose(3, tree3(7, 8, 9)[0]); // promotes 2
        vm.prank(admin);
        distributor.revokePendingRoot(); // revokes 3, the only pending one
        vm.prank(admin);
        vm.expectRevert(RewardDistributor.RewardDistributorNothingPending.selector);
        distributor.revokePendingRoot();
        assertCurrent(2, tree3(4, 5, 6)[0], "epoch 2 stays");
    }

    function test_revokePendingRoot_revertsWithZeroDelay() public {
        vm.prank(admin);
        distributor.setRootDelay(0);
        propose(1, tree3(1, 2, 3)[0]);
        vm.prank(admin);
        vm.expectRevert(RewardDistributor.RewardDistributorRootAlreadyMatured.selector);
        distributor.revokePendingRoot();
    }

    function test_revokePendingRoot_revertsForNonAdmin() public {
        propose(1, tree3(1, 2, 3)[0]);
        vm.prank(publisher);
        vm.expectRevert(unauthorized(publisher, adminRole));
        distributor.revokePendingRoot();
    }

    // ---------------------------------------------------------------- claim

    function test_claim_revertsWithoutRoot() public {
        bytes32[] memory proof;
        vm.expectRevert(RewardDistributor.RewardDistributorNoRoot.selector);
        distributor.claim(alice, 1, proof);

        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        propose(1, tree[0]);
        vm.expectRevert(RewardDistributor.RewardDistributorNoRoot.selector);
        distributor.claim(alice, 1e6, MerkleBuilder.proof(tree, alice, 1e6));
    }

    function test_claim_paysTheAccountWhoeverCalls() public {
        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree[0]);
        bytes32[] memory proof = MerkleBuilder.proof(tree, bob, 2e6);

        vm.expectEmit(true, true, false, true, address(token));
        emit IERC20.Transfer(address(distributor), bob, 2e6);
        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Claimed(bob, 1, 2e6, 2e6);
        vm.prank(relayer);
        uint256 paid = distributor.claim(bob, 2e6, proof);

        assertEq(paid, 2e6, "paid");
        assertEq(token.balanceOf(bob), 2e6, "bob's balance");
        assertEq(token.balanceOf(relayer), 0, "the caller gets nothing");
        assertEq(token.balanceOf(address(distributor)), FUNDING - 2e6, "distributor balance");
        assertEq(distributor.claimed(bob), 2e6, "claimed");
        assertEq(distributor.totalClaimed(), 2e6, "total claimed");
    }

    function test_claim_sameAmountAgainPaysNothingAndEmitsNothing() public {
        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree[0]);
        bytes32[] memory proof = MerkleBuilder.proof(tree, alice, 1e6);
        distributor.claim(alice, 1e6, proof);

        vmx.recordLogs();
        assertEq(distributor.claim(alice, 1e6, proof), 0, "nothing to pay");
        assertEq(vmx.getRecordedLogs().length, 0, "no event, no transfer");
        assertEq(token.balanceOf(alice), 1e6, "balance unchanged");
        assertEq(distributor.claimed(alice), 1e6, "claimed unchanged");
    }

    function test_claim_laterEpochPaysTheDifference() public {
        bytes32[] memory tree1 = tree3(1e6, 2e6, 3e6);
        bytes32[] memory tree2 = tree3(4e6, 2e6, 3e6);
        proposeAndMature(1, tree1[0]);
        distributor.claim(alice, 1e6, MerkleBuilder.proof(tree1, alice, 1e6));
        proposeAndMature(2, tree2[0]);

        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Claimed(alice, 2, 3e6, 4e6);
        assertEq(distributor.claim(alice, 4e6, MerkleBuilder.proof(tree2, alice, 4e6)), 3e6, "difference");
        assertEq(token.balanceOf(alice), 4e6, "balance = cumulative");

        // Bob skipped epoch 1's claim and gets everything at once from epoch 2's (promoted) root.
        propose(3, tree3(5e6, 6e6, 7e6)[0]);
        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Claimed(bob, 2, 2e6, 2e6);
        distributor.claim(bob, 2e6, MerkleBuilder.proof(tree2, bob, 2e6));
    }

    function test_claim_aSmallerCumulativeAmountPaysNothing() public {
        bytes32[] memory tree1 = tree3(5e6, 2e6, 3e6);
        bytes32[] memory tree2 = tree3(4e6, 2e6, 3e6); // the publisher lowered alice's amount
        proposeAndMature(1, tree1[0]);
        distributor.claim(alice, 5e6, MerkleBuilder.proof(tree1, alice, 5e6));
        proposeAndMature(2, tree2[0]);
        assertEq(distributor.claim(alice, 4e6, MerkleBuilder.proof(tree2, alice, 4e6)), 0, "nothing");
        assertEq(distributor.claimed(alice), 5e6, "claimed keeps the higher amount");
    }

    function test_claim_zeroAmountLeafPaysNothing() public {
        bytes32[] memory tree = tree3(0, 2e6, 3e6);
        proposeAndMature(1, tree[0]);
        assertEq(distributor.claim(alice, 0, MerkleBuilder.proof(tree, alice, 0)), 0, "zero");
    }

    function test_claim_revertsOnWrongAmount() public {
        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree[0]);
        bytes32[] memory proof = MerkleBuilder.proof(tree, alice, 1e6);
        vm.expectRevert(invalidProof(alice, 1e6 + 1));
        distributor.claim(alice, 1e6 + 1, proof);
    }

    function test_claim_revertsOnAnotherAccountsProof() public {
        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree[0]);
        bytes32[] memory bobProof = MerkleBuilder.proof(tree, bob, 2e6);
        vm.expectRevert(invalidProof(alice, 2e6));
        distributor.claim(alice, 2e6, bobProof);
        vm.expectRevert(invalidProof(relayer, 2e6));
        distributor.claim(relayer, 2e6, bobProof);
    }

    function test_claim_revertsOnTamperedOrEmptyProof() public {
        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree[0]);
        bytes32[] memory proof = MerkleBuilder.proof(tree, carol, 3e6);
        proof[proof.length - 1] = bytes32(uint256(proof[proof.length - 1]) ^ 1);
        vm.expectRevert(invalidProof(carol, 3e6));
        distributor.claim(carol, 3e6, proof);

        bytes32[] memory empty;
        vm.expectRevert(invalidProof(carol, 3e6));
        distributor.claim(carol, 3e6, empty);
    }

    function test_claim_revertsWithTheRootItselfAsLeaf() public {
        // An inner node is not a leaf: claiming with a proof of an inner node must fail.
        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree[0]);
        bytes32[] memory proof = new bytes32[](1);
        proof[0] = tree[2];
        vm.expectRevert(invalidProof(alice, uint256(tree[1])));
        distributor.claim(alice, uint256(tree[1]), proof);
    }

    function test_claim_revertsWithALeafOfAnOlderEpochOnceANewerRootMatured() public {
        bytes32[] memory tree1 = tree3(1e6, 2e6, 3e6);
        bytes32[] memory tree2 = tree3(4e6, 5e6, 6e6);
        proposeAndMature(1, tree1[0]);
        bytes32[] memory oldProof = MerkleBuilder.proof(tree1, alice, 1e6);
        propose(2, tree2[0]);
        assertEq(distributor.claim(alice, 1e6, oldProof), 1e6, "epoch 1 while 2 is pending");
        vm.warp(block.timestamp + DELAY);
        bytes32[] memory oldBobProof = MerkleBuilder.proof(tree1, bob, 2e6);
        vm.expectRevert(invalidProof(bob, 2e6));
        distributor.claim(bob, 2e6, oldBobProof);
    }

    function test_claim_revertsWithALeafOfARevokedOrReplacedRoot() public {
        bytes32[] memory tree1 = tree3(1e6, 2e6, 3e6);
        bytes32[] memory evil = tree3(900e6, 2e6, 3e6);
        bytes32[] memory tree3_ = tree3(2e6, 2e6, 3e6);
        proposeAndMature(1, tree1[0]);
        propose(2, evil[0]);
        vm.prank(admin);
        distributor.revokePendingRoot();
        vm.warp(block.timestamp + DELAY);
        bytes32[] memory evilProof = MerkleBuilder.proof(evil, alice, 900e6);
        vm.expectRevert(invalidProof(alice, 900e6));
        distributor.claim(alice, 900e6, evilProof);

        propose(3, evil[0]);
        propose(4, tree3_[0]); // replaces 3 before it matured
        vm.warp(block.timestamp + DELAY);
        vm.expectRevert(invalidProof(alice, 900e6));
        distributor.claim(alice, 900e6, evilProof);
        assertEq(distributor.claim(alice, 2e6, MerkleBuilder.proof(tree3_, alice, 2e6)), 2e6, "epoch 4");
    }

    function test_claim_revertsWhenUnderfundedAndSucceedsOnceFunded() public {
        RewardDistributor empty = new RewardDistributor(admin, address(token), 0);
        vm.prank(admin);
        empty.grantRole(publisherRole, publisher);
        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        vm.prank(publisher);
        empty.proposeRoot(1, tree[0], 6e6);
        bytes32[] memory proof = MerkleBuilder.proof(tree, carol, 3e6);

        vm.prank(owner);
        token.mint(address(empty), 1e6);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientBalance.selector, address(empty), 1e6, 3e6)
        );
        empty.claim(carol, 3e6, proof);
        assertEq(empty.claimed(carol), 0, "nothing recorded");

        vm.prank(owner);
        token.mint(address(empty), 2e6); // anyone funding by transfer works the same
        assertEq(empty.claim(carol, 3e6, proof), 3e6, "paid once funded");
        assertEq(token.balanceOf(address(empty)), 0, "drained exactly");
    }

    function test_claim_singleLeafTreeWithEmptyProof() public {
        bytes32 root = MerkleBuilder.leaf(alice, 7e6);
        proposeAndMature(1, root);
        bytes32[] memory proof;
        assertEq(distributor.claim(alice, 7e6, proof), 7e6, "single leaf");
    }

    /// @dev Root and proofs printed by `contracts/script/merkle.mjs` (npm @openzeppelin/merkle-tree) for anvil's dev
    /// accounts 1-3; tests/unit/test_merkle.py checks the Python module gives the same.
    function test_claim_withProofsFromTheNpmPackage() public {
        address a1 = 0x70997970C51812dc3A010C7d01b50e0d17dc79C8;
        address a2 = 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC;
        address a3 = 0x90F79bf6EB2c4f870365E785982E1f101E93b906;
        bytes32 root = 0xad09d9c685a53255b23f7536dd39925cf3b25278f127efab94029a532a3ceeba;

        address[] memory list = new address[](3);
        (list[0], list[1], list[2]) = (a1, a2, a3);
        assertEq(MerkleBuilder.build(list, amounts3(1_000_000, 2_500_000, 1_000_000))[0], root, "builder = npm");

        proposeAndMature(1, root);
        bytes32[] memory p1 = new bytes32[](1);
        p1[0] = 0x5b3259582e284e09bfb4f28e87ebe299e34bfd1453c6f4eef53aee14b5a70d74;
        bytes32[] memory p2 = new bytes32[](2);
        p2[0] = 0x39ac8cde593e3fa72f79adf281e9262cf7bd3440f682a4570ff091853d6d00d7;
        p2[1] = 0xb144aecc2da8e6e365016efbc95f365edac3a544e940a82f93db7d0d14efbeec;
        bytes32[] memory p3 = new bytes32[](2);
        p3[0] = 0x9231252afef0423e8365e420f94e5caaccdc7b4b512251d001dd07591110bbc3;
        p3[1] = 0xb144aecc2da8e6e365016efbc95f365edac3a544e940a82f93db7d0d14efbeec;

        assertEq(distributor.claim(a1, 1_000_000, p1), 1_000_000, "a1");
        assertEq(distributor.claim(a2, 2_500_000, p2), 2_500_000, "a2");
        assertEq(distributor.claim(a3, 1_000_000, p3), 1_000_000, "a3");
        assertEq(distributor.claim(a2, 2_500_000, p2), 0, "a2 again");
    }

    /// @dev A proof of depth 20, as in a tree of a million leaves.
    function test_claim_depth20Proof() public {
        bytes32[] memory proof = new bytes32[](20);
        bytes32 node = MerkleBuilder.leaf(alice, 5e6);
        for (uint256 i; i < 20; ++i) {
            proof[i] = keccak256(abi.encode("sibling", i));
            node = MerkleBuilder.hashPair(node, proof[i]);
        }
        proposeAndMature(1, node);
        assertEq(distributor.claim(alice, 5e6, proof), 5e6, "depth 20");
    }

    // ---------------------------------------------------------------- claimMany

    function claimsFor(bytes32[] memory tree, uint256 a, uint256 b, uint256 c)
        internal
        view
        returns (RewardDistributor.Claim[] memory claims)
    {
        claims = new RewardDistributor.Claim[](3);
        claims[0] = RewardDistributor.Claim(alice, a, MerkleBuilder.proof(tree, alice, a));
        claims[1] = RewardDistributor.Claim(bob, b, MerkleBuilder.proof(tree, bob, b));
        claims[2] = RewardDistributor.Claim(carol, c, MerkleBuilder.proof(tree, carol, c));
    }

    function test_claimMany_paysEveryEntryAndSkipsClaimedOnes() public {
        bytes32[] memory tree1 = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree1[0]);
        distributor.claim(bob, 2e6, MerkleBuilder.proof(tree1, bob, 2e6));

        RewardDistributor.Claim[] memory claims = claimsFor(tree1, 1e6, 2e6, 3e6);
        vmx.recordLogs();
        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Claimed(alice, 1, 1e6, 1e6);
        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Claimed(carol, 1, 3e6, 3e6);
        vm.prank(relayer);
        assertEq(distributor.claimMany(claims), 4e6, "alice + carol; bob already claimed");
        VmExtra.Log[] memory logs = vmx.getRecordedLogs();
        uint256 fromDistributor;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(distributor)) ++fromDistributor;
        }
        assertEq(fromDistributor, 2, "two Claimed: nothing for bob");
        assertEq(token.balanceOf(alice), 1e6, "alice");
        assertEq(token.balanceOf(bob), 2e6, "bob");
        assertEq(token.balanceOf(carol), 3e6, "carol");

        bytes32[] memory tree2 = tree3(1e6, 5e6, 4e6);
        proposeAndMature(2, tree2[0]);
        assertEq(distributor.claimMany(claimsFor(tree2, 1e6, 5e6, 4e6)), 4e6, "differences");
        assertEq(distributor.claimMany(claimsFor(tree2, 1e6, 5e6, 4e6)), 0, "all claimed");
        assertEq(distributor.totalClaimed(), 10e6, "total claimed");
    }

    function test_claimMany_duplicateEntryPaysOnce() public {
        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree[0]);
        RewardDistributor.Claim[] memory claims = new RewardDistributor.Claim[](2);
        claims[0] = RewardDistributor.Claim(alice, 1e6, MerkleBuilder.proof(tree, alice, 1e6));
        claims[1] = claims[0];
        assertEq(distributor.claimMany(claims), 1e6, "once");
    }

    function test_claimMany_emptyBatchPaysNothingAndChecksNothing() public {
        RewardDistributor.Claim[] memory claims;
        assertEq(distributor.claimMany(claims), 0, "empty, without a root");
        proposeAndMature(1, tree3(1e6, 2e6, 3e6)[0]);
        assertEq(distributor.claimMany(claims), 0, "empty");
    }

    function test_claimMany_revertsWithoutRoot() public {
        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        propose(1, tree[0]);
        vm.expectRevert(RewardDistributor.RewardDistributorNoRoot.selector);
        distributor.claimMany(claimsFor(tree, 1e6, 2e6, 3e6));
    }

    function test_claimMany_revertsWholeBatchOnOneInvalidProof() public {
        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree[0]);
        RewardDistributor.Claim[] memory claims = claimsFor(tree, 1e6, 2e6, 3e6);
        claims[2].cumulativeAmount = 30e6;
        vm.expectRevert(invalidProof(carol, 30e6));
        distributor.claimMany(claims);
        assertEq(distributor.claimed(alice), 0, "alice's entry rolled back");
        assertEq(token.balanceOf(alice), 0, "alice unpaid");
    }

    function test_claimMany_skipsWhatTheBalanceCannotCover() public {
        bytes32[] memory tree = tree3(1e6, FUNDING, 2e6);
        proposeAndMature(1, tree[0]);

        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Claimed(alice, 1, 1e6, 1e6);
        vm.expectEmit(true, false, false, true, address(distributor));
        emit RewardDistributor.ClaimSkipped(bob, FUNDING);
        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Claimed(carol, 1, 2e6, 2e6);
        assertEq(distributor.claimMany(claimsFor(tree, 1e6, FUNDING, 2e6)), 3e6, "alice and carol");

        assertEq(distributor.claimed(bob), 0, "bob's claim not recorded");
        assertEq(distributor.totalClaimed(), 3e6, "bob's amount not counted");
        assertEq(token.balanceOf(address(distributor)), FUNDING - 3e6, "balance");

        fund(3e6);
        assertEq(claimOf(tree, bob, FUNDING), FUNDING, "bob claims once funded");
        assertEq(distributor.totalClaimed(), FUNDING + 3e6, "total");
    }

    function test_claimMany_revertsOnASuspendedRoot() public {
        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree[0]);
        suspend();
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.RewardDistributorRootSuspended.selector, 1));
        distributor.claimMany(claimsFor(tree, 1e6, 2e6, 3e6));
    }

    // ---------------------------------------------------------------- roles

    function test_roles_adminGrantsAndRevokesPublishers() public {
        vm.prank(publisher);
        vm.expectRevert(unauthorized(publisher, adminRole));
        distributor.grantRole(publisherRole, alice);

        vm.prank(admin);
        distributor.revokeRole(publisherRole, publisher);
        vm.prank(publisher);
        vm.expectRevert(unauthorized(publisher, publisherRole));
        distributor.proposeRoot(1, bytes32(uint256(1)), 0);
    }
}

/// @dev Fuzz tests (runs from foundry.toml).
contract RewardDistributorFuzzTest is RewardDistributorBase {
    uint256 internal constant MAX_AMOUNT = 1e30;

    function setUp() public override {
        super.setUp();
        fund(type(uint128).max);
    }

    /// @dev A sequence of epochs with growing cumulative amounts for alice (and noise for bob and carol), claimed
    /// at random moments: alice's total payout always equals her latest claimed cumulative amount, never exceeds the
    /// latest cumulative amount, and equals the final one after a last claim.
    function testFuzz_cumulativeSequencePaysExactlyTheFinalAmount(uint256 seed, uint8 epochs) public {
        epochs = uint8(bound(epochs, 1, 12));
        uint256 cumulative;
        uint256 totalPaid;
        bytes32[] memory tree;
        for (uint256 epoch = 1; epoch <= epochs; ++epoch) {
            uint256 r = uint256(keccak256(abi.encode(seed, epoch)));
            if (r % 4 != 0) cumulative += bound(r >> 8, 0, MAX_AMOUNT / 16);
            tree = tree3(cumulative, r >> 128, r & type(uint128).max);
            proposeAndMature(epoch, tree[0]);
            if ((r >> 4) % 3 != 0) {
                totalPaid += distributor.claim(alice, cumulative, MerkleBuilder.proof(tree, alice, cumulative));
            }
            assertEq(totalPaid, distributor.claimed(alice), "paid = claimed");
            assertTrue(distributor.claimed(alice) <= cumulative, "claimed <= latest cumulative");
            assertEq(token.balanceOf(alice), totalPaid, "balance = paid");
        }
        totalPaid += distributor.claim(alice, cumulative, MerkleBuilder.proof(tree, alice, cumulative));
        assertEq(totalPaid, cumulative, "total paid = final cumulative");
        assertEq(token.balanceOf(alice), cumulative, "balance = final cumulative");
        assertEq(distributor.claim(alice, cumulative, MerkleBuilder.proof(tree, alice, cumulative)), 0, "no more");
    }

    /// @dev Two claims in successive epochs pay exactly the two cumulative amounts' difference, or nothing.
    function testFuzz_claimPaysTheDifference(uint256 first, uint256 second) public {
        first = bound(first, 0, MAX_AMOUNT);
        second = bound(second, 0, MAX_AMOUNT);
        bytes32[] memory tree1 = tree3(first, 1, 2);
        proposeAndMature(1, tree1[0]);
        assertEq(distributor.claim(alice, first, MerkleBuilder.proof(tree1, alice, first)), first, "first");
        bytes32[] memory tree2 = tree3(second, 1, 2);
        proposeAndMature(2, tree2[0]);
        uint256 expected = second > first ? second - first : 0;
        assertEq(distributor.claim(alice, second, MerkleBuilder.proof(tree2, alice, second)), expected, "second");
        assertEq(distributor.claimed(alice), first > second ? first : second, "claimed = max");
    }

    /// @dev A proof for one account never pays another account, nor the same account another amount.
    function testFuzz_proofNeverPaysAnotherAccountOrAmount(
        address account,
        address other,
        uint256 amount,
        uint256 otherAmount,
        uint256 wrongAmount
    ) public {
        vm.assume(account != other && account != address(0) && other != address(0));
        amount = bound(amount, 1, MAX_AMOUNT);
        otherAmount = bound(otherAmount, 1, MAX_AMOUNT);
        vm.assume(wrongAmount != amount);

        address[] memory list = new address[](3);
        (list[0], list[1], list[2]) = (account, other, address(0xDEAD));
        bytes32[] memory tree = MerkleBuilder.build(list, amounts3(amount, otherAmount, 1));
        proposeAndMature(1, tree[0]);
        bytes32[] memory proof = MerkleBuilder.proof(tree, account, amount);

        vm.expectRevert(invalidProof(other, amount));
        distributor.claim(other, amount, proof);
        vm.expectRevert(invalidProof(other, otherAmount));
        distributor.claim(other, otherAmount, proof);
        if (wrongAmount > 0) {
            vm.expectRevert(invalidProof(account, wrongAmount));
            distributor.claim(account, wrongAmount, proof);
        }
        assertEq(distributor.claim(account, amount, proof), amount, "own proof pays");
    }

    /// @dev Random trees of up to 17 leaves: every leaf's proof claims exactly its amount.
    function testFuzz_everyLeafOfARandomTreeClaims(uint256 seed, uint8 size) public {
        uint256 n = bound(size, 1, 17);
        address[] memory list = new address[](n);
        uint256[] memory amounts = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            list[i] = address(uint160(uint256(keccak256(abi.encode(seed, "account", i)))));
            amounts[i] = bound(uint256(keccak256(abi.encode(seed, "amount", i))), 1, MAX_AMOUNT);
        }
        bytes32[] memory tree = MerkleBuilder.build(list, amounts);
        proposeAndMature(1, tree[0]);
        uint256 total;
        for (uint256 i; i < n; ++i) {
            total += distributor.claim(list[i], amounts[i], MerkleBuilder.proof(tree, list[i], amounts[i]));
            assertEq(token.balanceOf(list[i]), amounts[i], "leaf paid");
        }
        uint256 expected;
        for (uint256 i; i < n; ++i) {
            expected += amounts[i];
        }
        assertEq(total, expected, "sum");
    }

    /// @dev A root is claimable from exactly `validAt = proposal time + delay` on, for any delay.
    function testFuzz_rootMaturesExactlyAfterTheDelay(uint64 delay, uint64 wait) public {
        delay = uint64(bound(delay, 0, 30 days));
        wait = uint64(bound(wait, 0, 60 days));
        vm.prank(admin);
        distributor.setRootDelay(delay);
        bytes32 root = tree3(1, 2, 3)[0];
        propose(1, root);
        vm.warp(START + wait);
        (uint256 epoch, bytes32 current,,) = distributor.currentRoot();
        assertEq(current, wait >= delay ? root : bytes32(0), "claimable iff waited long enough");
        assertEq(epoch, wait >= delay ? 1 : 0, "epoch");
    }

    /// @dev Sweeping the reward token leaves exactly `max(current total, pending total) - totalClaimed` (at least 0)
    /// of any balance, with or without a pending root, and takes the rest.
    function testFuzz_sweepLeavesExactlyWhatTheRootsCanStillPay(
        uint256 claimedAmount,
        uint256 currentTotal,
        uint256 pendingTotal,
        uint256 balance,
        bool withPending
    ) public {
        claimedAmount = bound(claimedAmount, 0, MAX_AMOUNT);
        currentTotal = bound(currentTotal, claimedAmount, MAX_AMOUNT);
        pendingTotal = bound(pendingTotal, claimedAmount, MAX_AMOUNT);
        balance = bound(balance, 0, 2 * MAX_AMOUNT);
        bytes32[] memory tree = tree3(claimedAmount, 1, 2);
        proposeAndMature(1, tree[0], currentTotal);
        claimOf(tree, alice, claimedAmount);
        if (withPending) propose(2, tree3(claimedAmount, 3, 4)[0], pendingTotal);
        // Leave `balance` in the distributor.
        uint256 held = token.balanceOf(address(distributor));
        vm.prank(address(distributor));
        assertTrue(token.transfer(owner, held), "emptied");
        fund(balance);

        uint256 maxTotal = withPending && pendingTotal > currentTotal ? pendingTotal : currentTotal;
        uint256 keep = maxTotal - claimedAmount;
        if (balance <= keep) {
            vm.prank(admin);
            vm.expectRevert(
                abi.encodeWithSelector(RewardDistributor.RewardDistributorNothingToSweep.selector, address(token))
            );
            distributor.sweep(address(token), owner);
        } else {
            vm.prank(admin);
            assertEq(distributor.sweep(address(token), owner), balance - keep, "the excess");
            assertEq(token.balanceOf(address(distributor)), keep, "what the roots can still pay");
        }
    }
}

/// @dev {RewardDistributor-totalClaimed}.
contract RewardDistributorTotalClaimedTest is RewardDistributorBase {
    function test_totalClaimed_addsWhatEveryClaimPaid() public {
        bytes32[] memory tree1 = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree1[0], 6e6);
        claimOf(tree1, alice, 1e6);
        assertEq(distributor.totalClaimed(), 1e6, "alice");
        claimOf(tree1, alice, 1e6);
        assertEq(distributor.totalClaimed(), 1e6, "nothing more for the same amount");

        bytes32[] memory tree2 = tree3(5e6, 2e6, 3e6);
        proposeAndMature(2, tree2[0], 10e6);
        RewardDistributor.Claim[] memory claims = new RewardDistributor.Claim[](2);
        claims[0] = RewardDistributor.Claim(alice, 5e6, MerkleBuilder.proof(tree2, alice, 5e6));
        claims[1] = RewardDistributor.Claim(bob, 2e6, MerkleBuilder.proof(tree2, bob, 2e6));
        distributor.claimMany(claims);
        assertEq(distributor.totalClaimed(), 7e6, "alice's difference and bob");
        assertEq(token.balanceOf(address(distributor)), FUNDING - 7e6, "paid = totalClaimed");
    }

    function test_claim_revertsWhenTotalClaimedWouldExceed128Bits() public {
        // Only a wrong tree, paying more than any total can declare, gets there.
        uint256 almost = uint256(type(uint128).max) - 5;
        bytes32[] memory tree = tree3(almost, 5, 6);
        fund(type(uint128).max);
        proposeAndMature(1, tree[0]);
        claimOf(tree, alice, almost);
        claimOf(tree, bob, 5);
        assertEq(distributor.totalClaimed(), type(uint128).max, "at the limit");

        bytes32[] memory proof = MerkleBuilder.proof(tree, carol, 6);
        vm.expectRevert(RewardDistributor.RewardDistributorTotalClaimedOverflow.selector);
        distributor.claim(carol, 6, proof);
    }
}

/// @dev {RewardDistributor-suspendCurrentRoot}.
contract RewardDistributorSuspensionTest is RewardDistributorBase {
    bytes32[] internal tree1;
    bytes32[] internal tree2;
    bytes32[] internal tree3_;

    function setUp() public override {
        super.setUp();
        tree1 = tree3(1e6, 2e6, 3e6);
        tree2 = tree3(2e6, 3e6, 4e6);
        tree3_ = tree3(3e6, 4e6, 5e6);
    }

    function suspendedError(uint256 epoch) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(RewardDistributor.RewardDistributorRootSuspended.selector, epoch);
    }

    function test_suspendCurrentRoot_stopsClaimsOnAPromotedRoot() public {
        proposeAndMature(1, tree1[0], 6e6);
        claimOf(tree1, alice, 1e6);
        propose(2, tree2[0], 9e6); // promotes epoch 1
        assertCurrent(1, tree1[0], 6e6, false, "promoted");

        vm.expectEmit(true, false, false, true, address(distributor));
        emit RewardDistributor.RootSuspended(1, tree1[0]);
        suspend();

        assertCurrent(1, tree1[0], 6e6, true, "suspended");
        bytes32[] memory proof = MerkleBuilder.proof(tree1, bob, 2e6);
        vm.expectRevert(suspendedError(1));
        distributor.claim(bob, 2e6, proof);
        // Even a claim that would pay nothing.
        proof = MerkleBuilder.proof(tree1, alice, 1e6);
        vm.expectRevert(suspendedError(1));
        distributor.claim(alice, 1e6, proof);
        assertEq(distributor.claimed(bob), 0, "nothing recorded");
    }

    function test_suspendCurrentRoot_suspendsAMaturedPendingRoot() public {
        proposeAndMature(1, tree1[0], 6e6);
        propose(2, tree2[0], 9e6);
        vm.warp(block.timestamp + DELAY); // epoch 2 matured, not promoted
        assertCurrent(2, tree2[0], 9e6, false, "epoch 2 claimable");

        vm.expectEmit(true, false, false, true, address(distributor));
        emit RewardDistributor.RootSuspended(2, tree2[0]);
        suspend();

        assertCurrent(2, tree2[0], 9e6, true, "epoch 2 suspended");
        assertPending(0, bytes32(0), 0, 0, "nothing pending");
        bytes32[] memory proof = MerkleBuilder.proof(tree2, bob, 3e6);
        vm.expectRevert(suspendedError(2));
        distributor.claim(bob, 3e6, proof);
        // The older root does not come back either.
        proof = MerkleBuilder.proof(tree1, bob, 2e6);
        vm.expectRevert(suspendedError(2));
        distributor.claim(bob, 2e6, proof);
    }

    function test_suspendCurrentRoot_aNewRootResumesClaimsOnceMatured() public {
        proposeAndMature(1, tree1[0], 6e6);
        suspend();
        propose(2, tree2[0], 9e6);
        assertCurrent(1, tree1[0], 6e6, true, "still suspended while epoch 2 is pending");
        bytes32[] memory proof = MerkleBuilder.proof(tree2, bob, 3e6);
        vm.warp(block.timestamp + DELAY - 1);
        vm.expectRevert(suspendedError(1));
        distributor.claim(bob, 3e6, proof);

        vm.warp(block.timestamp + 1);
        assertCurrent(2, tree2[0], 9e6, false, "epoch 2 matured");
        assertEq(distributor.claim(bob, 3e6, proof), 3e6, "claims resume");

        propose(3, tree3_[0], 12e6); // promotes epoch 2, which is not suspended
        assertCurrent(2, tree2[0], 9e6, false, "promoted, not suspended");
        assertEq(claimOf(tree2, carol, 4e6), 4e6, "claims go on");
    }

    function test_suspendCurrentRoot_doesNotSuspendAPendingRootThatHasNotMatured() public {
        proposeAndMature(1, tree1[0], 6e6);
        propose(2, tree2[0], 9e6);
        vm.warp(block.timestamp + DELAY - 1);
        suspend();
        assertCurrent(1, tree1[0], 6e6, true, "epoch 1 suspended");
        assertPending(2, tree2[0], 9e6, block.timestamp + 1, "epoch 2 still pending");

        vm.warp(block.timestamp + 1);
        assertCurrent(2, tree2[0], 9e6, false, "epoch 2 matured and claimable");
        assertEq(claimOf(tree2, alice, 2e6), 2e6, "claims against epoch 2");
    }

    function test_suspendCurrentRoot_thePendingRootCanStillBeRevoked() public {
        proposeAndMature(1, tree1[0], 6e6);
        propose(2, tree2[0], 9e6);
        suspend();
        vm.prank(admin);
        distributor.revokePendingRoot();

        vm.warp(block.timestamp + 30 days);
        assertCurrent(1, tree1[0], 6e6, true, "suspended until a new root");
        bytes32[] memory proof = MerkleBuilder.proof(tree2, alice, 2e6);
        vm.expectRevert(suspendedError(1));
        distributor.claim(alice, 2e6, proof);

        proposeAndMature(3, tree3_[0], 12e6);
        assertEq(claimOf(tree3_, alice, 3e6), 3e6, "the new root");
    }

    function test_suspendCurrentRoot_aReplacedProposalDoesNotResumeClaims() public {
        proposeAndMature(1, tree1[0], 6e6);
        suspend();
        propose(2, tree2[0], 9e6);
        propose(3, tree3_[0], 12e6); // replaces epoch 2 before it matured
        vm.warp(block.timestamp + DELAY - 1);
        assertCurrent(1, tree1[0], 6e6, true, "suspended");
        vm.warp(block.timestamp + 1);
        assertCurrent(3, tree3_[0], 12e6, false, "epoch 3");
    }

    function test_suspendCurrentRoot_aNewRootCanBeSuspendedToo() public {
        proposeAndMature(1, tree1[0], 6e6);
        suspend();
        proposeAndMature(2, tree2[0], 9e6);
        suspend();
        assertCurrent(2, tree2[0], 9e6, true, "epoch 2 suspended");
        proposeAndMature(3, tree3_[0], 12e6);
        assertEq(claimOf(tree3_, carol, 5e6), 5e6, "epoch 3");
    }

    function test_suspendCurrentRoot_revertsWithoutAMaturedRoot() public {
        vm.prank(admin);
        vm.expectRevert(RewardDistributor.RewardDistributorNoRoot.selector);
        distributor.suspendCurrentRoot();

        propose(1, tree1[0], 6e6);
        vm.warp(block.timestamp + DELAY - 1);
        vm.prank(admin);
        vm.expectRevert(RewardDistributor.RewardDistributorNoRoot.selector);
        distributor.suspendCurrentRoot();
    }

    function test_suspendCurrentRoot_revertsWhenAlreadySuspended() public {
        proposeAndMature(1, tree1[0], 6e6);
        suspend();
        vm.prank(admin);
        vm.expectRevert(suspendedError(1));
        distributor.suspendCurrentRoot();

        propose(2, tree2[0], 9e6); // pending, not matured: still epoch 1's suspension
        vm.prank(admin);
        vm.expectRevert(suspendedError(1));
        distributor.suspendCurrentRoot();
    }

    function test_suspendCurrentRoot_revertsForNonAdmin() public {
        proposeAndMature(1, tree1[0], 6e6);
        vm.prank(publisher);
        vm.expectRevert(unauthorized(publisher, adminRole));
        distributor.suspendCurrentRoot();
    }
}

/// @dev {RewardDistributor-sweep}: the reward token down to what the roots can still pay, any other token in full.
contract RewardDistributorSweepTest is RewardDistributorBase {
    address internal treasury = address(0x7EA5);
    TestUSDC internal other;
    bytes32[] internal tree1;
    bytes32[] internal tree2;

    function setUp() public override {
        super.setUp();
        other = new TestUSDC(owner);
        tree1 = tree3(100e6, 200e6, 300e6); // total 600e6
        tree2 = tree3(150e6, 250e6, 400e6); // total 800e6
    }

    function sweep(address token_) internal returns (uint256) {
        vm.prank(admin);
        return distributor.sweep(token_, treasury);
    }

    function expectNothingToSweep(address token_) internal {
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.RewardDistributorNothingToSweep.selector, token_));
        distributor.sweep(token_, treasury);
    }

    function test_sweep_takesAllOfAnotherToken() public {
        vm.prank(owner);
        other.mint(address(distributor), 5e6);
        proposeAndMature(1, tree1[0], 600e6);

        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Swept(address(other), treasury, 5e6);
        assertEq(sweep(address(other)), 5e6, "swept");
        assertEq(other.balanceOf(treasury), 5e6, "treasury");
        assertEq(other.balanceOf(address(distributor)), 0, "none left");
        expectNothingToSweep(address(other));
    }

    function test_sweep_takesEverythingWhenNoRootWasProposed() public {
        assertEq(sweep(address(token)), FUNDING, "all");
        assertEq(token.balanceOf(treasury), FUNDING, "treasury");
    }

    function test_sweep_leavesTheCurrentRootsUnclaimedTotal() public {
        proposeAndMature(1, tree1[0], 600e6);
        claimOf(tree1, alice, 100e6);

        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Swept(address(token), treasury, FUNDING - 600e6);
        assertEq(sweep(address(token)), FUNDING - 600e6, "balance - (total - claimed)");
        assertEq(token.balanceOf(address(distributor)), 500e6, "what the root can still pay");
        expectNothingToSweep(address(token));

        // Everyone can still claim.
        claimOf(tree1, bob, 200e6);
        claimOf(tree1, carol, 300e6);
        assertEq(token.balanceOf(address(distributor)), 0, "drained by claims");
    }

    function test_sweep_leavesThePendingRootsTotalWhenLarger() public {
        proposeAndMature(1, tree1[0], 600e6);
        claimOf(tree1, alice, 100e6);
        propose(2, tree2[0], 800e6);
        assertEq(sweep(address(token)), FUNDING - 800e6, "leaves 800 - 100");
        assertEq(token.balanceOf(address(distributor)), 700e6, "left");
    }

    function test_sweep_leavesTheCurrentRootsTotalWhenThePendingOneIsSmaller() public {
        proposeAndMature(1, tree2[0], 800e6);
        propose(2, tree1[0], 600e6); // a smaller total is allowed down to totalClaimed
        assertEq(sweep(address(token)), FUNDING - 800e6, "leaves 800");
    }

    function test_sweep_aRevokedPendingRootsTotalNoLongerCounts() public {
        proposeAndMature(1, tree1[0], 600e6);
        propose(2, tree2[0], 800e6);
        vm.prank(admin);
        distributor.revokePendingRoot();
        assertEq(sweep(address(token)), FUNDING - 600e6, "only the current total");
    }

    function test_sweep_aReplacedPendingRootsTotalNoLongerCounts() public {
        proposeAndMature(1, tree1[0], 600e6);
        propose(2, tree2[0], 900e6);
        propose(3, tree2[0], 800e6); // replaces epoch 2
        assertEq(sweep(address(token)), FUNDING - 800e6, "the replacement's total");
    }

    function test_sweep_aMaturedPendingRootTakesOverFromTheOlderRoot() public {
        proposeAndMature(1, tree2[0], 800e6);
        proposeAndMature(2, tree1[0], 600e6); // matured, not promoted: epoch 1 can no longer be claimed against
        assertEq(sweep(address(token)), FUNDING - 600e6, "only epoch 2's total");
    }

    function test_sweep_aSuspendedRootsTotalStillCounts() public {
        proposeAndMature(1, tree1[0], 600e6);
        suspend();
        assertEq(sweep(address(token)), FUNDING - 600e6, "the suspended root's total is kept");
    }

    function test_sweep_takesEverythingOnceClaimsExceedTheTotals() public {
        // A wrong total (below the tree's sum): the reserve floors at 0 rather than underflowing.
        proposeAndMature(1, tree1[0], 100e6);
        claimOf(tree1, carol, 300e6);
        assertEq(sweep(address(token)), FUNDING - 300e6, "all that is left");
    }

    function test_sweep_revertsWhenTheRootsCanPayEverything() public {
        proposeAndMature(1, tree1[0], FUNDING);
        expectNothingToSweep(address(token));
        expectNothingToSweep(address(other));
    }

    function test_sweep_revertsOnZeroRecipient() public {
        vm.prank(admin);
        vm.expectRevert(RewardDistributor.RewardDistributorZeroAddress.selector);
        distributor.sweep(address(token), address(0));
    }

    function test_sweep_revertsForNonAdmin() public {
        vm.prank(publisher);
        vm.expectRevert(unauthorized(publisher, adminRole));
        distributor.sweep(address(token), publisher);
    }
}

/// @dev Claims when the token refuses a transfer (USDC's blocklist): {claim} reverts, {claimMany} skips the entry.
contract RewardDistributorBlocklistTest is RewardDistributorBase {
    RewardBlocklistToken internal blocklist;
    bytes32[] internal tree;

    function deployToken() internal override returns (TestUSDC) {
        blocklist = new RewardBlocklistToken(owner);
        return blocklist;
    }

    function setUp() public override {
        super.setUp();
        tree = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree[0], 6e6);
        blocklist.setBlocked(bob, true);
    }

    function test_claimMany_skipsABlocklistedAccount() public {
        RewardDistributor.Claim[] memory claims = claimsFor(tree);
        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Claimed(alice, 1, 1e6, 1e6);
        vm.expectEmit(true, false, false, true, address(distributor));
        emit RewardDistributor.ClaimSkipped(bob, 2e6);
        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Claimed(carol, 1, 3e6, 3e6);
        assertEq(distributor.claimMany(claims), 4e6, "alice and carol");

        assertEq(distributor.claimed(bob), 0, "bob's claimed unchanged");
        assertEq(token.balanceOf(bob), 0, "bob unpaid");
        assertEq(distributor.claimed(carol), 3e6, "carol after bob");
        assertEq(distributor.totalClaimed(), 4e6, "bob not counted");

        blocklist.setBlocked(bob, false);
        assertEq(distributor.claimMany(claims), 2e6, "bob, once unblocked");
        assertEq(distributor.totalClaimed(), 6e6, "all");
    }

    function test_claimMany_skipsAnAccountTheTokenReturnsFalseFor() public {
        blocklist.setReturnFalse(true);
        vm.expectEmit(true, false, false, true, address(distributor));
        emit RewardDistributor.ClaimSkipped(bob, 2e6);
        assertEq(distributor.claimMany(claimsFor(tree)), 4e6, "alice and carol");
        assertEq(distributor.claimed(bob), 0, "bob's claimed unchanged");
    }

    function test_claimMany_stillRevertsOnAnInvalidProof() public {
        RewardDistributor.Claim[] memory claims = claimsFor(tree);
        claims[2].cumulativeAmount = 4e6;
        vm.expectRevert(invalidProof(carol, 4e6));
        distributor.claimMany(claims);
    }

    function test_claim_revertsWithTheTokensErrorForABlocklistedAccount() public {
        bytes32[] memory proof = MerkleBuilder.proof(tree, bob, 2e6);
        vm.expectRevert(abi.encodeWithSelector(RewardBlocklistToken.RewardBlocklistTokenBlocked.selector, bob));
        distributor.claim(bob, 2e6, proof);
        assertEq(distributor.claimed(bob), 0, "nothing recorded");
        assertEq(distributor.totalClaimed(), 0, "nothing counted");
    }

    function test_claim_revertsWithSafeERC20sErrorWhenTheTokenReturnsFalse() public {
        blocklist.setReturnFalse(true);
        bytes32[] memory proof = MerkleBuilder.proof(tree, bob, 2e6);
        vm.expectRevert(abi.encodeWithSelector(SafeERC20.SafeERC20FailedOperation.selector, address(token)));
        distributor.claim(bob, 2e6, proof);
    }

    function claimsFor(bytes32[] memory tree_) internal view returns (RewardDistributor.Claim[] memory claims) {
        claims = new RewardDistributor.Claim[](3);
        claims[0] = RewardDistributor.Claim(alice, 1e6, MerkleBuilder.proof(tree_, alice, 1e6));
        claims[1] = RewardDistributor.Claim(bob, 2e6, MerkleBuilder.proof(tree_, bob, 2e6));
        claims[2] = RewardDistributor.Claim(carol, 3e6, MerkleBuilder.proof(tree_, carol, 3e6));
    }
}

/**
 * @dev The storage layout the contract's header documents, checked from the outside: each field of the packed state
 * word at its maximum, alone and with every other field at its maximum, reads back through the views; and writes
 * (claim, proposal, revocation, suspension) next to fields at their maxima change only their own field.
 */
contract RewardDistributorStorageTest is RewardDistributorBase {
    bytes32 internal constant ROOTS_SLOT = bytes32(uint256(1)); // and 2
    bytes32 internal constant STATE_SLOT = bytes32(uint256(3));
    bytes32 internal constant TOTALS_SLOT = bytes32(uint256(4));
    uint256 internal constant CLAIMED_SLOT = 6;
    uint256 internal constant MAX40 = type(uint40).max;
    uint256 internal constant MAX128 = type(uint128).max;

    bytes32 internal constant ROOT0 = keccak256("root in entry 0");
    bytes32 internal constant ROOT1 = keccak256("root in entry 1");
    uint256 internal constant TOTAL0 = 0xA0A0;
    uint256 internal constant TOTAL1 = 0xB1B1;

    /// @dev The packed word as the header specifies it, written out independently of the contract.
    function pack(
        uint256 totalClaimed,
        uint256 validAt,
        uint256 currentEpoch,
        uint256 lastEpoch,
        uint256 pendingIndex,
        bool isSuspended
    ) internal pure returns (bytes32) {
        return bytes32(
            totalClaimed | validAt << 128 | currentEpoch << 168 | lastEpoch << 208 | pendingIndex << 248
                | (isSuspended ? uint256(1) << 249 : 0)
        );
    }

    function setRoots() internal {
        vm.store(address(distributor), ROOTS_SLOT, ROOT0);
        vm.store(address(distributor), bytes32(uint256(ROOTS_SLOT) + 1), ROOT1);
        vm.store(address(distributor), TOTALS_SLOT, bytes32(TOTAL1 << 128 | TOTAL0));
    }

    function state() internal view returns (bytes32) {
        return vm.load(address(distributor), STATE_SLOT);
    }

    function test_storage_slotsAreWhereTheHeaderSays() public {
        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        propose(7, tree[0], 6e6); // nothing pending: entry 0
        assertEq(vm.load(address(distributor), ROOTS_SLOT), tree[0], "_roots[0]");
        assertEq(uint256(vm.load(address(distributor), TOTALS_SLOT)), 6e6, "_totals[0], low half");
        assertEq(state(), pack(0, START + DELAY, 0, 7, 0, false), "state");

        vm.warp(START + DELAY);
        bytes32 root2 = tree3(1e6, 2e6, 4e6)[0];
        propose(8, root2, 7e6); // promotes entry 0: the new root goes to entry 1
        assertEq(vm.load(address(distributor), bytes32(uint256(ROOTS_SLOT) + 1)), root2, "_roots[1]");
        assertEq(uint256(vm.load(address(distributor), TOTALS_SLOT)), 7e6 << 128 | 6e6, "_totals[1], high half");
        assertEq(state(), pack(0, START + 2 * DELAY, 7, 8, 1, false), "state after promotion");

        claimOf(tree, alice, 1e6);
        bytes32 slot = keccak256(abi.encode(alice, CLAIMED_SLOT));
        assertEq(uint256(vm.load(address(distributor), slot)), 1e6, "claimed[alice]");
        assertEq(state(), pack(1e6, START + 2 * DELAY, 7, 8, 1, false), "totalClaimed in the low bits");
    }

    function test_storage_everyFieldAtItsMaximum() public {
        setRoots();
        vm.store(address(distributor), STATE_SLOT, pack(MAX128, MAX40, MAX40, MAX40, 1, true));
        assertEq(distributor.totalClaimed(), MAX128, "totalClaimed");
        assertEq(distributor.lastProposedEpoch(), MAX40, "lastEpoch");
        assertPending(MAX40, ROOT1, TOTAL1, MAX40, "pending root in entry 1, until the largest validAt");
        assertCurrent(MAX40, ROOT0, TOTAL0, true, "current root in entry 0, suspended");
    }

    function test_storage_totalClaimedAloneAtItsMaximum() public {
        setRoots();
        vm.store(address(distributor), STATE_SLOT, pack(MAX128, 0, 0, 0, 0, false));
        assertEq(distributor.totalClaimed(), MAX128, "totalClaimed");
        assertEq(distributor.lastProposedEpoch(), 0, "lastEpoch");
        assertPending(0, bytes32(0), 0, 0, "validAt stays 0: nothing pending");
        assertCurrent(0, ROOT1, TOTAL1, false, "current epoch 0, entry 1, not suspended");
    }

    function test_storage_validAtAloneAtItsMaximum() public {
        setRoots();
        vm.store(address(distributor), STATE_SLOT, pack(0, MAX40, 0, 0, 0, false));
        assertEq(distributor.totalClaimed(), 0, "totalClaimed");
        assertPending(0, ROOT0, TOTAL0, MAX40, "pending in entry 0");
        assertCurrent(0, ROOT1, TOTAL1, false, "current");
    }

    function test_storage_currentEpochAloneAtItsMaximum() public {
        setRoots();
        vm.store(address(distributor), STATE_SLOT, pack(0, 0, MAX40, 0, 0, false));
        assertCurrent(MAX40, ROOT1, TOTAL1, false, "current epoch");
        assertEq(distributor.lastProposedEpoch(), 0, "lastEpoch");
        assertPending(0, bytes32(0), 0, 0, "nothing pending");
        assertEq(distributor.totalClaimed(), 0, "totalClaimed");
    }

    function test_storage_lastEpochAloneAtItsMaximum() public {
        setRoots();
        vm.store(address(distributor), STATE_SLOT, pack(0, 0, 0, MAX40, 0, false));
        assertEq(distributor.lastProposedEpoch(), MAX40, "lastEpoch");
        assertCurrent(0, ROOT1, TOTAL1, false, "current epoch and flags untouched");
        assertPending(0, bytes32(0), 0, 0, "nothing pending");
    }

    function test_storage_pendingIndexAndSuspendedAlone() public {
        setRoots();
        vm.store(address(distributor), STATE_SLOT, pack(0, 0, 0, 0, 1, false));
        assertCurrent(0, ROOT0, TOTAL0, false, "pendingIndex 1: current in entry 0");
        assertEq(distributor.lastProposedEpoch(), 0, "lastEpoch");

        vm.store(address(distributor), STATE_SLOT, pack(0, 0, 0, 0, 0, true));
        assertCurrent(0, ROOT1, TOTAL1, true, "suspended alone");
        assertEq(distributor.lastProposedEpoch(), 0, "lastEpoch");
    }

    /// @dev A claim brings totalClaimed to its maximum next to every other field at its maximum.
    function test_storage_claimWritesOnlyTotalClaimed() public {
        bytes32[] memory tree = tree3(5, 6, 7);
        vm.store(address(distributor), ROOTS_SLOT, tree[0]); // entry 0: the current root with pendingIndex 1
        bytes32 packed = pack(MAX128 - 5, MAX40, MAX40, MAX40, 1, false);
        vm.store(address(distributor), STATE_SLOT, packed);

        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Claimed(alice, MAX40, 5, 5);
        claimOf(tree, alice, 5);
        assertEq(state(), pack(MAX128, MAX40, MAX40, MAX40, 1, false), "only totalClaimed changed");

        bytes32[] memory proof = MerkleBuilder.proof(tree, bob, 6);
        vm.expectRevert(RewardDistributor.RewardDistributorTotalClaimedOverflow.selector);
        distributor.claim(bob, 6, proof);
    }

    function test_storage_proposalWritesOnlyItsFields() public {
        // Nothing pending, epochs and totalClaimed at their maxima but for the next epoch.
        vm.store(address(distributor), STATE_SLOT, pack(MAX128, 0, MAX40, MAX40 - 1, 1, true));
        propose(MAX40, ROOT0, MAX128);
        assertEq(state(), pack(MAX128, START + DELAY, MAX40, MAX40, 1, true), "validAt and lastEpoch");
        assertEq(vm.load(address(distributor), bytes32(uint256(ROOTS_SLOT) + 1)), ROOT0, "entry 1");
        assertEq(uint256(vm.load(address(distributor), TOTALS_SLOT)), MAX128 << 128, "total in entry 1");

        vm.prank(admin);
        distributor.revokePendingRoot();
        assertEq(state(), pack(MAX128, 0, MAX40, MAX40, 1, true), "revocation clears validAt only");
    }

    function test_storage_suspensionWritesOnlyItsFlag() public {
        setRoots();
        vm.store(address(distributor), STATE_SLOT, pack(MAX128, MAX40, MAX40, MAX40, 1, false));
        suspend();
        assertEq(state(), pack(MAX128, MAX40, MAX40, MAX40, 1, true), "suspended flag only");
    }

    function test_storage_promotionBySuspensionMovesTheEpochAndIndex() public {
        setRoots();
        vm.store(address(distributor), STATE_SLOT, pack(MAX128, block.timestamp, 1, MAX40, 1, false));
        suspend(); // the pending root in entry 1 matured: it is promoted, then suspended
        assertEq(state(), pack(MAX128, 0, MAX40, MAX40, 0, true), "promoted to entry 1 (pendingIndex 0), suspended");
        assertCurrent(MAX40, ROOT1, TOTAL1, true, "current");
    }
}

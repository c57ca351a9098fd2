// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "./utils/Test.sol";
import {MerkleBuilder} from "./utils/MerkleBuilder.sol";
import {RewardDistributor} from "../src/RewardDistributor.sol";
import {TestUSDC} from "../src/TestUSDC.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

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
        token = new TestUSDC(owner);
        distributor = new RewardDistributor(admin, address(token), DELAY);
        adminRole = distributor.DEFAULT_ADMIN_ROLE();
        publisherRole = distributor.PUBLISHER_ROLE();
        vm.prank(admin);
        distributor.grantRole(publisherRole, publisher);
        fund(FUNDING);
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

    function propose(uint256 epoch, bytes32 root) internal {
        vm.prank(publisher);
        distributor.proposeRoot(epoch, root);
    }

    function proposeAndMature(uint256 epoch, bytes32 root) internal {
        propose(epoch, root);
        vm.warp(block.timestamp + DELAY);
    }

    function assertCurrent(uint256 epoch, bytes32 root, string memory err) internal view {
        (uint256 e, bytes32 r) = distributor.currentRoot();
        assertEq(e, epoch, string.concat(err, ": current epoch"));
        assertEq(r, root, string.concat(err, ": current root"));
    }

    function assertPending(uint256 epoch, bytes32 root, uint256 validAt, string memory err) internal view {
        (uint256 e, bytes32 r, uint64 v) = distributor.pendingRoot();
        assertEq(e, epoch, string.concat(err, ": pending epoch"));
        assertEq(r, root, string.concat(err, ": pending root"));
        assertEq(v, validAt, string.concat(err, ": pending validAt"));
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
        assertCurrent(0, bytes32(0), "fresh");
        assertPending(0, bytes32(0), 0, "fresh");
        assertEq(distributor.lastProposedEpoch(), 0, "no epoch");
        assertEq(distributor.claimed(alice), 0, "nothing claimed");
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
        emit RewardDistributor.RootProposed(1, root, START + DELAY);
        propose(1, root);

        assertPending(1, root, START + DELAY, "proposed");
        assertCurrent(0, bytes32(0), "not claimable yet");
        assertEq(distributor.lastProposedEpoch(), 1, "last epoch");
    }

    function test_proposeRoot_becomesClaimableExactlyAtValidAt() public {
        bytes32 root = tree3(1, 2, 3)[0];
        propose(1, root);
        vm.warp(START + DELAY - 1);
        assertCurrent(0, bytes32(0), "one second early");
        assertPending(1, root, START + DELAY, "still pending");

        vm.warp(START + DELAY);
        assertCurrent(1, root, "at validAt");
        assertPending(0, bytes32(0), 0, "nothing pending once matured");
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
        emit RewardDistributor.RootProposed(2, root2, uint64(block.timestamp + DELAY));
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
        distributor.proposeRoot(1, root);

        vm.prank(admin); // the admin is not a publisher unless it grants itself the role
        vm.expectRevert(unauthorized(admin, publisherRole));
        distributor.proposeRoot(1, root);
    }

    function test_proposeRoot_revertsOnZeroRoot() public {
        vm.prank(publisher);
        vm.expectRevert(RewardDistributor.RewardDistributorZeroRoot.selector);
        distributor.proposeRoot(1, bytes32(0));
    }

    function test_proposeRoot_revertsOnEpochZero() public {
        vm.prank(publisher);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.RewardDistributorEpochNotIncreasing.selector, 0, 0));
        distributor.proposeRoot(0, bytes32(uint256(1)));
    }

    function test_proposeRoot_revertsOnSameOrLowerEpoch() public {
        propose(3, tree3(1, 2, 3)[0]);
        vm.startPrank(publisher);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.RewardDistributorEpochNotIncreasing.selector, 3, 3));
        distributor.proposeRoot(3, bytes32(uint256(1)));
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.RewardDistributorEpochNotIncreasing.selector, 2, 3));
        distributor.proposeRoot(2, bytes32(uint256(1)));
        vm.stopPrank();

        vm.warp(START + DELAY); // also once epoch 3 is claimable
        vm.prank(publisher);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.RewardDistributorEpochNotIncreasing.selector, 3, 3));
        distributor.proposeRoot(3, bytes32(uint256(1)));
    }

    function test_proposeRoot_revertsOnARevokedEpochNumber() public {
        propose(1, tree3(1, 2, 3)[0]);
        vm.prank(admin);
        distributor.revokePendingRoot();
        vm.prank(publisher);
        vm.expectRevert(abi.encodeWithSelector(RewardDistributor.RewardDistributorEpochNotIncreasing.selector, 1, 1));
        distributor.proposeRoot(1, tree3(1, 2, 4)[0]);
    }

    function test_proposeRoot_revertsOnEpochBeyond96Bits() public {
        uint256 epoch = uint256(type(uint96).max) + 1;
        vm.prank(publisher);
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 96, epoch));
        distributor.proposeRoot(epoch, bytes32(uint256(1)));

        propose(type(uint96).max, bytes32(uint256(1)));
        assertEq(distributor.lastProposedEpoch(), type(uint96).max, "largest epoch");
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

        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Claimed(bob, 1, 2e6, 2e6);
        vm.expectEmit(true, true, false, true, address(token));
        emit IERC20.Transfer(address(distributor), bob, 2e6);
        vm.prank(relayer);
        uint256 paid = distributor.claim(bob, 2e6, proof);

        assertEq(paid, 2e6, "paid");
        assertEq(token.balanceOf(bob), 2e6, "bob's balance");
        assertEq(token.balanceOf(relayer), 0, "the caller gets nothing");
        assertEq(token.balanceOf(address(distributor)), FUNDING - 2e6, "distributor balance");
        assertEq(distributor.claimed(bob), 2e6, "claimed");
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
        empty.proposeRoot(1, tree[0]);
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
        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Claimed(alice, 1, 1e6, 1e6);
        vm.expectEmit(true, true, false, true, address(distributor));
        emit RewardDistributor.Claimed(carol, 1, 3e6, 3e6);
        vm.prank(relayer);
        assertEq(distributor.claimMany(claims), 4e6, "alice + carol; bob already claimed");
        assertEq(token.balanceOf(alice), 1e6, "alice");
        assertEq(token.balanceOf(bob), 2e6, "bob");
        assertEq(token.balanceOf(carol), 3e6, "carol");

        bytes32[] memory tree2 = tree3(1e6, 5e6, 4e6);
        proposeAndMature(2, tree2[0]);
        assertEq(distributor.claimMany(claimsFor(tree2, 1e6, 5e6, 4e6)), 4e6, "differences");
        assertEq(distributor.claimMany(claimsFor(tree2, 1e6, 5e6, 4e6)), 0, "all claimed");
    }

    function test_claimMany_duplicateEntryPaysOnce() public {
        bytes32[] memory tree = tree3(1e6, 2e6, 3e6);
        proposeAndMature(1, tree[0]);
        RewardDistributor.Claim[] memory claims = new RewardDistributor.Claim[](2);
        claims[0] = RewardDistributor.Claim(alice, 1e6, MerkleBuilder.proof(tree, alice, 1e6));
        claims[1] = claims[0];
        assertEq(distributor.claimMany(claims), 1e6, "once");
    }

    function test_claimMany_emptyBatchPaysNothing() public {
        proposeAndMature(1, tree3(1e6, 2e6, 3e6)[0]);
        RewardDistributor.Claim[] memory claims;
        assertEq(distributor.claimMany(claims), 0, "empty");
    }

    function test_claimMany_revertsWithoutRoot() public {
        RewardDistributor.Claim[] memory claims;
        vm.expectRevert(RewardDistributor.RewardDistributorNoRoot.selector);
        distributor.claimMany(claims);
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

    function test_claimMany_revertsWhenUnderfunded() public {
        bytes32[] memory tree = tree3(1e6, 2e6, FUNDING);
        proposeAndMature(1, tree[0]);
        vm.expectRevert(
            abi.encodeWithSelector(
                IERC20Errors.ERC20InsufficientBalance.selector, address(distributor), FUNDING - 3e6, FUNDING
            )
        );
        distributor.claimMany(claimsFor(tree, 1e6, 2e6, FUNDING));
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
        distributor.proposeRoot(1, bytes32(uint256(1)));
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
        (uint256 epoch, bytes32 current) = distributor.currentRoot();
        assertEq(current, wait >= delay ? root : bytes32(0), "claimable iff waited long enough");
        assertEq(epoch, wait >= delay ? 1 : 0, "epoch");
    }
}

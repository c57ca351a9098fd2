// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "./utils/Test.sol";
import {ERC1271WalletMock} from "./mocks/ERC1271WalletMock.sol";
import {TestUSDC} from "../src/TestUSDC.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

contract TestUSDCTest is Test {
    struct Authorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }

    // Written out independently from the contract (values match Circle's FiatToken).
    bytes32 internal constant EIP712_DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant PERMIT_TYPEHASH = 0x6e71edae12b1b97f4d1f60370fef10105fa2faae0126114a169c64845d6126c9;
    bytes32 internal constant TRANSFER_TYPEHASH = 0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267;
    bytes32 internal constant RECEIVE_TYPEHASH = 0xd099cc98ef71107a616c4f0f941f04c322d8e254fe26b3c6668db87aae413de8;
    bytes32 internal constant CANCEL_TYPEHASH = 0x158b0a9edf7a828aad02f63cd515c68ef2f50ba807396f6d12842833a1597429;

    uint256 internal constant SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    uint256 internal constant ALICE_PK = 0xA11CE;
    uint256 internal constant MALLORY_PK = 0xBAD;
    uint256 internal constant WALLET_OWNER_PK = 0x0C0FFEE;
    bytes32 internal constant WALLET_TAG = keccak256("wallet tag");
    uint256 internal constant START = 1_700_000_000;
    uint256 internal constant INITIAL_BALANCE = 1_000e6;
    bytes32 internal constant NONCE = keccak256("nonce");

    TestUSDC internal token;
    ERC1271WalletMock internal wallet;
    bytes32 internal domainSeparator;

    address internal owner = address(0x0123);
    address internal bob = address(0xB0B);
    address internal relayer = address(0x7E1A7E);
    address internal alice;
    address internal mallory;

    function setUp() public {
        vm.warp(START);
        alice = vm.addr(ALICE_PK);
        mallory = vm.addr(MALLORY_PK);

        token = new TestUSDC(owner);
        wallet = new ERC1271WalletMock(vm.addr(WALLET_OWNER_PK), WALLET_TAG);
        domainSeparator = keccak256(
            abi.encode(
                EIP712_DOMAIN_TYPEHASH, keccak256("Test USD Coin"), keccak256("2"), block.chainid, address(token)
            )
        );

        vm.startPrank(owner);
        token.mint(alice, INITIAL_BALANCE);
        token.mint(address(wallet), INITIAL_BALANCE);
        vm.stopPrank();

        vm.label(address(token), "TestUSDC");
        vm.label(address(wallet), "wallet");
        vm.label(alice, "alice");
        vm.label(bob, "bob");
        vm.label(mallory, "mallory");
        vm.label(relayer, "relayer");
    }

    // ----------------------------------------------------------------------------------------------------------
    // Metadata
    // ----------------------------------------------------------------------------------------------------------

    function test_Metadata() public view {
        assertEq(token.name(), "Test USD Coin", "name");
        assertEq(token.symbol(), "USDC", "symbol");
        assertEq(token.decimals(), 6, "decimals");
        assertEq(token.owner(), owner, "owner");
        assertEq(token.totalSupply(), 2 * INITIAL_BALANCE, "total supply");
    }

    function test_Eip712Domain() public view {
        (, string memory name, string memory version, uint256 chainId, address verifyingContract,,) =
            token.eip712Domain();
        assertEq(name, "Test USD Coin", "domain name");
        assertEq(version, "2", "domain version");
        assertEq(chainId, block.chainid, "domain chain id");
        assertEq(verifyingContract, address(token), "domain verifying contract");
        assertEq(token.DOMAIN_SEPARATOR(), domainSeparator, "DOMAIN_SEPARATOR");
    }

    function test_TypeHashes() public view {
        assertEq(token.PERMIT_TYPEHASH(), PERMIT_TYPEHASH, "PERMIT_TYPEHASH");
        assertEq(token.TRANSFER_WITH_AUTHORIZATION_TYPEHASH(), TRANSFER_TYPEHASH, "TRANSFER_WITH_AUTHORIZATION");
        assertEq(token.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(), RECEIVE_TYPEHASH, "RECEIVE_WITH_AUTHORIZATION");
        assertEq(token.CANCEL_AUTHORIZATION_TYPEHASH(), CANCEL_TYPEHASH, "CANCEL_AUTHORIZATION");
    }

    // ----------------------------------------------------------------------------------------------------------
    // Mint
    // ----------------------------------------------------------------------------------------------------------

    function test_Mint_ByOwner() public {
        vm.expectEmit(true, true, true, true, address(token));
        emit IERC20.Transfer(address(0), bob, 5e6);
        vm.prank(owner);
        token.mint(bob, 5e6);

        assertEq(token.balanceOf(bob), 5e6, "bob balance");
        assertEq(token.totalSupply(), 2 * INITIAL_BALANCE + 5e6, "total supply");
    }

    function test_RevertWhen_MintByNonOwner() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, mallory));
        vm.prank(mallory);
        token.mint(mallory, 5e6);
    }

    function test_RevertWhen_MintToZeroAddress() public {
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InvalidReceiver.selector, address(0)));
        vm.prank(owner);
        token.mint(address(0), 5e6);
    }

    // ----------------------------------------------------------------------------------------------------------
    // Permit (ERC-2612)
    // ----------------------------------------------------------------------------------------------------------

    function test_Permit() public {
        uint256 deadline = block.timestamp;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ALICE_PK, _permitDigest(alice, bob, 100e6, 0, deadline));

        vm.expectEmit(true, true, true, true, address(token));
        emit IERC20.Approval(alice, bob, 100e6);
        vm.prank(relayer);
        token.permit(alice, bob, 100e6, deadline, v, r, s);

        assertEq(token.allowance(alice, bob), 100e6, "allowance");
        assertEq(token.nonces(alice), 1, "nonce");

        vm.prank(bob);
        assertTrue(token.transferFrom(alice, bob, 100e6), "transferFrom");
        assertEq(token.balanceOf(bob), 100e6, "bob balance");
    }

    function test_RevertWhen_PermitExpired() public {
        uint256 deadline = block.timestamp - 1;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ALICE_PK, _permitDigest(alice, bob, 100e6, 0, deadline));

        vm.expectRevert(abi.encodeWithSelector(TestUSDC.ERC2612ExpiredSignature.selector, deadline));
        token.permit(alice, bob, 100e6, deadline, v, r, s);
    }

    function test_RevertWhen_PermitReplayed() public {
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ALICE_PK, _permitDigest(alice, bob, 100e6, 0, deadline));
        token.permit(alice, bob, 100e6, deadline, v, r, s);

        // The nonce moved on, so the same signature now recovers to an unrelated address.
        address recovered = ecrecover(_permitDigest(alice, bob, 100e6, 1, deadline), v, r, s);
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.ERC2612InvalidSigner.selector, recovered, alice));
        token.permit(alice, bob, 100e6, deadline, v, r, s);
    }

    function test_RevertWhen_PermitWrongSigner() public {
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(MALLORY_PK, _permitDigest(alice, mallory, 100e6, 0, deadline));

        vm.expectRevert(abi.encodeWithSelector(TestUSDC.ERC2612InvalidSigner.selector, mallory, alice));
        token.permit(alice, mallory, 100e6, deadline, v, r, s);
    }

    // ----------------------------------------------------------------------------------------------------------
    // transferWithAuthorization (ERC-3009)
    // ----------------------------------------------------------------------------------------------------------

    function test_TransferWithAuthorization_Vrs() public {
        Authorization memory a = _authorization(alice, bob, 250e6);
        (uint8 v, bytes32 r, bytes32 s) = _sign(ALICE_PK, TRANSFER_TYPEHASH, a);

        _expectAuthorizationUsed(a);
        vm.prank(relayer);
        _transfer(a, v, r, s);

        _assertMoved(a);
    }

    function test_TransferWithAuthorization_Bytes() public {
        Authorization memory a = _authorization(alice, bob, 250e6);
        bytes memory signature = _signBytes(ALICE_PK, TRANSFER_TYPEHASH, a);

        _expectAuthorizationUsed(a);
        vm.prank(relayer);
        _transfer(a, signature);

        _assertMoved(a);
    }

    function test_TransferWithAuthorization_AtWindowBounds() public {
        Authorization memory a = _authorization(alice, bob, 1e6);
        a.validAfter = block.timestamp - 1;
        a.validBefore = block.timestamp + 1;
        _transfer(a, _signBytes(ALICE_PK, TRANSFER_TYPEHASH, a));
        _assertMoved(a);
    }

    function test_RevertWhen_TransferWithAuthorizationReplayed() public {
        Authorization memory a = _authorization(alice, bob, 250e6);
        (uint8 v, bytes32 r, bytes32 s) = _sign(ALICE_PK, TRANSFER_TYPEHASH, a);
        _transfer(a, v, r, s);

        bytes memory expected =
            abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, alice, a.nonce);
        vm.expectRevert(expected);
        _transfer(a, v, r, s);
        vm.expectRevert(expected);
        _transfer(a, abi.encodePacked(r, s, v));
    }

    function test_RevertWhen_TransferWithAuthorizationNotYetValid() public {
        Authorization memory a = _authorization(alice, bob, 250e6);
        a.validAfter = block.timestamp; // valid strictly after validAfter
        (uint8 v, bytes32 r, bytes32 s) = _sign(ALICE_PK, TRANSFER_TYPEHASH, a);

        bytes memory expected = abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationNotYetValid.selector, a.validAfter);
        vm.expectRevert(expected);
        _transfer(a, v, r, s);
        vm.expectRevert(expected);
        _transfer(a, abi.encodePacked(r, s, v));

        vm.warp(a.validAfter + 1);
        _transfer(a, v, r, s);
        _assertMoved(a);
    }

    function test_RevertWhen_TransferWithAuthorizationExpired() public {
        Authorization memory a = _authorization(alice, bob, 250e6);
        (uint8 v, bytes32 r, bytes32 s) = _sign(ALICE_PK, TRANSFER_TYPEHASH, a);

        vm.warp(a.validBefore); // valid strictly before validBefore
        bytes memory expected = abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationExpired.selector, a.validBefore);
        vm.expectRevert(expected);
        _transfer(a, v, r, s);
        vm.expectRevert(expected);
        _transfer(a, abi.encodePacked(r, s, v));
    }

    function test_RevertWhen_TransferWithAuthorizationWrongSigner() public {
        Authorization memory a = _authorization(alice, mallory, 250e6);
        (uint8 v, bytes32 r, bytes32 s) = _sign(MALLORY_PK, TRANSFER_TYPEHASH, a);

        vm.expectRevert(TestUSDC.TestUSDCInvalidSignature.selector);
        _transfer(a, v, r, s);
        vm.expectRevert(TestUSDC.TestUSDCInvalidSignature.selector);
        _transfer(a, abi.encodePacked(r, s, v));
    }

    function test_RevertWhen_TransferWithAuthorizationTampered() public {
        Authorization memory a = _authorization(alice, bob, 1e6);
        (uint8 v, bytes32 r, bytes32 s) = _sign(ALICE_PK, TRANSFER_TYPEHASH, a);
        a.value = 2e6;

        vm.expectRevert(TestUSDC.TestUSDCInvalidSignature.selector);
        _transfer(a, v, r, s);
    }

    function test_RevertWhen_TransferWithAuthorizationMalformedSignature() public {
        Authorization memory a = _authorization(alice, bob, 1e6);
        (, bytes32 r, bytes32 s) = _sign(ALICE_PK, TRANSFER_TYPEHASH, a);

        vm.expectRevert(TestUSDC.TestUSDCInvalidSignature.selector);
        _transfer(a, abi.encodePacked(r, s)); // 64 bytes
        vm.expectRevert(TestUSDC.TestUSDCInvalidSignature.selector);
        _transfer(a, "");
    }

    function test_RevertWhen_TransferWithAuthorizationUsesReceiveSignature() public {
        Authorization memory a = _authorization(alice, bob, 1e6);
        (uint8 v, bytes32 r, bytes32 s) = _sign(ALICE_PK, RECEIVE_TYPEHASH, a);

        vm.expectRevert(TestUSDC.TestUSDCInvalidSignature.selector);
        _transfer(a, v, r, s);
    }

    function test_RevertWhen_TransferWithAuthorizationExceedsBalance() public {
        Authorization memory a = _authorization(alice, bob, INITIAL_BALANCE + 1);
        (uint8 v, bytes32 r, bytes32 s) = _sign(ALICE_PK, TRANSFER_TYPEHASH, a);

        vm.expectRevert(
            abi.encodeWithSelector(
                IERC20Errors.ERC20InsufficientBalance.selector, alice, INITIAL_BALANCE, INITIAL_BALANCE + 1
            )
        );
        _transfer(a, v, r, s);
        assertFalse(token.authorizationState(alice, a.nonce), "nonce must stay unused");
    }

    // ----------------------------------------------------------------------------------------------------------
    // receiveWithAuthorization (ERC-3009)
    // ----------------------------------------------------------------------------------------------------------

    function test_ReceiveWithAuthorization_Vrs() public {
        Authorization memory a = _authorization(alice, bob, 250e6);
        (uint8 v, bytes32 r, bytes32 s) = _sign(ALICE_PK, RECEIVE_TYPEHASH, a);

        _expectAuthorizationUsed(a);
        vm.prank(bob);
        _receive(a, v, r, s);

        _assertMoved(a);
    }

    function test_ReceiveWithAuthorization_Bytes() public {
        Authorization memory a = _authorization(alice, bob, 250e6);
        bytes memory signature = _signBytes(ALICE_PK, RECEIVE_TYPEHASH, a);

        _expectAuthorizationUsed(a);
        vm.prank(bob);
        _receive(a, signature);

        _assertMoved(a);
    }

    function test_RevertWhen_ReceiveWithAuthorizationCallerIsNotPayee() public {
        Authorization memory a = _authorization(alice, bob, 250e6);
        (uint8 v, bytes32 r, bytes32 s) = _sign(ALICE_PK, RECEIVE_TYPEHASH, a);

        bytes memory expected = abi.encodeWithSelector(TestUSDC.TestUSDCCallerMustBePayee.selector, relayer, bob);
        vm.expectRevert(expected);
        vm.prank(relayer);
        _receive(a, v, r, s);
        vm.expectRevert(expected);
        vm.prank(relayer);
        _receive(a, abi.encodePacked(r, s, v));
    }

    function test_RevertWhen_ReceiveWithAuthorizationReplayed() public {
        Authorization memory a = _authorization(alice, bob, 250e6);
        (uint8 v, bytes32 r, bytes32 s) = _sign(ALICE_PK, RECEIVE_TYPEHASH, a);
        vm.prank(bob);
        _receive(a, v, r, s);

        vm.expectRevert(abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, alice, a.nonce));
        vm.prank(bob);
        _receive(a, abi.encodePacked(r, s, v));
    }

    function test_RevertWhen_ReceiveWithAuthorizationNotYetValidOrExpired() public {
        Authorization memory a = _authorization(alice, bob, 250e6);
        a.validAfter = block.timestamp + 10;
        a.validBefore = block.timestamp + 20;
        (uint8 v, bytes32 r, bytes32 s) = _sign(ALICE_PK, RECEIVE_TYPEHASH, a);

        vm.expectRevert(abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationNotYetValid.selector, a.validAfter));
        vm.prank(bob);
        _receive(a, v, r, s);

        vm.warp(a.validBefore);
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationExpired.selector, a.validBefore));
        vm.prank(bob);
        _receive(a, abi.encodePacked(r, s, v));
    }

    function test_RevertWhen_ReceiveWithAuthorizationUsesTransferSignature() public {
        Authorization memory a = _authorization(alice, bob, 250e6);
        (uint8 v, bytes32 r, bytes32 s) = _sign(ALICE_PK, TRANSFER_TYPEHASH, a);

        vm.expectRevert(TestUSDC.TestUSDCInvalidSignature.selector);
        vm.prank(bob);
        _receive(a, v, r, s);
    }

    // ----------------------------------------------------------------------------------------------------------
    // cancelAuthorization (ERC-3009)
    // ----------------------------------------------------------------------------------------------------------

    function test_CancelAuthorization_Vrs() public {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ALICE_PK, _cancelDigest(alice, NONCE));

        vm.expectEmit(true, true, true, true, address(token));
        emit TestUSDC.AuthorizationCanceled(alice, NONCE);
        vm.prank(relayer);
        token.cancelAuthorization(alice, NONCE, v, r, s);

        assertTrue(token.authorizationState(alice, NONCE), "nonce canceled");
    }

    function test_CancelAuthorization_Bytes() public {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ALICE_PK, _cancelDigest(alice, NONCE));

        vm.expectEmit(true, true, true, true, address(token));
        emit TestUSDC.AuthorizationCanceled(alice, NONCE);
        vm.prank(relayer);
        token.cancelAuthorization(alice, NONCE, abi.encodePacked(r, s, v));

        assertTrue(token.authorizationState(alice, NONCE), "nonce canceled");
    }

    function test_RevertWhen_UsingCanceledAuthorization() public {
        (uint8 cv, bytes32 cr, bytes32 cs) = vm.sign(ALICE_PK, _cancelDigest(alice, NONCE));
        token.cancelAuthorization(alice, NONCE, cv, cr, cs);

        Authorization memory a = _authorization(alice, bob, 250e6);
        (uint8 v, bytes32 r, bytes32 s) = _sign(ALICE_PK, TRANSFER_TYPEHASH, a);
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, alice, NONCE));
        _transfer(a, v, r, s);

        (v, r, s) = _sign(ALICE_PK, RECEIVE_TYPEHASH, a);
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, alice, NONCE));
        vm.prank(bob);
        _receive(a, v, r, s);

        assertEq(token.balanceOf(alice), INITIAL_BALANCE, "alice balance");
    }

    function test_RevertWhen_CancelAuthorizationTwice() public {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ALICE_PK, _cancelDigest(alice, NONCE));
        token.cancelAuthorization(alice, NONCE, v, r, s);

        bytes memory expected =
            abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, alice, NONCE);
        vm.expectRevert(expected);
        token.cancelAuthorization(alice, NONCE, v, r, s);
        vm.expectRevert(expected);
        token.cancelAuthorization(alice, NONCE, abi.encodePacked(r, s, v));
    }

    function test_RevertWhen_CancelUsedAuthorization() public {
        Authorization memory a = _authorization(alice, bob, 250e6);
        _transfer(a, _signBytes(ALICE_PK, TRANSFER_TYPEHASH, a));

        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ALICE_PK, _cancelDigest(alice, NONCE));
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.TestUSDCAuthorizationUsedOrCanceled.selector, alice, NONCE));
        token.cancelAuthorization(alice, NONCE, v, r, s);
    }

    function test_RevertWhen_CancelAuthorizationWrongSigner() public {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(MALLORY_PK, _cancelDigest(alice, NONCE));

        vm.expectRevert(TestUSDC.TestUSDCInvalidSignature.selector);
        token.cancelAuthorization(alice, NONCE, v, r, s);
        vm.expectRevert(TestUSDC.TestUSDCInvalidSignature.selector);
        token.cancelAuthorization(alice, NONCE, abi.encodePacked(r, s, v));
    }

    // ----------------------------------------------------------------------------------------------------------
    // ERC-1271 contract wallet
    // ----------------------------------------------------------------------------------------------------------

    function test_Erc1271Wallet_TransferWithAuthorization() public {
        Authorization memory a = _authorization(address(wallet), bob, 300e6);
        bytes memory signature = _walletSignature(WALLET_OWNER_PK, TRANSFER_TYPEHASH, a);
        assertEq(signature.length, 97, "signature length");

        _expectAuthorizationUsed(a);
        vm.prank(relayer);
        _transfer(a, signature);

        _assertMoved(a);
    }

    function test_Erc1271Wallet_ReceiveWithAuthorization() public {
        Authorization memory a = _authorization(address(wallet), bob, 300e6);
        bytes memory signature = _walletSignature(WALLET_OWNER_PK, RECEIVE_TYPEHASH, a);

        vm.prank(bob);
        _receive(a, signature);

        _assertMoved(a);
    }

    function test_Erc1271Wallet_CancelAuthorization() public {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(WALLET_OWNER_PK, _cancelDigest(address(wallet), NONCE));

        vm.expectEmit(true, true, true, true, address(token));
        emit TestUSDC.AuthorizationCanceled(address(wallet), NONCE);
        token.cancelAuthorization(address(wallet), NONCE, abi.encodePacked(r, s, v, WALLET_TAG));

        assertTrue(token.authorizationState(address(wallet), NONCE), "nonce canceled");
    }

    function test_RevertWhen_Erc1271WalletRejectsSignature() public {
        Authorization memory a = _authorization(address(wallet), bob, 300e6);

        // Signed by the wrong key.
        bytes memory wrongKey = _walletSignature(MALLORY_PK, TRANSFER_TYPEHASH, a);
        vm.expectRevert(TestUSDC.TestUSDCInvalidSignature.selector);
        _transfer(a, wrongKey);

        // The owner's bare 65-byte signature is not what the wallet accepts, through either overload.
        (uint8 v, bytes32 r, bytes32 s) = _sign(WALLET_OWNER_PK, TRANSFER_TYPEHASH, a);
        vm.expectRevert(TestUSDC.TestUSDCInvalidSignature.selector);
        _transfer(a, v, r, s);
        vm.expectRevert(TestUSDC.TestUSDCInvalidSignature.selector);
        _transfer(a, abi.encodePacked(r, s, v));

        assertEq(token.balanceOf(address(wallet)), INITIAL_BALANCE, "wallet balance");
    }

    // ----------------------------------------------------------------------------------------------------------
    // Fuzz
    // ----------------------------------------------------------------------------------------------------------

    function testFuzz_TransferWithAuthorization_MovesExactlyValue(
        uint256 fromPk,
        address to,
        uint256 balance,
        uint256 value,
        bytes32 nonce,
        bool useBytes
    ) public {
        fromPk = bound(fromPk, 1, SECP256K1_ORDER - 1);
        address from = vm.addr(fromPk);
        vm.assume(to != address(0) && to != from);

        balance = bound(balance, 0, type(uint128).max);
        vm.prank(owner);
        token.mint(from, balance);
        value = bound(value, 0, token.balanceOf(from));

        Authorization memory a = Authorization(from, to, value, 0, block.timestamp + 1, nonce);
        uint256 fromBefore = token.balanceOf(from);
        uint256 toBefore = token.balanceOf(to);
        uint256 supplyBefore = token.totalSupply();

        (uint8 v, bytes32 r, bytes32 s) = _sign(fromPk, TRANSFER_TYPEHASH, a);
        vm.prank(relayer);
        if (useBytes) {
            _transfer(a, abi.encodePacked(r, s, v));
        } else {
            _transfer(a, v, r, s);
        }

        assertEq(token.balanceOf(from), fromBefore - value, "from balance");
        assertEq(token.balanceOf(to), toBefore + value, "to balance");
        assertEq(token.totalSupply(), supplyBefore, "total supply");
        assertTrue(token.authorizationState(from, nonce), "nonce used");
    }

    // ----------------------------------------------------------------------------------------------------------
    // Helpers
    // ----------------------------------------------------------------------------------------------------------

    /// @dev An authorization valid now and for the next hour, with nonce `NONCE`.
    function _authorization(address from, address to, uint256 value) internal view returns (Authorization memory) {
        return Authorization(from, to, value, 0, block.timestamp + 1 hours, NONCE);
    }

    function _hashTypedData(bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator, structHash));
    }

    function _permitDigest(address holder, address spender, uint256 value, uint256 nonce, uint256 deadline)
        internal
        view
        returns (bytes32)
    {
        return _hashTypedData(keccak256(abi.encode(PERMIT_TYPEHASH, holder, spender, value, nonce, deadline)));
    }

    function _authorizationDigest(bytes32 typeHash, Authorization memory a) internal view returns (bytes32) {
        return
            _hashTypedData(keccak256(abi.encode(typeHash, a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce)));
    }

    function _cancelDigest(address authorizer, bytes32 nonce) internal view returns (bytes32) {
        return _hashTypedData(keccak256(abi.encode(CANCEL_TYPEHASH, authorizer, nonce)));
    }

    function _sign(uint256 privateKey, bytes32 typeHash, Authorization memory a)
        internal
        view
        returns (uint8 v, bytes32 r, bytes32 s)
    {
        return vm.sign(privateKey, _authorizationDigest(typeHash, a));
    }

    function _signBytes(uint256 privateKey, bytes32 typeHash, Authorization memory a)
        internal
        view
        returns (bytes memory)
    {
        (uint8 v, bytes32 r, bytes32 s) = _sign(privateKey, typeHash, a);
        return abi.encodePacked(r, s, v);
    }

    /// @dev The 97-byte signature {ERC1271WalletMock} expects: ECDSA signature followed by its tag.
    function _walletSignature(uint256 privateKey, bytes32 typeHash, Authorization memory a)
        internal
        view
        returns (bytes memory)
    {
        return abi.encodePacked(_signBytes(privateKey, typeHash, a), WALLET_TAG);
    }

    function _transfer(Authorization memory a, uint8 v, bytes32 r, bytes32 s) internal {
        token.transferWithAuthorization(a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, v, r, s);
    }

    function _transfer(Authorization memory a, bytes memory signature) internal {
        token.transferWithAuthorization(a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, signature);
    }

    function _receive(Authorization memory a, uint8 v, bytes32 r, bytes32 s) internal {
        token.receiveWithAuthorization(a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, v, r, s);
    }

    function _receive(Authorization memory a, bytes memory signature) internal {
        token.receiveWithAuthorization(a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, signature);
    }

    function _expectAuthorizationUsed(Authorization memory a) internal {
        vm.expectEmit(true, true, true, true, address(token));
        emit TestUSDC.AuthorizationUsed(a.from, a.nonce);
        vm.expectEmit(true, true, true, true, address(token));
        emit IERC20.Transfer(a.from, a.to, a.value);
    }

    /// @dev Asserts that `a` was used and moved `a.value` from a fresh balance of `INITIAL_BALANCE` to an empty one.
    function _assertMoved(Authorization memory a) internal view {
        assertTrue(token.authorizationState(a.from, a.nonce), "nonce used");
        assertEq(token.balanceOf(a.from), INITIAL_BALANCE - a.value, "payer balance");
        assertEq(token.balanceOf(a.to), a.value, "payee balance");
    }
}

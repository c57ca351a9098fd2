// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "./utils/Test.sol";
import {DataMarket} from "../src/DataMarket.sol";
import {TestUSDC} from "../src/TestUSDC.sol";

/**
 * @dev Shared set-up for the DataMarket tests: a market with every role held by a distinct account, TestUSDC
 * allow-listed with the `bytes signature` overload, funded buyers with unlimited allowances, and helpers that list,
 * buy and sign permits and EIP-3009 authorizations.
 */
abstract contract DataMarketBase is Test {
    uint256 internal constant START = 1_700_000_000;
    uint64 internal constant START64 = 1_700_000_000;
    uint16 internal constant FEE_BPS = 250;
    uint256 internal constant PRICE = 25e6;
    uint32 internal constant WINDOW = 3 days;
    uint64 internal constant RELEASE_AT = START64 + WINDOW;
    bytes32 internal constant CONTENT_HASH = keccak256("dataset v1");
    uint256 internal constant FUNDS = 1_000_000e6;

    bytes32 internal constant DEFAULT_ADMIN_ROLE = 0x00;
    bytes32 internal constant MODERATOR_ROLE = keccak256("MODERATOR_ROLE");
    bytes32 internal constant RELAYER_ROLE = keccak256("RELAYER_ROLE");
    bytes32 internal constant ARBITER_ROLE = keccak256("ARBITER_ROLE");

    // Written out independently from TestUSDC (values match Circle's FiatToken).
    bytes32 internal constant PERMIT_TYPEHASH = 0x6e71edae12b1b97f4d1f60370fef10105fa2faae0126114a169c64845d6126c9;
    bytes32 internal constant TRANSFER_TYPEHASH = 0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267;
    bytes32 internal constant CANCEL_TYPEHASH = 0x158b0a9edf7a828aad02f63cd515c68ef2f50ba807396f6d12842833a1597429;
    bytes32 internal constant CONFIRM_ORDER_TYPEHASH =
        keccak256("ConfirmOrder(uint256 orderId,bytes32 nonce,uint256 deadline)");
    bytes32 internal constant DISPUTE_ORDER_TYPEHASH =
        keccak256("DisputeOrder(uint256 orderId,bytes32 nonce,uint256 deadline)");

    uint256 internal constant BUYER_PK = 0xB0B;
    uint256 internal constant BUYER2_PK = 0xCA7;

    address internal constant ADMIN = address(0xAD);
    address internal constant MODERATOR = address(0x40D);
    address internal constant RELAYER = address(0x7E1A7);
    address internal constant ARBITER = address(0xA7B);
    address internal constant TREASURY = address(0x7EA5);
    address internal constant SELLER = address(0x5E11);
    address internal constant PAYOUT = address(0xFA70);
    address internal constant STRANGER = address(0x5757);

    TestUSDC internal token;
    DataMarket internal market;
    address internal buyer;
    address internal buyer2;

    function setUp() public virtual {
        vm.warp(START);
        buyer = vm.addr(BUYER_PK);
        buyer2 = vm.addr(BUYER2_PK);
        token = new TestUSDC(address(this));
        market = new DataMarket(ADMIN, TREASURY, FEE_BPS);

        vm.startPrank(ADMIN);
        market.grantRole(MODERATOR_ROLE, MODERATOR);
        market.grantRole(RELAYER_ROLE, RELAYER);
        market.grantRole(ARBITER_ROLE, ARBITER);
        market.setTokenAllowed(address(token), true, true);
        vm.stopPrank();

        _fund(address(token), buyer);
        _fund(address(token), buyer2);

        vm.label(address(token), "TestUSDC");
        vm.label(address(market), "DataMarket");
        vm.label(buyer, "buyer");
        vm.label(buyer2, "buyer2");
        vm.label(ADMIN, "admin");
        vm.label(MODERATOR, "moderator");
        vm.label(RELAYER, "relayer");
        vm.label(ARBITER, "arbiter");
        vm.label(TREASURY, "treasury");
        vm.label(SELLER, "seller");
        vm.label(PAYOUT, "payout");
        vm.label(STRANGER, "stranger");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Helpers
    // ---------------------------------------------------------------------------------------------------------------

    /// @dev Mints FUNDS of `tokenAddress` (owned by this contract) to `account` and approves the market for all.
    function _fund(address tokenAddress, address account) internal {
        TestUSDC(tokenAddress).mint(account, FUNDS);
        vm.prank(account);
        TestUSDC(tokenAddress).approve(address(market), type(uint256).max);
    }

    /// @dev Creates an approved listing of `token` by SELLER, paying PAYOUT.
    function _list(uint256 price, uint32 window) internal returns (uint256 listingId) {
        return _listToken(address(token), price, window);
    }

    function _listToken(address tokenAddress, uint256 price, uint32 window) internal returns (uint256 listingId) {
        vm.prank(SELLER);
        listingId = market.createListing(tokenAddress, price, PAYOUT, CONTENT_HASH, window);
        vm.prank(MODERATOR);
        market.setApproval(_one(listingId), true);
    }

    function _buy(address account, uint256 listingId) internal returns (uint256 orderId) {
        vm.prank(account);
        return market.purchase(listingId, type(uint256).max);
    }

    function _one(uint256 id) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](1);
        ids[0] = id;
    }

    function _two(uint256 a, uint256 b) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](2);
        ids[0] = a;
        ids[1] = b;
    }

    /// @dev Signs an EIP-2612 permit of `value` for the market with the owner's current nonce.
    function _permit(uint256 pk, address tokenAddress, uint256 value, uint256 deadline)
        internal
        view
        returns (uint8 v, bytes32 r, bytes32 s)
    {
        address owner = vm.addr(pk);
        bytes32 structHash = keccak256(
            abi.encode(PERMIT_TYPEHASH, owner, address(market), value, TestUSDC(tokenAddress).nonces(owner), deadline)
        );
        return vm.sign(pk, _digest(tokenAddress, structHash));
    }

    /// @dev Signs a TransferWithAuthorization as a packed 65-byte `r || s || v` signature.
    function _signTransfer(
        uint256 pk,
        address tokenAddress,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce
    ) internal view returns (bytes memory) {
        address from = vm.addr(pk);
        bytes32 structHash = keccak256(abi.encode(TRANSFER_TYPEHASH, from, to, value, validAfter, validBefore, nonce));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, _digest(tokenAddress, structHash));
        return abi.encodePacked(r, s, v);
    }

    /// @dev The domain separator of a TestUSDC at `tokenAddress` (name "Test USD Coin", version "2").
    function _digest(address tokenAddress, bytes32 structHash) internal view returns (bytes32) {
        bytes32 domainSeparator = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Test USD Coin"),
                keccak256("2"),
                block.chainid,
                tokenAddress
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator, structHash));
    }

    /// @dev An authorization by `pk` paying `value` of `tokenAddress` to the market, valid for a day from now.
    function _authorization(uint256 pk, address tokenAddress, uint256 value, bytes32 nonce)
        internal
        view
        returns (DataMarket.Authorization memory auth)
    {
        auth = DataMarket.Authorization({
            from: vm.addr(pk),
            value: value,
            validAfter: 0,
            validBefore: block.timestamp + 1 days,
            nonce: nonce,
            signature: ""
        });
        auth.signature =
            _signTransfer(pk, tokenAddress, address(market), value, auth.validAfter, auth.validBefore, nonce);
    }

    /// @dev A CancelAuthorization signature by `pk` for `nonce`, packed `r || s || v`.
    function _signCancel(uint256 pk, address tokenAddress, bytes32 nonce) internal view returns (bytes memory) {
        bytes32 structHash = keccak256(abi.encode(CANCEL_TYPEHASH, vm.addr(pk), nonce));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, _digest(tokenAddress, structHash));
        return abi.encodePacked(r, s, v);
    }

    function _status(uint256 orderId) internal view returns (uint256) {
        return uint256(market.getOrder(orderId).status);
    }

    function _assertStatus(uint256 orderId, DataMarket.OrderStatus expected, string memory err) internal view {
        assertEq(_status(orderId), uint256(expected), err);
    }

    function _expectMarketEmit() internal {
        vm.expectEmit(true, true, true, true, address(market));
    }

    /// @dev Lets listings have any dispute window, zero (pay at purchase) included.
    function _allowAnyWindow() internal {
        vm.prank(ADMIN);
        market.setMinDisputeWindow(0);
    }

    /// @dev The buyer's 65-byte signature of `ConfirmOrder` or `DisputeOrder` (`typehash`) for the market.
    function _signOrder(uint256 pk, bytes32 typehash, uint256 orderId, bytes32 nonce, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, _orderDigest(typehash, orderId, nonce, deadline));
        return abi.encodePacked(r, s, v);
    }

    /// @dev The EIP-712 digest of a `ConfirmOrder` or `DisputeOrder`, with the domain written out independently.
    function _orderDigest(bytes32 typehash, uint256 orderId, bytes32 nonce, uint256 deadline)
        internal
        view
        returns (bytes32)
    {
        bytes32 domainSeparator = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("DataMarket"),
                keccak256("1"),
                block.chainid,
                address(market)
            )
        );
        bytes32 structHash = keccak256(abi.encode(typehash, orderId, nonce, deadline));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator, structHash));
    }

    /// @dev A surplus reference as the server makes it: the stray transfer's (tx hash, log index).
    function _ref(uint256 n) internal pure returns (bytes32) {
        return keccak256(abi.encode(keccak256(abi.encode("tx", n)), n));
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {DataMarketBase} from "./DataMarketBase.t.sol";
import {Vm} from "./utils/Test.sol";
import {DataMarket} from "../src/DataMarket.sol";

/**
 * @dev Gas of each hot path, estimated as a transaction receipt would show it: 21,000 + calldata + the call's own gas
 * (refunds capped at a fifth). Every scene is prepared in `setUp`, which forge runs as a transaction of its own, so
 * the measured call starts on cold accounts and storage like a real transaction. The scene matches the targets:
 * buyer, payout addresses and treasury already hold the token, the market already holds other escrowed orders,
 * allowances are unlimited. Receipts on anvil are the authoritative figures; these tests keep a regression from
 * slipping through `forge test`. Run with `-vv` to see the numbers.
 */
abstract contract DataMarketGasBase is DataMarketBase {
    event log_named_uint(string key, uint256 val);

    uint256 internal constant CREATE_LISTING_MAX = 150_000;
    uint256 internal constant PURCHASE_MAX = 110_000;
    uint256 internal constant SIGNED_PURCHASE_MAX = 150_000;
    uint256 internal constant SETTLE_MAX = 70_000;
    uint256 internal constant BATCH_RELEASE_PER_ORDER_MAX = 30_000;
    bytes32 internal constant NONCE = keccak256("nonce");

    uint256 internal listingId;
    uint256 internal orderId;

    function setUp() public virtual override {
        super.setUp();
        token.mint(PAYOUT, 1e6);
        token.mint(TREASURY, 1e6);
        // Other escrowed orders already in the market.
        _buy(buyer2, _list(PRICE, WINDOW));
        listingId = _list(PRICE, WINDOW);
    }

    /// @dev Calls the market with `data` from `sender` and returns the estimated receipt gasUsed.
    function _measure(string memory label, address sender, bytes memory data, uint256 limit)
        internal
        returns (uint256 gasUsed)
    {
        vm.prank(sender);
        (bool ok, bytes memory result) = address(market).call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
        Vm.Gas memory g = vm.lastCallGas();
        gasUsed = 21_000 + _calldataGas(data) + g.gasTotalUsed;
        // EIP-3529: the refund is capped at a fifth of the gas used.
        uint256 refund = g.gasRefunded > 0 ? uint256(uint64(g.gasRefunded)) : 0;
        gasUsed -= refund < gasUsed / 5 ? refund : gasUsed / 5;
        emit log_named_uint(label, gasUsed);
        assertTrue(gasUsed <= limit, string.concat(label, " is over its gas target"));
    }

    function _calldataGas(bytes memory data) internal pure returns (uint256 cost) {
        for (uint256 i; i < data.length; ++i) {
            cost += data[i] == 0 ? 4 : 16;
        }
    }
}

contract DataMarketGasListingTest is DataMarketGasBase {
    function test_Gas_CreateListing() public {
        bytes memory data =
            abi.encodeCall(DataMarket.createListing, (address(token), PRICE, PAYOUT, keccak256("v2"), WINDOW));
        _measure("createListing", SELLER, data, CREATE_LISTING_MAX);
    }

    function test_Gas_Purchase() public {
        _measure("purchase", buyer, abi.encodeCall(DataMarket.purchase, (listingId, PRICE)), PURCHASE_MAX);
    }

    function test_Gas_PurchaseWithAuthorization_Bytes() public {
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);
        bytes memory data = abi.encodeCall(DataMarket.purchaseWithAuthorization, (listingId, auth));
        _measure("purchaseWithAuthorization (bytes signature)", RELAYER, data, SIGNED_PURCHASE_MAX);
    }
}

contract DataMarketGasPermitTest is DataMarketGasBase {
    bytes internal data;

    function setUp() public override {
        super.setUp();
        vm.prank(buyer);
        token.approve(address(market), 0);
        // Signed here: reading the permit nonce in the test would warm the token up.
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _permit(BUYER_PK, address(token), PRICE, deadline);
        data = abi.encodeCall(DataMarket.purchaseWithPermit, (listingId, PRICE, deadline, v, r, s));
    }

    function test_Gas_PurchaseWithPermit() public {
        _measure("purchaseWithPermit (allowance 0 -> price -> 0)", buyer, data, SIGNED_PURCHASE_MAX);
    }
}

contract DataMarketGasVrsTest is DataMarketGasBase {
    function setUp() public override {
        super.setUp();
        vm.prank(ADMIN);
        market.setTokenAllowed(address(token), true, false);
    }

    function test_Gas_PurchaseWithAuthorization_Vrs() public {
        DataMarket.Authorization memory auth = _authorization(BUYER_PK, address(token), PRICE, NONCE);
        bytes memory data = abi.encodeCall(DataMarket.purchaseWithAuthorization, (listingId, auth));
        _measure("purchaseWithAuthorization (v, r, s)", RELAYER, data, SIGNED_PURCHASE_MAX);
    }
}

contract DataMarketGasSettleTest is DataMarketGasBase {
    function setUp() public override {
        super.setUp();
        orderId = _buy(buyer, listingId);
    }

    function test_Gas_Confirm() public {
        _measure("confirm", buyer, abi.encodeCall(DataMarket.confirm, (orderId)), SETTLE_MAX);
        _assertStatus(orderId, DataMarket.OrderStatus.Released, "released");
    }

    function test_Gas_ReleaseOne() public {
        vm.warp(block.timestamp + WINDOW);
        _measure("release (1 order)", STRANGER, abi.encodeCall(DataMarket.release, (_one(orderId))), SETTLE_MAX);
        _assertStatus(orderId, DataMarket.OrderStatus.Released, "released");
    }

    function test_Gas_Dispute() public {
        _measure("dispute", buyer, abi.encodeCall(DataMarket.dispute, (orderId)), SETTLE_MAX);
    }
}

contract DataMarketGasResolveTest is DataMarketGasBase {
    function setUp() public override {
        super.setUp();
        orderId = _buy(buyer, listingId);
        vm.prank(buyer);
        market.dispute(orderId);
    }

    function test_Gas_ResolvePartialRefund() public {
        _measure("resolve (50% refund)", ARBITER, abi.encodeCall(DataMarket.resolve, (orderId, 5000)), 100_000);
    }
}

/// @dev 20 matured orders of 20 listings with 20 different payout addresses, each already holding the token.
contract DataMarketGasBatchTest is DataMarketGasBase {
    uint256[] internal ids;

    function setUp() public override {
        super.setUp();
        for (uint256 i; i < 20; ++i) {
            // forge-lint: disable-next-line(unsafe-typecast) -- small constants
            address payout = address(uint160(0xFA000 + i));
            token.mint(payout, 1e6);
            // forge-lint: disable-next-line(unsafe-typecast) -- small constants
            vm.prank(address(uint160(0x5E000 + i)));
            uint256 id = market.createListing(address(token), PRICE + i, payout, keccak256(abi.encode(i)), WINDOW);
            vm.prank(MODERATOR);
            market.setApproval(_one(id), true);
            ids.push(_buy(buyer, id));
        }
        vm.warp(block.timestamp + WINDOW);
    }

    function test_Gas_ReleaseTwentyListings() public {
        uint256 gasUsed = _measure(
            "release (20 orders, 20 listings)",
            STRANGER,
            abi.encodeCall(DataMarket.release, (ids)),
            BATCH_RELEASE_PER_ORDER_MAX * 20
        );
        emit log_named_uint("release (20 orders), per order", gasUsed / 20);
        for (uint256 i; i < 20; ++i) {
            _assertStatus(ids[i], DataMarket.OrderStatus.Released, "released");
        }
    }
}

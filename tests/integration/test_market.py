"""The escrow contract on anvil, driven from Python: one purchase of each kind, the
authorization one signed by the official x402 client exactly as an agent would sign it, and
money that reached the market without an order returned as surplus."""
import os

from eth_account import Account
import pytest
from web3.logs import DISCARD
from web3 import Web3
from web3.exceptions import ContractCustomError
from x402.mechanisms.evm.exact.client import ExactEvmScheme
from x402.schemas import PaymentRequirements

from tests.conftest import DEV_KEYS
from tests.integration.test_token_signatures import PERMIT, reverted_with

pytestmark = pytest.mark.chain

PRICE = 25 * 10**6  # 25 test USDC
WINDOW = 3 * 24 * 3600


@pytest.fixture
def seller():
    return Account.from_key(DEV_KEYS[1])


@pytest.fixture
def buyer(chain):
    account = Account.from_key(DEV_KEYS[2])
    chain.token.mint(account.address, 1_000 * 10**6)
    return account


@pytest.fixture
def listing(chain, seller):
    """An active listing approved by the moderator (the operator key), owned by the seller."""
    market = chain.market.contract.functions
    content_hash = Web3.keccak(text="a dataset version")
    receipt = chain.send(
        market.createListing(chain.token.address, PRICE, seller.address, content_hash, WINDOW), seller.address
    )
    (event,) = chain.market.contract.events.ListingCreated().process_receipt(receipt, errors=DISCARD)
    listing_id = event["args"]["listingId"]
    assert event["args"]["owner"] == seller.address and event["args"]["contentHash"] == content_hash
    chain.send(market.setApproval([listing_id], True), chain.operator.address)
    assert chain.market.get_listing(listing_id)["approved"] is True
    return listing_id


def order_created(chain, receipt):
    (event,) = chain.market.contract.events.OrderCreated().process_receipt(receipt, errors=DISCARD)
    return event["args"]


def assert_escrowed(chain, listing_id, buyer, receipt):
    args = order_created(chain, receipt)
    assert args["listingId"] == listing_id and args["buyer"] == buyer and args["amount"] == PRICE
    assert args["feeBps"] == chain.market.fee_bps()
    order = chain.market.get_order(args["orderId"])
    assert order["status"] == "open" and order["buyer"] == buyer
    assert chain.market.order_of(listing_id, buyer) == args["orderId"]
    assert chain.market.has_access(listing_id, buyer) is True
    assert chain.market.total_escrowed(chain.token.address) == PRICE
    assert chain.token.balance_of(chain.market.address) == PRICE
    return args["orderId"]


def test_purchase_escrows_the_price_and_grants_access(chain, listing, buyer):
    token, market = chain.token.contract.functions, chain.market.contract.functions
    chain.send(token.approve(chain.market.address, 2**256 - 1), buyer.address)
    assert chain.market.has_access(listing, buyer.address) is False

    receipt = chain.send(market.purchase(listing, PRICE), buyer.address)
    order_id = assert_escrowed(chain, listing, buyer.address, receipt)

    with pytest.raises(ContractCustomError) as again:
        market.purchase(listing, PRICE).transact({"from": buyer.address})
    assert reverted_with(again.value, "DataMarketAlreadyPurchased(uint256,address,uint256)")

    chain.send(market.confirm(order_id), buyer.address)  # the buyer releases it early
    fee = PRICE * chain.market.fee_bps() // 10_000
    assert chain.market.get_order(order_id)["status"] == "released"
    assert chain.market.total_escrowed(chain.token.address) == 0
    assert chain.token.balance_of(chain.market.treasury()) >= fee


def test_purchase_with_permit_needs_no_prior_approval(chain, listing, buyer):
    deadline = chain.w3.eth.get_block("latest")["timestamp"] + 3600
    permit = {
        "owner": buyer.address,
        "spender": chain.market.address,
        "value": PRICE,
        "nonce": chain.token.nonces(buyer.address),
        "deadline": deadline,
    }
    signed = Account.sign_typed_data(buyer.key, chain.token.eip712_domain(), PERMIT, permit)
    call = chain.market.contract.functions.purchaseWithPermit(
        listing, PRICE, deadline, signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")
    )
    receipt = chain.send(call, buyer.address)
    assert_escrowed(chain, listing, buyer.address, receipt)
    assert chain.token.allowance(buyer.address, chain.market.address) == 0


def x402_authorization(chain, payer, amount):
    """What an x402 `exact` client sends: an EIP-3009 TransferWithAuthorization to the market,
    signed by the official x402 Python SDK."""
    requirements = PaymentRequirements(
        scheme="exact",
        network=f"eip155:{chain.w3.eth.chain_id}",
        asset=chain.token.address,
        amount=str(amount),
        pay_to=chain.market.address,
        max_timeout_seconds=300,
        extra={"name": chain.token.name(), "version": chain.token.version()},
    )
    payload = ExactEvmScheme(payer).create_payment_payload(requirements)
    auth = payload["authorization"]
    assert Web3.to_checksum_address(auth["to"]) == chain.market.address
    return (
        Web3.to_checksum_address(auth["from"]),
        int(auth["value"]),
        int(auth["validAfter"]),
        int(auth["validBefore"]),
        bytes.fromhex(auth["nonce"].removeprefix("0x")),
        bytes.fromhex(payload["signature"].removeprefix("0x")),
    )


@pytest.fixture
def agent(chain):
    """A buyer that holds test USDC but no ETH at all: it can only sign."""
    account = Account.from_key(os.urandom(32))
    chain.token.mint(account.address, 100 * 10**6)
    assert chain.w3.eth.get_balance(account.address) == 0
    return account


def test_purchase_with_authorization_from_the_x402_client(chain, listing, agent):
    authorization = x402_authorization(chain, agent, PRICE)
    relayer = chain.operator.address  # RELAYER_ROLE: the server settles for the agent
    call = chain.market.contract.functions.purchaseWithAuthorization(listing, authorization)

    receipt = chain.send(call, relayer)
    assert_escrowed(chain, listing, agent.address, receipt)
    assert chain.token.balance_of(agent.address) == 100 * 10**6 - PRICE

    with pytest.raises(ContractCustomError):  # the same authorization again
        call.transact({"from": relayer})
    assert chain.market.total_escrowed(chain.token.address) == PRICE


def test_only_the_relayer_may_submit_an_authorization(chain, listing, agent, seller):
    call = chain.market.contract.functions.purchaseWithAuthorization(listing, x402_authorization(chain, agent, PRICE))
    with pytest.raises(ContractCustomError) as denied:
        call.transact({"from": seller.address})
    assert reverted_with(denied.value, "AccessControlUnauthorizedAccount(address,bytes32)")


def test_authorization_sent_straight_to_the_token_becomes_returnable_surplus(chain, listing, agent):
    authorization = x402_authorization(chain, agent, PRICE)
    from_, value, valid_after, valid_before, nonce, signature = authorization
    anyone = Account.from_key(DEV_KEYS[3]).address
    chain.send(
        chain.token.contract.get_function_by_signature(
            "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
        )(from_, chain.market.address, value, valid_after, valid_before, nonce, signature),
        anyone,
    )
    assert chain.token.balance_of(chain.market.address) == PRICE
    assert chain.market.total_escrowed(chain.token.address) == 0
    assert chain.market.surplus(chain.token.address) == PRICE

    # The authorization is spent: it cannot also pay for an order.
    with pytest.raises(ContractCustomError):
        chain.market.contract.functions.purchaseWithAuthorization(listing, authorization).transact(
            {"from": chain.operator.address}
        )
    assert chain.market.has_access(listing, agent.address) is False

    returns = chain.market.contract.functions
    with pytest.raises(ContractCustomError) as too_much:
        returns.returnSurplus(chain.token.address, agent.address, PRICE + 1).transact({"from": chain.operator.address})
    assert reverted_with(too_much.value, "DataMarketSurplusExceeded(uint256,uint256)")

    receipt = chain.send(returns.returnSurplus(chain.token.address, agent.address, PRICE), chain.operator.address)
    (event,) = chain.market.contract.events.SurplusReturned().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["to"] == agent.address and event["args"]["amount"] == PRICE
    assert chain.token.balance_of(agent.address) == 100 * 10**6
    assert chain.market.surplus(chain.token.address) == 0


def test_surplus_return_never_touches_escrowed_money(chain, listing, buyer):
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), buyer.address)
    chain.send(chain.market.contract.functions.purchase(listing, PRICE), buyer.address)
    assert chain.market.surplus(chain.token.address) == 0
    with pytest.raises(ContractCustomError) as error:
        chain.market.contract.functions.returnSurplus(chain.token.address, buyer.address, 1).transact(
            {"from": chain.operator.address}
        )
    assert reverted_with(error.value, "DataMarketSurplusExceeded(uint256,uint256)")


def test_release_after_the_window_pays_owner_and_treasury(chain, listing, buyer, seller):
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), buyer.address)
    order_id = order_created(chain, chain.send(chain.market.contract.functions.purchase(listing, PRICE), buyer.address))["orderId"]
    seller_before = chain.token.balance_of(seller.address)
    treasury_before = chain.token.balance_of(chain.market.treasury())

    chain.send(chain.market.contract.functions.release([order_id]), buyer.address)  # too early: skipped
    assert chain.market.get_order(order_id)["status"] == "open"

    chain.advance(WINDOW + 1)
    receipt = chain.send(chain.market.contract.functions.release([order_id]), Account.from_key(DEV_KEYS[3]).address)
    (event,) = chain.market.contract.events.OrderReleased().process_receipt(receipt, errors=DISCARD)
    fee = PRICE * chain.market.fee_bps() // 10_000
    assert event["args"]["fee"] == fee and event["args"]["ownerAmount"] == PRICE - fee
    assert chain.token.balance_of(seller.address) - seller_before == PRICE - fee
    assert chain.token.balance_of(chain.market.treasury()) - treasury_before == fee
    assert chain.market.has_access(listing, buyer.address) is True

"""The escrow contract on anvil, driven from Python: one purchase of each kind, the
authorization one signed by the official x402 client exactly as an agent would sign it, money
that reached the market without an order returned as surplus (once per stray transfer), an
agent without ETH confirming and disputing by signature, an undecided dispute refunded after its
deadline, buying again after a full refund, and a blocked payout turned into a credit."""
import os

from eth_account import Account
import pytest
from web3.logs import DISCARD
from web3 import Web3
from web3.exceptions import ContractCustomError
from x402.mechanisms.evm.exact.client import ExactEvmScheme
from x402.schemas import PaymentRequirements

from marketplace.chain.artifacts import load_artifact
from marketplace.chain.contracts import surplus_reference
from marketplace.chain.services import deploy_contract
from tests.conftest import DEV_KEYS
from tests.integration.test_token_signatures import PERMIT, reverted_with, sign_authorization

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
    stray = chain.send(
        chain.token.contract.get_function_by_signature(
            "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
        )(from_, chain.market.address, value, valid_after, valid_before, nonce, signature),
        anyone,
    )
    (transfer,) = chain.token.contract.events.Transfer().process_receipt(stray, errors=DISCARD)
    ref = surplus_reference(stray["transactionHash"], chain.token.address, 0)
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
        returns.returnSurplus(chain.token.address, agent.address, PRICE + 1, ref).transact(
            {"from": chain.operator.address}
        )
    assert reverted_with(too_much.value, "DataMarketSurplusExceeded(uint256,uint256)")

    receipt = chain.send(returns.returnSurplus(chain.token.address, agent.address, PRICE, ref), chain.operator.address)
    (event,) = chain.market.contract.events.SurplusReturned().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["to"] == agent.address and event["args"]["amount"] == PRICE
    assert event["args"]["ref"] == ref and chain.market.surplus_returned(ref)
    assert chain.token.balance_of(agent.address) == 100 * 10**6
    assert chain.market.surplus(chain.token.address) == 0

    # The same stray transfer is never answered twice, even when there is surplus again.
    chain.token.mint(chain.market.address, PRICE)
    with pytest.raises(ContractCustomError) as again:
        returns.returnSurplus(chain.token.address, agent.address, PRICE, ref).transact({"from": chain.operator.address})
    assert reverted_with(again.value, "DataMarketSurplusAlreadyReturned(bytes32)")


def test_surplus_return_never_touches_escrowed_money(chain, listing, buyer):
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), buyer.address)
    chain.send(chain.market.contract.functions.purchase(listing, PRICE), buyer.address)
    assert chain.market.surplus(chain.token.address) == 0
    with pytest.raises(ContractCustomError) as error:
        chain.market.contract.functions.returnSurplus(
            chain.token.address, buyer.address, 1, surplus_reference("0x" + "11" * 32, chain.token.address, 0)
        ).transact({"from": chain.operator.address})
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


def sign_order(chain, account, kind, order_id, deadline=None):
    """The buyer's EIP-712 ConfirmOrder or DisputeOrder, as a wallet or an agent signs it."""
    nonce = os.urandom(32)
    deadline = deadline or chain.w3.eth.get_block("latest")["timestamp"] + 3600
    typed = chain.market.order_signature_message(kind, order_id, nonce, deadline)
    signed = Account.sign_typed_data(account.key, typed["domain"], typed["types"], typed["message"])
    return nonce, deadline, signed.signature


def agent_order(chain, listing, agent):
    receipt = chain.send(
        chain.market.contract.functions.purchaseWithAuthorization(listing, x402_authorization(chain, agent, PRICE)),
        chain.operator.address,
    )
    return order_created(chain, receipt)["orderId"]


def test_an_agent_without_eth_confirms_by_signature(chain, listing, agent, seller):
    order_id = agent_order(chain, listing, agent)
    seller_before = chain.token.balance_of(seller.address)
    nonce, deadline, signature = sign_order(chain, agent, "ConfirmOrder", order_id)

    relayer = Account.from_key(DEV_KEYS[3]).address  # anyone may submit it
    receipt = chain.send(chain.market.contract.functions.confirmBySig(order_id, nonce, deadline, signature), relayer)
    (event,) = chain.market.contract.events.OrderReleased().process_receipt(receipt, errors=DISCARD)
    fee = PRICE * chain.market.fee_bps() // 10_000
    assert event["args"]["orderId"] == order_id and event["args"]["ownerAmount"] == PRICE - fee
    assert chain.market.get_order(order_id)["status"] == "released"
    assert chain.token.balance_of(seller.address) - seller_before == PRICE - fee
    assert chain.market.nonce_used(agent.address, nonce)
    assert chain.w3.eth.get_balance(agent.address) == 0, "the agent never needed ETH"

    with pytest.raises(ContractCustomError) as replay:
        chain.market.contract.functions.confirmBySig(order_id, nonce, deadline, signature).transact({"from": relayer})
    assert reverted_with(replay.value, "DataMarketNonceUsed(address,bytes32)")


def test_a_signature_by_someone_else_is_refused(chain, listing, agent, buyer):
    order_id = agent_order(chain, listing, agent)
    nonce, deadline, signature = sign_order(chain, buyer, "DisputeOrder", order_id)
    with pytest.raises(ContractCustomError) as refused:
        chain.market.contract.functions.disputeBySig(order_id, nonce, deadline, signature).transact(
            {"from": chain.operator.address}
        )
    assert reverted_with(refused.value, "DataMarketInvalidSignature(uint256,address)")
    assert chain.market.get_order(order_id)["status"] == "open"


def test_an_undecided_dispute_is_refunded_after_its_deadline_and_the_agent_buys_again(chain, listing, agent):
    order_id = agent_order(chain, listing, agent)
    nonce, deadline, signature = sign_order(chain, agent, "DisputeOrder", order_id)
    receipt = chain.send(
        chain.market.contract.functions.disputeBySig(order_id, nonce, deadline, signature), chain.operator.address
    )
    (event,) = chain.market.contract.events.OrderDisputed().process_receipt(receipt, errors=DISCARD)
    disputed_at = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert event["args"]["deadline"] == disputed_at + chain.market.dispute_period()
    assert chain.market.get_order(order_id)["dispute_deadline"] == event["args"]["deadline"]

    settle = chain.market.contract.functions.settleExpiredDispute(order_id)
    with pytest.raises(ContractCustomError) as early:
        settle.transact({"from": chain.operator.address})
    assert reverted_with(early.value, "DataMarketDisputeNotExpired(uint256,uint64)")

    chain.advance(chain.market.dispute_period())
    receipt = chain.send(settle, Account.from_key(DEV_KEYS[3]).address)  # anyone, once it expired
    (expired,) = chain.market.contract.events.DisputeExpired().process_receipt(receipt, errors=DISCARD)
    assert expired["args"]["refund"] == PRICE
    assert chain.market.get_order(order_id)["status"] == "refunded"
    assert chain.token.balance_of(agent.address) == 100 * 10**6, "refunded in full"
    assert chain.market.has_access(listing, agent.address) is False

    # The x402 client dates its authorizations by our clock; the chain's is now 14 days ahead.
    message, signed = sign_authorization(chain.token, agent, chain.market.address, PRICE)
    authorization = (agent.address, PRICE, message["validAfter"], message["validBefore"], message["nonce"],
                     signed.signature)
    receipt = chain.send(
        chain.market.contract.functions.purchaseWithAuthorization(listing, authorization), chain.operator.address
    )
    again = order_created(chain, receipt)["orderId"]
    assert again != order_id and chain.market.order_of(listing, agent.address) == again
    assert chain.market.has_access(listing, agent.address) is True
    old = chain.market.get_order(order_id)
    assert old["status"] == "refunded" and old["amount"] == PRICE
    assert old["dispute_deadline"] == event["args"]["deadline"], "the old order keeps its own data"


def test_a_blocked_payout_becomes_a_credit_the_owner_withdraws(chain, seller, buyer):
    """A token that blocks the payout address (as USDC's blacklist can) no longer holds the order
    up: the owner's share waits as a credit, withdrawn to an address of the owner's choice."""
    blocking = deploy_contract(chain.w3, "MarketRevertingToken", [chain.operator.address])
    # A test mock compiled with the contracts (contracts/test/mocks).
    token = chain.w3.eth.contract(address=blocking.address, abi=load_artifact("MarketRevertingToken").abi)
    market = chain.market.contract.functions
    chain.send(market.setTokenAllowed(blocking.address, True, True), chain.operator.address)
    chain.send(token.functions.mint(buyer.address, PRICE), chain.operator.address)
    chain.send(token.functions.approve(chain.market.address, PRICE), buyer.address)
    receipt = chain.send(
        market.createListing(blocking.address, PRICE, seller.address, Web3.keccak(text="blocked"), WINDOW), seller.address
    )
    (created,) = chain.market.contract.events.ListingCreated().process_receipt(receipt, errors=DISCARD)
    listing_id = created["args"]["listingId"]
    chain.send(market.setApproval([listing_id], True), chain.operator.address)
    order_id = order_created(chain, chain.send(market.purchase(listing_id, PRICE), buyer.address))["orderId"]
    chain.send(token.functions.setBlocked(seller.address, True), chain.operator.address)

    receipt = chain.send(market.confirm(order_id), buyer.address)
    fee = PRICE * chain.market.fee_bps() // 10_000
    (credited,) = chain.market.contract.events.Credited().process_receipt(receipt, errors=DISCARD)
    assert credited["args"]["account"] == seller.address and credited["args"]["amount"] == PRICE - fee
    assert chain.market.get_order(order_id)["status"] == "released"
    assert chain.market.credit_of(blocking.address, seller.address) == PRICE - fee
    assert chain.market.total_credits(blocking.address) == PRICE - fee
    assert chain.market.surplus(blocking.address) == 0, "a credit is never surplus"

    elsewhere = Account.from_key(DEV_KEYS[3]).address
    receipt = chain.send(market.withdraw(blocking.address, elsewhere), seller.address)
    (withdrawn,) = chain.market.contract.events.Withdrawn().process_receipt(receipt, errors=DISCARD)
    assert withdrawn["args"]["to"] == elsewhere and withdrawn["args"]["amount"] == PRICE - fee
    assert token.functions.balanceOf(elsewhere).call() == PRICE - fee
    assert chain.market.credit_of(blocking.address, seller.address) == 0
    assert token.functions.balanceOf(chain.market.address).call() == 0

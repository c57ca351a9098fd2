"""x402 payments checked against anvil with the real market and token: a buyer's signed
TransferWithAuthorization (by a dev key, by the official x402 client, by an EIP-1271 wallet)
passes `verify`, and every bad payment is refused with its own code before anything is sent.
Nothing here settles: each test's chain state is reverted afterwards."""
import base64
import json
import secrets
import time

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
import pytest
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.mechanisms.evm.exact.client import ExactEvmScheme
from x402.schemas import PaymentPayload

from marketplace.chain.services import deploy_contract
from marketplace.payments import x402 as headers
from marketplace.payments.verify import VALID_BEFORE_MARGIN, requirement_for, transfer_typed_data, verify
from marketplace.payments.x402 import PaymentRefused
from tests.conftest import DEV_KEYS, free_port
from tests.integration.test_operator_sender import PRICE, new_listing

pytestmark = [pytest.mark.chain, pytest.mark.django_db]
RESOURCE = "https://data.example/pay/1"
SELLER_KEY, PAYER_KEY, STRANGER_KEY = DEV_KEYS[1], DEV_KEYS[2], DEV_KEYS[3]


@pytest.fixture
def seller():
    return Account.from_key(SELLER_KEY)


@pytest.fixture
def payer(chain):
    account = Account.from_key(PAYER_KEY)
    chain.token.mint(account.address, 10 * PRICE)
    return account


@pytest.fixture
def listing_id(chain, seller):
    listing_id = new_listing(chain, seller, text=f"x402 {secrets.token_hex(4)}")
    chain.send(chain.market.contract.functions.setApproval([listing_id], True), chain.operator.address)
    return listing_id


@pytest.fixture
def requirement(chain, listing_id):
    return requirement_for(listing_id, resource=RESOURCE, description="Rainfall", mime_type="text/csv")


def now(chain) -> int:
    """The later of the wall clock and the chain's (earlier tests may have moved anvil ahead)."""
    return max(int(time.time()), chain.w3.eth.get_block("latest")["timestamp"])


def authorization(chain, requirement, account, **fields):
    values = {"payer": account.address, "to": requirement.pay_to, "value": requirement.amount,
              "valid_after": 0, "valid_before": now(chain) + 300, "nonce": "0x" + secrets.token_hex(32)}
    values.update(fields)
    return values


def sign(requirement, key, values, **domain) -> str:
    data = transfer_typed_data(token=domain.get("token", requirement.asset), token_name=requirement.token_name,
                               token_version=requirement.token_version, **values)
    return "0x" + bytes(Account.sign_typed_data(key, full_message=data).signature).hex()


def payload(values, signature) -> dict:
    return {"signature": signature, "authorization": {
        "from": values["payer"], "to": values["to"], "value": str(values["value"]),
        "validAfter": str(values["valid_after"]), "validBefore": str(values["valid_before"]),
        "nonce": values["nonce"]}}


def b64(document) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def v2_header(requirement, values, signature, **accepted) -> str:
    return b64({"x402Version": 2, "resource": {"url": requirement.resource},
                "accepted": {**requirement.accepts(), **accepted}, "payload": payload(values, signature)})


def v1_header(values, signature, network="anvil") -> str:
    return b64({"x402Version": 1, "scheme": "exact", "network": network, "payload": payload(values, signature)})


def signed_payment(chain, requirement, account, key=None, accepted=None, **fields):
    values = authorization(chain, requirement, account, **fields)
    return headers.parse_payment_signature(
        v2_header(requirement, values, sign(requirement, key or account.key, values), **(accepted or {})))


def refused(payment, requirement, code, **options):
    with pytest.raises(PaymentRefused) as caught:
        verify(payment, requirement, **options)
    assert caught.value.code == code, caught.value.message
    assert caught.value.message
    return caught.value


def test_the_requirement_is_read_from_the_chain(chain, requirement, listing_id):
    assert requirement.listing_id == listing_id and requirement.amount == PRICE
    assert requirement.asset == chain.token.address and requirement.pay_to == chain.market.address
    assert requirement.network == f"eip155:{chain.w3.eth.chain_id}"
    assert (requirement.token_name, requirement.token_version) == (chain.token.name(), chain.token.version())


def test_a_signed_authorization_for_the_price_is_accepted(chain, requirement, payer):
    payment = signed_payment(chain, requirement, payer)
    balance = chain.token.balance_of(payer.address)
    assert verify(payment, requirement) == payer.address
    assert chain.token.balance_of(payer.address) == balance, "verify sends nothing"
    assert not chain.token.authorization_state(payer.address, bytes.fromhex(payment.nonce[2:]))


def test_what_the_official_client_signs_for_the_402_is_accepted(chain, requirement, payer):
    """An x402 v2 client reads the PAYMENT-REQUIRED header and signs with its own code."""
    required = decode_payment_required_header(
        headers.payment_required_header(requirement, sign_in_nonce=secrets.token_hex(16), domain="data.example"))
    (accepts,) = required.accepts
    inner = ExactEvmScheme(payer).create_payment_payload(accepts, required.extensions)
    value = encode_payment_signature_header(PaymentPayload(accepted=accepts, payload=inner,
                                                           resource=required.resource))
    assert verify(headers.parse_payment_signature(value), requirement) == payer.address


def test_a_v1_payment_is_accepted_and_overpaying_is_refused(chain, requirement, payer):
    values = authorization(chain, requirement, payer)
    assert verify(headers.parse_x_payment(v1_header(values, sign(requirement, payer.key, values))),
                  requirement) == payer.address
    more = authorization(chain, requirement, payer, value=PRICE + 1)
    refused(headers.parse_x_payment(v1_header(more, sign(requirement, payer.key, more))), requirement,
            "wrong_amount")


def test_a_v1_payment_on_another_network_is_refused(chain, requirement, payer):
    values = authorization(chain, requirement, payer)
    refused(headers.parse_x_payment(v1_header(values, sign(requirement, payer.key, values), network="base")),
            requirement, "wrong_network")


def test_a_contract_wallet_pays_through_eip1271(chain, requirement):
    owner = Account.create()
    tag = b"\x42" * 32
    wallet = deploy_contract(chain.w3, "ERC1271WalletMock", [owner.address, tag])
    chain.token.mint(wallet.address, PRICE)
    values = authorization(chain, requirement, wallet, payer=wallet.address)
    data = transfer_typed_data(token=requirement.asset, token_name=requirement.token_name,
                               token_version=requirement.token_version, **values)
    digest = _hash_eip191_message(encode_typed_data(full_message=data))
    signature = "0x" + (bytes(owner.unsafe_sign_hash(digest).signature) + tag).hex()
    payment = headers.parse_payment_signature(v2_header(requirement, values, signature))
    assert verify(payment, requirement) == wallet.address
    forged = "0x" + (bytes(Account.create().unsafe_sign_hash(digest).signature) + tag).hex()
    refused(headers.parse_payment_signature(v2_header(requirement, values, forged)), requirement, "bad_signature")


def test_a_wrong_amount_is_refused(chain, requirement, payer):
    refused(signed_payment(chain, requirement, payer, value=PRICE - 1), requirement, "wrong_amount")
    refused(signed_payment(chain, requirement, payer, accepted={"amount": str(PRICE + 1)}), requirement,
            "wrong_amount")


def test_another_asset_is_refused(chain, requirement, payer):
    other = Account.create().address
    refused(signed_payment(chain, requirement, payer, accepted={"asset": other}), requirement, "wrong_asset")


def test_another_network_is_refused(chain, requirement, payer):
    refused(signed_payment(chain, requirement, payer, accepted={"network": "eip155:8453"}), requirement,
            "wrong_network")


def test_paying_anyone_but_the_market_is_refused(chain, requirement, payer, seller):
    refused(signed_payment(chain, requirement, payer, to=seller.address), requirement, "wrong_pay_to")
    refused(signed_payment(chain, requirement, payer, accepted={"payTo": seller.address}), requirement,
            "wrong_pay_to")


def test_the_validity_window_is_checked(chain, requirement, payer, settings):
    at = now(chain)
    refused(signed_payment(chain, requirement, payer, valid_before=at - 1), requirement, "expired", now=at)
    refused(signed_payment(chain, requirement, payer, valid_after=at + 600), requirement, "not_yet_valid", now=at)
    soon = signed_payment(chain, requirement, payer, valid_before=at + settings.X402_SETTLEMENT_SECONDS)
    refused(soon, requirement, "expires_too_soon", now=at)


def test_a_valid_before_beyond_max_timeout_and_its_margin_is_refused(chain, requirement, payer, settings):
    """A settled header is served again until its validBefore: a far one would be a bearer pass."""
    at = now(chain)
    longest = settings.X402_TIMEOUT_SECONDS + VALID_BEFORE_MARGIN
    far = refused(signed_payment(chain, requirement, payer, valid_before=at + longest + 1), requirement,
                  "valid_too_long", now=at)
    assert far.status == 402 and str(settings.X402_TIMEOUT_SECONDS) in far.message
    assert verify(signed_payment(chain, requirement, payer, valid_before=at + longest), requirement,
                  now=at) == payer.address


def test_a_used_nonce_is_refused(chain, requirement, payer, listing_id):
    payment = signed_payment(chain, requirement, payer)
    auth = (payment.payer, payment.value, payment.valid_after, payment.valid_before,
            bytes.fromhex(payment.nonce[2:]), payment.signature)
    chain.send(chain.market.contract.functions.purchaseWithAuthorization(listing_id, auth), chain.operator.address)
    assert refused(payment, requirement, "nonce_used").status == 409


def test_a_cancelled_nonce_is_refused(chain, requirement, payer):
    payment = signed_payment(chain, requirement, payer)
    cancel = {
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                   {"name": "chainId", "type": "uint256"},
                                   {"name": "verifyingContract", "type": "address"}],
                  "CancelAuthorization": [{"name": "authorizer", "type": "address"},
                                          {"name": "nonce", "type": "bytes32"}]},
        "primaryType": "CancelAuthorization", "domain": chain.token.eip712_domain(),
        "message": {"authorizer": payer.address, "nonce": payment.nonce},
    }
    signature = bytes(Account.sign_typed_data(payer.key, full_message=cancel).signature)
    function = chain.token.contract.get_function_by_signature("cancelAuthorization(address,bytes32,bytes)")
    chain.send(function(payer.address, bytes.fromhex(payment.nonce[2:]), signature), payer.address)
    refused(payment, requirement, "nonce_used")


def test_a_signature_by_someone_else_is_refused(chain, requirement, payer):
    refused(signed_payment(chain, requirement, payer, key=STRANGER_KEY), requirement, "bad_signature")


def test_a_payer_without_the_money_is_refused(chain, requirement):
    poor = Account.create()
    chain.token.mint(poor.address, PRICE - 1)
    refused(signed_payment(chain, requirement, poor), requirement, "insufficient_balance")


def test_a_repriced_listing_is_refused(chain, requirement, payer, seller, listing_id):
    payment = signed_payment(chain, requirement, payer)
    chain.send(chain.market.contract.functions.updateListing(listing_id, PRICE * 2, seller.address), seller.address)
    assert refused(payment, requirement, "price_changed").status == 409


def test_a_deactivated_listing_is_refused(chain, requirement, payer, seller, listing_id):
    payment = signed_payment(chain, requirement, payer)
    chain.send(chain.market.contract.functions.setListingActive(listing_id, False), seller.address)
    assert refused(payment, requirement, "not_for_sale").status == 410
    with pytest.raises(PaymentRefused, match="not for sale"):
        requirement_for(listing_id, resource=RESOURCE)


def test_an_unapproved_or_unknown_listing_has_no_requirement(chain, seller):
    unapproved = new_listing(chain, seller, text="not approved")
    with pytest.raises(PaymentRefused) as caught:
        requirement_for(unapproved, resource=RESOURCE)
    assert caught.value.code == "not_for_sale"
    with pytest.raises(PaymentRefused) as caught:
        requirement_for(10**9, resource=RESOURCE)
    assert caught.value.code == "unknown_listing"


def test_what_the_market_would_refuse_is_caught_by_the_simulation(chain, requirement, payer, listing_id):
    """A payer who holds a live order for the listing: every check passes but the call."""
    first = signed_payment(chain, requirement, payer)
    auth = (first.payer, first.value, first.valid_after, first.valid_before, bytes.fromhex(first.nonce[2:]),
            first.signature)
    chain.send(chain.market.contract.functions.purchaseWithAuthorization(listing_id, auth), chain.operator.address)
    error = refused(signed_payment(chain, requirement, payer), requirement, "would_revert")
    assert "DataMarket" in error.message


def test_without_the_relayer_role_the_server_says_so(chain, requirement, payer, settings):
    settings.CHAIN_OPERATOR_KEY = STRANGER_KEY
    assert refused(signed_payment(chain, requirement, payer), requirement, "relay_unavailable").status == 503


def test_the_chain_down_is_a_clear_error(chain, requirement, payer, settings):
    payment = signed_payment(chain, requirement, payer)
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"
    assert refused(payment, requirement, "chain_unavailable").status == 503
    with pytest.raises(PaymentRefused) as caught:
        requirement_for(requirement.listing_id, resource=RESOURCE)
    assert caught.value.code == "chain_unavailable"

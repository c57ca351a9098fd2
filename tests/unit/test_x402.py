"""The x402 headers without a chain: the 402 answer in both versions (and that the official x402
package reads it), payment headers read into a Payment, every malformed header refused with its
own code, and the settlement answer."""
import base64
from datetime import datetime, timezone as dt_timezone
import json

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
import pytest
from x402.http.utils import (
    decode_payment_required_header, decode_payment_response_header, decode_payment_signature_header,
    encode_payment_signature_header,
)
from x402.mechanisms.evm import AUTHORIZATION_TYPES
from x402.mechanisms.evm.eip712 import hash_eip3009_authorization
from x402.mechanisms.evm.types import ExactEIP3009Authorization
from x402.schemas import PaymentPayload, PaymentRequired
from x402.schemas.v1 import PaymentPayloadV1, PaymentRequiredV1

from marketplace.api import Refused
from marketplace.payments import x402 as headers
from marketplace.payments.verify import TYPES, transfer_typed_data
from marketplace.payments.x402 import Payment, PaymentRefused, Requirement

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
MARKET = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
PAYER = Account.create().address
NONCE = "0x" + "ab" * 32


@pytest.fixture(autouse=True)
def _local_chain(settings):
    settings.CHAIN_ID = 31337
    settings.X402_V1_NETWORK = "anvil"
    settings.X402_TIMEOUT_SECONDS = 300


def requirement(**fields):
    return Requirement(**{"listing_id": 7, "amount": 25_000_000, "asset": TOKEN, "pay_to": MARKET,
                          "network": "eip155:31337", "resource": "https://data.example/pay/7",
                          "token_name": "Test USD Coin", "token_version": "2", "description": "Rainfall",
                          "mime_type": "text/csv", **fields})


def authorization(**fields):
    return {"from": PAYER, "to": MARKET, "value": "25000000", "validAfter": "0", "validBefore": "1900000000",
            "nonce": NONCE, **fields}


def v2_document(accepted=None, **payload_fields):
    return {"x402Version": 2, "resource": {"url": "https://data.example/pay/7"},
            "accepted": accepted or requirement().accepts(),
            "payload": {"signature": "0x" + "11" * 65, "authorization": authorization(), **payload_fields}}


def b64(document) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def decoded(value: str) -> dict:
    return json.loads(base64.b64decode(value))


def test_the_payment_required_header_carries_the_v2_requirement_and_extensions():
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt_timezone.utc)
    value = headers.payment_required_header(requirement(), sign_in_nonce="n0nce", domain="data.example",
                                            output={"size": 12}, now=now)
    document = decoded(value)
    assert document["x402Version"] == 2
    assert document["resource"] == {"url": "https://data.example/pay/7", "description": "Rainfall",
                                    "mimeType": "text/csv"}
    (accepts,) = document["accepts"]
    assert accepts == {"scheme": "exact", "network": "eip155:31337", "amount": "25000000", "asset": TOKEN,
                       "payTo": MARKET, "maxTimeoutSeconds": 300,
                       "extra": {"name": "Test USD Coin", "version": "2", "assetTransferMethod": "eip3009"}}
    siwx = document["extensions"]["sign-in-with-x"]
    assert siwx["info"]["nonce"] == "n0nce" and siwx["info"]["domain"] == "data.example"
    assert siwx["info"]["uri"] == "https://data.example/pay/7"
    assert siwx["info"]["issuedAt"] == "2026-01-02T03:04:05.000Z"
    assert siwx["info"]["expirationTime"] == "2026-01-02T03:09:05.000Z"
    assert siwx["supportedChains"] == [{"chainId": "eip155:31337", "type": "eip191"}]
    bazaar = document["extensions"]["bazaar"]
    assert bazaar["info"]["input"] == {"type": "http", "method": "GET"}
    assert bazaar["info"]["output"] == {"type": "file", "example": {"size": 12}}


def test_the_official_package_reads_the_402():
    value = headers.payment_required_header(requirement(), sign_in_nonce="n", domain="data.example")
    parsed = decode_payment_required_header(value)
    assert isinstance(parsed, PaymentRequired)
    (accepts,) = parsed.accepts
    assert (accepts.scheme, accepts.network, accepts.amount, accepts.asset, accepts.pay_to) == (
        "exact", "eip155:31337", "25000000", TOKEN, MARKET)
    assert accepts.max_timeout_seconds >= 60 and accepts.extra["name"] == "Test USD Coin"
    assert parsed.resource.url == "https://data.example/pay/7"
    assert set(parsed.extensions) == {"sign-in-with-x", "bazaar", "payment-identifier"}
    v1 = PaymentRequiredV1.model_validate(headers.payment_required_v1(requirement()))
    (entry,) = v1.accepts
    assert (entry.network, entry.max_amount_required, entry.resource, entry.pay_to, entry.asset) == (
        "anvil", "25000000", "https://data.example/pay/7", MARKET, TOKEN)


def test_the_v1_body_names_its_network_as_configured(settings):
    settings.X402_V1_NETWORK = "localnet"
    body = headers.payment_required_v1(requirement())
    assert body["x402Version"] == 1 and body["accepts"][0]["network"] == "localnet"
    assert body["accepts"][0]["maxAmountRequired"] == "25000000"


def test_the_transfer_types_are_the_packages():
    assert TYPES["TransferWithAuthorization"] == [dict(item) for item in AUTHORIZATION_TYPES[
        "TransferWithAuthorization"]]


def test_what_the_payer_signs_hashes_as_the_package_hashes_it():
    data = transfer_typed_data(token=TOKEN, token_name="Test USD Coin", token_version="2", payer=PAYER, to=MARKET,
                               value=25_000_000, valid_after=0, valid_before=1_900_000_000, nonce=NONCE)
    theirs = hash_eip3009_authorization(
        ExactEIP3009Authorization(from_address=PAYER, to=MARKET, value="25000000", valid_after="0",
                                  valid_before="1900000000", nonce=NONCE), 31337, TOKEN, "Test USD Coin", "2")
    assert _hash_eip191_message(encode_typed_data(full_message=data)) == theirs


def test_a_v2_payment_header_is_read():
    payment = headers.parse_payment_signature(b64(v2_document()))
    assert isinstance(payment, Payment)
    assert (payment.version, payment.scheme, payment.network, payment.amount, payment.asset, payment.pay_to) == (
        2, "exact", "eip155:31337", 25_000_000, TOKEN, MARKET)
    assert (payment.payer, payment.to, payment.value, payment.valid_after, payment.valid_before) == (
        PAYER, MARKET, 25_000_000, 0, 1_900_000_000)
    assert payment.nonce == NONCE and payment.signature == b"\x11" * 65


def test_what_the_official_client_encodes_is_read():
    document = v2_document()
    value = encode_payment_signature_header(PaymentPayload.model_validate(document))
    assert headers.parse_payment_signature(value).payer == PAYER
    v1 = PaymentPayloadV1.model_validate({"x402Version": 1, "scheme": "exact", "network": "anvil",
                                          "payload": document["payload"]})
    payment = headers.parse_x_payment(encode_payment_signature_header(v1))
    assert payment.version == 1 and payment.network == "eip155:31337" and payment.amount is None


def test_the_payment_identifier_is_read_as_the_official_client_writes_it():
    from x402.extensions.payment_identifier import append_payment_identifier_to_extensions

    document = v2_document()
    document["extensions"] = append_payment_identifier_to_extensions(
        {"payment-identifier": {"info": {"required": False}}}, "run_2026_12_07-0001")
    assert headers.parse_payment_signature(b64(document)).payment_id == "run_2026_12_07-0001"
    assert headers.parse_payment_signature(b64(v2_document())).payment_id == ""
    other = {**v2_document(), "extensions": {"bazaar": {"info": {}}}}
    assert headers.parse_payment_signature(b64(other)).payment_id == ""


def test_a_payment_is_the_same_payment_whatever_its_encoding():
    from marketplace.payments.settlement import canonical

    document = v2_document()
    spaced = base64.b64encode(json.dumps(document, indent=2).encode()).decode()
    payment = headers.parse_payment_signature(b64(document))
    assert canonical(payment, 7) == canonical(headers.parse_payment_signature(spaced), 7)
    v1 = headers.parse_x_payment(b64({"x402Version": 1, "scheme": "exact", "network": "anvil",
                                      "payload": document["payload"]}))
    assert canonical(v1, 7) == canonical(payment, 7)  # the same authorization in either version
    assert canonical(payment, 8) != canonical(payment, 7)  # the signature does not name the listing
    resigned = v2_document()
    resigned["payload"]["authorization"]["validBefore"] = "1900000001"
    assert canonical(headers.parse_payment_signature(b64(resigned)), 7) != canonical(payment, 7)


def test_confirmations_are_awaited_only_above_the_threshold(settings):
    from marketplace.payments.settlement import confirmations_needed

    settings.X402_CONFIRMATIONS, settings.X402_CONFIRMATIONS_ABOVE = 2, 10_000_000
    assert confirmations_needed(10_000_000) == 0 and confirmations_needed(10_000_001) == 2


def test_lower_case_addresses_are_checksummed():
    document = v2_document()
    document["payload"]["authorization"]["from"] = PAYER.lower()
    document["accepted"]["payTo"] = MARKET.lower()
    payment = headers.parse_payment_signature(b64(document))
    assert payment.payer == PAYER and payment.pay_to == MARKET


def test_a_v1_header_from_another_network_keeps_its_name():
    document = {"x402Version": 1, "scheme": "exact", "network": "base", "payload": v2_document()["payload"]}
    assert headers.parse_x_payment(b64(document)).network == "base"


def test_payment_from_headers_prefers_v2():
    v2, v1 = b64(v2_document()), b64({"x402Version": 1, "scheme": "exact", "network": "anvil",
                                      "payload": v2_document()["payload"]})
    assert headers.payment_from_headers({"PAYMENT-SIGNATURE": v2, "X-PAYMENT": v1}).version == 2
    assert headers.payment_from_headers({"X-PAYMENT": v1}).version == 1
    assert headers.payment_from_headers({}) is None


def without(document, *path):
    *parents, last = path
    target = document
    for name in parents:
        target = target[name]
    del target[last]
    return document


def replaced(document, value, *path):
    *parents, last = path
    target = document
    for name in parents:
        target = target[name]
    target[last] = value
    return document


MALFORMED = [
    ("", "payment_missing"),
    ("A" * (headers.MAX_HEADER + 4), "payment_too_large"),
    ("not base64!", "bad_encoding"),
    (base64.b64encode(b"\xff\xfe").decode(), "bad_encoding"),
    (base64.b64encode(b"{not json").decode(), "bad_json"),
    (b64([1, 2]), "bad_json"),
    (base64.b64encode(b"[" * 3000 + b"]" * 3000).decode(), "bad_json"),  # deeper than the parser's stack
    (b64({**v2_document(), "x402Version": 1}), "unsupported_version"),
    (b64({**v2_document(), "x402Version": True}), "unsupported_version"),
    (b64(without(v2_document(), "x402Version")), "unsupported_version"),
    (b64(replaced(v2_document(), "upto", "accepted", "scheme")), "unsupported_scheme"),
    (b64(replaced(v2_document(), "permit2", "accepted", "extra", "assetTransferMethod")), "unsupported_scheme"),
    (b64(replaced(without(v2_document(), "payload", "authorization"), {}, "payload", "permit2Authorization")),
     "unsupported_scheme"),
    (b64(without(v2_document(), "accepted")), "missing_field"),
    (b64(replaced(v2_document(), "x", "accepted")), "bad_field"),
    (b64(without(v2_document(), "payload")), "missing_field"),
    (b64(without(v2_document(), "payload", "authorization")), "missing_field"),
    (b64(without(v2_document(), "payload", "signature")), "missing_field"),
    (b64(without(v2_document(), "accepted", "network")), "missing_field"),
    (b64(replaced(v2_document(), 31337, "accepted", "network")), "bad_field"),
    (b64(without(v2_document(), "accepted", "amount")), "missing_field"),
    (b64(replaced(v2_document(), "1.5", "accepted", "amount")), "bad_field"),
    (b64(replaced(v2_document(), "-1", "payload", "authorization", "value")), "bad_field"),
    (b64(replaced(v2_document(), "1e6", "payload", "authorization", "value")), "bad_field"),
    (b64(replaced(v2_document(), 2.5, "payload", "authorization", "value")), "bad_field"),
    (b64(replaced(v2_document(), True, "payload", "authorization", "value")), "bad_field"),
    (b64(replaced(v2_document(), str(2**256), "payload", "authorization", "validBefore")), "bad_field"),
    (b64(without(v2_document(), "payload", "authorization", "validAfter")), "missing_field"),
    (b64(replaced(v2_document(), "0x1234", "payload", "authorization", "from")), "bad_field"),
    (b64(replaced(v2_document(), MARKET[:3] + MARKET[3:].swapcase(), "payload", "authorization", "to")),
     "bad_field"),  # mixed case with a wrong checksum
    (b64(replaced(v2_document(), "0x" + "ab" * 31, "payload", "authorization", "nonce")), "bad_field"),
    (b64(replaced(v2_document(), "0x" + "zz" * 32, "payload", "authorization", "nonce")), "bad_field"),
    (b64(replaced(v2_document(), "0x123", "payload", "signature")), "bad_field"),
    (b64(replaced(v2_document(), "11" * 65, "payload", "signature")), "bad_field"),
    (b64(replaced(v2_document(), "0x" + "11" * 8000, "payload", "signature")), "payment_too_large"),
    (b64(replaced(v2_document(), "0x" + "11" * 4097, "payload", "signature")), "bad_field"),
    (b64(replaced(v2_document(), [], "payload", "authorization")), "bad_field"),
    (b64({**v2_document(), "extensions": []}), "bad_field"),
    (b64({**v2_document(), "extensions": {"payment-identifier": {"info": "x"}}}), "bad_field"),
    (b64({**v2_document(), "extensions": {"payment-identifier": {"info": {"id": "short"}}}}), "bad_field"),
    (b64({**v2_document(), "extensions": {"payment-identifier": {"info": {"id": "a b c d e f g h i j"}}}}),
     "bad_field"),
    (b64({**v2_document(), "extensions": {"payment-identifier": {"info": {"id": 1234567890123456}}}}), "bad_field"),
]


@pytest.mark.parametrize("value, code", MALFORMED)
def test_a_malformed_payment_signature_is_refused_with_its_code(value, code):
    with pytest.raises(PaymentRefused) as refused:
        headers.parse_payment_signature(value)
    assert refused.value.code == code and refused.value.status == 400
    assert isinstance(refused.value, Refused) and refused.value.message


@pytest.mark.parametrize("document, code", [
    ({"x402Version": 2, "scheme": "exact", "network": "anvil", "payload": v2_document()["payload"]},
     "unsupported_version"),
    ({"x402Version": 1, "scheme": "upto", "network": "anvil", "payload": v2_document()["payload"]},
     "unsupported_scheme"),
    ({"x402Version": 1, "scheme": "exact", "payload": v2_document()["payload"]}, "missing_field"),
    ({"x402Version": 1, "scheme": "exact", "network": "anvil"}, "missing_field"),
    ({"x402Version": 1, "scheme": "exact", "network": "anvil",
      "payload": {"signature": "0x11", "authorization": authorization(value="25 USDC")}}, "bad_field"),
])
def test_a_malformed_x_payment_is_refused_with_its_code(document, code):
    with pytest.raises(PaymentRefused) as refused:
        headers.parse_x_payment(b64(document))
    assert refused.value.code == code and refused.value.status == 400


def test_the_payment_response_is_what_the_package_reads():
    tx = "0x" + "cd" * 32
    value = headers.payment_response(transaction=tx, network="eip155:31337", payer=PAYER.lower())
    assert decoded(value) == {"success": True, "transaction": tx, "network": "eip155:31337", "payer": PAYER}
    parsed = decode_payment_response_header(value)
    assert parsed.success and parsed.transaction == tx and parsed.payer == PAYER
    failed = decoded(headers.payment_response(transaction="", network="anvil", payer=PAYER, success=False,
                                              error_reason="insufficient_balance"))
    assert failed["success"] is False and failed["errorReason"] == "insufficient_balance"


def test_the_response_names_the_network_as_the_client_did():
    v1 = headers.parse_x_payment(b64({"x402Version": 1, "scheme": "exact", "network": "anvil",
                                      "payload": v2_document()["payload"]}))
    assert headers.header_network(v1) == "anvil"
    assert headers.header_network(headers.parse_payment_signature(b64(v2_document()))) == "eip155:31337"


def test_the_round_trip_through_the_package_keeps_every_field():
    value = headers.payment_required_header(requirement(), sign_in_nonce="n", domain="data.example")
    again = decode_payment_signature_header(encode_payment_signature_header(PaymentPayload(
        accepted=decode_payment_required_header(value).accepts[0], payload=v2_document()["payload"])))
    assert again.accepted.amount == "25000000" and again.accepted.pay_to == MARKET
    assert headers.parse_payment_signature(encode_payment_signature_header(again)).amount == 25_000_000

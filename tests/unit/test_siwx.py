"""Reading a SIGN-IN-WITH-X header without a database or a chain: what the official x402 client
sends for our 402's challenge is read into the same EIP-4361 message it signed, every malformed
header is refused with `siwx_malformed`, and the signed fields are checked against the host, the
resource, the chain and the clock."""
import base64
from datetime import datetime, timedelta, timezone as dt_timezone
import json

from eth_account import Account
from eth_account.messages import encode_defunct
import pytest
from x402.extensions.sign_in_with_x import create_siwx_payload, encode_siwx_header, format_siwe_message

from marketplace.payments import siwx
from marketplace.payments.x402 import PaymentRefused, sign_in_extension
from tests.conftest import run_coroutine

DOMAIN = "data.example"
RESOURCE = "https://data.example/pay/7"
ACCOUNT = Account.create()
NOW = datetime(2026, 12, 7, 1, 0, tzinfo=dt_timezone.utc)


@pytest.fixture(autouse=True)
def _local_chain(settings):
    settings.CHAIN_ID = 31337


def challenge(now=NOW, nonce="3f9c1e0b7a2d4c583f9c1e0b7a2d4c58", uri=RESOURCE):
    """What the official client signs: our 402's info with the chain it picked."""
    extension = sign_in_extension(nonce=nonce, domain=DOMAIN, uri=uri, now=now)
    return {**extension["info"], **extension["supportedChains"][0]}


def official_header(info=None, account=ACCOUNT) -> str:
    info = info or challenge()
    payload = run_coroutine(create_siwx_payload(info, account, info["uri"]))
    return encode_siwx_header(payload)


def header(**changes) -> str:
    document = json.loads(base64.b64decode(official_header()))
    document.update(changes)
    for name in [n for n, v in changes.items() if v is None]:
        del document[name]
    return base64.b64encode(json.dumps(document).encode()).decode()


def refused(code, value=None, **check):
    with pytest.raises(PaymentRefused) as caught:
        sign_in = siwx.parse(value if value is not None else official_header())
        if check:
            siwx.check(sign_in, **check)
    assert caught.value.code == code, caught.value.message
    assert caught.value.message
    return caught.value


def test_the_official_clients_answer_is_read_into_the_message_it_signed():
    info = challenge()
    sign_in = siwx.parse(official_header(info))
    assert sign_in.message == format_siwe_message({**info}, ACCOUNT.address)
    assert sign_in.fields["address"] == ACCOUNT.address and sign_in.fields["nonce"] == info["nonce"]
    assert Account.recover_message(encode_defunct(text=sign_in.message), signature=sign_in.signature) == \
        ACCOUNT.address
    assert "URI: https://data.example/pay/7" in sign_in.message and "Chain ID: 31337" in sign_in.message
    siwx.check(sign_in, domain=DOMAIN, resource=RESOURCE, now=NOW + timedelta(seconds=10))


@pytest.mark.parametrize("value", ["", "   ", "not base64!", base64.b64encode(b"\xff\xfe").decode(),
                                   base64.b64encode(b"{not json").decode(), base64.b64encode(b"[1, 2]").decode(),
                                   base64.b64encode(b"[" * 3000 + b"]" * 3000).decode(),
                                   "A" * (siwx.MAX_HEADER + 4)])
def test_a_header_that_is_not_base64_json_is_malformed(value):
    assert refused("siwx_malformed", value).status == 400


@pytest.mark.parametrize("changes, says", [
    ({"signature": None}, "signature"),
    ({"nonce": None}, "nonce"),
    ({"issuedAt": None}, "issuedAt"),
    ({"domain": 7}, "domain"),
    ({"address": ACCOUNT.address.lower()}, "checksummed"),
    ({"address": "0x1234"}, "checksummed"),
    ({"signature": "0xzz"}, "signature"),
    ({"signature": "0x" + "ab" * (siwx.MAX_SIGNATURE + 1)}, "signature"),
    ({"type": "ed25519"}, "eip191"),
    ({"chainId": "31337"}, "CAIP-2"),
    ({"chainId": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"}, "CAIP-2"),
    ({"issuedAt": "yesterday"}, "issuedAt"),
    ({"expirationTime": "soon"}, "expirationTime"),
    ({"resources": "https://data.example/pay/7"}, "resources"),
    ({"nonce": "short"}, "EIP-4361"),
    ({"uri": "not a uri"}, "EIP-4361"),
])
def test_a_missing_or_ill_formed_field_is_malformed_and_named(changes, says):
    assert says in refused("siwx_malformed", header(**changes)).message


@pytest.mark.parametrize("check, code", [
    ({"domain": "other.example", "resource": RESOURCE}, "siwx_wrong_domain"),
    ({"domain": DOMAIN, "resource": "https://data.example/pay/8"}, "siwx_wrong_uri"),
])
def test_another_host_or_resource_is_refused(check, code):
    refused(code, **check, now=NOW)


def test_a_resources_list_without_the_resource_is_refused():
    refused("siwx_wrong_resource", header(resources=["https://data.example/pay/8"]), domain=DOMAIN,
            resource=RESOURCE, now=NOW)


def test_another_chain_is_refused(settings):
    signed_on_anvil = official_header()
    settings.CHAIN_ID = 8453
    refused("siwx_wrong_chain", signed_on_anvil, domain=DOMAIN, resource=RESOURCE, now=NOW)


def test_the_validity_window_is_checked():
    late = NOW + timedelta(seconds=siwx.SIGN_IN_SECONDS + 1)
    refused("siwx_expired", domain=DOMAIN, resource=RESOURCE, now=late)
    refused("siwx_not_yet_valid", domain=DOMAIN, resource=RESOURCE, now=NOW - timedelta(minutes=1))
    shorter = header(expirationTime="2026-12-07T01:00:30.000Z")
    refused("siwx_expired", shorter, domain=DOMAIN, resource=RESOURCE, now=NOW + timedelta(seconds=31))
    later = header(notBefore="2026-12-07T01:02:00.000Z")
    refused("siwx_not_yet_valid", later, domain=DOMAIN, resource=RESOURCE, now=NOW + timedelta(seconds=60))
    siwx.check(siwx.parse(later), domain=DOMAIN, resource=RESOURCE, now=NOW + timedelta(seconds=121))

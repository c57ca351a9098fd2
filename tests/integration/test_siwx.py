"""Sign-in-with-x against the database and anvil: a nonce issued for a paid resource, signed by a
dev key through the official x402 client or by an EIP-1271 wallet, names its signer once; a
replayed nonce, a nonce of another resource, an unknown or expired one, the site's own sign-in
nonce and a forged signature are refused with their codes."""
import base64
import json

from django.test import RequestFactory
from django.utils import timezone
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct
import pytest
from x402.extensions.sign_in_with_x import create_siwx_payload, encode_siwx_header, format_siwe_message

from marketplace.accounts.models import SignInNonce
from marketplace.chain.services import deploy_contract
from marketplace.payments import siwx
from marketplace.payments.x402 import PaymentRefused, sign_in_extension
from tests.conftest import DEV_KEYS, free_port, run_coroutine

pytestmark = [pytest.mark.django_db]
RESOURCE = "http://testserver/pay/7"
BUYER = Account.from_key(DEV_KEYS[2])


def challenge(nonce, uri=RESOURCE):
    """The 402's sign-in-with-x challenge as a client reads it, with the chain it picks."""
    extension = sign_in_extension(nonce=nonce, domain="testserver", uri=uri)
    return {**extension["info"], **extension["supportedChains"][0]}


def signed_by_key(nonce, account=BUYER, uri=RESOURCE) -> str:
    """What the official x402 client sends back for the challenge."""
    info = challenge(nonce, uri)
    return encode_siwx_header(run_coroutine(create_siwx_payload(info, account, info["uri"])))


def request_with(value, path="/pay/7"):
    return RequestFactory().get(path, HTTP_SIGN_IN_WITH_X=value)


def refused(code, value, resource=RESOURCE):
    with pytest.raises(PaymentRefused) as caught:
        siwx.verify(request_with(value), resource)
    assert caught.value.code == code, caught.value.message
    assert caught.value.message
    return caught.value


def test_a_dev_key_signs_in_once_with_the_nonce_of_its_resource(rf):
    nonce = siwx.issue(rf.get("/pay/7"), RESOURCE)
    row = SignInNonce.objects.get(nonce=nonce)
    assert row.resource == RESOURCE and row.used_at is None and row.expires_at > timezone.now()
    value = signed_by_key(nonce)
    assert siwx.verify(request_with(value), RESOURCE) == BUYER.address
    assert SignInNonce.objects.get(nonce=nonce).used_at is not None
    assert refused("siwx_nonce_used", value).status == 409


def test_a_nonce_issued_for_another_resource_is_refused(rf):
    other = siwx.issue(rf.get("/pay/8"), "http://testserver/pay/8")
    refused("siwx_wrong_resource", signed_by_key(other))
    assert SignInNonce.objects.get(nonce=other).used_at is None


def test_an_unknown_nonce_and_the_sites_own_sign_in_nonce_are_refused():
    refused("siwx_unknown_nonce", signed_by_key("0123456789abcdef0123456789abcdef"))
    SignInNonce.objects.create(nonce="fedcba9876543210fedcba9876543210", expires_at=timezone.now() + timezone.timedelta(
        minutes=5))
    refused("siwx_unknown_nonce", signed_by_key("fedcba9876543210fedcba9876543210"))


def test_an_expired_challenge_is_refused(rf):
    nonce = siwx.issue(rf.get("/pay/7"), RESOURCE)
    SignInNonce.objects.filter(nonce=nonce).update(expires_at=timezone.now())
    refused("siwx_expired", signed_by_key(nonce))


def test_a_signature_by_another_key_is_refused_and_the_nonce_stays_usable(rf, chain):
    nonce = siwx.issue(rf.get("/pay/7"), RESOURCE)
    forged = json.loads(base64.b64decode(signed_by_key(nonce, Account.from_key(DEV_KEYS[3]))))
    forged["address"] = BUYER.address  # someone else's signature over a message naming the buyer
    refused("siwx_bad_signature", base64.b64encode(json.dumps(forged).encode()).decode())
    assert siwx.verify(request_with(signed_by_key(nonce)), RESOURCE) == BUYER.address


def test_another_host_is_refused(rf):
    nonce = siwx.issue(rf.get("/pay/7"), RESOURCE)
    with pytest.raises(PaymentRefused) as caught:
        siwx.verify(RequestFactory(HTTP_HOST="localhost").get("/pay/7", HTTP_SIGN_IN_WITH_X=signed_by_key(nonce)),
                    RESOURCE)
    assert caught.value.code == "siwx_wrong_domain"


def contract_wallet_header(chain, nonce, signer=None):
    owner = Account.create()
    tag = b"\x42" * 32
    wallet = deploy_contract(chain.w3, "ERC1271WalletMock", [owner.address, tag])
    info = challenge(nonce)
    message = format_siwe_message(info, wallet.address)
    digest = _hash_eip191_message(encode_defunct(text=message))
    signature = bytes((signer or owner).unsafe_sign_hash(digest).signature) + tag
    document = {**info, "address": wallet.address, "signatureScheme": "eip1271", "signature": "0x" + signature.hex()}
    return wallet, base64.b64encode(json.dumps(document).encode()).decode()


@pytest.mark.chain
def test_a_contract_wallet_signs_in_through_eip1271(rf, chain):
    nonce = siwx.issue(rf.get("/pay/7"), RESOURCE)
    wallet, value = contract_wallet_header(chain, nonce)
    assert siwx.verify(request_with(value), RESOURCE) == wallet.address
    refused("siwx_nonce_used", value)


@pytest.mark.chain
def test_a_contract_wallet_refusing_the_signature_is_refused(rf, chain):
    nonce = siwx.issue(rf.get("/pay/7"), RESOURCE)
    _, value = contract_wallet_header(chain, nonce, signer=Account.create())
    refused("siwx_bad_signature", value)
    assert SignInNonce.objects.get(nonce=nonce).used_at is None


@pytest.mark.chain
def test_the_chain_down_is_a_clear_error_for_a_contract_wallet(rf, chain, settings):
    nonce = siwx.issue(rf.get("/pay/7"), RESOURCE)
    _, value = contract_wallet_header(chain, nonce)
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"
    assert refused("chain_unavailable", value).status == 503

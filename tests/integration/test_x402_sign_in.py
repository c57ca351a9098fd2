"""Sign-in-with-x on the paid download `GET /pay/<listing id>`, against anvil with the real
contracts and a real PostgreSQL: a wallet that paid (a dev key signing through the official x402
client, an EIP-1271 contract wallet) downloads again, Range too, with nothing paid; a replayed
nonce, another chain id and a forged signature are refused with their codes and a fresh challenge;
a wallet that holds no order gets the 402; the buying ban after a purchase and the legal removal
apply as they do to download links."""
import base64
import hashlib
import json

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct, encode_typed_data
import pytest
from x402.extensions.sign_in_with_x import create_siwx_payload, encode_siwx_header, format_siwe_message

from marketplace.accounts.models import SignInNonce, WalletBan
from marketplace.catalog.models import Dataset
from marketplace.chain import indexer
from marketplace.chain.services import deploy_contract
from marketplace.orders.models import Download, Order
from marketplace.payments.models import X402Payment
from marketplace.payments.verify import transfer_typed_data
from tests.conftest import run_coroutine
from tests.integration import test_x402_pay
from tests.integration.test_listing import PRICE
from tests.integration.test_x402_pay import (
    CONTENT, SHA, STRANGER_KEY, Untouched, body, decoded, get, refused, requirement, v2)
from tests.integration.test_x402_verify import authorization, v2_header

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

listed, payer = test_x402_pay.listed, test_x402_pay.payer  # fixtures


def challenge_of(response) -> dict:
    """The sign-in-with-x challenge of a 402, as a client reads it, with the chain it picks."""
    extension = decoded(response["PAYMENT-REQUIRED"])["extensions"]["sign-in-with-x"]
    return {**extension["info"], **extension["supportedChains"][0]}


def signed_in(challenge: dict, account) -> str:
    """What the official x402 client sends back for the challenge."""
    return encode_siwx_header(run_coroutine(create_siwx_payload(challenge, account, challenge["uri"])))


def sign_in(client, listing_id, account, **headers):
    """A fresh challenge from a 402, signed by `account`, sent back."""
    header = signed_in(challenge_of(get(client, listing_id)), account)
    return get(client, listing_id, header, name="SIGN-IN-WITH-X", **headers)


@pytest.fixture
def bought(chain, client, listed, payer):
    """The payer paid for the version through the paid URL."""
    version, listing_id = listed
    response = get(client, listing_id, v2(chain, listing_id, payer))
    assert response.status_code == 200, response.content
    body(response)
    return version, listing_id


def test_a_payer_downloads_again_by_signing_in_with_nothing_paid(chain, client, bought, payer):
    version, listing_id = bought
    untouched = Untouched(chain, payer)
    payments = X402Payment.objects.count()

    response = sign_in(client, listing_id, payer)

    assert response.status_code == 200, response.content
    assert hashlib.sha256(body(response)).hexdigest() == SHA
    assert response["X-Content-SHA256"] == SHA and "PAYMENT-RESPONSE" not in response
    untouched.check()
    assert X402Payment.objects.count() == payments and Order.objects.filter(buyer=payer.address).count() == 1
    log = Download.objects.latest("pk")
    assert log.buyer == payer.address and log.grant is None and log.bytes_served == len(CONTENT)

    part = sign_in(client, listing_id, payer, Range="bytes=10-19")
    assert part.status_code == 206 and body(part) == CONTENT[10:20]
    assert part["Content-Range"] == f"bytes 10-19/{len(CONTENT)}"
    untouched.check()


def test_a_replayed_sign_in_is_refused_with_a_fresh_challenge(chain, client, bought, payer):
    _, listing_id = bought
    challenge = challenge_of(get(client, listing_id))
    header = signed_in(challenge, payer)
    assert get(client, listing_id, header, name="SIGN-IN-WITH-X").status_code == 200
    again = get(client, listing_id, header, name="SIGN-IN-WITH-X")
    refused(again, 409, "siwx_nonce_used")
    assert SignInNonce.objects.get(nonce=challenge["nonce"]).used_at is not None


def test_a_sign_in_for_another_chain_is_refused(chain, client, bought, payer):
    _, listing_id = bought
    challenge = challenge_of(get(client, listing_id))
    response = get(client, listing_id, signed_in({**challenge, "chainId": "eip155:1"}, payer), name="SIGN-IN-WITH-X")
    refused(response, 402, "siwx_wrong_chain")
    fresh = challenge_of(response)  # a 402 offers a new challenge (and the payment)
    assert fresh["nonce"] != challenge["nonce"] and decoded(response["PAYMENT-REQUIRED"])["accepts"]
    assert SignInNonce.objects.get(nonce=challenge["nonce"]).used_at is None


def test_a_sign_in_by_someone_else_s_key_is_refused(chain, client, bought, payer):
    _, listing_id = bought
    challenge = challenge_of(get(client, listing_id))
    forged = json.loads(base64.b64decode(signed_in(challenge, Account.from_key(STRANGER_KEY))))
    forged["address"] = payer.address  # the stranger's signature over a message naming the payer
    value = base64.b64encode(json.dumps(forged).encode()).decode()
    refused(get(client, listing_id, value, name="SIGN-IN-WITH-X"), 402, "siwx_bad_signature")


def test_a_malformed_sign_in_is_a_400(chain, client, bought):
    _, listing_id = bought
    refused(get(client, listing_id, "not base64!", name="SIGN-IN-WITH-X"), 400, "siwx_malformed")


def test_a_wallet_that_holds_no_order_gets_the_402(chain, client, bought):
    _, listing_id = bought
    stranger = Account.from_key(STRANGER_KEY)
    response = sign_in(client, listing_id, stranger)
    document = refused(response, 402, "not_bought")
    assert stranger.address in document["error"]
    required = decoded(response["PAYMENT-REQUIRED"])
    assert required["accepts"][0]["amount"] == str(PRICE)
    assert SignInNonce.objects.filter(nonce=required["extensions"]["sign-in-with-x"]["info"]["nonce"],
                                      used_at__isnull=True).exists()


def test_a_refunded_order_no_longer_signs_in(chain, client, bought, payer):
    _, listing_id = bought
    order_id = chain.market.order_of(listing_id, payer.address)
    chain.send(chain.market.contract.functions.dispute(order_id), payer.address)
    chain.send(chain.market.contract.functions.resolve(order_id, 10_000), chain.operator.address)
    indexer.index_chain(chain.w3)
    assert Order.objects.get(buyer=payer.address).status == "refunded"
    refused(sign_in(client, listing_id, payer), 402, "not_bought")


def test_a_ban_after_the_purchase_refuses_and_a_ban_before_it_does_not(chain, client, bought, payer):
    _, listing_id = bought
    order = Order.objects.get(buyer=payer.address)
    ban = WalletBan.objects.create(address=payer.address, scope="buy", reason="fraud", statement="Chargebacks.",
                                   before_block=order.block_number - 1)
    document = refused(sign_in(client, listing_id, payer), 403, "banned")
    assert "banned from buying" in document["error"]
    WalletBan.objects.filter(pk=ban.pk).update(before_block=order.block_number)  # bought before the ban
    assert sign_in(client, listing_id, payer).status_code == 200


def test_a_removed_dataset_is_a_451_to_a_signed_in_buyer(chain, client, bought, payer):
    version, listing_id = bought
    header = signed_in(challenge_of(get(client, listing_id)), payer)
    Dataset.objects.filter(pk=version.dataset_id).update(removed_at="2026-01-01T00:00:00Z")
    refused(get(client, listing_id, header, name="SIGN-IN-WITH-X"), 451, "removed_for_legal_reasons")


def test_a_contract_wallet_pays_then_signs_in_through_eip1271(chain, client, listed):
    _, listing_id = listed
    owner, tag = Account.create(), b"\x42" * 32
    wallet = deploy_contract(chain.w3, "ERC1271WalletMock", [owner.address, tag])
    chain.token.mint(wallet.address, PRICE)

    def signature_of(digest: bytes, signer=owner) -> str:
        return "0x" + (bytes(signer.unsafe_sign_hash(digest).signature) + tag).hex()

    wanted = requirement(listing_id)
    values = authorization(chain, wanted, wallet, payer=wallet.address)
    data = transfer_typed_data(token=wanted.asset, token_name=wanted.token_name, token_version=wanted.token_version,
                               **values)
    paid = get(client, listing_id, v2_header(wanted, values, signature_of(_hash_eip191_message(
        encode_typed_data(full_message=data)))))
    assert paid.status_code == 200, paid.content
    assert Order.objects.filter(buyer=wallet.address).count() == 1

    def header(signer=owner):
        challenge = challenge_of(get(client, listing_id))
        message = format_siwe_message(challenge, wallet.address)
        document = {**challenge, "address": wallet.address, "signatureScheme": "eip1271",
                    "signature": signature_of(_hash_eip191_message(encode_defunct(text=message)), signer)}
        return base64.b64encode(json.dumps(document).encode()).decode()

    refused(get(client, listing_id, header(Account.create()), name="SIGN-IN-WITH-X"), 402, "siwx_bad_signature")
    signed = header()
    again = get(client, listing_id, signed, name="SIGN-IN-WITH-X")
    assert again.status_code == 200 and body(again) == CONTENT
    refused(get(client, listing_id, signed, name="SIGN-IN-WITH-X"), 409, "siwx_nonce_used")

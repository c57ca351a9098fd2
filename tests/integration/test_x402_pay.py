"""The paid download `GET /pay/<listing id>` against anvil with the real contracts, a real
PostgreSQL and the operator sender run by the request itself: a 402 with both x402 bodies; a
payment (a dev key's, the official x402 client's, a v1 X-PAYMENT) settled once through
purchaseWithAuthorization and answered with the file and the settlement header; the order in the
buyer's library, confirmed through the relay and paid to the owner; every bad payment refused
with nothing broadcast; a settlement stopped by the sender's pre-check, one that times out and is
served on a retry, two requests racing with one authorization, retries, Range, the
payment-identifier and confirmations (agent keys: test_x402_agent_keys.py)."""
import base64
import hashlib
import json
import secrets
import threading
import time

from django.db import connection
from django.test import Client
from eth_account import Account
import psycopg
import pytest
from x402.extensions.payment_identifier import append_payment_identifier_to_extensions
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.mechanisms.evm.exact.client import ExactEvmScheme
from x402.schemas import PaymentPayload

from marketplace.accounts.models import SignInNonce, WalletBan
from marketplace.accounts.services import wallet_user
from marketplace.catalog.models import Dataset, Listing
from marketplace.chain import indexer, sender
from marketplace.chain.models import Deployment, OperatorAction, OperatorTransaction
from marketplace.chain.services import forget_chain
from marketplace.orders.models import Download, Order
from marketplace.payments.models import X402Payment
from marketplace.payments.verify import requirement_for
from tests.conftest import DEV_KEYS, database_url, wait_until
from tests.integration.test_downloads import list_version
from tests.integration.test_listing import PRICE
from tests.integration.test_operator_sender import FEE
from tests.integration.test_relay import signed as signed_relay
from tests.integration.test_x402_verify import authorization, b64, now, sign, v1_header, v2_header

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

CONTENT = secrets.token_bytes(1) + b"town,mm\n" + b"".join(b"Leeds,%d\n" % i for i in range(40_000))
SHA = hashlib.sha256(CONTENT).hexdigest()
PUBLISHER_KEY, PAYER_KEY, STRANGER_KEY = DEV_KEYS[1], DEV_KEYS[2], DEV_KEYS[3]


@pytest.fixture
def listed(chain, client, no_worker):
    """A version listed, linked and approved on-chain: (version, listing id)."""
    from django.core.files.storage import storages

    version, listing_id = list_version(chain, client, CONTENT, slug=f"paid-{secrets.token_hex(3)}")
    yield version, listing_id
    storages["private"].delete(version.file)


@pytest.fixture
def payer(chain):
    account = Account.from_key(PAYER_KEY)
    chain.token.mint(account.address, 3 * PRICE)
    return account


def pay_url(listing_id):
    return f"/pay/{listing_id}"


def requirement(listing_id):
    return requirement_for(listing_id, resource=f"http://testserver/pay/{listing_id}")


def v2(chain, listing_id, account, *, key=None, accepted=None, identifier=None, **fields):
    """A PAYMENT-SIGNATURE header for the listing, signed by `key` (the account's by default)."""
    wanted = requirement(listing_id)
    values = authorization(chain, wanted, account, **fields)
    header = v2_header(wanted, values, sign(wanted, key or account.key, values), **(accepted or {}))
    if identifier:
        document = json.loads(base64.b64decode(header))
        document["extensions"] = {"payment-identifier": {"info": {"required": False, "id": identifier}}}
        header = b64(document)
    return header


def v1(chain, listing_id, account, **fields):
    wanted = requirement(listing_id)
    values = authorization(chain, wanted, account, **fields)
    return v1_header(values, sign(wanted, account.key, values))


def get(client, listing_id, header=None, name="PAYMENT-SIGNATURE", **extra):
    headers = {name: header} if header is not None else {}
    return client.get(pay_url(listing_id), headers={**headers, **extra})


def body(response):
    return b"".join(response.streaming_content)


def decoded(value):
    return json.loads(base64.b64decode(value))


class Untouched:
    """Nothing broadcast, nothing queued, nothing moved: the operator's nonce, the payer's balance,
    the operator tables."""

    def __init__(self, chain, payer):
        self.chain, self.payer = chain, payer
        self.nonce = chain.w3.eth.get_transaction_count(chain.operator.address)
        self.balance = chain.token.balance_of(payer.address)
        self.actions = OperatorAction.objects.count()
        self.transactions = OperatorTransaction.objects.count()

    def check(self):
        assert self.chain.w3.eth.get_transaction_count(self.chain.operator.address) == self.nonce
        assert self.chain.token.balance_of(self.payer.address) == self.balance
        assert OperatorAction.objects.count() == self.actions
        assert OperatorTransaction.objects.count() == self.transactions


def refused(response, status, code):
    assert response.status_code == status, response.content
    document = response.json()
    assert document["code"] == code and document["error"], document
    return document


class SenderHeld:
    """Another process holding the operator sender's lock (a sender busy elsewhere): the request's
    own run returns at once, as a Celery worker's would."""

    def __enter__(self):
        self.conn = psycopg.connect(database_url(connection.settings_dict), autocommit=True)
        self.conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [sender.LOCK_NAME])
        return self

    def __exit__(self, *exc):
        self.conn.close()  # the lock goes with the session


# The 402 -----------------------------------------------------------------------------------------

def test_without_payment_the_answer_is_a_402_with_both_bodies(chain, client, listed):
    version, listing_id = listed
    operator_nonce = chain.w3.eth.get_transaction_count(chain.operator.address)
    response = get(client, listing_id)
    assert response.status_code == 402 and response["Cache-Control"] == "no-store"
    required = decoded(response["PAYMENT-REQUIRED"])
    assert required["x402Version"] == 2 and required["resource"]["url"] == f"http://testserver/pay/{listing_id}"
    assert required["resource"]["mimeType"] == "text/csv" and version.dataset.title in required["resource"]["description"]
    (accepts,) = required["accepts"]
    assert accepts["amount"] == str(PRICE) and accepts["asset"] == chain.token.address
    assert accepts["payTo"] == chain.market.address and accepts["network"] == "eip155:31337"
    extensions = required["extensions"]
    assert extensions["bazaar"]["info"]["output"]["example"]["size"] == len(CONTENT)
    assert extensions["bazaar"]["info"]["output"]["example"]["sha256"] == "0x" + SHA
    nonce = extensions["sign-in-with-x"]["info"]["nonce"]
    stored = SignInNonce.objects.get(nonce=nonce)
    assert stored.used_at is None and stored.expires_at > stored.created_at
    assert stored.resource == f"http://testserver/pay/{listing_id}"
    assert extensions["sign-in-with-x"]["info"]["domain"] == "testserver"
    assert extensions["payment-identifier"]["info"] == {"required": False}
    v1_body = response.json()
    assert v1_body["x402Version"] == 1 and v1_body["accepts"][0]["maxAmountRequired"] == str(PRICE)
    assert v1_body["accepts"][0]["network"] == "anvil" and v1_body["accepts"][0]["resource"].endswith(
        f"/pay/{listing_id}")
    # Each 402 has its own sign-in nonce; nothing was sent.
    assert decoded(get(client, listing_id)["PAYMENT-REQUIRED"])["extensions"]["sign-in-with-x"]["info"][
        "nonce"] != nonce
    assert chain.w3.eth.get_transaction_count(chain.operator.address) == operator_nonce


def test_a_listing_that_is_not_a_linked_version_is_a_404(chain, client, listed):
    refused(get(client, 10**9), 404, "unknown_listing")
    assert get(client, 10**9)["Content-Type"] == "application/json"


def test_a_listing_not_for_sale_is_a_410(chain, client, listed):
    version, listing_id = listed
    chain.send(chain.market.contract.functions.setListingActive(listing_id, False),
               Account.from_key(PUBLISHER_KEY).address)
    document = refused(get(client, listing_id), 410, "not_for_sale")
    assert document["x402Version"] == 2


def test_the_chain_down_is_a_503_not_a_500(chain, client, listed, payer, settings):
    from tests.conftest import free_port

    _, listing_id = listed
    header = v2(chain, listing_id, payer)
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"
    refused(get(client, listing_id), 503, "chain_unavailable")
    refused(get(client, listing_id, header), 503, "chain_unavailable")
    assert X402Payment.objects.get().status == "refused" and not OperatorAction.objects.exists()


def test_a_file_missing_from_the_storage_is_never_charged_for(chain, client, listed, payer):
    from django.core.files.storage import storages

    version, listing_id = listed
    storages["private"].delete(version.file)
    untouched = Untouched(chain, payer)
    refused(get(client, listing_id, v2(chain, listing_id, payer)), 503, "file_unavailable")
    untouched.check()


# Paying ------------------------------------------------------------------------------------------

def test_an_agent_pays_gets_the_file_and_holds_an_ordinary_escrowed_order(chain, client, listed, payer):
    version, listing_id = listed
    publisher = Account.from_key(PUBLISHER_KEY).address
    before = chain.token.balance_of(payer.address)
    eth = chain.w3.eth.get_balance(payer.address)

    response = get(client, listing_id, v2(chain, listing_id, payer))

    assert response.status_code == 200, response.content
    data = body(response)
    assert hashlib.sha256(data).hexdigest() == SHA == version.content_hash.removeprefix("0x")
    receipt = decoded(response["PAYMENT-RESPONSE"])
    assert receipt["success"] is True and receipt["network"] == "eip155:31337" and receipt["payer"] == payer.address
    mined = chain.w3.eth.get_transaction_receipt(receipt["transaction"])
    assert mined["status"] == 1 and mined["to"] == chain.market.address  # the market, not the token
    assert chain.token.balance_of(payer.address) == before - PRICE
    assert chain.w3.eth.get_balance(payer.address) == eth, "the payer spent no gas"
    row = X402Payment.objects.get()
    assert row.status == "settled" and row.tx_hash == receipt["transaction"] and row.amount == PRICE
    assert row.action.kind == "purchase_with_auth" and row.action.status == "confirmed"
    (log,) = Download.objects.all()
    assert log.buyer == payer.address and log.grant is None and log.bytes_served == len(CONTENT)

    # The order, indexed, in the buyer's library.
    order = Order.objects.get(buyer=payer.address)
    assert int(order.listing_id) == listing_id and order.status == "open" and row.order_id == order.order_id
    client.force_login(wallet_user(payer.address))
    (mine,) = client.get("/api/v1/me/orders").json()
    assert mine["order_id"] == str(order.order_id) and mine["buyer"] == payer.address

    # The agent holds no ETH: it confirms through the relay, and the owner is paid.
    paid = chain.token.balance_of(publisher)
    queued = client.post(f"/api/v1/orders/{order.order_id}/relay",
                         signed_relay(chain, payer, "confirm", int(order.order_id)), content_type="application/json")
    assert queued.status_code == 202, queued.json()
    assert sender.send_operator_actions().confirmed == 1
    order.refresh_from_db()
    assert order.status == "released"
    assert chain.token.balance_of(publisher) == paid + PRICE - FEE


def test_the_official_x402_client_pays_from_the_decoded_402(chain, client, listed, payer):
    version, listing_id = listed
    required = decode_payment_required_header(get(client, listing_id)["PAYMENT-REQUIRED"])
    (accepts,) = required.accepts
    inner = ExactEvmScheme(payer).create_payment_payload(accepts, required.extensions)
    header = encode_payment_signature_header(PaymentPayload(accepted=accepts, payload=inner,
                                                            resource=required.resource))
    response = get(client, listing_id, header)
    assert response.status_code == 200, response.content
    assert hashlib.sha256(body(response)).hexdigest() == SHA
    assert decoded(response["PAYMENT-RESPONSE"])["success"] is True
    assert Order.objects.filter(buyer=payer.address, listing_id=listing_id).count() == 1


def test_a_v1_client_pays_with_x_payment_and_gets_x_payment_response(chain, client, listed, payer):
    _, listing_id = listed
    response = get(client, listing_id, v1(chain, listing_id, payer), name="X-PAYMENT")
    assert response.status_code == 200, response.content
    assert body(response) == CONTENT
    assert "PAYMENT-RESPONSE" not in response
    receipt = decoded(response["X-PAYMENT-RESPONSE"])
    assert receipt["success"] is True and receipt["network"] == "anvil" and receipt["payer"] == payer.address
    assert X402Payment.objects.get().x402_version == 1


def test_a_retry_of_the_same_payment_is_served_again_with_range_and_settled_once(chain, client, listed, payer):
    _, listing_id = listed
    header = v2(chain, listing_id, payer)
    first = get(client, listing_id, header)
    assert first.status_code == 200
    body(first)
    balance = chain.token.balance_of(payer.address)

    again = get(client, listing_id, header)
    assert again.status_code == 200 and body(again) == CONTENT
    assert decoded(again["PAYMENT-RESPONSE"])["transaction"] == decoded(first["PAYMENT-RESPONSE"])["transaction"]
    part = get(client, listing_id, header, Range="bytes=10-19")
    assert part.status_code == 206 and body(part) == CONTENT[10:20]
    assert part["Content-Range"] == f"bytes 10-19/{len(CONTENT)}"
    assert "PAYMENT-RESPONSE" in part
    assert chain.token.balance_of(payer.address) == balance
    assert OperatorAction.objects.count() == 1 and OperatorTransaction.objects.count() == 1
    assert Download.objects.count() == 3


def test_a_retry_after_valid_before_is_told_to_sign_in_or_buy_again(chain, client, listed, payer):
    _, listing_id = listed
    header = v2(chain, listing_id, payer)
    assert get(client, listing_id, header).status_code == 200
    # As if the authorization's validBefore had passed (the chain's clock is not the test's to set).
    X402Payment.objects.update(valid_before=int(time.time()) - 1)
    document = refused(get(client, listing_id, header), 410, "payment_expired")
    assert "sign-in-with-x" in document["error"] and "buy again" in document["error"]


# Refused before anything is sent ----------------------------------------------------------------

def test_a_malformed_header_is_a_400(chain, client, listed, payer):
    _, listing_id = listed
    untouched = Untouched(chain, payer)
    refused(get(client, listing_id, "not base64!"), 400, "bad_encoding")
    refused(get(client, listing_id, b64({"x402Version": 2})), 400, "missing_field")
    refused(get(client, listing_id, b64({"x402Version": 2}), name="X-PAYMENT"), 400, "unsupported_version")
    untouched.check()


@pytest.mark.parametrize("case, status, code", [
    ("wrong_amount", 402, "wrong_amount"),
    ("wrong_accepted_amount", 402, "wrong_amount"),
    ("wrong_asset", 402, "wrong_asset"),
    ("wrong_network", 402, "wrong_network"),
    ("expired", 402, "expired"),
    ("not_yet_valid", 402, "not_yet_valid"),
    ("someone_else_signed", 402, "bad_signature"),
])
def test_a_bad_payment_is_refused_with_nothing_sent(chain, client, listed, payer, case, status, code):
    _, listing_id = listed
    header = {
        "wrong_amount": lambda: v2(chain, listing_id, payer, value=PRICE - 1),
        "wrong_accepted_amount": lambda: v2(chain, listing_id, payer, accepted={"amount": str(PRICE + 1)}),
        "wrong_asset": lambda: v2(chain, listing_id, payer, accepted={"asset": Account.create().address}),
        "wrong_network": lambda: v2(chain, listing_id, payer, accepted={"network": "eip155:8453"}),
        "expired": lambda: v2(chain, listing_id, payer, valid_before=int(time.time()) - 1),
        "not_yet_valid": lambda: v2(chain, listing_id, payer, valid_after=now(chain) + 600),
        "someone_else_signed": lambda: v2(chain, listing_id, payer, key=STRANGER_KEY),
    }[case]()
    untouched = Untouched(chain, payer)
    response = get(client, listing_id, header)
    document = refused(response, status, code)
    assert document["x402Version"] == 2
    # A 402 offers the requirement again.
    assert decoded(response["PAYMENT-REQUIRED"])["accepts"][0]["amount"] == str(PRICE)
    untouched.check()
    row = X402Payment.objects.get()
    assert row.status == "refused" and row.error_code == code


def test_a_payer_without_the_money_is_refused(chain, client, listed):
    _, listing_id = listed
    poor = Account.create()
    chain.token.mint(poor.address, PRICE - 1)
    untouched = Untouched(chain, poor)
    refused(get(client, listing_id, v2(chain, listing_id, poor)), 402, "insufficient_balance")
    untouched.check()


def cancel_authorization(chain, payer, nonce):
    """The token's cancelAuthorization call for the payer's nonce, signed by the payer."""
    cancel = {
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                   {"name": "chainId", "type": "uint256"},
                                   {"name": "verifyingContract", "type": "address"}],
                  "CancelAuthorization": [{"name": "authorizer", "type": "address"},
                                          {"name": "nonce", "type": "bytes32"}]},
        "primaryType": "CancelAuthorization", "domain": chain.token.eip712_domain(),
        "message": {"authorizer": payer.address, "nonce": nonce},
    }
    signature = bytes(Account.sign_typed_data(payer.key, full_message=cancel).signature)
    function = chain.token.contract.get_function_by_signature("cancelAuthorization(address,bytes32,bytes)")
    return function(payer.address, bytes.fromhex(nonce[2:]), signature)


def test_a_nonce_used_on_the_token_or_cancelled_is_refused(chain, client, listed, payer):
    _, listing_id = listed
    header = v2(chain, listing_id, payer)
    nonce = decoded(header)["payload"]["authorization"]["nonce"]
    chain.send(cancel_authorization(chain, payer, nonce), payer.address)
    untouched = Untouched(chain, payer)
    refused(get(client, listing_id, header), 409, "nonce_used")
    untouched.check()


def test_a_used_nonce_with_another_payload_is_a_409_whoever_sends_it(chain, client, listed, payer):
    _, listing_id = listed
    header = v2(chain, listing_id, payer)
    assert get(client, listing_id, header).status_code == 200
    nonce = decoded(header)["payload"]["authorization"]["nonce"]
    untouched = Untouched(chain, payer)
    # The payer signing again with the same nonce, and a stranger forging a payload on it.
    mine = v2(chain, listing_id, payer, nonce=nonce, valid_before=now(chain) + 250)
    refused(get(client, listing_id, mine), 409, "nonce_used")
    forged = v2(chain, listing_id, payer, key=STRANGER_KEY, nonce=nonce)
    refused(get(client, listing_id, forged), 409, "nonce_used")
    untouched.check()
    assert X402Payment.objects.get().status == "settled"


def test_a_forged_payload_first_does_not_block_the_payers_nonce(chain, client, listed, payer):
    """A stranger posting a bad payload on the payer's nonce is refused, and claims nothing."""
    _, listing_id = listed
    header = v2(chain, listing_id, payer)
    nonce = decoded(header)["payload"]["authorization"]["nonce"]
    refused(get(client, listing_id, v2(chain, listing_id, payer, key=STRANGER_KEY, nonce=nonce)), 402,
            "bad_signature")
    assert get(client, listing_id, header).status_code == 200


def test_a_listing_deactivated_or_repriced_after_the_402_is_refused(chain, client, listed, payer):
    _, listing_id = listed
    publisher = Account.from_key(PUBLISHER_KEY).address
    header = v2(chain, listing_id, payer)
    untouched = Untouched(chain, payer)
    chain.send(chain.market.contract.functions.updateListing(listing_id, PRICE * 2, publisher), publisher)
    repriced = get(client, listing_id, header)
    document = refused(repriced, 402, "wrong_amount")
    assert f"the price is exactly {PRICE * 2}" in document["error"]
    assert decoded(repriced["PAYMENT-REQUIRED"])["accepts"][0]["amount"] == str(PRICE * 2)  # sign this instead
    chain.send(chain.market.contract.functions.updateListing(listing_id, PRICE, publisher), publisher)
    chain.send(chain.market.contract.functions.setListingActive(listing_id, False), publisher)
    refused(get(client, listing_id, header), 410, "not_for_sale")
    untouched.check()


def test_a_banned_buyer_is_refused_before_anything_is_checked(chain, client, listed, payer):
    _, listing_id = listed
    WalletBan.objects.create(address=payer.address, scope="buy", reason="fraud", statement="Chargebacks.")
    untouched = Untouched(chain, payer)
    document = refused(get(client, listing_id, v2(chain, listing_id, payer)), 403, "banned")
    assert "banned from buying" in document["error"]
    untouched.check()
    assert not X402Payment.objects.exists()


def test_a_dataset_removed_for_legal_reasons_is_a_451_for_everyone(chain, client, listed, payer):
    version, listing_id = listed
    header = v2(chain, listing_id, payer)
    assert get(client, listing_id, header).status_code == 200
    Dataset.objects.filter(pk=version.dataset_id).update(removed_at="2026-01-01T00:00:00Z")
    refused(get(client, listing_id), 451, "removed_for_legal_reasons")
    refused(get(client, listing_id, header), 451, "removed_for_legal_reasons")  # paid: still never served
    other = Account.from_key(STRANGER_KEY)
    chain.token.mint(other.address, PRICE)
    untouched = Untouched(chain, other)
    refused(get(client, listing_id, v2(chain, listing_id, other)), 451, "removed_for_legal_reasons")
    assert chain.w3.eth.get_transaction_count(chain.operator.address) == untouched.nonce


def test_a_payment_identifier_reused_for_another_payment_is_a_409(chain, client, listed, payer):
    _, listing_id = listed
    identifier = "order-" + secrets.token_hex(8)
    first = v2(chain, listing_id, payer, identifier=identifier)
    assert get(client, listing_id, first).status_code == 200
    assert X402Payment.objects.get().payment_identifier == identifier
    assert get(client, listing_id, first).status_code == 200  # the same payment under it: served again
    untouched = Untouched(chain, payer)
    refused(get(client, listing_id, v2(chain, listing_id, payer, identifier=identifier)), 409,
            "payment_identifier_reused")
    untouched.check()


def test_the_official_client_payment_identifier_is_read(chain, client, listed, payer):
    _, listing_id = listed
    required = decode_payment_required_header(get(client, listing_id)["PAYMENT-REQUIRED"])
    (accepts,) = required.accepts
    extensions = dict(required.extensions)
    append_payment_identifier_to_extensions(extensions, "agent_run_0001_abcdef")
    inner = ExactEvmScheme(payer).create_payment_payload(accepts, required.extensions)
    header = encode_payment_signature_header(PaymentPayload(accepted=accepts, payload=inner,
                                                            resource=required.resource, extensions=extensions))
    assert get(client, listing_id, header).status_code == 200
    assert X402Payment.objects.get().payment_identifier == "agent_run_0001_abcdef"


# Settling ----------------------------------------------------------------------------------------

def test_a_settlement_timing_out_is_served_on_a_retry_once_settled(chain, client, listed, payer, settings):
    _, listing_id = listed
    header = v2(chain, listing_id, payer)
    settings.X402_SETTLEMENT_SECONDS = 1
    balance = chain.token.balance_of(payer.address)
    with SenderHeld():
        started = time.monotonic()
        response = get(client, listing_id, header)
        assert time.monotonic() - started < 5
    document = refused(response, 504, "settlement_pending")
    assert "same payment again" in document["error"] and response["Retry-After"]
    receipt = decoded(response["PAYMENT-RESPONSE"])
    assert receipt["success"] is False and receipt["errorReason"] == "settlement_pending"
    row = X402Payment.objects.get()
    assert row.status == "timed_out" and row.action.status == "pending"
    assert chain.token.balance_of(payer.address) == balance

    assert sender.send_operator_actions().confirmed == 1  # the sender's next run, elsewhere
    row.refresh_from_db()
    assert row.status == "settled" and row.order_id is not None  # recorded by the sender's callback
    again = get(client, listing_id, header)
    assert again.status_code == 200 and body(again) == CONTENT
    assert chain.token.balance_of(payer.address) == balance - PRICE
    assert OperatorTransaction.objects.count() == 1


def test_a_settlement_the_pre_check_stops_is_a_clear_error_and_moves_no_money(chain, client, listed, payer,
                                                                                settings):
    """The listing is repriced after the payment was verified and queued, before the sender sends
    it: the sender's pre-check fails the action; nothing is broadcast."""
    _, listing_id = listed
    publisher = Account.from_key(PUBLISHER_KEY).address
    header = v2(chain, listing_id, payer)
    settings.X402_SETTLEMENT_SECONDS = 20
    balance = chain.token.balance_of(payer.address)
    answers = []
    with SenderHeld() as held:
        def pay():
            answers.append(get(Client(), listing_id, header))
            connection.close()

        thread = threading.Thread(target=pay)
        thread.start()
        try:
            assert wait_until(lambda: X402Payment.objects.filter(status="settling").exists(), timeout=15)
            chain.send(chain.market.contract.functions.updateListing(listing_id, PRICE * 2, publisher), publisher)
        finally:
            held.conn.close()
            thread.join(30)
    (response,) = answers
    document = refused(response, 402, "settlement_failed")
    assert f"the price of listing {listing_id} is {PRICE * 2}" in document["error"]
    assert "Nothing was taken" in document["error"]
    assert decoded(response["PAYMENT-RESPONSE"])["success"] is False
    assert chain.token.balance_of(payer.address) == balance
    assert not OperatorTransaction.objects.exists()
    row = X402Payment.objects.get()
    assert row.status == "failed" and row.action.status == "failed"
    refused(get(client, listing_id, header), 402, "settlement_failed")  # the same payment: the same answer


def test_two_requests_racing_with_one_authorization_settle_once(chain, listed, payer):
    _, listing_id = listed
    header = v2(chain, listing_id, payer)
    balance = chain.token.balance_of(payer.address)
    answers, start = [], threading.Barrier(2)

    def pay():
        start.wait()
        response = get(Client(), listing_id, header)
        answers.append((response.status_code, body(response) if response.status_code == 200 else response.json()))
        connection.close()

    threads = [threading.Thread(target=pay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 2
    for status, content in answers:
        assert status == 200 and content == CONTENT or status == 504 and content["code"] == "settlement_pending"
    assert any(status == 200 for status, _ in answers)
    assert chain.token.balance_of(payer.address) == balance - PRICE
    assert OperatorAction.objects.count() == 1 and OperatorTransaction.objects.count() == 1
    assert Order.objects.filter(buyer=payer.address).count() == 1


def test_a_price_above_the_threshold_waits_for_its_confirmations(chain, client, listed, payer, settings):
    _, listing_id = listed
    settings.X402_CONFIRMATIONS, settings.X402_CONFIRMATIONS_ABOVE = 2, PRICE - 1
    settings.X402_SETTLEMENT_SECONDS = 1
    header = v2(chain, listing_id, payer)
    refused(get(client, listing_id, header), 504, "settlement_pending")
    assert X402Payment.objects.get().status == "settled"  # paid, not yet deep enough to serve
    chain.rpc("evm_mine")
    refused(get(client, listing_id, header), 504, "settlement_pending")
    chain.rpc("evm_mine")
    assert get(client, listing_id, header).status_code == 200


def test_a_price_at_or_under_the_threshold_is_served_from_its_receipt(chain, client, listed, payer, settings):
    _, listing_id = listed
    settings.X402_CONFIRMATIONS, settings.X402_CONFIRMATIONS_ABOVE = 2, PRICE
    assert get(client, listing_id, v2(chain, listing_id, payer)).status_code == 200


# The rate of 402 answers -------------------------------------------------------------------------

def test_402_answers_are_limited_per_client_address_and_payments_are_not(chain, client, listed, payer, settings):
    _, listing_id = listed
    settings.LIMITS = {**settings.LIMITS, "payment_required": {"ip": "3/minute"}}
    for _ in range(2):
        assert get(client, listing_id).status_code == 402
    untouched = Untouched(chain, payer)
    refused(get(client, listing_id, v2(chain, listing_id, payer, value=PRICE - 1)), 402, "wrong_amount")  # the 3rd
    untouched.check()
    nonces = SignInNonce.objects.count()

    response = get(client, listing_id)
    document = refused(response, 429, "throttled")
    assert document["x402Version"] == 2 and "at most 3 per minute" in document["error"]
    assert 0 < int(response["Retry-After"]) <= 60 and "PAYMENT-REQUIRED" not in response
    refused(get(client, listing_id, v2(chain, listing_id, payer, value=PRICE - 1)), 429, "throttled")
    assert SignInNonce.objects.count() == nonces, "no sign-in nonce stored over the limit"
    untouched.check()

    # Another client address has its own count; a good payment is never held back by the limit.
    assert client.get(pay_url(listing_id), REMOTE_ADDR="203.0.113.9").status_code == 402
    paid = get(client, listing_id, v2(chain, listing_id, payer))
    assert paid.status_code == 200 and body(paid) == CONTENT


# The order behind a settled payment ---------------------------------------------------------------

def test_a_payment_whose_order_was_refunded_is_not_served_again(chain, client, listed, payer):
    _, listing_id = listed
    header = v2(chain, listing_id, payer)
    assert get(client, listing_id, header).status_code == 200
    order_id = chain.market.order_of(listing_id, payer.address)
    chain.send(chain.market.contract.functions.dispute(order_id), payer.address)
    chain.send(chain.market.contract.functions.resolve(order_id, 10_000), chain.operator.address)
    indexer.index_chain(chain.w3)
    refused(get(client, listing_id, header), 403, "not_bought")


def test_a_payment_settled_on_a_chain_since_reset_is_not_served_on_a_retry(chain, client, listed, payer):
    """The chain is reset (anvil back to before the payment, chain/'s reset handler deleting its
    orders and listings), the contracts come back at the same addresses and the indexer links the
    same listing id to the version again: the retry finds the payment settled, but no order."""
    version, listing_id = listed
    before = chain.rpc("evm_snapshot")
    header = v2(chain, listing_id, payer)
    assert get(client, listing_id, header).status_code == 200
    assert Order.objects.filter(buyer=payer.address).exists()

    chain.rpc("evm_revert", [before])
    forget_chain(chain.w3.eth.chain_id)
    assert not Order.objects.exists() and not Listing.objects.exists()
    for result in chain.contracts.values():  # deployed again where they were
        Deployment.objects.update_or_create(chain_id=chain.w3.eth.chain_id, contract=result.contract,
                                            defaults=dict(result.__dict__))
    indexer.index_chain(chain.w3)
    assert Listing.objects.filter(listing_id=listing_id, version=version).exists()
    row = X402Payment.objects.get()
    assert row.status == "settled" and row.error_code == "chain_reset"

    untouched = Untouched(chain, payer)
    document = refused(get(client, listing_id, header), 410, "order_gone")
    assert "reset" in document["error"]
    untouched.check()
    refused(get(client, listing_id, header, Range="bytes=0-9"), 410, "order_gone")


def test_a_payment_whose_block_a_reorganisation_dropped_is_not_served_on_a_retry(chain, client, listed, payer):
    _, listing_id = listed
    before = chain.rpc("evm_snapshot")
    header = v2(chain, listing_id, payer)
    assert get(client, listing_id, header).status_code == 200
    settled_in = X402Payment.objects.get().block_number

    chain.rpc("evm_revert", [before])  # the settlement's block is replaced by empty ones
    for _ in range(3):
        chain.rpc("evm_mine")
    assert chain.w3.eth.block_number > settled_in
    assert indexer.index_chain(chain.w3).reorgs == 1
    assert not Order.objects.filter(buyer=payer.address).exists()

    refused(get(client, listing_id, header), 410, "order_gone")
    assert X402Payment.objects.get().error_code == ""  # told by the indexer's cursor, not a reset


def test_a_settled_payment_s_order_is_looked_for_after_the_indexer_s_cursor(chain, client, listed, payer):
    """The indexer writes a block's orders and moves its cursor in one transaction: the cursor
    must be read first, or an order committed between the two reads looks dropped by a
    reorganisation (a 410 `order_gone` seen under load, bench/x402_pay.py)."""
    from django.test.utils import CaptureQueriesContext

    from marketplace.payments import settlement

    _, listing_id = listed
    assert get(client, listing_id, v2(chain, listing_id, payer)).status_code == 200
    record = X402Payment.objects.get()
    with CaptureQueriesContext(connection) as queries:
        assert settlement.order_access(record)()
    tables = [q["sql"] for q in queries.captured_queries]
    cursor = next(i for i, sql in enumerate(tables) if '"chain_indexercursor"' in sql)
    orders = next(i for i, sql in enumerate(tables) if '"orders_order"' in sql)
    assert cursor < orders, tables

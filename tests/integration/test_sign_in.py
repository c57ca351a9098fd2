"""Sign-In with Ethereum: a wallet signs an EIP-4361 message with a server nonce and gets a
session bound to its checksummed address; malformed, replayed, expired, unissued, wrong-domain,
wrong-URI and wrong-chain messages and bad signatures get a clear 4xx."""
from datetime import datetime, timedelta, timezone

from eth_account import Account
from eth_account.messages import encode_defunct
import pytest

from marketplace.accounts.models import SignInNonce, User

DOMAIN = "testserver"
URI = "http://testserver"


@pytest.fixture
def wallet():
    return Account.create()


def siwe_message(address, nonce, *, domain=DOMAIN, uri=URI, chain_id=31337, expires_in=600):
    now = datetime.now(timezone.utc)
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # noqa: E731
    return (
        f"{domain} wants you to sign in with your Ethereum account:\n{address}\n\n"
        f"Sign in to Datamarket.\n\n"
        f"URI: {uri}\nVersion: 1\nChain ID: {chain_id}\nNonce: {nonce}\n"
        f"Issued At: {iso(now)}\nExpiration Time: {iso(now + timedelta(seconds=expires_in))}"
    )


def sign(account, message):
    return "0x" + account.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")


def new_nonce(client):
    response = client.post("/api/v1/auth/nonce", content_type="application/json")
    assert response.status_code == 201
    return response.json()["nonce"]


def sign_in(client, message, signature):
    return client.post("/api/v1/auth/sign-in", {"message": message, "signature": signature}, content_type="application/json")


def error_code(response):
    return response.json()["error"]["code"]


def test_sign_in_binds_the_session_to_the_checksummed_address(client, chain, wallet):
    message = siwe_message(wallet.address, new_nonce(client))
    response = sign_in(client, message, sign(wallet, message))
    assert response.status_code == 200, response.json()
    assert response.json()["address"] == wallet.address
    assert client.get("/api/v1/auth/me").json()["address"] == wallet.address
    user = User.objects.get(address=wallet.address)
    assert user.username == wallet.address and not user.has_usable_password()

    assert client.post("/api/v1/auth/sign-out").status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401


def test_a_second_sign_in_reuses_the_account(client, chain, wallet):
    for _ in range(2):
        message = siwe_message(wallet.address, new_nonce(client))
        assert sign_in(client, message, sign(wallet, message)).status_code == 200
    assert User.objects.filter(address=wallet.address).count() == 1


def test_replayed_message_is_refused(client, chain, wallet):
    message = siwe_message(wallet.address, new_nonce(client))
    signature = sign(wallet, message)
    assert sign_in(client, message, signature).status_code == 200
    replay = sign_in(client, message, signature)
    assert replay.status_code == 401 and error_code(replay) == "nonce_used"


@pytest.mark.parametrize(
    "change, code",
    [
        ({"domain": "evil.example"}, "wrong_domain"),
        ({"uri": "https://evil.example"}, "wrong_uri"),
        ({"chain_id": 1}, "wrong_chain"),
        ({"expires_in": -60}, "message_expired"),
    ],
)
def test_message_for_another_site_chain_or_time_is_refused(client, chain, wallet, change, code):
    message = siwe_message(wallet.address, new_nonce(client), **change)
    response = sign_in(client, message, sign(wallet, message))
    assert response.status_code == 401
    assert error_code(response) == code and response.json()["error"]["message"]
    assert not User.objects.filter(address=wallet.address).exists()


def test_unissued_nonce_is_refused(client, chain, wallet):
    message = siwe_message(wallet.address, "abcdef0123456789abcdef")
    response = sign_in(client, message, sign(wallet, message))
    assert response.status_code == 401 and error_code(response) == "unknown_nonce"


def test_expired_nonce_is_refused(client, chain, wallet):
    nonce = new_nonce(client)
    SignInNonce.objects.filter(nonce=nonce).update(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    message = siwe_message(wallet.address, nonce)
    response = sign_in(client, message, sign(wallet, message))
    assert response.status_code == 401 and error_code(response) == "nonce_expired"


def test_signature_by_another_wallet_is_refused(client, chain, wallet):
    message = siwe_message(wallet.address, new_nonce(client))
    response = sign_in(client, message, sign(Account.create(), message))
    assert response.status_code == 401 and error_code(response) == "bad_signature"
    assert client.get("/api/v1/auth/me").status_code == 401


@pytest.mark.parametrize(
    "body, field",
    [
        ({"message": "", "signature": "0x00"}, "message"),
        ({}, "message"),
        ({"message": "hello", "signature": "0x" + "ab" * 65 + "c"}, "signature"),  # half a byte
        ({"message": "hello", "signature": 1234}, "signature"),
        ({"message": ["hello"], "signature": "0x" + "ab" * 65}, "message"),
    ],
)
def test_requests_that_break_the_schema_are_400s_naming_the_field(client, chain, body, field):
    response = client.post("/api/v1/auth/sign-in", body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["message"] and field in error["fields"]


def test_a_message_that_is_not_siwe_is_refused_as_a_credential(client, chain):
    response = sign_in(client, "hello", "0x" + "ab" * 65)
    assert response.status_code == 401
    assert error_code(response) == "malformed_message" and response.json()["error"]["message"]


def test_odd_length_signature_is_a_400_not_a_500(client, chain, wallet):
    message = siwe_message(wallet.address, new_nonce(client))
    response = sign_in(client, message, sign(wallet, message) + "0")
    assert response.status_code == 400 and "signature" in response.json()["error"]["fields"]


def test_sign_in_takes_json_only(client, chain, wallet):
    """A form post is what a cross-site form can send; the API parses JSON bodies only."""
    message = siwe_message(wallet.address, new_nonce(client))
    response = client.post("/api/v1/auth/sign-in", {"message": message, "signature": sign(wallet, message)})
    assert response.status_code == 415 and error_code(response) == "unsupported_media_type"
    assert not User.objects.filter(address=wallet.address).exists()


def test_a_nonce_is_bound_to_the_session_that_asked_for_it(client, chain, wallet):
    """Login CSRF: another site asks for a nonce, signs a message for its own wallet and makes
    the visitor's browser post it. The visitor's session never asked for that nonce."""
    from django.test import Client

    attacker = Client()
    message = siwe_message(wallet.address, new_nonce(attacker))
    response = sign_in(client, message, sign(wallet, message))
    assert response.status_code == 401 and error_code(response) == "nonce_not_from_this_session"
    assert client.get("/api/v1/auth/me").status_code == 401
    assert sign_in(attacker, message, sign(wallet, message)).status_code == 200  # still usable where issued


def test_a_few_sign_ins_started_in_one_session_all_work(client, chain, wallet):
    """Two tabs of one browser: each asked for a nonce; either may finish first."""
    first, second = new_nonce(client), new_nonce(client)
    for nonce in (second, first):
        message = siwe_message(wallet.address, nonce)
        assert sign_in(client, message, sign(wallet, message)).status_code == 200


def test_contract_wallet_signs_in_through_eip1271(client, chain):
    """A smart-contract wallet (EIP-1271) whose owner key signs; its signature is longer than
    65 bytes, as such wallets' signatures often are."""
    from eth_account.messages import _hash_eip191_message

    from marketplace.chain.services import deploy_contract

    owner = Account.create()
    tag = b"\x42" * 32
    wallet = deploy_contract(chain.w3, "ERC1271WalletMock", [owner.address, tag])
    message = siwe_message(wallet.address, new_nonce(client))
    digest = _hash_eip191_message(encode_defunct(text=message))
    owner_signature = owner.unsafe_sign_hash(digest).signature
    response = sign_in(client, message, "0x" + (bytes(owner_signature) + tag).hex())
    assert response.status_code == 200, response.json()
    assert response.json()["address"] == wallet.address

    forged = sign_in(client, siwe_message(wallet.address, new_nonce(client)), "0x" + (bytes(owner_signature) + tag).hex())
    assert forged.status_code == 401 and error_code(forged) == "bad_signature"


def test_contract_wallet_check_with_the_chain_down_says_so(client, chain, settings):
    from tests.conftest import free_port

    message = siwe_message(Account.create().address, new_nonce(client))
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"
    response = sign_in(client, message, "0x" + "11" * 97)
    assert response.status_code == 503 and error_code(response) == "chain_unavailable"


def test_the_server_can_write_the_message_for_a_wallet(client, chain, wallet):
    response = client.post("/api/v1/auth/nonce", {"address": wallet.address.lower()}, content_type="application/json")
    assert response.status_code == 201
    message = response.json()["message"]
    assert message.startswith(f"{DOMAIN} wants you to sign in with your Ethereum account:\n{wallet.address}\n")
    assert f"Nonce: {response.json()['nonce']}" in message and "Chain ID: 31337" in message
    assert sign_in(client, message, sign(wallet, message)).status_code == 200


def test_nonce_for_a_malformed_address_is_refused(client, db):
    response = client.post("/api/v1/auth/nonce", {"address": "0x123"}, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["fields"]["address"]


def test_nonces_are_rate_limited_per_client_address(client, db, settings):
    settings.LIMITS = {**settings.LIMITS, "nonce": {"ip": "3/minute"}}
    codes = [client.post("/api/v1/auth/nonce", content_type="application/json").status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    response = client.post("/api/v1/auth/nonce", content_type="application/json")
    error = response.json()["error"]
    assert error["code"] == "throttled"
    assert "Too many sign-in requests from your network address (at most 3 per minute)" in error["message"]
    assert 1 <= int(response["Retry-After"]) <= 60
    assert client.post("/api/v1/auth/nonce", content_type="application/json", REMOTE_ADDR="198.51.100.7").status_code == 201  # another client


@pytest.mark.django_db(transaction=True)
def test_two_first_sign_ins_of_one_wallet_at_once_share_one_account(chain, wallet):
    """The second request's INSERT of the new account waits on the first one's uncommitted row,
    then fails on the unique address; it must read that row, not answer 500."""
    import threading

    from django.db import connection, connections, transaction
    from django.test import Client

    from marketplace.accounts.services import wallet_user

    first_inserted, may_commit = threading.Event(), threading.Event()

    def first_sign_in():  # holds its new account uncommitted until the second one waits on it
        try:
            with transaction.atomic():
                wallet_user(wallet.address)
                first_inserted.set()
                assert may_commit.wait(20)
        finally:
            connections.close_all()

    browser = Client()
    message = siwe_message(wallet.address, new_nonce(browser))
    answers = []

    def second_sign_in():
        try:
            answers.append(sign_in(browser, message, sign(wallet, message)))
        finally:
            connections.close_all()

    first = threading.Thread(target=first_sign_in)
    first.start()
    assert first_inserted.wait(20)
    second = threading.Thread(target=second_sign_in)
    second.start()
    with connection.cursor() as cursor:  # wait until the second INSERT is blocked on the first
        for _ in range(200):
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND query ILIKE 'INSERT INTO %%accounts_user%%'")
            if cursor.fetchone()[0]:
                break
            second.join(0.05)
        else:
            pytest.fail("the second sign-in never waited on the first one's row")
    may_commit.set()
    first.join(20)
    second.join(20)
    (response,) = answers
    assert response.status_code == 200, response.content
    assert response.json()["address"] == wallet.address
    assert User.objects.filter(address=wallet.address).count() == 1

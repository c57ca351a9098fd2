"""Registering an agent's wallet needs its holder's agreement, against real PostgreSQL (and anvil
where a signature is checked on the chain): a key for a wallet that is not the user's own is made
only with the wallet's signature of a challenge issued to that user for that wallet, used once,
before it expires; an EIP-1271 contract wallet proves with what its contract accepts; the user's
own address needs no proof. Through the service, the API and the page's two steps, each refusal
with its code; and the worker deletes spent challenges."""
from datetime import timedelta
import html
import os
from pathlib import Path
import re
import shlex
import subprocess
import sys

from django.test import Client
from django.utils import timezone
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct
import pytest

from marketplace.accounts import agent_keys
from marketplace.accounts.models import AgentKey, AgentWalletChallenge
from marketplace.accounts.services import wallet_user
from marketplace.chain.services import deploy_contract
from tests.conftest import free_port, wait_until
from tests.integration.test_agent_keys import (AGENT, AGENT_KEY, OTHER_OWNER, OWNER, USDC, make_key, refused, sign,
                                               wallet_proof)

API = "/api/v1/me/agent-keys"
PAGE = "/me/agents"
OTHER_AGENT_KEY = "0x" + "22" * 32
OTHER_AGENT = Account.from_key(OTHER_AGENT_KEY).address
HEX_SIGNATURE = re.compile(r"^0x[0-9a-f]{130}$")


def signed_in(address=OWNER):
    client = Client()
    client.force_login(wallet_user(address))
    return client


def challenge(client, wallet=AGENT):
    answer = client.post(f"{API}/challenge", {"wallet": wallet}, content_type="application/json")
    assert answer.status_code == 201, answer.content
    return answer.json()


def terms(**changes):
    return {"name": "Research bot", "wallet": AGENT, "max_per_purchase": str(10 * USDC),
            "daily_cap": str(30 * USDC), "expires_at": (timezone.now() + timedelta(days=30)).isoformat(), **changes}


def create(client, **changes):
    return client.post(API, terms(**changes), content_type="application/json")


def error_of(answer):
    return answer.status_code, answer.json()["error"]["code"]


# The challenge -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_challenge_names_the_wallet_the_account_the_site_and_its_expiry():
    client = signed_in()
    body = challenge(client, AGENT.lower())
    assert body["wallet"] == AGENT and body["proof_needed"] is True and re.fullmatch(r"[0-9a-f]{32}", body["nonce"])
    message = body["message"]
    for line in (f"Wallet: {AGENT}", f"Account: {OWNER}", "Chain ID: 31337", f"Nonce: {body['nonce']}"):
        assert line in message.splitlines(), (line, message)
    assert "testserver" in message and "moves no funds" in message
    assert not set("'\"\\`$") & set(message)  # pasted into shell quotes and a Python string as it is
    lifetime = timezone.datetime.fromisoformat(body["expires_at"]) - timezone.now()
    assert timedelta(minutes=14) < lifetime <= agent_keys.CHALLENGE_TTL
    stored = AgentWalletChallenge.objects.get(nonce=body["nonce"])
    assert (stored.owner.address, stored.wallet, stored.message, stored.used_at) == (OWNER, AGENT, message, None)
    assert challenge(client, OWNER)["proof_needed"] is False


@pytest.mark.django_db
def test_a_challenge_is_refused_for_a_bad_wallet_a_wallet_with_your_key_and_a_visitor():
    client = signed_in()
    answer = client.post(f"{API}/challenge", {"wallet": "0x12"}, content_type="application/json")
    assert answer.status_code == 400 and "wallet" in answer.json()["error"]["fields"]
    wrong_checksum = AGENT[:2] + AGENT[2:].swapcase()
    answer = client.post(f"{API}/challenge", {"wallet": wrong_checksum}, content_type="application/json")
    assert answer.status_code == 400 and "wallet" in answer.json()["error"]["fields"]
    make_key()
    answer = client.post(f"{API}/challenge", {"wallet": AGENT}, content_type="application/json")
    assert error_of(answer) == (409, "wallet_has_key")
    answer = Client().post(f"{API}/challenge", {"wallet": AGENT}, content_type="application/json")
    assert error_of(answer) == (403, "not_signed_in")
    assert AgentWalletChallenge.objects.count() == 1  # make_key's


@pytest.mark.django_db
def test_asking_again_and_again_keeps_at_most_ten_open_challenges():
    owner = wallet_user(OWNER)
    issued = [agent_keys.issue_challenge(owner, AGENT, site="testserver") for _ in range(12)]
    open_ = set(AgentWalletChallenge.objects.filter(owner=owner).values_list("nonce", flat=True))
    assert open_ == {c.nonce for c in issued[2:]}
    error = refused(agent_keys.create, owner, nonce=issued[0].nonce, wallet_signature=sign(issued[0].message),
                    **_service_terms())
    assert (error.code, error.status) == ("bad_proof", 401)
    # Another user's challenges are not counted against this one's.
    agent_keys.issue_challenge(wallet_user(OTHER_OWNER), AGENT, site="testserver")
    assert AgentWalletChallenge.objects.filter(owner=owner).count() == 10


def _service_terms():
    return {"name": "bot", "wallet": AGENT, "max_per_purchase": USDC, "daily_cap": USDC,
            "expires_at": timezone.now() + timedelta(days=1)}


# Making a key with the proof (API) -----------------------------------------------------------


@pytest.mark.django_db
def test_a_key_for_the_agent_s_wallet_is_made_with_its_signature_and_uses_the_challenge():
    client = signed_in()
    body = challenge(client)
    answer = create(client, nonce=body["nonce"], wallet_signature=sign(body["message"]))
    assert answer.status_code == 201, answer.content
    assert agent_keys.key_for_payment(answer.json()["secret"], AGENT).pk == answer.json()["id"]
    assert AgentWalletChallenge.objects.get(nonce=body["nonce"]).used_at is not None


@pytest.mark.django_db
def test_the_user_s_own_wallet_needs_no_proof():
    client = signed_in()
    answer = create(client, wallet=OWNER.lower())
    assert answer.status_code == 201 and answer.json()["wallet"] == OWNER
    assert not AgentWalletChallenge.objects.exists()


@pytest.mark.django_db
def test_another_wallet_without_its_proof_is_refused():
    client = signed_in()
    assert error_of(create(client)) == (400, "missing_proof")
    body = challenge(client)
    assert error_of(create(client, nonce=body["nonce"])) == (400, "missing_proof")
    assert error_of(create(client, wallet_signature=sign(body["message"]))) == (400, "missing_proof")
    assert "signature" in create(client).json()["error"]["message"]
    assert not AgentKey.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("field, value", [("wallet_signature", "0x1234"), ("wallet_signature", "f" * 130),
                                          ("wallet_signature", 7), ("nonce", "not-a-nonce"), ("nonce", "A" * 32)])
def test_a_malformed_proof_is_a_400_naming_its_field(field, value):
    client = signed_in()
    body = challenge(client)
    proof = {"nonce": body["nonce"], "wallet_signature": sign(body["message"]), field: value}
    answer = create(client, **proof)
    assert answer.status_code == 400 and field in answer.json()["error"]["fields"], answer.content
    assert not AgentKey.objects.exists()


@pytest.mark.django_db
def test_a_replayed_nonce_is_refused():
    client = signed_in()
    body = challenge(client)
    proof = {"nonce": body["nonce"], "wallet_signature": sign(body["message"])}
    key_id = create(client, **proof).json()["id"]
    assert client.post(f"{API}/{key_id}/revoke").status_code == 200
    answer = create(client, **proof)
    assert error_of(answer) == (409, "nonce_used") and "new one" in answer.json()["error"]["message"]
    assert AgentKey.objects.count() == 1


@pytest.mark.django_db
def test_an_expired_challenge_is_refused():
    client = signed_in()
    body = challenge(client)
    AgentWalletChallenge.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    answer = create(client, nonce=body["nonce"], wallet_signature=sign(body["message"]))
    assert error_of(answer) == (401, "expired_proof") and not AgentKey.objects.exists()
    assert AgentWalletChallenge.objects.get().used_at is None


@pytest.mark.django_db
def test_a_signature_over_another_user_s_challenge_is_refused():
    theirs = challenge(signed_in(OTHER_OWNER))
    client = signed_in()
    # Their nonce with the wallet's signature of their message: it was issued to them.
    answer = create(client, nonce=theirs["nonce"], wallet_signature=sign(theirs["message"]))
    assert error_of(answer) == (401, "bad_proof")
    assert AgentWalletChallenge.objects.get(nonce=theirs["nonce"]).used_at is None
    assert not AgentKey.objects.exists()


@pytest.mark.django_db
def test_a_challenge_for_another_wallet_is_refused():
    client = signed_in()
    other = challenge(client, OTHER_AGENT)
    answer = create(client, nonce=other["nonce"], wallet_signature=sign(other["message"], OTHER_AGENT_KEY))
    assert error_of(answer) == (401, "bad_proof") and not AgentKey.objects.exists()


@pytest.mark.chain
def test_a_signature_that_is_not_the_wallet_s_is_refused(chain):
    client = signed_in()
    mine, theirs = challenge(client), challenge(signed_in(OTHER_OWNER))
    for signature in (sign(mine["message"], OTHER_AGENT_KEY),  # another key
                      sign(theirs["message"]),  # the wallet's, over another user's message
                      "0x" + "00" * 65):  # no signature at all
        answer = create(client, nonce=mine["nonce"], wallet_signature=signature)
        assert error_of(answer) == (401, "bad_proof"), signature
    assert not AgentKey.objects.exists()
    # The challenge is still open: the right signature makes the key.
    assert create(client, nonce=mine["nonce"], wallet_signature=sign(mine["message"])).status_code == 201


@pytest.mark.chain
def test_an_eip1271_contract_wallet_proves_with_what_its_contract_accepts(chain):
    owner_key = Account.create()
    tag = b"\x42" * 32
    wallet = deploy_contract(chain.w3, "ERC1271WalletMock", [owner_key.address, tag]).address
    client = signed_in()
    body = challenge(client, wallet)
    digest = _hash_eip191_message(encode_defunct(text=body["message"]))
    forged = "0x" + (bytes(Account.create().unsafe_sign_hash(digest).signature) + tag).hex()
    bare = "0x" + bytes(owner_key.unsafe_sign_hash(digest).signature).hex()  # the mock wants its tag too
    for signature in (forged, bare):
        assert error_of(create(client, wallet=wallet, nonce=body["nonce"], wallet_signature=signature)) == (
            401, "bad_proof")
    accepted = "0x" + (bytes(owner_key.unsafe_sign_hash(digest).signature) + tag).hex()
    answer = create(client, wallet=wallet, nonce=body["nonce"], wallet_signature=accepted)
    assert answer.status_code == 201 and answer.json()["wallet"] == wallet


@pytest.mark.django_db
def test_a_contract_wallet_s_proof_when_the_chain_is_down_is_a_503_and_a_key_s_needs_no_chain(settings):
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"
    client = signed_in()
    body = challenge(client)
    answer = create(client, nonce=body["nonce"], wallet_signature=sign(body["message"]) + "42" * 32)
    assert error_of(answer) == (503, "chain_unavailable") and not AgentKey.objects.exists()
    assert create(client, nonce=body["nonce"], wallet_signature=sign(body["message"])).status_code == 201


@pytest.mark.django_db
def test_a_refused_creation_leaves_the_challenge_open():
    other = make_key(owner=wallet_user(OTHER_OWNER))
    client = signed_in()
    body = challenge(client)
    proof = {"nonce": body["nonce"], "wallet_signature": sign(body["message"])}
    # Only the wallet's holder learns that another account registered it.
    assert error_of(create(client)) == (400, "missing_proof")
    assert error_of(create(client, **proof)) == (409, "wallet_registered")
    assert AgentWalletChallenge.objects.get(nonce=body["nonce"]).used_at is None
    agent_keys.revoke(other.key)  # revoked, it binds the wallet until its owner releases it
    assert error_of(create(client, **proof)) == (409, "wallet_registered")
    agent_keys.release_wallet(other.key)
    assert create(client, **proof).status_code == 201


@pytest.mark.django_db
def test_your_own_live_key_is_named_before_any_proof_is_asked_for():
    make_key()
    error = refused(agent_keys.create, wallet_user(OWNER), **_service_terms())
    assert (error.code, error.status) == ("wallet_has_key", 409)


@pytest.mark.django_db
def test_a_proof_sent_for_your_own_wallet_is_checked_too():
    owner = wallet_user(OWNER)
    own_terms = _service_terms() | {"wallet": OWNER}
    for_the_agent = wallet_proof(owner)  # the agent's signature of a challenge for the agent's wallet
    error = refused(agent_keys.create, owner, **for_the_agent, **own_terms)
    assert (error.code, error.status) == ("bad_proof", 401)
    error = refused(agent_keys.create, owner, nonce=for_the_agent["nonce"], **own_terms)
    assert (error.code, error.status) == ("missing_proof", 400)
    proof = wallet_proof(owner, OWNER, "0x" + "11" * 32)  # OWNER's own key
    assert agent_keys.create(owner, **proof, **own_terms).key.wallet == OWNER
    assert AgentWalletChallenge.objects.get(nonce=proof["nonce"]).used_at is not None


@pytest.mark.django_db
def test_the_schema_documents_the_challenge_and_the_proof():
    schema = Client().get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    post = schema["paths"][f"{API}/challenge"]["post"]
    assert "201" in post["responses"] and "409" in post["responses"] and "personal_sign" in post["description"]
    create_schema = schema["components"]["schemas"]["AgentKeyCreate"]["properties"]
    assert {"nonce", "wallet_signature"} <= set(create_schema)
    assert "missing_proof" in schema["paths"][API]["post"]["description"]


# The page's two steps --------------------------------------------------------------------------


def form(**changes):
    return {"name": "Page bot", "wallet": AGENT, "max_per_purchase": "2.5", "daily_cap": "10",
            "expires_in_days": "30", "allowed_publishers": "", **changes}


def challenge_on(page: str) -> tuple[str, str]:
    nonce = re.search(r'name="nonce" value="([0-9a-f]{32})"', page).group(1)
    message = html.unescape(re.search(r"data-challenge-message>([^<]*)</textarea>", page).group(1))
    return nonce, message


def command_on(page: str, which: str) -> str:
    return html.unescape(re.search(rf"data-sign-{which}>([^<]*)</pre>", page).group(1))


def secret_on(page: str) -> str:
    return re.search(r"data-secret>(dmk_[A-Za-z0-9_-]+)<", page).group(1)


@pytest.mark.django_db
def test_the_page_asks_the_agent_s_wallet_to_sign_then_makes_the_key():
    client = signed_in()
    first = client.post(PAGE, form())
    page = first.content.decode()
    assert first.status_code == 200 and "data-wallet-proof" in page and "data-secret" not in page
    assert not AgentKey.objects.exists()
    nonce, message = challenge_on(page)
    assert AgentWalletChallenge.objects.get(nonce=nonce).message == message
    assert 'value="Page bot"' in page and f'value="{AGENT}"' in page  # the terms stay in the form
    assert f'data-copy="{message}"' in page  # the copy button (shown with JavaScript) copies it whole
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page) and " on" + "click=" not in page

    second = client.post(PAGE, form(nonce=nonce, wallet_signature=sign(message)))
    assert second.status_code == 200 and second["Cache-Control"] == "no-store"
    key = agent_keys.key_for_payment(secret_on(second.content.decode()), AGENT)
    assert key.name == "Page bot" and AgentWalletChallenge.objects.get(nonce=nonce).used_at is not None


@pytest.mark.django_db
def test_the_user_s_own_wallet_is_made_in_one_step_on_the_page():
    client = signed_in()
    answer = client.post(PAGE, form(wallet=OWNER))
    page = answer.content.decode()
    assert answer.status_code == 200 and "data-wallet-proof" not in page
    assert agent_keys.key_for_payment(secret_on(page), OWNER).wallet == OWNER


@pytest.mark.django_db
def test_bad_terms_are_shown_before_the_wallet_is_asked_to_sign():
    answer = signed_in().post(PAGE, form(daily_cap="1"))
    page = answer.content.decode()
    assert answer.status_code == 400 and 'data-error-for="max_per_purchase"' in page
    assert "data-wallet-proof" not in page and not AgentWalletChallenge.objects.exists()


@pytest.mark.django_db
def test_the_python_command_shown_signs_the_message_and_the_cast_command_quotes_it_whole():
    client = signed_in()
    page = client.post(PAGE, form()).content.decode()
    nonce, message = challenge_on(page)
    python = command_on(page, "python")
    assert message in python and "AGENT_PRIVATE_KEY" in python
    venv = str(Path(sys.executable).parent)
    run = subprocess.run(["bash", "-c", python], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PATH": f"{venv}:{os.environ['PATH']}", "AGENT_PRIVATE_KEY": AGENT_KEY})
    signature = run.stdout.strip()
    assert run.returncode == 0 and HEX_SIGNATURE.match(signature), run.stderr
    cast = shlex.split(command_on(page, "cast"))
    assert cast[:5] == ["cast", "wallet", "sign", "--private-key", "$AGENT_PRIVATE_KEY"] and cast[5:] == [message]

    answer = client.post(PAGE, form(nonce=nonce, wallet_signature=signature))
    assert answer.status_code == 200 and agent_keys.key_for_payment(secret_on(answer.content.decode()), AGENT)


def assert_proof_error(answer, words):
    page = answer.content.decode()
    assert answer.status_code == 400, page
    error = re.search(r'data-error-for="wallet_signature">([^<]*)<', page)
    assert error and words in html.unescape(error.group(1)), error and error.group(1)
    assert "data-wallet-proof" in page and "data-secret" not in page
    return page


@pytest.mark.django_db
def test_the_second_step_without_a_signature_asks_for_it_again_with_the_same_message():
    client = signed_in()
    nonce, message = challenge_on(client.post(PAGE, form()).content.decode())
    page = assert_proof_error(client.post(PAGE, form(nonce=nonce)), "Paste the wallet")
    assert challenge_on(page) == (nonce, message) and not AgentKey.objects.exists()


@pytest.mark.chain
def test_a_wrong_signature_on_the_page_is_refused_and_the_same_message_stays(chain):
    client = signed_in()
    nonce, message = challenge_on(client.post(PAGE, form()).content.decode())
    page = assert_proof_error(client.post(PAGE, form(nonce=nonce, wallet_signature=sign(message, OTHER_AGENT_KEY))),
                              "not " + AGENT)
    assert challenge_on(page) == (nonce, message) and not AgentKey.objects.exists()
    assert client.post(PAGE, form(nonce=nonce, wallet_signature=sign(message))).status_code == 200
    assert AgentKey.objects.count() == 1


@pytest.mark.django_db
def test_an_expired_challenge_on_the_page_is_refused_and_a_new_one_shown():
    client = signed_in()
    nonce, message = challenge_on(client.post(PAGE, form()).content.decode())
    AgentWalletChallenge.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    page = assert_proof_error(client.post(PAGE, form(nonce=nonce, wallet_signature=sign(message))), "expired")
    assert challenge_on(page)[0] != nonce and not AgentKey.objects.exists()


@pytest.mark.django_db
def test_a_replayed_nonce_on_the_page_is_refused_and_a_new_one_shown():
    client = signed_in()
    nonce, message = challenge_on(client.post(PAGE, form()).content.decode())
    client.post(PAGE, form(nonce=nonce, wallet_signature=sign(message)))
    agent_keys.revoke(AgentKey.objects.get())
    page = assert_proof_error(client.post(PAGE, form(nonce=nonce, wallet_signature=sign(message))), "already used")
    assert challenge_on(page)[0] != nonce and AgentKey.objects.count() == 1


@pytest.mark.django_db
def test_another_user_s_challenge_on_the_page_is_refused():
    theirs = challenge(signed_in(OTHER_OWNER))
    client = signed_in()
    page = assert_proof_error(client.post(PAGE, form(nonce=theirs["nonce"], wallet_signature=sign(theirs["message"]))),
                              "not issued to you")
    assert challenge_on(page)[0] != theirs["nonce"] and not AgentKey.objects.exists()


@pytest.mark.django_db
def test_changing_the_wallet_in_the_second_step_asks_the_new_wallet_to_sign():
    client = signed_in()
    nonce, message = challenge_on(client.post(PAGE, form()).content.decode())
    page = assert_proof_error(client.post(PAGE, form(wallet=OTHER_AGENT, nonce=nonce, wallet_signature=sign(message))),
                              "not issued to you")
    new_nonce, new_message = challenge_on(page)
    assert new_nonce != nonce and f"Wallet: {OTHER_AGENT}" in new_message
    answer = client.post(PAGE, form(wallet=OTHER_AGENT, nonce=new_nonce,
                                    wallet_signature=sign(new_message, OTHER_AGENT_KEY)))
    assert answer.status_code == 200 and AgentKey.objects.get().wallet == OTHER_AGENT


# Housekeeping ---------------------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_deletes_spent_challenges(celery_worker):
    from marketplace.celery import app

    owner = wallet_user(OWNER)
    now = timezone.now()
    old, recent, live = (agent_keys.issue_challenge(owner, AGENT, site="testserver") for _ in range(3))
    AgentWalletChallenge.objects.filter(pk=old.pk).update(expires_at=now - timedelta(hours=2))
    AgentWalletChallenge.objects.filter(pk=recent.pk).update(expires_at=now - timedelta(minutes=5))
    app.send_task("accounts.delete_expired_nonces")
    assert wait_until(lambda: not AgentWalletChallenge.objects.filter(pk=old.pk).exists(), timeout=30), \
        celery_worker.output()
    # A spent challenge stays an hour, so a late proof is told "expired" rather than "not issued".
    assert set(AgentWalletChallenge.objects.values_list("pk", flat=True)) == {recent.pk, live.pk}

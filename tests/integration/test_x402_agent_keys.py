"""Agent keys on the paid download `GET /pay/<listing id>`, against anvil with the real contracts,
a real PostgreSQL and the operator sender: a key within its budget pays, and its spending and
purchase show in the owner's API; each of the key's refusals stops the payment with its code and
nothing broadcast; a settlement that fails releases the reservation, one that times out holds it
until the sender settles it (spent) or fails it (released); a retry is reserved once."""
from datetime import timedelta
import threading

from django.db import connection
from django.test import Client
from django.utils import timezone
from eth_account import Account
import pytest

from marketplace.accounts import agent_keys
from marketplace.accounts.models import AgentKey, AgentSpend
from marketplace.accounts.services import wallet_user
from marketplace.chain import sender
from marketplace.chain.services import forget_chain
from marketplace.orders.models import Order
from marketplace.payments.models import X402Payment
from tests.conftest import RUN_BROKER_URL, wait_until
from tests.integration.test_agent_keys import make_key
from tests.integration.test_listing import PRICE
from tests.integration import test_x402_pay
from tests.integration.test_x402_pay import (
    CONTENT, PUBLISHER_KEY, STRANGER_KEY, SenderHeld, Untouched, body, decoded, get, refused, v2)

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

listed, payer = test_x402_pay.listed, test_x402_pay.payer  # fixtures
OWNER = Account.from_key("0x" + "41" * 32).address  # the user who gives the agent its key
API = "/api/v1/me/agent-keys"


def key_for(account, **terms):
    """A key of OWNER's for `account`'s wallet (the wallet's proof signed with its key): (key, secret)."""
    terms = {"max_per_purchase": 2 * PRICE, "daily_cap": 4 * PRICE, **terms}
    created = make_key(wallet_user(OWNER), signer=account.key, wallet=account.address, **terms)
    return created.key, created.secret


def pay(client, listing_id, header, secret=None, **extra):
    headers = {agent_keys.HEADER: secret} if secret is not None else {}
    return get(client, listing_id, header, **headers, **extra)


def owner_client():
    client = Client()
    client.force_login(wallet_user(OWNER))
    return client


def test_a_key_within_its_budget_pays_and_the_owner_sees_the_purchase(chain, client, listed, payer):
    _, listing_id = listed
    key, secret = key_for(payer)
    header = v2(chain, listing_id, payer)

    response = pay(client, listing_id, header, secret)

    assert response.status_code == 200, response.content
    assert body(response) == CONTENT
    row = X402Payment.objects.get()
    order = Order.objects.get(buyer=payer.address)
    spend = AgentSpend.objects.get()
    assert spend.key_id == key.pk and spend.state == "spent" and spend.amount == PRICE
    assert spend.order_id == order.order_id and spend.tx_hash == row.tx_hash.lower()
    assert spend.payment_ref.startswith(f"x402:{row.pk}:") and int(spend.listing_id) == listing_id

    owner = owner_client()
    (listed_key,) = owner.get(API).json()
    assert listed_key["spending"] == {"used": str(PRICE), "remaining": str(3 * PRICE), "purchases": 1,
                                      "refunded": "0"}
    (purchase,) = owner.get(f"{API}/{key.pk}/purchases").json()["results"]
    assert purchase["state"] == "spent" and purchase["order_id"] == str(order.order_id)
    assert purchase["amount"] == str(PRICE) and purchase["tx_hash"] == row.tx_hash.lower()

    # A retry of the same payment is served again and reserves nothing more.
    again = pay(client, listing_id, header, secret)
    assert again.status_code == 200 and body(again) == CONTENT
    assert AgentSpend.objects.count() == 1 and agent_keys.used(key) == PRICE


@pytest.mark.parametrize("case, status, code", [
    ("over_purchase_max", 402, "over_purchase_max"),
    ("over_daily_cap", 402, "over_daily_cap"),
    ("category_not_allowed", 403, "category_not_allowed"),
    ("publisher_not_allowed", 403, "publisher_not_allowed"),
    ("key_revoked", 401, "key_revoked"),
    ("key_expired", 401, "key_expired"),
    ("unknown_key", 401, "unknown_key"),
    ("wrong_wallet", 403, "wrong_wallet"),
    ("key_required", 403, "key_required"),
])
def test_a_payment_the_key_does_not_allow_is_refused_with_nothing_sent(chain, client, listed, payer, case, status,
                                                                        code):
    _, listing_id = listed
    paying = payer
    terms = {
        "over_purchase_max": {"max_per_purchase": PRICE - 1},
        "over_daily_cap": {"max_per_purchase": PRICE, "daily_cap": PRICE + PRICE // 2},
        "category_not_allowed": {"allowed_categories": ["health"]},  # the dataset's is "other"
        "publisher_not_allowed": {"allowed_publishers": [Account.from_key(STRANGER_KEY).address]},
    }.get(case, {})
    key, secret = key_for(payer, **terms)
    if case == "over_daily_cap":  # an earlier payment of the key's, still in the window
        agent_keys.reserve(key, payment_ref="earlier", amount=PRICE, listing_id=1, publisher=OWNER,
                           category="other")
    elif case == "key_revoked":
        agent_keys.revoke(key)
    elif case == "key_expired":
        AgentKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif case == "unknown_key":
        secret = "dmk_" + "A" * 43
    elif case == "wrong_wallet":  # the key sent with another wallet's payment
        paying = Account.from_key(STRANGER_KEY)
        chain.token.mint(paying.address, PRICE)
    elif case == "key_required":
        secret = None
    header = v2(chain, listing_id, paying)
    untouched = Untouched(chain, paying)

    response = pay(client, listing_id, header, secret)

    document = refused(response, status, code)
    assert document["x402Version"] == 2
    if status == 402:  # offered the requirement again
        assert decoded(response["PAYMENT-REQUIRED"])["accepts"][0]["amount"] == str(PRICE)
    untouched.check()
    row = X402Payment.objects.get()
    assert row.status == "refused" and row.error_code == code
    assert not AgentSpend.objects.exclude(payment_ref="earlier").exists()
    assert not Order.objects.filter(buyer=paying.address).exists()


def test_a_refusal_after_the_reservation_releases_it_and_a_retry_is_reserved_once(chain, client, listed):
    """The key passes, the chain refuses (too little money): released. Topped up, the same payment
    is sent again: the one reservation is counted again, then spent."""
    _, listing_id = listed
    poor = Account.create()
    chain.token.mint(poor.address, PRICE - 1)
    key, secret = key_for(poor)
    header = v2(chain, listing_id, poor)
    refused(pay(client, listing_id, header, secret), 402, "insufficient_balance")
    (spend,) = AgentSpend.objects.all()
    assert spend.state == "released" and agent_keys.used(key) == 0

    chain.token.mint(poor.address, PRICE)
    assert pay(client, listing_id, header, secret).status_code == 200
    (spend,) = AgentSpend.objects.all()
    assert spend.state == "spent" and agent_keys.used(key) == PRICE


def test_another_payload_on_a_refused_nonce_is_a_reservation_of_its_own(chain, client, listed, payer):
    _, listing_id = listed
    key, secret = key_for(payer)
    wrong = v2(chain, listing_id, payer, value=PRICE - 1)
    nonce = decoded(wrong)["payload"]["authorization"]["nonce"]
    refused(pay(client, listing_id, wrong, secret), 402, "wrong_amount")
    assert AgentSpend.objects.get().state == "released"

    right = v2(chain, listing_id, payer, nonce=nonce)
    assert pay(client, listing_id, right, secret).status_code == 200
    states = dict(AgentSpend.objects.values_list("amount", "state"))
    assert states == {PRICE - 1: "released", PRICE: "spent"} and agent_keys.used(key) == PRICE


def test_a_settlement_that_fails_releases_the_reservation(chain, client, listed, payer, settings):
    """Repriced after the payment was verified and queued: the sender's pre-check fails it."""
    _, listing_id = listed
    publisher = Account.from_key(PUBLISHER_KEY).address
    key, secret = key_for(payer)
    header = v2(chain, listing_id, payer)
    settings.X402_SETTLEMENT_SECONDS = 20
    balance = chain.token.balance_of(payer.address)
    answers = []
    with SenderHeld() as held:
        def request():
            answers.append(pay(Client(), listing_id, header, secret))
            connection.close()

        thread = threading.Thread(target=request)
        thread.start()
        try:
            assert wait_until(lambda: X402Payment.objects.filter(status="settling").exists(), timeout=15)
            assert AgentSpend.objects.get().state == "reserved" and agent_keys.used(key) == PRICE
            chain.send(chain.market.contract.functions.updateListing(listing_id, PRICE * 2, publisher), publisher)
        finally:
            held.conn.close()
            thread.join(30)
    (response,) = answers
    refused(response, 402, "settlement_failed")
    assert chain.token.balance_of(payer.address) == balance
    assert AgentSpend.objects.get().state == "released" and agent_keys.used(key) == 0


def test_a_timed_out_settlement_is_held_then_spent_when_the_sender_settles_it(chain, client, listed, payer,
                                                                             settings):
    _, listing_id = listed
    key, secret = key_for(payer)
    header = v2(chain, listing_id, payer)
    settings.X402_SETTLEMENT_SECONDS = 1
    with SenderHeld():
        refused(pay(client, listing_id, header, secret), 504, "settlement_pending")
    assert AgentSpend.objects.get().state == "held" and agent_keys.used(key) == PRICE

    assert sender.send_operator_actions().confirmed == 1  # elsewhere; its on_done moves the ledger
    spend = AgentSpend.objects.get()
    row = X402Payment.objects.get()
    assert row.status == "settled" and spend.state == "spent" and spend.order_id == row.order_id
    again = pay(client, listing_id, header, secret)
    assert again.status_code == 200 and body(again) == CONTENT
    assert AgentSpend.objects.count() == 1 and agent_keys.used(key) == PRICE


@pytest.mark.parametrize("repair", ["call", pytest.param("worker", marks=pytest.mark.worker)])
def test_a_ledger_that_fails_when_the_sender_settles_is_repaired_later(chain, client, listed, payer, settings,
                                                                       monkeypatch, repair, request):
    """`spend` raising in the sender's settlement transaction: the settlement stands, the sender
    goes on, the row is flagged; the beat's repair (then a retry's look) spends it: called here,
    or as beat sends it, the task `payments.repair_ledgers` in a real Celery worker."""
    from marketplace.payments import settlement

    _, listing_id = listed
    key, secret = key_for(payer)
    header = v2(chain, listing_id, payer)
    settings.X402_SETTLEMENT_SECONDS = 1
    with SenderHeld():
        refused(pay(client, listing_id, header, secret), 504, "settlement_pending")
    real_spend = agent_keys.spend

    def failing(payment_ref, **settled):
        raise RuntimeError("ledger unavailable")

    monkeypatch.setattr(agent_keys, "spend", failing)
    assert sender.send_operator_actions().confirmed == 1
    row = X402Payment.objects.get()
    assert row.status == "settled" and row.order_id is not None and row.ledger_pending
    assert AgentSpend.objects.get().state == "held" and agent_keys.used(key) == PRICE  # still counted
    assert settlement.repair_ledgers() == 0  # the ledger still fails: the flag stays
    assert X402Payment.objects.get().ledger_pending

    monkeypatch.setattr(agent_keys, "spend", real_spend)
    if repair == "call":
        assert settlement.repair_ledgers() == 1
    else:
        from marketplace.celery import app

        request.getfixturevalue("point_broker_at")(RUN_BROKER_URL)  # `listed` pointed it at no broker
        worker = request.getfixturevalue("celery_worker")
        app.send_task("payments.repair_ledgers")
        assert wait_until(lambda: not X402Payment.objects.get().ledger_pending, timeout=60), worker.output()
    spend, row = AgentSpend.objects.get(), X402Payment.objects.get()
    assert spend.state == "spent" and spend.order_id == row.order_id and not row.ledger_pending
    assert settlement.repair_ledgers() == 0
    again = pay(client, listing_id, header, secret)
    assert again.status_code == 200 and body(again) == CONTENT and agent_keys.used(key) == PRICE


def test_a_retry_repairs_its_own_ledger(chain, client, listed, payer, monkeypatch):
    _, listing_id = listed
    key, secret = key_for(payer)
    header = v2(chain, listing_id, payer)
    real_spend = agent_keys.spend
    monkeypatch.setattr(agent_keys, "spend", lambda payment_ref, **settled: 1 / 0)
    first = pay(client, listing_id, header, secret)
    assert first.status_code == 200 and body(first) == CONTENT  # settled and served all the same
    assert X402Payment.objects.get().ledger_pending and AgentSpend.objects.get().state == "reserved"
    monkeypatch.setattr(agent_keys, "spend", real_spend)
    assert pay(client, listing_id, header, secret).status_code == 200
    assert AgentSpend.objects.get().state == "spent" and not X402Payment.objects.get().ledger_pending


def test_a_key_revoked_before_its_settlement_is_sent_stops_it(chain, client, listed, payer, settings):
    """The sender's pre-check (settings.CHAIN_PURCHASE_CHECK): the action fails with the reason,
    nothing is broadcast, the reservation is released, and the payer is told why."""
    _, listing_id = listed
    key, secret = key_for(payer)
    header = v2(chain, listing_id, payer)
    settings.X402_SETTLEMENT_SECONDS = 1
    with SenderHeld():
        refused(pay(client, listing_id, header, secret), 504, "settlement_pending")
    agent_keys.revoke(key)
    untouched = Untouched(chain, payer)
    report = sender.send_operator_actions()
    assert report.failed == 1 and not report.transactions
    untouched.check()
    row = X402Payment.objects.get()
    assert row.status == "failed" and "revoked" in row.error
    assert AgentSpend.objects.get().state == "released" and agent_keys.used(key) == 0
    document = refused(pay(client, listing_id, header, secret), 402, "settlement_failed")
    assert "revoked" in document["error"] and "Nothing was taken" in document["error"]


def test_a_timed_out_settlement_that_then_fails_is_released(chain, client, listed, payer, settings):
    _, listing_id = listed
    publisher = Account.from_key(PUBLISHER_KEY).address
    key, secret = key_for(payer)
    header = v2(chain, listing_id, payer)
    settings.X402_SETTLEMENT_SECONDS = 1
    balance = chain.token.balance_of(payer.address)
    with SenderHeld():
        refused(pay(client, listing_id, header, secret), 504, "settlement_pending")
    assert AgentSpend.objects.get().state == "held"

    chain.send(chain.market.contract.functions.updateListing(listing_id, PRICE * 2, publisher), publisher)
    sender.send_operator_actions()  # the pre-check fails the action; its on_done releases
    assert X402Payment.objects.get().status == "failed"
    assert AgentSpend.objects.get().state == "released" and agent_keys.used(key) == 0
    assert chain.token.balance_of(payer.address) == balance
    refused(pay(client, listing_id, header, secret), 402, "settlement_failed")
    assert AgentSpend.objects.count() == 1 and agent_keys.used(key) == 0


def test_a_chain_reset_fails_an_unresolved_settlement_and_releases_it(chain, client, listed, payer, settings):
    _, listing_id = listed
    key, secret = key_for(payer)
    settings.X402_SETTLEMENT_SECONDS = 1
    with SenderHeld():
        refused(pay(client, listing_id, v2(chain, listing_id, payer), secret), 504, "settlement_pending")
    assert AgentSpend.objects.get().state == "held"

    forget_chain(chain.w3.eth.chain_id)
    row = X402Payment.objects.get()
    assert row.status == "failed" and "reset" in row.error and row.action.status == "cancelled"
    assert AgentSpend.objects.get().state == "released" and agent_keys.used(key) == 0

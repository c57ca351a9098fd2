"""Relayed buyer actions against anvil with the real market: a buyer signs ConfirmOrder or
DisputeOrder and the server's operator key sends confirmBySig / disputeBySig, so the buyer spends
no gas. Everything that must not be queued is refused first with a clear error: a signature by
anyone else, a reused nonce, a deadline too close, an order in the wrong state, a call the market
would refuse, too many requests."""
import secrets
import time

from eth_account import Account
import pytest

from marketplace.chain import indexer, sender
from marketplace.chain.models import OperatorAction
from marketplace.orders import relay
from marketplace.orders.models import Order
from tests.conftest import DEV_KEYS, dead_broker_url
from tests.integration.test_indexer import PRICE, WINDOW, buyer, seller  # noqa: F401
from tests.integration.test_operator_sender import FEE, bought

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_worker(point_broker_at):
    """The sender tasks queued here go nowhere: a Celery worker that an earlier test started would
    otherwise be a second sender, racing the one each test runs."""
    point_broker_at(dead_broker_url())


def signed(chain, account, action, order_id, *, nonce=None, deadline=None):
    nonce = nonce or "0x" + secrets.token_hex(32)
    deadline = deadline or int(time.time()) + 3600
    data = relay.typed_data(market=chain.market.address, action=action, order_id=order_id, nonce=nonce,
                            deadline=deadline)
    signature = Account.sign_typed_data(account.key, full_message=data).signature
    return {"action": action, "nonce": nonce, "deadline": deadline, "signature": "0x" + bytes(signature).hex()}


def post(client, order_id, body):
    return client.post(f"/api/v1/orders/{order_id}/relay", body, content_type="application/json")


@pytest.fixture
def order_id(chain, seller, buyer):
    order_id = bought(chain, seller, buyer)
    indexer.index_chain(chain.w3)
    return order_id


def test_a_buyer_confirms_without_spending_gas(chain, client, seller, buyer, order_id):
    eth, paid = chain.w3.eth.get_balance(buyer.address), chain.token.balance_of(seller.address)

    queued = post(client, order_id, signed(chain, buyer, "confirm", order_id))

    assert queued.status_code == 202, queued.json()
    body = queued.json()
    assert body["action"] == "confirm" and body["status"] == "pending" and body["order_id"] == str(order_id)
    assert sender.send_operator_actions().confirmed == 1
    done = client.get(f"/api/v1/relay/{body['id']}").json()
    assert done["status"] == "confirmed" and done["tx_hash"].startswith("0x") and done["error"] == ""
    assert Order.objects.get(order_id=order_id).status == "released"
    assert chain.token.balance_of(seller.address) == paid + PRICE - FEE
    assert chain.w3.eth.get_balance(buyer.address) == eth, "the buyer paid no gas"


def test_a_buyer_disputes_through_the_relay(chain, client, buyer, order_id):
    assert post(client, order_id, signed(chain, buyer, "dispute", order_id)).status_code == 202
    sender.send_operator_actions()
    order = Order.objects.get(order_id=order_id)
    assert order.status == "disputed" and order.dispute_deadline is not None


def test_posting_the_same_signed_action_again_returns_the_queued_one(chain, client, buyer, order_id):
    body = signed(chain, buyer, "confirm", order_id)
    first = post(client, order_id, body)
    again = post(client, order_id, body)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = post(client, order_id, signed(chain, buyer, "dispute", order_id, nonce=body["nonce"]))
    assert other.status_code == 409 and other.json()["error"]["code"] == "nonce_used"
    assert OperatorAction.objects.count() == 1


def test_a_signature_by_anyone_but_the_buyer_is_refused(chain, client, order_id):
    stranger = Account.from_key(DEV_KEYS[3])
    answer = post(client, order_id, signed(chain, stranger, "dispute", order_id))
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "bad_signature"
    assert "signed by the order's buyer" in answer.json()["error"]["message"]
    assert not OperatorAction.objects.exists()


def test_a_signature_for_another_order_is_refused(chain, client, seller, buyer, order_id):
    other = bought(chain, seller, buyer, "another version")
    indexer.index_chain(chain.w3)
    body = signed(chain, buyer, "confirm", other)
    answer = post(client, order_id, body)
    assert answer.status_code == 401 and not OperatorAction.objects.exists()


def test_a_deadline_too_close_is_refused(chain, client, buyer, order_id):
    answer = post(client, order_id, signed(chain, buyer, "confirm", order_id, deadline=int(time.time()) + 30))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "deadline_too_soon"


def test_an_order_that_is_not_open_cannot_be_confirmed_or_disputed(chain, client, buyer, order_id):
    chain.send(chain.market.contract.functions.confirm(order_id), buyer.address)
    indexer.index_chain(chain.w3)
    answer = post(client, order_id, signed(chain, buyer, "dispute", order_id))
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "order_not_open"
    assert "released to the owner" in answer.json()["error"]["message"]


def test_a_dispute_after_the_window_is_refused(chain, client, buyer, order_id):
    chain.advance(WINDOW + 1)
    # The server's clock is the wall clock; the order's window is moved back instead of waiting.
    Order.objects.filter(order_id=order_id).update(release_at=Order.objects.get(order_id=order_id).release_at
                                                   .replace(year=2020))
    answer = post(client, order_id, signed(chain, buyer, "dispute", order_id))
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "window_closed"


def test_an_unknown_order_is_404(chain, client, buyer):
    answer = post(client, 999, signed(chain, buyer, "confirm", 999))
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_order"


def test_a_nonce_the_buyer_used_on_chain_is_refused_before_anything_is_sent(chain, client, seller, buyer,
                                                                            order_id):
    other = bought(chain, seller, buyer, "another version")
    used = signed(chain, buyer, "confirm", other)
    chain.send(chain.market.contract.functions.confirmBySig(
        other, bytes.fromhex(used["nonce"][2:]), used["deadline"], bytes.fromhex(used["signature"][2:])),
        buyer.address)
    indexer.index_chain(chain.w3)

    answer = post(client, order_id, signed(chain, buyer, "confirm", order_id, nonce=used["nonce"]))

    assert answer.status_code == 409 and answer.json()["error"]["code"] == "would_revert"
    assert "DataMarketNonceUsed" in answer.json()["error"]["message"]
    assert not OperatorAction.objects.exists()


def test_bad_input_is_a_clear_400(chain, client, buyer, order_id):
    body = signed(chain, buyer, "confirm", order_id)
    for bad in ({**body, "action": "refund"}, {**body, "nonce": "0x12"}, {**body, "signature": "nothex"},
                {**body, "deadline": -1}, {}):
        answer = post(client, order_id, bad)
        assert answer.status_code == 400, (bad, answer.json())
        assert answer.json()["error"]["message"]


def test_relaying_is_rate_limited_per_wallet(chain, client, seller, buyer, settings):
    settings.LIMITS = {**settings.LIMITS, "relay": {"ip": "off", "wallet": "2/hour"}}
    ids = [bought(chain, seller, buyer, f"version {n}") for n in range(3)]
    indexer.index_chain(chain.w3)
    answers = [post(client, i, signed(chain, buyer, "confirm", i)).status_code for i in ids]
    assert answers == [202, 202, 429]
    assert OperatorAction.objects.count() == 2


def test_a_wallet_whose_relayed_call_reverted_is_suspended_from_relaying(chain, client, seller, buyer):
    """The buyer's own confirmation is mined just before the relayed one, which reverts at the
    operator's cost: that wallet relays nothing more for a day."""
    from tests.integration.test_operator_sender import manual_mining

    first = bought(chain, seller, buyer, "first")
    second = bought(chain, seller, buyer, "second")
    indexer.index_chain(chain.w3)
    assert post(client, first, signed(chain, buyer, "confirm", first)).status_code == 202
    with manual_mining(chain):
        sender.send_operator_actions(timeout=0.2)
        chain.w3.eth.send_transaction({"from": buyer.address, "to": chain.market.address,
                                       "data": chain.market.contract.encode_abi("confirm", args=[first]),
                                       "maxPriorityFeePerGas": 50 * 10**9, "maxFeePerGas": 100 * 10**9})
        chain.rpc("evm_mine")
    sender.send_operator_actions()
    relayed = OperatorAction.objects.get()
    assert relayed.status == "failed" and "reverted" in relayed.error and relayed.transaction.reverted

    answer = post(client, second, signed(chain, buyer, "confirm", second))

    assert answer.status_code == 403 and answer.json()["error"]["code"] == "relay_suspended"
    assert OperatorAction.objects.count() == 1


def test_a_buyer_s_nonce_is_good_for_one_relayed_action_across_orders(chain, client, seller, buyer):
    first = bought(chain, seller, buyer, "first")
    second = bought(chain, seller, buyer, "second")
    indexer.index_chain(chain.w3)
    body = signed(chain, buyer, "confirm", first)
    assert post(client, first, body).status_code == 202
    reused = post(client, second, signed(chain, buyer, "confirm", second, nonce=body["nonce"]))
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "nonce_used"


def test_a_dispute_too_close_to_the_end_of_its_window_is_left_to_the_wallet(chain, client, buyer, order_id):
    from datetime import timedelta

    from django.utils import timezone

    Order.objects.filter(order_id=order_id).update(release_at=timezone.now() + timedelta(minutes=5))
    answer = post(client, order_id, signed(chain, buyer, "dispute", order_id))
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "window_closing"

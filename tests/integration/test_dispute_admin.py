"""The dispute queue in the admin against anvil with the real market: disputed orders by deadline
with the buyer's download log, a resolution with a refund share sent by the operator sender when
the operator key is the arbiter, and a prepared transaction for the arbiter's wallet when it is
not (sent here from that wallet, as the page's button does)."""
from datetime import timedelta
import re

from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from eth_account import Account
import pytest

from marketplace.chain import indexer, sender
from marketplace.chain.models import OperatorAction
from marketplace.moderation.models import AuditEntry
from marketplace.orders.models import Order
from tests.conftest import DEV_KEYS, dead_broker_url
from tests.integration.test_indexer import PRICE, buyer, seller  # noqa: F401
from tests.integration.test_operator_sender import bought

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_worker(point_broker_at):
    """The sender tasks queued here go nowhere: a Celery worker that an earlier test started would
    otherwise be a second sender, racing the one each test runs."""
    point_broker_at(dead_broker_url())

QUEUE = "/admin/orders/order/"


@pytest.fixture
def arbiter_client(db):
    user = get_user_model().objects.create_superuser("arbiter", "arbiter@example.com", "a-long-password-1")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def disputed(chain, seller, buyer):
    order_id = bought(chain, seller, buyer)
    chain.send(chain.market.contract.functions.dispute(order_id), buyer.address)
    indexer.index_chain(chain.w3)
    return Order.objects.get(order_id=order_id)


def resolve(client, order, **form):
    data = {"action": "resolve", "_selected_action": [str(order.pk)], "index": 0, **form}
    return client.post(QUEUE, data)


def test_the_queue_lists_disputes_by_deadline_and_flags_the_near_ones(chain, arbiter_client, disputed):
    page = arbiter_client.get(QUEUE + "?dispute=open").content.decode()
    assert f">{disputed.order_id}<" in page and "left" in page
    assert f">{disputed.order_id}<" not in arbiter_client.get(QUEUE + "?dispute=near").content.decode()
    Order.objects.filter(pk=disputed.pk).update(dispute_deadline=timezone.now() + timedelta(hours=5))
    near = arbiter_client.get(QUEUE + "?dispute=near").content.decode()
    assert f">{disputed.order_id}<" in near and "(near)" in near
    detail = arbiter_client.get(f"{QUEUE}{disputed.pk}/change/")
    assert detail.status_code == 200 and "(near)" in detail.content.decode()


def test_resolving_with_a_refund_share_goes_through_the_operator_sender(chain, arbiter_client, disputed, buyer):
    form = resolve(arbiter_client, disputed)
    assert form.status_code == 200 and "refund share" in form.content.decode()
    balance = chain.token.balance_of(buyer.address)

    done = resolve(arbiter_client, disputed, confirmed="1", share="40", note="Half the rows are missing.")

    assert done.status_code == 302
    action = OperatorAction.objects.get(kind="resolve")
    assert action.payload == {"refund_bps": 4000} and action.created_by == "arbiter"
    assert action.context["note"] == "Half the rows are missing."
    assert sender.send_operator_actions().confirmed == 1
    order = Order.objects.get(pk=disputed.pk)
    assert order.status == "resolved" and order.refund == PRICE * 40 // 100
    assert chain.token.balance_of(buyer.address) == balance + PRICE * 40 // 100
    again = resolve(arbiter_client, order, confirmed="1", share="10")
    assert again.status_code == 302 and OperatorAction.objects.count() == 1, "resolved orders are not resolved again"
    # Recorded as a decision of the console is: by the arbiter, then confirmed from the chain.
    decided = AuditEntry.objects.get(action="dispute.resolve")
    assert (decided.actor, decided.actor_role, decided.internal_note) == ("arbiter", "arbiter",
                                                                          "Half the rows are missing.")
    assert decided.details["refund_bps"] == 4000 and decided.details["action"] == action.pk
    assert AuditEntry.objects.get(action="chain.confirmed").details["entry"] == decided.pk


def test_a_bad_share_is_explained_and_nothing_is_queued(chain, arbiter_client, disputed):
    for share in ("140", "-1", "12.345", "half", ""):
        page = resolve(arbiter_client, disputed, confirmed="1", share=share)
        assert page.status_code == 200 and 'class="errornote"' in page.content.decode(), share
    assert not OperatorAction.objects.exists()


def test_a_second_resolution_while_one_is_on_its_way_is_refused(chain, arbiter_client, disputed):
    resolve(arbiter_client, disputed, confirmed="1", share="100")
    refused = resolve(arbiter_client, disputed, confirmed="1", share="0")
    assert refused.status_code == 302 and OperatorAction.objects.count() == 1
    messages = arbiter_client.get(QUEUE).content.decode()
    assert "already on its way" in messages


def wallet_as_arbiter(chain, settings) -> str:
    """The arbiter role moves from the operator to a wallet (a dev key), which CHAIN_ARBITER names."""
    arbiter = Account.from_key(DEV_KEYS[3]).address
    role = chain.market.role("ARBITER_ROLE")
    functions = chain.market.contract.functions
    chain.send(functions.grantRole(role, arbiter), chain.operator.address)
    chain.send(functions.revokeRole(role, chain.operator.address), chain.operator.address)
    settings.CHAIN_ARBITER = arbiter
    return arbiter


def test_without_the_arbiter_role_the_page_prepares_the_arbiter_s_transaction(chain, arbiter_client, disputed,
                                                                              settings):
    arbiter = wallet_as_arbiter(chain, settings)

    page = resolve(arbiter_client, disputed, confirmed="1", share="100")

    assert page.status_code == 200 and not OperatorAction.objects.exists()
    html = page.content.decode()
    assert "does not hold the arbiter role" in html and "orders/arbiter.js" in html
    data = re.search(r'&quot;data&quot;: &quot;(0x[0-9a-f]+)&quot;', html).group(1)
    name, args = chain.market.contract.functions.resolve(0, 0).abi["name"], \
        chain.market.contract.decode_function_input(data)[1]
    assert name == "resolve" and args == {"orderId": int(disputed.order_id), "refundBps": 10_000}
    receipt = chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_transaction(
        {"from": arbiter, "to": chain.market.address, "data": data}))
    assert receipt["status"] == 1
    indexer.index_chain(chain.w3)
    assert Order.objects.get(pk=disputed.pk).status == "refunded"
    # Nothing was decided in the console: the chain's resolution is recorded once, as the system's.
    decided = AuditEntry.objects.get(action="dispute.resolve")
    assert decided.actor_role == "system" and decided.details["via"] == "chain"
    assert decided.details["refund_bps"] == 10_000
    assert decided.details["tx_hash"] == receipt["transactionHash"].to_0x_hex()
    assert AuditEntry.objects.get(action="chain.confirmed").details["entry"] == decided.pk


def test_the_admin_refuses_a_second_decision_while_the_console_s_decision_stands(chain, arbiter_client, disputed,
                                                                                settings):
    """Finding 7: the admin's resolve action did not check the console's standing decision, so a
    dispute decided in the console (prepared for the arbiter's wallet) could be decided again in
    the admin: a second transaction prepared, or a resolution queued for the operator sender."""
    wallet_as_arbiter(chain, settings)
    decided = arbiter_client.post(f"/api/v1/moderation/disputes/{disputed.order_id}/resolve", {"refund_bps": 2500},
                                  content_type="application/json")
    assert decided.status_code == 202 and decided.json()["via"] == "wallet"

    prepared = resolve(arbiter_client, disputed, confirmed="1", share="100")

    assert prepared.status_code == 302, "refused, with the message on the queue's page"
    assert "decided already" in arbiter_client.get(QUEUE).content.decode()
    # The operator key is the arbiter again: still refused, and nothing is queued.
    chain.send(chain.market.contract.functions.grantRole(chain.market.role("ARBITER_ROLE"), chain.operator.address),
               chain.operator.address)
    queued = resolve(arbiter_client, disputed, confirmed="1", share="100")
    assert queued.status_code == 302 and "decided already" in arbiter_client.get(QUEUE).content.decode()
    assert not OperatorAction.objects.exists()
    assert AuditEntry.objects.filter(action="dispute.resolve").count() == 1

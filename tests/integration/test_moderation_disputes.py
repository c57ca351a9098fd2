"""The arbiters' disputes console against anvil with the real market: disputed orders by deadline
(near ones flagged), a dispute's statements, history, download log and deadline; a resolution
with a refund share sent by the operator sender (both balances change, `dispute.resolve` and then
`chain.confirmed` in the audit log, both parties told) or prepared for the arbiter's wallet; the
refusals (a share out of range 400, not disputed or decided twice 409, without the arbiter role
403); and a failed resolution retried from the failed operator actions."""
from datetime import timedelta

from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone
from eth_account import Account
import pytest
from web3.logs import DISCARD

from marketplace.accounts.models import User
from marketplace.accounts.services import wallet_user
from marketplace.chain import indexer, sender
from marketplace.chain.models import OperatorAction
from marketplace.moderation import audit
from marketplace.moderation.models import AuditEntry, Notification
from marketplace.orders.models import DisputeStatement, Order
from tests.conftest import DEV_KEYS, dead_broker_url
from tests.integration.test_datamarket_client import BUYER_KEY, on_sale  # noqa: F401  (fixture)
from tests.integration.test_listing import PRICE

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

API = "/api/v1/moderation/disputes"
PUBLISHER = Account.from_key(DEV_KEYS[1]).address
BUYER = Account.from_key(BUYER_KEY).address
ARBITER_WALLET = Account.from_key(DEV_KEYS[3]).address


@pytest.fixture(autouse=True)
def _no_worker(point_broker_at):
    """The sender tasks queued here go nowhere: each test runs the sender itself."""
    point_broker_at(dead_broker_url())


def person(name, *roles):
    user = User.objects.create_user(name, password="a-long-password-1")
    for role in roles:
        Group.objects.get(name=role).user_set.add(user)
    client = Client()
    client.force_login(user)
    return user, client


@pytest.fixture
def arbiter():
    return person("arbiter", "arbiter")


def buy(chain, listing_id):
    functions = chain.market.contract.functions
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), BUYER)
    receipt = chain.send(functions.purchase(listing_id, PRICE), BUYER)
    (event,) = chain.market.contract.events.OrderCreated().process_receipt(receipt, errors=DISCARD)
    return event["args"]["orderId"]


@pytest.fixture
def disputed(chain, on_sale):
    """An order of the rainfall dataset bought by BUYER and disputed, with the buyer's statement."""
    order_id = buy(chain, int(on_sale.listings.get().listing_id))
    chain.send(chain.market.contract.functions.dispute(order_id), BUYER)
    indexer.index_chain(chain.w3)
    order = Order.objects.get(order_id=order_id)
    DisputeStatement.objects.create(chain_id=order.chain_id, market=order.market, order_id=order.order_id,
                                    order_tx_hash=order.tx_hash, role="buyer", author=BUYER,
                                    text="Half the stations are missing.")
    wallet_user(BUYER)
    return order


def balances(chain):
    return chain.token.balance_of(BUYER), chain.token.balance_of(PUBLISHER)


def test_the_list_shows_disputes_by_deadline_and_flags_the_near_ones(chain, arbiter, disputed):
    _, client = arbiter
    (row,) = client.get(API).json()["results"]
    assert row["order_id"] == str(disputed.order_id) and row["dataset"] == "rainfall"
    assert row["near_deadline"] is False and row["decision"] is None
    page = client.get("/moderation/disputes").content.decode()
    assert f'data-dispute="{disputed.order_id}"' in page and "data-near-badge" not in page

    Order.objects.filter(pk=disputed.pk).update(dispute_deadline=timezone.now() + timedelta(hours=5))
    assert client.get(API).json()["results"][0]["near_deadline"] is True
    page = client.get("/moderation/disputes").content.decode()
    assert "data-near-badge" in page and "near: 4 h" in page


def test_a_dispute_shows_statements_history_downloads_and_deadline(chain, arbiter, disputed):
    _, client = arbiter
    body = client.get(f"{API}/{disputed.order_id}").json()
    assert [s["text"] for s in body["statements"]] == ["Half the stations are missing."]
    assert [e["name"] for e in body["history"]] == ["OrderCreated", "OrderDisputed"]
    assert body["downloads"] == [] and body["order"]["deadline"] and body["prepared"] is None
    assert body["seller"] == PUBLISHER
    page = client.get(f"/moderation/disputes/{disputed.order_id}").content.decode()
    assert "Half the stations are missing." in page and 'data-event="OrderDisputed"' in page
    assert "data-no-downloads" in page and "data-resolve-form" in page


def test_resolving_through_the_operator_sender_moves_both_balances_and_is_audited(chain, arbiter, disputed):
    user, client = arbiter
    buyer_before, seller_before = balances(chain)

    answer = client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 4000, "statement": "Rows missing.",
                                                                 "note": "Checked the file."},
                         content_type="application/json")

    assert answer.status_code == 202, answer.json()
    body = answer.json()
    assert body["via"] == "operator" and body["action"]["status"] == "pending" and body["prepared"] is None
    entry = AuditEntry.objects.get(action="dispute.resolve")
    assert (entry.actor, entry.actor_role, entry.target_type, entry.target_id) == (
        "arbiter", "arbiter", "order", str(disputed.order_id))
    assert entry.details["refund_bps"] == 4000 and entry.details["action"] == body["action"]["id"]
    assert entry.statement == "Rows missing." and entry.internal_note == "Checked the file."
    told = set(Notification.objects.filter(kind="dispute.resolve").values_list("recipient__address", flat=True))
    assert told == {BUYER, PUBLISHER}
    again = client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 0}, content_type="application/json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_decided"

    assert sender.send_operator_actions().confirmed == 1

    order = Order.objects.get(pk=disputed.pk)
    refund = PRICE * 40 // 100
    fee = (PRICE - refund) * order.fee_bps // 10_000
    assert order.status == "resolved" and order.refund == refund
    assert balances(chain) == (buyer_before + refund, seller_before + PRICE - refund - fee)
    confirmed = AuditEntry.objects.get(action="chain.confirmed")
    assert confirmed.details["entry"] == entry.id and confirmed.details["refund"] == str(refund)
    assert confirmed.actor_role == "system" and confirmed.id > entry.id
    outcome = {n.recipient.address: n.text for n in Notification.objects.filter(kind="dispute.resolved")}
    assert set(outcome) == {BUYER, PUBLISHER} and "you were refunded 10 USDC" in outcome[BUYER]
    third = client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 0}, content_type="application/json")
    assert third.status_code == 409 and third.json()["error"]["code"] == "not_disputed"
    page = client.get(f"/moderation/disputes/{disputed.order_id}").content.decode()
    assert "data-confirmed" in page and "data-resolve-form" not in page
    assert audit.verify()[2] is None


@pytest.mark.parametrize("body", [
    {"refund_bps": 10_001}, {"refund_bps": -1}, {"refund_bps": "5000"}, {"refund_bps": True}, {"refund_bps": 12.5},
    {"refund_percent": "100.5"}, {"refund_percent": "12.345"}, {"refund_percent": "half"}, {},
    {"refund_bps": 100, "refund_percent": "1"}, {"refund_bps": 100, "statement": "x" * 2001},
])
def test_a_share_out_of_range_is_a_400_and_nothing_is_decided(chain, arbiter, disputed, body):
    _, client = arbiter
    answer = client.post(f"{API}/{disputed.order_id}/resolve", body, content_type="application/json")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid"
    assert not OperatorAction.objects.exists() and not AuditEntry.objects.exists()


def test_the_page_explains_a_bad_share(chain, arbiter, disputed):
    _, client = arbiter
    page = client.post(f"/moderation/disputes/{disputed.order_id}", {"share": "140"})
    assert page.status_code == 400 and "from 0 to 100" in page.content.decode()
    assert not AuditEntry.objects.exists()


def test_an_order_not_disputed_is_a_409(chain, arbiter, on_sale):
    _, client = arbiter
    order_id = buy(chain, int(on_sale.listings.get().listing_id))
    indexer.index_chain(chain.w3)
    answer = client.post(f"{API}/{order_id}/resolve", {"refund_bps": 5000}, content_type="application/json")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "not_disputed"
    assert client.post(f"{API}/999999/resolve", {"refund_bps": 1}, content_type="application/json").status_code == 404
    assert client.get(f"{API}/{2**300}").status_code == 404
    assert not AuditEntry.objects.exists()


def test_without_the_arbiter_role_every_dispute_url_is_refused(chain, disputed):
    _, moderator = person("moderator", "moderator")
    _, nobody = person("nobody")
    for client, status in ((moderator, 403), (nobody, 403), (Client(), 401)):
        assert client.get(API).status_code == status
        assert client.get(f"{API}/{disputed.order_id}").status_code == status
        answer = client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 1}, content_type="application/json")
        assert answer.status_code == status and answer.json()["error"]["code"] in ("forbidden", "not_signed_in")
    assert moderator.get("/moderation/disputes").status_code == 403
    assert moderator.post(f"/moderation/disputes/{disputed.order_id}", {"share": "10"}).status_code == 403
    assert "data-sign-in-prompt" in Client().get("/moderation/disputes").content.decode()
    assert not AuditEntry.objects.exists() and not OperatorAction.objects.exists()


def a_failed_resolution(chain, client, disputed):
    """The arbiter decides 25 %; the operator has lost the arbiter role, so the transaction fails.
    Returns the failed action and the role (to grant back)."""
    assert client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 2500},
                       content_type="application/json").status_code == 202
    role = chain.market.role("ARBITER_ROLE")
    chain.send(chain.market.contract.functions.revokeRole(role, chain.operator.address), chain.operator.address)
    sender.send_operator_actions()
    failed = OperatorAction.objects.get()
    assert failed.status == "failed"
    return failed, role


def make_wallet_the_arbiter(chain, settings):
    role = chain.market.role("ARBITER_ROLE")
    functions = chain.market.contract.functions
    chain.send(functions.grantRole(role, ARBITER_WALLET), chain.operator.address)
    chain.send(functions.revokeRole(role, chain.operator.address), chain.operator.address)
    settings.CHAIN_ARBITER = ARBITER_WALLET


def test_without_the_operator_as_arbiter_the_decision_is_prepared_for_the_arbiter_s_wallet(
        chain, arbiter, disputed, settings):
    _, client = arbiter
    make_wallet_the_arbiter(chain, settings)
    buyer_before, seller_before = balances(chain)

    answer = client.post(f"{API}/{disputed.order_id}/resolve", {"refund_percent": "100"},
                         content_type="application/json")

    assert answer.status_code == 202 and not OperatorAction.objects.exists()
    prepared = answer.json()["prepared"]
    assert prepared["from"] == ARBITER_WALLET and prepared["to"] == chain.market.address
    _, args = chain.market.contract.decode_function_input(prepared["data"])
    assert args == {"orderId": int(disputed.order_id), "refundBps": 10_000}
    page = client.get(f"/moderation/disputes/{disputed.order_id}").content.decode()
    assert "data-send-resolve" in page and "data-resolve-form" not in page
    twice = client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 0}, content_type="application/json")
    assert twice.status_code == 409

    chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_transaction(
        {"from": ARBITER_WALLET, "to": prepared["to"], "data": prepared["data"]}))
    indexer.index_chain(chain.w3)

    assert Order.objects.get(pk=disputed.pk).status == "refunded"
    assert balances(chain) == (buyer_before + PRICE, seller_before)
    confirmed = AuditEntry.objects.get(action="chain.confirmed")
    assert confirmed.details["entry"] == AuditEntry.objects.get(action="dispute.resolve").id


def test_a_failed_resolution_is_shown_and_retried_once_the_operator_is_the_arbiter_again(
        chain, arbiter, disputed, settings):
    _, client = arbiter
    failed, role = a_failed_resolution(chain, client, disputed)
    assert "ARBITER_ROLE" in failed.error

    listed = client.get("/api/v1/moderation/actions").json()["results"]
    assert [(a["id"], a["may_retry"]) for a in listed] == [(failed.pk, True)]
    page = client.get("/moderation/actions").content.decode()
    assert f'data-retry="{failed.pk}"' in page and "ARBITER_ROLE" in page
    _, moderator = person("moderator", "moderator")
    assert moderator.post(f"/api/v1/moderation/actions/{failed.pk}/retry").status_code == 403, "resolutions are arbiters'"
    refused = client.post(f"/api/v1/moderation/actions/{failed.pk}/retry")
    assert refused.status_code == 409 and "ARBITER_ROLE" in refused.json()["error"]["message"]

    chain.send(chain.market.contract.functions.grantRole(role, chain.operator.address), chain.operator.address)
    retried = client.post(f"/api/v1/moderation/actions/{failed.pk}/retry")
    assert retried.status_code == 202, retried.json()
    new = OperatorAction.objects.get(pk=retried.json()["action"]["id"])
    assert new.status == "pending" and new.payload == {"refund_bps": 2500} and new.context["retry_of"] == failed.pk
    entry = AuditEntry.objects.get(action="chain.retry")
    assert entry.details["retry_of"] == failed.pk and entry.details["action"] == new.pk and entry.actor == "arbiter"
    again = client.post(f"/api/v1/moderation/actions/{failed.pk}/retry")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_retried"

    assert sender.send_operator_actions().confirmed == 1
    assert Order.objects.get(pk=disputed.pk).refund == PRICE // 4
    assert AuditEntry.objects.filter(action="chain.confirmed").count() == 1


def failed(chain, version, kind, **fields):
    listing = version.listings.get()
    return OperatorAction.objects.create(
        kind=kind, chain_id=listing.chain_id, market=chain.market.address, listing_id=listing.listing_id,
        expected_owner=PUBLISHER, expected_content_hash=version.content_hash, status="failed",
        error="transaction 0xdead reverted", context={"intent": "delist" if kind == "unapprove" else "approve",
                                                      "dataset": version.dataset_id, "listing": listing.pk},
        created_by="moderator", **fields)


def test_a_failed_clearing_is_sent_again_once_and_refused_once_no_longer_needed(chain, on_sale):
    _, client = person("moderator", "moderator")
    listing_id = int(on_sale.listings.get().listing_id)
    first = failed(chain, on_sale, "unapprove")

    retried = client.post("/moderation/actions", {"action": first.pk})

    assert retried.status_code == 302
    new = OperatorAction.objects.get(context__retry_of=first.pk)
    assert new.status == "pending" and new.kind == "unapprove" and new.listing_id == first.listing_id
    assert "queued again" in client.get(retried["Location"]).content.decode()
    assert client.post(f"/api/v1/moderation/actions/{first.pk}/retry").json()["error"]["code"] == "already_retried"
    assert sender.send_operator_actions().confirmed == 1
    assert chain.market.get_listing(listing_id)["approved"] is False

    second = failed(chain, on_sale, "unapprove")
    refused = client.post(f"/api/v1/moderation/actions/{second.pk}/retry")
    assert refused.status_code == 409 and "already not approved" in refused.json()["error"]["message"]
    page = client.post("/moderation/actions", {"action": second.pk})
    assert page.status_code == 409 and "already not approved" in page.content.decode()
    assert list(AuditEntry.objects.filter(action="chain.retry").values_list("target_id", flat=True)) == [str(first.pk)]


def test_an_approval_is_not_sent_again_after_the_dataset_was_delisted(chain, on_sale):
    _, client = person("moderator", "moderator")
    chain.send(chain.market.contract.functions.setApproval([int(on_sale.listings.get().listing_id)], False),
               chain.operator.address)
    approval = failed(chain, on_sale, "approve")
    audit.record(action="dataset.delist", target_type="dataset", target_id=on_sale.dataset_id, actor="moderator")

    refused = client.post(f"/api/v1/moderation/actions/{approval.pk}/retry")

    assert refused.status_code == 409 and "decided again" in refused.json()["error"]["message"]
    assert not OperatorAction.objects.filter(status="pending").exists()
    _, arbiter = person("arbiter", "arbiter")
    assert arbiter.post(f"/api/v1/moderation/actions/{approval.pk}/retry").status_code == 403
    confirmed = OperatorAction.objects.create(kind="release", chain_id=approval.chain_id, market=approval.market,
                                              order_id=1, status="confirmed")
    answer = client.post(f"/api/v1/moderation/actions/{confirmed.pk}/retry")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "not_failed"
    assert client.post("/api/v1/moderation/actions/999999/retry").status_code == 404


def test_two_arbiters_deciding_at_once_make_one_decision(chain, disputed):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    clients = [person(f"arbiter{i}", "arbiter")[1] for i in range(2)]

    def decide(pair):
        client, share = pair
        try:
            return client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": share},
                               content_type="application/json").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(decide, zip(clients, (1000, 9000))))

    assert statuses == [202, 409]
    assert OperatorAction.objects.filter(kind="resolve").count() == 1
    assert AuditEntry.objects.filter(action="dispute.resolve").count() == 1


# The attack review's findings ---------------------------------------------------------------------


def test_a_failed_resolution_overruled_by_a_later_decision_is_never_sent_again(chain, arbiter, disputed, settings):
    """A decides 25 % (fails: the operator lost the role); B decides 90 % for the wallet; the role
    comes back: A's 25 % must not go out."""
    _, client = arbiter
    first, role = a_failed_resolution(chain, client, disputed)
    _, other = person("arbiter2", "arbiter")
    second = other.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 9000}, content_type="application/json")
    assert second.status_code == 202 and second.json()["via"] == "wallet"
    chain.send(chain.market.contract.functions.grantRole(role, chain.operator.address), chain.operator.address)

    refused = client.post(f"/api/v1/moderation/actions/{first.pk}/retry")

    assert refused.status_code == 409 and "later decision" in refused.json()["error"]["message"]
    assert OperatorAction.objects.count() == 1 and not AuditEntry.objects.filter(action="chain.retry").exists()


def test_an_approval_is_not_sent_again_for_a_removed_dataset_or_a_banned_publisher(chain, on_sale):
    from marketplace.accounts.models import WalletBan
    from marketplace.catalog.models import Dataset

    _, client = person("moderator", "moderator")
    chain.send(chain.market.contract.functions.setApproval([int(on_sale.listings.get().listing_id)], False),
               chain.operator.address)
    approval = failed(chain, on_sale, "approve")
    Dataset.objects.filter(pk=on_sale.dataset_id).update(removed_at=timezone.now())
    refused = client.post(f"/api/v1/moderation/actions/{approval.pk}/retry")
    assert refused.status_code == 409 and "removed for legal reasons" in refused.json()["error"]["message"]

    Dataset.objects.filter(pk=on_sale.dataset_id).update(removed_at=None)
    WalletBan.objects.create(address=PUBLISHER, scope="publish", reason="fraud", statement="Sold stolen data.")
    refused = client.post(f"/api/v1/moderation/actions/{approval.pk}/retry")
    assert refused.status_code == 409 and "banned from publishing" in refused.json()["error"]["message"]
    assert not OperatorAction.objects.filter(status="pending").exists()


def test_a_clearing_is_not_sent_again_after_the_dataset_was_restored(chain, on_sale):
    _, client = person("moderator", "moderator")
    clearing = failed(chain, on_sale, "unapprove")
    audit.record(action="dataset.restore", target_type="dataset", target_id=on_sale.dataset_id, actor="moderator")

    refused = client.post(f"/api/v1/moderation/actions/{clearing.pk}/retry")

    assert refused.status_code == 409 and "dataset.restore" in refused.json()["error"]["message"]
    assert chain.market.get_listing(int(on_sale.listings.get().listing_id))["approved"] is True


def text_edit_decided(dataset, decision):
    """The publisher's text edit of the published dataset, decided by a moderator: an
    audit entry about a part of the dataset."""
    from marketplace.catalog import revisions

    edit = revisions.edit_dataset(dataset, by=dataset.owner, summary="Daily rainfall by station.")
    revisions.decide(edit.revision, decision=decision, moderator=person("reviewer", "moderator")[0],
                     reason="" if decision == "approve" else "Not what the file holds.")
    entry = AuditEntry.objects.get(action=f"dataset.{decision}")
    assert entry.details["kind"] == "details" and entry.details["whole_dataset"] is False
    return entry


def test_a_text_edit_approved_after_a_failed_clearing_does_not_make_it_unwanted(chain, on_sale):
    _, client = person("moderator", "moderator")
    clearing = failed(chain, on_sale, "unapprove")
    text_edit_decided(on_sale.dataset, "approve")

    retried = client.post(f"/api/v1/moderation/actions/{clearing.pk}/retry")

    assert retried.status_code == 202, retried.json()
    assert OperatorAction.objects.get(context__retry_of=clearing.pk).status == "pending"
    assert sender.send_operator_actions().confirmed == 1
    assert chain.market.get_listing(int(on_sale.listings.get().listing_id))["approved"] is False


def test_a_text_edit_rejected_after_a_failed_approval_does_not_make_it_unwanted(chain, on_sale):
    _, client = person("moderator", "moderator")
    listing_id = int(on_sale.listings.get().listing_id)
    chain.send(chain.market.contract.functions.setApproval([listing_id], False), chain.operator.address)
    approval = failed(chain, on_sale, "approve")
    text_edit_decided(on_sale.dataset, "reject")

    retried = client.post(f"/api/v1/moderation/actions/{approval.pk}/retry")

    assert retried.status_code == 202, retried.json()
    assert sender.send_operator_actions().confirmed == 1
    assert chain.market.get_listing(listing_id)["approved"] is True


def test_a_clearing_is_sent_again_after_a_restore_that_left_the_dataset_delisted(chain, on_sale):
    """A removal undone while an earlier delisting stands approves nothing: the delisting's failed
    clearing is still wanted."""
    _, client = person("moderator", "moderator")
    clearing = failed(chain, on_sale, "unapprove")
    audit.record(action="dataset.restore", target_type="dataset", target_id=on_sale.dataset_id, actor="moderator",
                 details={"dataset": "rainfall", "was": "removed", "status": "delisted"})

    retried = client.post(f"/api/v1/moderation/actions/{clearing.pk}/retry")

    assert retried.status_code == 202, retried.json()
    assert sender.send_operator_actions().confirmed == 1
    assert chain.market.get_listing(int(on_sale.listings.get().listing_id))["approved"] is False


# The second attack review's findings -----------------------------------------------------------


def signed_resolution(chain, order_id, refund_bps):
    """resolve(order_id, refund_bps) signed by ARBITER_WALLET (granted ARBITER_ROLE beside the
    operator): an outside resolution, sent byte for byte again after a reorganisation."""
    chain.send(chain.market.contract.functions.grantRole(chain.market.role("ARBITER_ROLE"), ARBITER_WALLET),
               chain.operator.address)
    w3 = chain.w3
    tx = chain.market.contract.functions.resolve(int(order_id), refund_bps).build_transaction({
        "from": ARBITER_WALLET, "nonce": w3.eth.get_transaction_count(ARBITER_WALLET), "gas": 300_000,
        "maxFeePerGas": 100 * 10**9, "maxPriorityFeePerGas": 10**9, "chainId": w3.eth.chain_id})
    return Account.from_key(DEV_KEYS[3]).sign_transaction(tx).raw_transaction


def send_raw(chain, raw):
    receipt = chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_raw_transaction(raw))
    assert receipt["status"] == 1
    return receipt["transactionHash"].to_0x_hex()


def outside_resolution(chain, disputed, refund_bps=7000):
    """An outside resolution mined and read: (its signed bytes, its hash, the chain's snapshot
    before it)."""
    raw = signed_resolution(chain, disputed.order_id, refund_bps)
    before = chain.rpc("evm_snapshot")
    tx_hash = send_raw(chain, raw)
    indexer.index_chain(chain.w3)
    assert Order.objects.get(pk=disputed.pk).status == "resolved"
    outside = AuditEntry.objects.get(action="dispute.resolve")
    assert (outside.actor_role, outside.details["via"], outside.details["tx_hash"]) == ("system", "chain", tx_hash)
    return raw, tx_hash, before


def test_an_outside_resolution_a_reorganisation_dropped_blocks_no_new_decision(chain, arbiter, disputed, no_worker):
    """Finding 6: the system's entry of an outside resolution stands only while the chain backs
    it; once its block is gone the order is disputed again and the console decides it."""
    _, client = arbiter
    _, _, before = outside_resolution(chain, disputed)
    refused = client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 4000}, content_type="application/json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_disputed"

    chain.rpc("evm_revert", [before])  # the resolution's block leaves the chain
    assert indexer.index_chain(chain.w3).reorgs == 1
    assert Order.objects.get(pk=disputed.pk).status == "disputed"
    assert client.get(f"{API}/{disputed.order_id}").json()["order"]["decision"] is None

    answer = client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 4000}, content_type="application/json")

    assert answer.status_code == 202, answer.json()
    assert sender.send_operator_actions().confirmed == 1
    confirmed = AuditEntry.objects.filter(action="chain.confirmed").order_by("-id").first()
    assert confirmed.details["entry"] == answer.json()["entry"] and confirmed.details["as_decided"] is True
    assert Order.objects.get(pk=disputed.pk).refund == PRICE * 40 // 100


def test_an_outside_resolution_read_again_after_a_reorganisation_is_one_entry_and_one_notice_each(
        chain, arbiter, disputed, no_worker):
    """Findings 6 and 8: the same transaction mined again after a reorganisation is the same
    entry (keyed on its transaction), the same confirmation, and tells nobody twice."""
    raw, tx_hash, before = outside_resolution(chain, disputed)
    assert Notification.objects.filter(kind="dispute.resolved").count() == 2
    outside = AuditEntry.objects.get(action="dispute.resolve")

    chain.rpc("evm_revert", [before])
    assert indexer.index_chain(chain.w3).reorgs == 1
    assert send_raw(chain, raw) == tx_hash
    indexer.index_chain(chain.w3)

    assert Order.objects.get(pk=disputed.pk).status == "resolved"
    assert AuditEntry.objects.filter(action="dispute.resolve").count() == 1
    assert AuditEntry.objects.get(action="chain.confirmed").details["entry"] == outside.pk
    told = sorted(Notification.objects.filter(kind="dispute.resolved").values_list("recipient__address", flat=True))
    assert told == sorted([BUYER, PUBLISHER]), "told once per event"


def test_a_resolution_sent_by_other_means_after_the_console_s_decision_failed_is_recorded_on_its_own(
        chain, arbiter, disputed, no_worker):
    """Finding 7: the console's 25 % fails on-chain (the operator lost the role); the arbiter's own
    wallet then resolves 90 %: that is an outside resolution, not the failed decision's."""
    _, client = arbiter
    decided = client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 2500},
                          content_type="application/json")
    assert decided.status_code == 202
    role = chain.market.role("ARBITER_ROLE")
    chain.send(chain.market.contract.functions.grantRole(role, ARBITER_WALLET), chain.operator.address)
    chain.send(chain.market.contract.functions.revokeRole(role, chain.operator.address), chain.operator.address)
    sender.send_operator_actions()
    assert OperatorAction.objects.get().status == "failed"

    receipt = chain.send(chain.market.contract.functions.resolve(int(disputed.order_id), 9000), ARBITER_WALLET)
    indexer.index_chain(chain.w3)

    first, outside = AuditEntry.objects.filter(action="dispute.resolve").order_by("id")
    assert first.pk == decided.json()["entry"] and first.details["via"] == "operator"
    assert (outside.actor_role, outside.details["via"], outside.details["refund_bps"]) == ("system", "chain", 9000)
    assert outside.details["tx_hash"] == receipt["transactionHash"].to_0x_hex()
    confirmed = AuditEntry.objects.get(action="chain.confirmed")
    assert (confirmed.details["entry"], confirmed.details["as_decided"]) == (outside.pk, True)
    body = client.get(f"{API}/{disputed.order_id}").json()
    assert body["decisions"][-1]["entry"] == outside.pk and body["order"]["decision"] == "confirmed"


def test_a_resolution_retried_more_than_fifty_times_is_still_the_standing_decision(chain, arbiter, disputed):
    """Finding 9: the walk along the retries of a decision's action stopped after 50 hops, so the
    61st retry of a standing decision was refused as 'a later decision took its place'."""
    _, client = arbiter
    decided = client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 2500},
                          content_type="application/json")
    assert decided.status_code == 202
    action = OperatorAction.objects.get()
    for _ in range(60):
        retry = OperatorAction.objects.create(
            kind=action.kind, chain_id=action.chain_id, market=action.market, order_id=action.order_id,
            payload=action.payload, status="failed", error="reverted", context={"retry_of": action.pk})
        OperatorAction.objects.filter(pk=action.pk).update(
            status="failed", error="reverted", context={**action.context, "retried_as": retry.pk})
        action = retry

    answer = client.post(f"/api/v1/moderation/actions/{action.pk}/retry")

    assert answer.status_code == 202, answer.json()
    assert OperatorAction.objects.get(status="pending").context["retry_of"] == action.pk


def test_a_retry_holds_no_row_lock_while_it_asks_the_chain(chain, arbiter, disputed, monkeypatch):
    """Finding 9: the retry locked the order and the action, then asked the node: every other
    arbiter's decision on the order waited on the network. Now nothing is locked during the call,
    and a decision taken meanwhile is seen when the retry takes its locks."""
    import threading

    from django.db import DatabaseError, connection, transaction

    from marketplace.chain import retry as chain_retry
    from marketplace.moderation import operator_actions

    user, client = arbiter
    failed, role = a_failed_resolution(chain, client, disputed)
    chain.send(chain.market.contract.functions.grantRole(role, chain.operator.address), chain.operator.address)

    asking, go = threading.Event(), threading.Event()
    real = chain_retry._chain_check

    def slow_node(action):
        asking.set()
        go.wait(30)
        return real(action)

    monkeypatch.setattr(chain_retry, "_chain_check", slow_node)
    outcome = []

    def run():
        try:
            outcome.append(operator_actions.retry(action_id=failed.pk, by=user))
        except operator_actions.RetryRefused as exc:
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert asking.wait(30)
        with transaction.atomic():  # NOWAIT: a lock held by the retry is an error at once
            try:
                Order.objects.select_for_update(nowait=True).get(pk=disputed.pk)
                OperatorAction.objects.select_for_update(nowait=True).get(pk=failed.pk)
                locked = ""
            except DatabaseError as exc:
                locked = str(exc)
        assert locked == ""
        _, other = person("arbiter2", "arbiter")
        later = other.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 9000},
                           content_type="application/json")
        assert later.status_code == 202
    finally:
        go.set()
        thread.join(60)

    (refused,) = outcome
    assert isinstance(refused, operator_actions.RetryRefused) and refused.status == 409
    assert "later decision" in refused.message
    assert list(OperatorAction.objects.filter(status="pending").values_list("payload", flat=True)) == [
        {"refund_bps": 9000}]
    assert not AuditEntry.objects.filter(action="chain.retry").exists()


# The third attack review's findings ------------------------------------------------------------


def test_a_failed_approval_is_not_retried_once_its_version_was_rejected(chain, on_sale, no_worker):
    """Finding 1: moderator A approved version 1, the approval of its listing failed; the version
    came back for review (linked again) and moderator B rejected it, a decision about a version,
    not the whole dataset. Moderator C's retry of the approval is refused; and the sender itself
    never approves a listing whose version is not approved."""
    from marketplace.catalog import revisions
    from marketplace.catalog.models import DatasetVersion, Listing

    listing = on_sale.listings.get()
    listing_id = int(listing.listing_id)
    chain.send(chain.market.contract.functions.setApproval([listing_id], False), chain.operator.address)
    indexer.index_chain(chain.w3)
    Listing.objects.filter(pk=listing.pk).update(approved=False)
    approval = failed(chain, on_sale, "approve")
    revision = revisions.submit_version(on_sale, Listing.objects.get(pk=listing.pk), by=on_sale.dataset.owner)
    revisions.decide(revision, decision="reject", moderator=person("reviewer", "moderator")[0],
                     reason="Holds e-mail addresses.")
    assert DatasetVersion.objects.get(pk=on_sale.pk).review == "rejected"
    _, client = person("moderator", "moderator")

    answer = client.post(f"/api/v1/moderation/actions/{approval.pk}/retry")

    assert answer.status_code == 409, answer.json()
    assert answer.json()["error"]["code"] == "version_not_approved"
    assert "version 1" in answer.json()["error"]["message"] and "rejected" in answer.json()["error"]["message"]
    assert not OperatorAction.objects.filter(status="pending").exists()
    assert not AuditEntry.objects.filter(action="chain.retry").exists()

    # An approval that reaches the sender anyway (queued before the rejection) is not sent.
    queued = OperatorAction.objects.create(
        kind="approve", chain_id=approval.chain_id, market=approval.market, listing_id=approval.listing_id,
        expected_owner=approval.expected_owner, expected_content_hash=approval.expected_content_hash,
        context=approval.context, on_done="marketplace.catalog.listing.on_operator_action")
    report = sender.send_operator_actions()
    queued.refresh_from_db()
    assert report.failed == 1 and queued.status == "failed"
    assert "version 1" in queued.error and "rejected" in queued.error
    assert chain.market.get_listing(listing_id)["approved"] is False


def test_a_second_decision_is_refused_while_the_retry_of_the_first_is_confirmed_but_not_read(
        chain, arbiter, disputed, no_worker):
    """Finding 3: the first decision's action failed and its retry was confirmed; the indexer has
    not read the resolution yet, so the order is still disputed here. A second decision is
    refused: the standing decision is judged by the last action of its retries."""
    user, client = arbiter
    failed_action, role = a_failed_resolution(chain, client, disputed)
    chain.send(chain.market.contract.functions.grantRole(role, chain.operator.address), chain.operator.address)
    retried = client.post(f"/api/v1/moderation/actions/{failed_action.pk}/retry")
    assert retried.status_code == 202, retried.json()
    OperatorAction.objects.filter(pk=retried.json()["action"]["id"]).update(status="confirmed")

    second = client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 9000}, content_type="application/json")

    assert second.status_code == 409, second.json()
    assert second.json()["error"]["code"] == "already_decided" and "confirmed" in second.json()["error"]["message"]
    assert AuditEntry.objects.filter(action="dispute.resolve").count() == 1

    # Once the retry has failed too, a new decision may take the first one's place.
    OperatorAction.objects.filter(pk=retried.json()["action"]["id"]).update(status="failed")
    assert client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 9000},
                       content_type="application/json").status_code == 202


def test_a_failed_decision_is_not_retried_after_an_outside_resolution_a_reorganisation_dropped(
        chain, arbiter, disputed, no_worker):
    """Finding 4: the console's 25 % failed (the operator lost the role); the arbiter resolved 70 %
    from their wallet; a reorganisation dropped that transaction, which may be mined again. The
    old 25 % decision is not retried: an arbiter decides again."""
    _, client = arbiter
    failed_action, role = a_failed_resolution(chain, client, disputed)
    raw = signed_resolution(chain, disputed.order_id, 7000)
    before = chain.rpc("evm_snapshot")
    send_raw(chain, raw)
    indexer.index_chain(chain.w3)
    assert Order.objects.get(pk=disputed.pk).status == "resolved"
    assert AuditEntry.objects.filter(action="dispute.resolve", details__via="chain").count() == 1
    chain.rpc("evm_revert", [before])
    assert indexer.index_chain(chain.w3).reorgs == 1
    assert Order.objects.get(pk=disputed.pk).status == "disputed"
    chain.send(chain.market.contract.functions.grantRole(role, chain.operator.address), chain.operator.address)

    answer = client.post(f"/api/v1/moderation/actions/{failed_action.pk}/retry")

    assert answer.status_code == 409, answer.json()
    assert answer.json()["error"]["code"] == "not_needed"
    assert "outside the console" in answer.json()["error"]["message"]
    assert not OperatorAction.objects.filter(status="pending").exists()
    decided = client.post(f"{API}/{disputed.order_id}/resolve", {"refund_bps": 4000}, content_type="application/json")
    assert decided.status_code == 202, decided.json()


def test_an_outside_resolution_mined_again_at_another_log_index_tells_each_party_once(
        chain, arbiter, disputed, no_worker):
    """Finding 5: after a reorganisation the same transaction, mined in another block behind
    another transaction's log, has another log index; the parties are told once."""
    raw, tx_hash, before = outside_resolution(chain, disputed)
    (old,) = chain.market.contract.events.DisputeResolved().process_receipt(
        chain.w3.eth.get_transaction_receipt(tx_hash), errors=DISCARD)
    assert Notification.objects.filter(kind="dispute.resolved").count() == 2

    chain.rpc("evm_revert", [before])
    assert indexer.index_chain(chain.w3).reorgs == 1
    w3 = chain.w3
    chain.rpc("evm_setAutomine", [False])
    try:  # another transaction with a log goes first in the block
        w3.eth.send_transaction({"from": BUYER, "to": chain.token.address, "maxFeePerGas": 200 * 10**9,
                                 "maxPriorityFeePerGas": 50 * 10**9, "gas": 100_000,
                                 "data": chain.token.contract.encode_abi("transfer", args=[PUBLISHER, 1])})
        assert w3.eth.send_raw_transaction(raw).to_0x_hex() == tx_hash
        chain.rpc("evm_mine")
    finally:
        chain.rpc("evm_setAutomine", [True])
    (new,) = chain.market.contract.events.DisputeResolved().process_receipt(
        w3.eth.wait_for_transaction_receipt(tx_hash), errors=DISCARD)
    assert new["logIndex"] != old["logIndex"]
    indexer.index_chain(w3)

    assert Order.objects.get(pk=disputed.pk).status == "resolved"
    told = sorted(Notification.objects.filter(kind="dispute.resolved").values_list("recipient__address", flat=True))
    assert told == sorted([BUYER, PUBLISHER]), "told once per event"

"""Listing on-chain: the publisher's wallet sends the prepared createListing and posts its hash; the
chain indexer reads through its block and its handler links the listing (its terms from the
event) and puts the version up for review; a moderator approves in the admin (an outbox row, no
chain call in the request), and the single operator sender approves in one transaction after
checking the listing on-chain; the indexer reads the approval and lists the dataset. Rejecting a
new dataset queues nothing; delisting clears the approval."""
import hashlib
import re
import threading

from django.db import connections
from eth_account import Account
import pytest
from web3 import Web3
from web3.logs import DISCARD

from marketplace.accounts.models import User
from marketplace.accounts.services import wallet_user
from marketplace.catalog.models import Dataset, DatasetVersion, Listing
from marketplace.chain import indexer, sender
from marketplace.chain.models import OperatorAction
from marketplace.outbox.models import OutboxMessage
from tests.conftest import DEV_KEYS, dead_broker_url, free_port, wait_until

pytestmark = pytest.mark.chain

PRICE = 25 * 10**6
PUBLISHER = Account.from_key(DEV_KEYS[1]).address
STRANGER = Account.from_key(DEV_KEYS[2]).address


def sha(data: bytes) -> str:
    return "0x" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def publisher(db):
    return wallet_user(PUBLISHER)


@pytest.fixture
def publisher_client(client, publisher):
    client.force_login(publisher)
    return client


@pytest.fixture
def staff_client(db):
    from django.test import Client

    admin = User.objects.create_superuser("moderator", "moderator@example.com", "a-long-password-1")
    staff = Client()
    staff.force_login(admin)
    return staff


def make_version(owner, chain, n=1):
    dataset = Dataset.objects.create(owner=owner, slug=f"cities-{n}", title=f"Cities {n}", license="CC-BY-4.0",
                                     payout_address=owner.address)
    return DatasetVersion.objects.create(
        dataset=dataset, number=1, file=f"datasets/{n}/v1/cities.csv", original_name="cities.csv", format="csv",
        size=10, content_hash=sha(b"cities %d" % n), price=PRICE, token=chain.token.address, analysis_status="done",
    )


def listing_url(version, suffix=""):
    return f"/api/v1/datasets/{version.dataset.slug}/versions/{version.number}/listing{suffix}"


def send_prepared(chain, client, version, sender_address=PUBLISHER):
    """What the page does: fetch the prepared transaction and send it from the wallet."""
    prepared = client.get(listing_url(version, "/prepare"))
    assert prepared.status_code == 200, prepared.json()
    tx = prepared.json()["transaction"]
    tx_hash = chain.w3.eth.send_transaction({"from": sender_address, "to": tx["to"], "data": tx["data"]})
    receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    return "0x" + bytes(tx_hash).hex()


def create_listing(chain, sender_address, content_hash, token=None, **tx):
    call = chain.market.contract.functions.createListing(
        token or chain.token.address, PRICE, sender_address, content_hash, 3 * 24 * 3600)
    tx_hash = call.transact({"from": sender_address, **tx})
    chain.w3.eth.wait_for_transaction_receipt(tx_hash)
    return "0x" + bytes(tx_hash).hex()


def link(client, version, tx_hash):
    return client.post(listing_url(version), {"tx_hash": tx_hash}, content_type="application/json")


def listed_version(chain, client, n=1):
    version = make_version(User.objects.get(address=PUBLISHER), chain, n)
    response = link(client, version, send_prepared(chain, client, version))
    assert response.status_code == 201, response.json()
    return version


def admin_action(staff_client, action, *datasets, reason=None):
    """Run a dataset action in the admin; a decision goes through its confirmation page, which
    names the revisions it decides, as a moderator would."""
    data = {"action": action, "_selected_action": [str(d.pk) for d in datasets], "index": 0}
    if action in ("approve_on_chain", "reject"):
        page = staff_client.post("/admin/catalog/dataset/", data)
        assert page.status_code == 200, page.content[:2000]
        data.update(confirmed="1", revision=re.findall(r'name="revision" value="(\d+)"', page.content.decode()))
    if reason is not None:  # the intermediate page's answer
        data.update(confirmed="1", reason=reason)
    response = staff_client.post("/admin/catalog/dataset/", data)
    assert response.status_code == 302, response.content[:2000]
    return response


def send_approvals(chain):
    """The operator sender's run, then the indexer's (beat's, every second): the approvals and
    clearings it sent reach the listings and datasets through the ListingApprovalSet handler."""
    report = sender.send_operator_actions()
    indexer.index_chain(chain.w3)
    return report


def approval_logs(chain, tx_hash):
    receipt = chain.w3.eth.get_transaction_receipt(tx_hash)
    return chain.market.contract.events.ListingApprovalSet().process_receipt(receipt, errors=DISCARD)


def test_prepare_then_posting_the_hash_links_the_listing_once(chain, publisher_client):
    version = make_version(User.objects.get(address=PUBLISHER), chain)
    prepared = publisher_client.get(listing_url(version, "/prepare")).json()
    assert prepared["market"] == chain.market.address and prepared["chain_id"] == 31337
    assert prepared["token"] == chain.token.address and prepared["price"] == str(PRICE)
    assert prepared["content_hash"] == version.content_hash and prepared["payout"] == PUBLISHER
    assert prepared["dispute_window"] == 3 * 24 * 3600 and prepared["abi"][0]["name"] == "createListing"
    assert prepared["transaction"]["data"].startswith("0x")

    tx_hash = send_prepared(chain, publisher_client, version)
    first = link(publisher_client, version, tx_hash)
    assert first.status_code == 201, first.json()
    body = first.json()
    assert body["dataset_status"] == "pending_review"
    assert body["listing"]["owner"] == PUBLISHER and body["listing"]["price"] == str(PRICE)
    assert body["listing"]["approved"] is False and body["listing"]["tx_hash"] == tx_hash
    row = Listing.objects.get()
    onchain = chain.market.get_listing(int(row.listing_id))
    assert "0x" + onchain["content_hash"].hex() == version.content_hash and onchain["owner"] == PUBLISHER
    assert row.payout == PUBLISHER and row.block_number > 0 and row.version == version

    again = link(publisher_client, version, tx_hash.upper().replace("0X", "0x"))
    assert again.status_code == 200 and again.json()["listing"]["listing_id"] == body["listing"]["listing_id"]
    assert Listing.objects.count() == 1
    assert Dataset.objects.get().status == "pending_review"
    assert publisher_client.get(listing_url(version, "/prepare")).status_code == 409  # already listed
    assert publisher_client.get(listing_url(version)).status_code == 405


@pytest.mark.parametrize("case", ["wrong_owner", "wrong_hash", "unknown_tx", "failed_tx", "not_a_hash"])
def test_link_refuses_what_the_transaction_does_not_prove(chain, publisher_client, case):
    version = make_version(User.objects.get(address=PUBLISHER), chain)
    if case == "wrong_owner":  # the right file, listed from somebody else's wallet
        tx_hash, status, code = create_listing(chain, STRANGER, version.content_hash), 400, "not_dataset_owner"
    elif case == "wrong_hash":
        tx_hash, status, code = create_listing(chain, PUBLISHER, sha(b"another file")), 400, "content_hash_mismatch"
    elif case == "unknown_tx":
        tx_hash, status, code = "0x" + "ab" * 32, 409, "not_mined"
    elif case == "failed_tx":  # a token the market does not accept: mined, reverted
        tx_hash = create_listing(chain, PUBLISHER, version.content_hash, token=STRANGER, gas=300_000)
        status, code = 400, "transaction_failed"
    else:
        tx_hash, status, code = "0x1234", 400, "invalid"
    response = link(publisher_client, version, tx_hash)
    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert not Listing.objects.exists()
    assert Dataset.objects.get().status == "draft"


def test_only_the_owner_links_or_prepares(chain, client, publisher_client):
    version = make_version(User.objects.get(address=PUBLISHER), chain)
    tx_hash = send_prepared(chain, publisher_client, version)
    stranger = User.objects.create(username=STRANGER, address=STRANGER)
    client.force_login(stranger)
    assert link(client, version, tx_hash).status_code == 404  # a draft is invisible to others
    Dataset.objects.update(status=Dataset.Status.LISTED)
    refused = link(client, version, tx_hash)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_owner"
    assert client.get(listing_url(version, "/prepare")).status_code == 403
    client.logout()
    assert link(client, version, tx_hash).status_code == 403
    assert not Listing.objects.exists()


def test_posting_transaction_hashes_is_limited_per_wallet(chain, publisher_client, settings):
    """Each posted hash costs calls to the chain node (a paid provider's quota): a wallet posts at
    most its rate, counted over the link and mirror endpoints together."""
    settings.LIMITS = {**settings.LIMITS, "listing_receipt": {"wallet": "3/hour"}}
    version = make_version(User.objects.get(address=PUBLISHER), chain)
    tx_hash = send_prepared(chain, publisher_client, version)
    assert link(publisher_client, version, "0x1234").status_code == 400  # invalid: not counted
    assert [link(publisher_client, version, tx_hash).status_code for _ in range(2)] == [201, 200]
    mirrored = publisher_client.post(listing_url(version, "/active"), {"tx_hash": tx_hash},
                                     content_type="application/json")
    assert mirrored.status_code == 400 and mirrored.json()["error"]["code"] == "no_active_change"
    for suffix in ("", "/update", "/active"):
        refused = publisher_client.post(listing_url(version, suffix), {"tx_hash": tx_hash},
                                        content_type="application/json")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "throttled"
        assert refused.json()["error"]["message"].startswith(
            "Too many listing transactions to read from the chain for this wallet (at most 3 per hour)")
        assert 3500 < int(refused["Retry-After"]) <= 3600


def test_posting_transaction_hashes_is_limited_per_address(chain, client, settings):
    settings.LIMITS = {**settings.LIMITS, "listing_receipt": {"ip": "2/hour"}}
    unknown = "0x" + "ab" * 32
    answers = []
    for address in (PUBLISHER, STRANGER, STRANGER):  # wallets are free: the address still counts
        owner = wallet_user(address)
        client.force_login(owner)
        version = make_version(owner, chain, n=len(answers) + 1)
        answers.append(link(client, version, unknown))
    assert [a.status_code for a in answers] == [409, 409, 429]
    assert "from your network address" in answers[-1].json()["error"]["message"]


def test_admin_approval_writes_an_outbox_row_and_never_calls_the_chain(chain, publisher_client, staff_client,
                                                                       settings):
    version = listed_version(chain, publisher_client)
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"  # any chain call in the request would fail
    admin_action(staff_client, "approve_on_chain", version.dataset)
    settings.CHAIN_RPC_URL = chain.url
    action = OperatorAction.objects.get()
    listing = Listing.objects.get()
    assert action.kind == "approve" and action.status == "pending" and action.listing_id == listing.listing_id
    assert action.expected_owner == PUBLISHER and action.expected_content_hash == version.content_hash
    assert action.created_by == "moderator"
    assert OutboxMessage.objects.filter(task="chain.send_operator_actions").exists()
    assert chain.market.get_listing(int(listing.listing_id))["approved"] is False
    assert Dataset.objects.get().status == "pending_review"
    assert staff_client.get("/admin/catalog/dataset/?status__exact=pending_review").status_code == 200
    # Approving again while it waits queues nothing more.
    admin_action(staff_client, "approve_on_chain", version.dataset)
    assert OperatorAction.objects.count() == 1


def test_the_sender_approves_several_listings_in_one_transaction(chain, publisher_client, staff_client):
    versions = [listed_version(chain, publisher_client, n) for n in (1, 2, 3)]
    admin_action(staff_client, "approve_on_chain", *[v.dataset for v in versions])
    nonce = chain.w3.eth.get_transaction_count(chain.operator.address)

    report = send_approvals(chain)

    assert len(report.transactions) == 1 and report.confirmed == 3, report
    assert chain.w3.eth.get_transaction_count(chain.operator.address) == nonce + 1
    logs = approval_logs(chain, report.transactions[0])
    ids = sorted(int(l.listing_id) for l in Listing.objects.all())
    assert sorted(log["args"]["listingId"] for log in logs) == ids and all(log["args"]["approved"] for log in logs)
    for listing_id in ids:
        assert chain.market.get_listing(listing_id)["approved"] is True
    assert set(Dataset.objects.values_list("status", flat=True)) == {"listed"}
    assert all(Listing.objects.values_list("approved", flat=True))
    assert set(OperatorAction.objects.values_list("status", "tx_hash")) == {("confirmed", report.transactions[0])}
    by_listing = {log["args"]["listingId"]: log["logIndex"] for log in logs}
    assert {int(a.listing_id): a.log_index for a in OperatorAction.objects.all()} == by_listing
    assert sender.send_operator_actions().skipped == "nothing to send"


def test_a_listing_whose_chain_state_changed_is_not_approved(chain, publisher_client, staff_client):
    """The chain was reset after review: listing id N is now another file. Only the listing that
    still matches is approved; the other fails with the reason and stays unapproved."""
    good = listed_version(chain, publisher_client, 1)
    snapshot = chain.rpc("evm_snapshot")
    bad = listed_version(chain, publisher_client, 2)
    admin_action(staff_client, "approve_on_chain", good.dataset, bad.dataset)
    bad_listing = Listing.objects.get(version=bad)
    chain.rpc("evm_revert", [snapshot])
    create_listing(chain, PUBLISHER, sha(b"some other file"))  # takes the same listing id

    report = sender.send_operator_actions()

    failed = OperatorAction.objects.get(listing_id=bad_listing.listing_id)
    assert failed.status == "failed" and not failed.tx_hash
    assert "content hash" in failed.error and bad.content_hash in failed.error
    assert chain.market.get_listing(int(bad_listing.listing_id))["approved"] is False
    (log,) = approval_logs(chain, report.transactions[0])
    assert log["args"]["listingId"] == int(Listing.objects.get(version=good).listing_id)
    # The sender had the indexer read through its transaction's block, so it saw the chain the
    # revert made: bad's listing was orphaned (its version needs listing again; the other file's
    # listing matches no version), and good's approval lists it.
    assert indexer.index_chain(chain.w3).reorgs == 0, "already seen"
    assert Dataset.objects.get(pk=good.dataset_id).status == "listed"
    assert not Listing.objects.filter(version=bad).exists()
    assert Listing.objects.get().version == good
    assert Dataset.objects.get(pk=bad.dataset_id).status == "draft"


def test_reject_asks_for_reasons_and_rejects_a_new_dataset_whole(chain, publisher_client, staff_client):
    version = listed_version(chain, publisher_client)
    asked = staff_client.post("/admin/catalog/dataset/", {
        "action": "reject", "_selected_action": [str(version.dataset_id)], "index": 0})
    assert asked.status_code == 200 and b"Statement of reasons" in asked.content
    assert Dataset.objects.get().status == "pending_review", "nothing happens before the reasons are given"

    admin_action(staff_client, "reject", version.dataset, reason="The data is not what the title says.")
    assert Dataset.objects.get().status == "rejected"
    version.refresh_from_db()
    assert version.review == "rejected"
    assert set(version.dataset.revisions.values_list("kind", "status", "reason")) == {
        ("details", "rejected", "The data is not what the title says."),
        ("version", "rejected", "The data is not what the title says.")}
    assert not OperatorAction.objects.exists(), "nothing was approved, so nothing to clear on-chain"
    assert chain.market.get_listing(int(Listing.objects.get().listing_id))["approved"] is False


def test_a_decided_approval_cannot_be_rejected_afterwards_delist_takes_it_down(chain, publisher_client,
                                                                               staff_client):
    version = listed_version(chain, publisher_client)
    admin_action(staff_client, "approve_on_chain", version.dataset)
    send_approvals(chain)
    admin_action(staff_client, "reject", version.dataset, reason="Too late")
    assert Dataset.objects.get().status == "listed", "the approval was decided; rejecting changes nothing"

    admin_action(staff_client, "delist", version.dataset)
    send_approvals(chain)
    assert Dataset.objects.get().status == "delisted"
    assert chain.market.get_listing(int(Listing.objects.get().listing_id))["approved"] is False


def test_delist_before_sending_cancels_the_approval(chain, publisher_client, staff_client):
    version = listed_version(chain, publisher_client)
    admin_action(staff_client, "approve_on_chain", version.dataset)
    admin_action(staff_client, "delist", version.dataset)
    assert OperatorAction.objects.get().status == "cancelled"
    assert sender.send_operator_actions().transactions == []
    assert chain.market.get_listing(int(Listing.objects.get().listing_id))["approved"] is False
    assert Dataset.objects.get().status == "delisted"


def test_delist_clears_the_approval_and_delists_once_the_indexer_reads_it(chain, publisher_client,
                                                                         staff_client, settings):
    version = listed_version(chain, publisher_client)
    admin_action(staff_client, "approve_on_chain", version.dataset)
    send_approvals(chain)
    admin_action(staff_client, "delist", version.dataset)
    assert Dataset.objects.get().status == "listed"  # until the chain says otherwise

    settings.CHAIN_CONFIRMATIONS = 1  # the indexer may read the clearing's block one block later
    report = sender.send_operator_actions()
    assert Dataset.objects.get().status == "listed", "the sender writes nothing itself"
    assert Listing.objects.get().approved is True
    chain.rpc("evm_mine")
    indexer.index_chain(chain.w3)

    (log,) = approval_logs(chain, report.transactions[0])
    assert log["args"]["approved"] is False
    assert chain.market.get_listing(int(Listing.objects.get().listing_id))["approved"] is False
    assert Listing.objects.get().approved is False
    assert Dataset.objects.get().status == "delisted"


def test_a_second_sender_waits_for_the_lock_holder(chain, publisher_client, staff_client, point_broker_at):
    # The approval's task goes nowhere: a Celery worker that an earlier test started would
    # otherwise be a third sender, taking the lock between the two below.
    point_broker_at(dead_broker_url())
    version = listed_version(chain, publisher_client)
    admin_action(staff_client, "approve_on_chain", version.dataset)
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [sender.LOCK_NAME])
        blocked = sender.send_operator_actions()
        assert blocked.skipped == "another sender is running" and blocked.transactions == []
        assert OperatorAction.objects.get().status == "pending"
        # Released outright: closing the session ends it too, but only once its backend has exited,
        # which may be after the close returns (a sender right after it then still found it held).
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [sender.LOCK_NAME])
    finally:
        other.close()
    assert len(sender.send_operator_actions().transactions) == 1
    assert OperatorAction.objects.get().status == "confirmed"


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_send_once(chain, publisher_client, staff_client, no_worker):
    versions = [listed_version(chain, publisher_client, n) for n in (1, 2)]
    admin_action(staff_client, "approve_on_chain", *[v.dataset for v in versions])
    nonce = chain.w3.eth.get_transaction_count(chain.operator.address)
    start, reports = threading.Barrier(3), []

    def run():
        try:
            start.wait()
            reports.append(sender.send_operator_actions())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(reports) == 3
    # However the race goes, exactly one of the three sends, one transaction for both actions.
    assert sum(len(r.transactions) for r in reports) == 1, reports
    assert set(OperatorAction.objects.values_list("status", flat=True)) == {"confirmed"}
    assert chain.w3.eth.get_transaction_count(chain.operator.address) == nonce + 1
    indexer.index_chain(chain.w3)
    assert set(Dataset.objects.values_list("status", flat=True)) == {"listed"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_admin_approval_is_sent_by_the_worker(chain, publisher_client, staff_client, celery_worker):
    version = listed_version(chain, publisher_client)
    admin_action(staff_client, "approve_on_chain", version.dataset)  # enqueues the sender on commit
    assert wait_until(lambda: OperatorAction.objects.get().status == "confirmed",
                      timeout=60), celery_worker.output()

    def read_by_the_indexer():  # what beat's runs do
        indexer.index_chain(chain.w3)
        return Dataset.objects.get().status == "listed"

    assert wait_until(read_by_the_indexer, timeout=30)
    action = OperatorAction.objects.get()
    assert action.status == "confirmed" and action.tx_hash
    assert chain.market.get_listing(int(Listing.objects.get().listing_id))["approved"] is True
    assert Web3.to_checksum_address(chain.w3.eth.get_transaction(action.tx_hash)["from"]) == chain.operator.address


def test_moderation_pages_render(chain, publisher_client, staff_client):
    version = listed_version(chain, publisher_client)
    admin_action(staff_client, "approve_on_chain", version.dataset)
    for path in [f"/admin/catalog/dataset/{version.dataset_id}/change/", "/admin/catalog/dataset/?approval=awaiting",
                 "/admin/catalog/listing/", "/admin/chain/operatoraction/"]:
        assert staff_client.get(path).status_code == 200, path


# Listing terms: the created event's, then each later event's as the indexer reads them ----------


def send_wallet(chain, plan, sender_address=PUBLISHER):
    tx = plan["transaction"]
    tx_hash = chain.w3.eth.send_transaction({"from": sender_address, "to": tx["to"], "data": tx["data"]})
    assert chain.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
    return "0x" + bytes(tx_hash).hex()


def set_active(chain, client, version, active):
    plan = client.post(listing_url(version, "/active/prepare"), {"active": active}, content_type="application/json")
    assert plan.status_code == 200, plan.json()
    assert plan.json()["function"] == "setListingActive(uint256,bool)"
    return send_wallet(chain, plan.json())


def mirror_active(client, version, tx_hash):
    return client.post(listing_url(version, "/active"), {"tx_hash": tx_hash}, content_type="application/json")


def test_linking_reads_the_listing_terms_from_the_chain(chain, publisher_client):
    version = listed_version(chain, publisher_client)
    row = Listing.objects.get()
    assert row.dispute_window == 3 * 24 * 3600 and row.active is True and row.approved is False
    assert row.price == PRICE and row.payout == PUBLISHER
    body = publisher_client.get(f"/api/v1/datasets/{version.dataset.slug}").json()
    terms = body["versions"][0]["listing"]
    assert terms["dispute_window"] == 3 * 24 * 3600 and terms["active"] is True and terms["price"] == str(PRICE)
    page = publisher_client.get(f"/me/datasets/{version.dataset.slug}/edit").content.decode()
    assert "disputes within 3 days" in page


def test_a_version_has_one_listing_per_chain(chain, publisher_client):
    version = listed_version(chain, publisher_client)
    second = create_listing(chain, PUBLISHER, version.content_hash)  # the same file, listed again
    refused = link(publisher_client, version, second)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "already_listed"
    assert Listing.objects.count() == 1


def test_stopping_sales_applies_at_once_and_a_late_hash_rolls_nothing_back(chain, publisher_client, client):
    version = listed_version(chain, publisher_client)
    stop = set_active(chain, publisher_client, version, False)
    answer = mirror_active(publisher_client, version, stop)
    assert answer.status_code == 200 and answer.json()["active"] is False
    assert chain.market.get_listing(int(Listing.objects.get().listing_id))["active"] is False
    assert 'data-not-for-sale' in publisher_client.get(f"/datasets/{version.dataset.slug}").content.decode()

    resume = set_active(chain, publisher_client, version, True)
    assert mirror_active(publisher_client, version, resume).json()["active"] is True
    late = mirror_active(publisher_client, version, stop)  # the older transaction, posted again
    assert late.status_code == 200 and late.json()["active"] is True
    assert Listing.objects.get().active is True

    not_mine = mirror_active(publisher_client, version, Listing.objects.get().tx_hash)  # a createListing
    assert not_mine.status_code == 400 and not_mine.json()["error"]["code"] == "no_active_change"


def test_flags_set_outside_the_pages_are_read_by_the_indexer_alone(chain, publisher_client):
    """No hash is posted: the owner stops sales from another client and a moderator approves from
    their own wallet; the indexer's next run (beat's) carries both flags."""
    from marketplace.catalog.listing import on_operator_action

    listed_version(chain, publisher_client)
    listing = Listing.objects.get()
    chain.send(chain.market.contract.functions.setListingActive(int(listing.listing_id), False), PUBLISHER)
    chain.send(chain.market.contract.functions.setApproval([int(listing.listing_id)], True), chain.operator.address)
    assert Listing.objects.get().approved is False
    indexer.index_chain(chain.w3)
    read = Listing.objects.get()
    assert read.active is False and read.approved is True and read.dispute_window == 3 * 24 * 3600
    # The operator sender's settled actions write nothing: the chain's events do.
    clearing = OperatorAction(kind="unapprove", chain_id=31337, listing_id=listing.listing_id, status="confirmed",
                              block_number=chain.w3.eth.block_number, context={"intent": "delist"})
    on_operator_action(clearing)
    assert Listing.objects.get().approved is True
    assert Dataset.objects.get().status == "pending_review"


@pytest.mark.parametrize("order", [(True, False), (False, True)])
def test_an_approval_and_a_clearing_in_one_block_apply_in_log_order(chain, publisher_client, order):
    """Two setApproval transactions mined in one block: the later log wins."""
    listed_version(chain, publisher_client)
    listing_id = int(Listing.objects.get().listing_id)
    operator = chain.operator.address
    chain.rpc("evm_setAutomine", [False])
    try:
        nonce = chain.w3.eth.get_transaction_count(operator)
        for offset, approved in enumerate(order):
            chain.market.contract.functions.setApproval([listing_id], approved).transact(
                {"from": operator, "nonce": nonce + offset, "gas": 200_000})
        chain.rpc("evm_mine")
    finally:
        chain.rpc("evm_setAutomine", [True])
    block = chain.w3.eth.get_block("latest")
    assert len(block["transactions"]) == 2
    indexer.index_chain(chain.w3)
    assert Listing.objects.get().approved is order[-1]
    assert chain.market.get_listing(listing_id)["approved"] is order[-1]

"""Listings as the chain indexer writes them, on anvil with the real market: a listing is linked by
the indexer alone or through the owner's nudge (after the confirmations), only when it can be one
version's; reorganisations (snapshot and revert) take back what orphaned blocks did: a price
change, a listing, an approval."""
import pytest

from marketplace.accounts.models import User
from marketplace.catalog.models import (
    Dataset, DatasetRevision, DatasetVersion, Listing, ListingUpdate,
)
from marketplace.chain import indexer
from marketplace.chain.contracts import DataMarket
from marketplace.chain.models import ChainEvent, IndexerCursor
from marketplace.chain.services import deploy_contract
from tests.integration.test_listing import (  # noqa: F401 (fixtures)
    PRICE, PUBLISHER, STRANGER, admin_action, create_listing, link, listed_version, listing_url,
    make_version, publisher, publisher_client, send_approvals, sha, staff_client,
)
from tests.integration.test_listing_update import NEW_PRICE, mirror, update_on_chain

pytestmark = pytest.mark.chain


def mined_past(chain, blocks=2):
    for _ in range(blocks):
        chain.rpc("evm_mine")


def version_of(chain, n=1, content=None):
    version = make_version(User.objects.get(address=PUBLISHER), chain, n)
    if content is not None:
        DatasetVersion.objects.filter(pk=version.pk).update(content_hash=sha(content))
        version.refresh_from_db()
    return version


def test_a_listing_sent_from_the_wallet_is_linked_by_the_indexer_alone(chain, publisher_client):
    """No hash is posted: beat's run of the indexer links the listing, with its event's terms, and
    puts the version up for review; posting the hash later answers the same listing."""
    version = version_of(chain)
    tx_hash = create_listing(chain, PUBLISHER, version.content_hash)
    assert not Listing.objects.exists()

    indexer.index_chain(chain.w3)

    listing = Listing.objects.get()
    receipt = chain.w3.eth.get_transaction_receipt(tx_hash)
    assert listing.version == version and listing.tx_hash == tx_hash
    assert listing.block_number == receipt["blockNumber"]
    assert (listing.owner, listing.token, listing.price, listing.payout) == (
        PUBLISHER, chain.token.address, PRICE, PUBLISHER)
    assert listing.dispute_window == 3 * 24 * 3600
    assert listing.active is True and listing.approved is False
    assert Dataset.objects.get().status == "pending_review"
    (review,) = DatasetRevision.objects.filter(version=version, kind="version", status="pending")
    assert review.listings == [{"chain_id": 31337, "listing_id": str(listing.listing_id),
                                "content_hash": version.content_hash}]

    answer = link(publisher_client, version, tx_hash)
    assert answer.status_code == 200, answer.json()
    assert answer.json()["listing"]["listing_id"] == str(listing.listing_id)
    assert answer.json()["dataset_status"] == "pending_review" and Listing.objects.count() == 1


def test_the_nudge_reads_through_the_transactions_block_and_no_further(chain, publisher_client):
    first, second = version_of(chain, 1), version_of(chain, 2)
    first_tx = create_listing(chain, PUBLISHER, first.content_hash)
    create_listing(chain, PUBLISHER, second.content_hash)

    answer = link(publisher_client, first, first_tx)

    assert answer.status_code == 201, answer.json()
    assert answer.json()["listing"]["tx_hash"] == first_tx
    assert answer.json()["dataset_status"] == "pending_review"
    assert list(Listing.objects.values_list("version", flat=True)) == [first.pk]
    block = chain.w3.eth.get_transaction_receipt(first_tx)["blockNumber"]
    assert IndexerCursor.objects.get().block_number == block
    indexer.index_chain(chain.w3)  # beat's next run
    assert Listing.objects.get(version=second).tx_hash != first_tx


def test_the_nudge_answers_202_until_the_block_has_its_confirmations(chain, publisher_client,
                                                                     settings):
    settings.CHAIN_CONFIRMATIONS = 2
    version = version_of(chain)
    tx_hash = create_listing(chain, PUBLISHER, version.content_hash)

    waiting = link(publisher_client, version, tx_hash)

    assert waiting.status_code == 202 and waiting.json() == {"confirmations": 1, "needed": 3}
    assert not Listing.objects.exists() and Dataset.objects.get().status == "draft"
    chain.rpc("evm_mine")
    assert link(publisher_client, version, tx_hash).json() == {"confirmations": 2, "needed": 3}
    chain.rpc("evm_mine")
    linked = link(publisher_client, version, tx_hash)
    assert linked.status_code == 201, linked.json()
    assert Listing.objects.get().version == version


@pytest.mark.parametrize("endpoint", ["/update", "/active"])
def test_a_change_is_answered_once_its_block_has_its_confirmations(chain, publisher_client,
                                                                   settings, endpoint):
    version = listed_version(chain, publisher_client)
    listing_id = int(Listing.objects.get().listing_id)
    settings.CHAIN_CONFIRMATIONS = 1
    if endpoint == "/update":
        tx_hash = update_on_chain(chain, listing_id, NEW_PRICE)
    else:
        call = chain.market.contract.functions.setListingActive(listing_id, False)
        receipt = chain.send(call, PUBLISHER)
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()

    def post():
        return publisher_client.post(listing_url(version, endpoint), {"tx_hash": tx_hash},
                                     content_type="application/json")

    assert post().status_code == 202 and post().json() == {"confirmations": 1, "needed": 2}
    assert Listing.objects.get().price == PRICE and Listing.objects.get().active is True
    chain.rpc("evm_mine")
    answer = post()
    assert answer.status_code in (200, 201), answer.json()
    if endpoint == "/update":
        assert answer.status_code == 201 and answer.json()["listing"]["price"] == str(NEW_PRICE)
        assert Listing.objects.get().price == NEW_PRICE
    else:
        assert answer.json()["active"] is False and Listing.objects.get().active is False


def test_a_listing_from_another_contract_links_nothing(chain, publisher_client):
    """Another DataMarket (anyone can deploy one) emits the very same ListingCreated for the
    version's file from the publisher's wallet: the indexer never stores it, and its hash is no
    listing of the market."""
    version = version_of(chain)
    operator = chain.operator.address
    deployed = deploy_contract(chain.w3, "DataMarket", [operator, operator, 250])
    fake = DataMarket(chain.w3, deployed.address)
    fake.set_token_allowed(chain.token.address, True, True)
    call = fake.contract.functions.createListing(chain.token.address, PRICE, PUBLISHER,
                                                 version.content_hash, 24 * 3600)
    receipt = chain.send(call, PUBLISHER)
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()

    indexer.index_chain(chain.w3)
    assert not Listing.objects.exists() and not ChainEvent.objects.filter(tx_hash=tx_hash).exists()
    answer = link(publisher_client, version, tx_hash)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "no_listing"
    assert not Listing.objects.exists() and Dataset.objects.get().status == "draft"


def test_a_listing_that_matches_no_version_is_only_an_event(chain):
    """Listed from a script, of a file nobody uploaded here: the indexer stores the events and goes
    on; its later price change and approval are stored too, and write nothing."""
    tx_hash = create_listing(chain, STRANGER, sha(b"a file never uploaded"))
    listing_id = chain.market.contract.functions.listingCount().call()
    update_on_chain(chain, listing_id, NEW_PRICE, payout=STRANGER, sender=STRANGER)
    approve = chain.market.contract.functions.setApproval([listing_id], True)
    chain.send(approve, chain.operator.address)

    report = indexer.index_chain(chain.w3)

    assert report.through == chain.w3.eth.block_number
    assert ChainEvent.objects.filter(tx_hash=tx_hash, name="ListingCreated").exists()
    assert ChainEvent.objects.filter(name__in=["ListingUpdated", "ListingApprovalSet"]).count() == 2
    assert not Listing.objects.exists() and not ListingUpdate.objects.exists()


def test_a_listing_two_versions_could_be_is_linked_to_the_one_its_owner_names(chain,
                                                                              publisher_client):
    """One owner uploaded the same file to two datasets: the indexer cannot tell which one a
    listing of that file is for and links neither; the owner's page posts the hash for one,
    which is linked then, with the price changes made since."""
    first, second = version_of(chain, 1, b"the same file"), version_of(chain, 2, b"the same file")
    tx_hash = create_listing(chain, PUBLISHER, first.content_hash)
    listing_id = chain.market.contract.functions.listingCount().call()
    update_on_chain(chain, listing_id, NEW_PRICE)
    indexer.index_chain(chain.w3)
    assert not Listing.objects.exists()

    answer = link(publisher_client, second, tx_hash)

    assert answer.status_code == 201, answer.json()
    listing = Listing.objects.get()
    assert listing.version == second and listing.price == NEW_PRICE
    assert answer.json()["listing"]["price"] == str(NEW_PRICE)
    assert list(ListingUpdate.objects.values_list("listing", "price")) == [(listing.pk, NEW_PRICE)]
    assert Dataset.objects.get(pk=second.dataset_id).status == "pending_review"
    assert Dataset.objects.get(pk=first.dataset_id).status == "draft"
    refused = link(publisher_client, first, tx_hash)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "already_linked"


def test_a_version_uploaded_after_its_file_was_listed_is_linked_when_the_hash_is_posted(
        chain, publisher_client):
    content = sha(b"cities 1")
    tx_hash = create_listing(chain, PUBLISHER, content)
    indexer.index_chain(chain.w3)
    version = version_of(chain)
    assert version.content_hash == content and not Listing.objects.exists()

    answer = link(publisher_client, version, tx_hash)

    assert answer.status_code == 201, answer.json()
    assert Listing.objects.get().version == version
    assert Dataset.objects.get().status == "pending_review"


def test_a_listing_that_fails_to_link_never_stops_the_indexer(chain, publisher_client, monkeypatch):
    """A bug in linking one listing is logged: the range is stored, with the other apps' events,
    and posting the transaction links the listing once the bug is gone."""
    from marketplace.catalog import revisions

    version = version_of(chain)
    tx_hash = create_listing(chain, PUBLISHER, version.content_hash)
    real = revisions.submit_version

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(revisions, "submit_version", broken)
    report = indexer.index_chain(chain.w3)
    assert report.through == chain.w3.eth.block_number
    assert ChainEvent.objects.filter(tx_hash=tx_hash, name="ListingCreated").exists()
    assert not Listing.objects.exists() and Dataset.objects.get().status == "draft"

    monkeypatch.setattr(revisions, "submit_version", real)
    answer = link(publisher_client, version, tx_hash)
    assert answer.status_code == 201, answer.json()
    assert Listing.objects.get().version == version


def test_a_clearing_no_moderator_decision_sent_leaves_the_dataset_listed(chain, publisher_client,
                                                                         staff_client):
    """Only a clearing the operator sent to delist (its OperatorAction's intent) delists the
    dataset: one sent from a moderator's own wallet clears the listing's flag and nothing else."""
    version = listed_version(chain, publisher_client)
    admin_action(staff_client, "approve_on_chain", version.dataset)
    send_approvals(chain)
    assert Dataset.objects.get().status == "listed"
    listing_id = int(Listing.objects.get().listing_id)
    clear = chain.market.contract.functions.setApproval([listing_id], False)
    chain.send(clear, chain.operator.address)
    indexer.index_chain(chain.w3)
    assert Listing.objects.get().approved is False and Dataset.objects.get().status == "listed"


# Reorganisations ---------------------------------------------------------------------------------


def test_a_reorganisation_that_orphans_a_price_change_brings_the_old_price_back(chain,
                                                                                publisher_client):
    version = listed_version(chain, publisher_client)
    listing_id = int(Listing.objects.get().listing_id)
    snapshot = chain.rpc("evm_snapshot")
    tx_hash = update_on_chain(chain, listing_id, NEW_PRICE)
    assert mirror(publisher_client, version, tx_hash).status_code == 201
    assert Listing.objects.get().price == NEW_PRICE and ListingUpdate.objects.count() == 1

    chain.rpc("evm_revert", [snapshot])
    mined_past(chain)
    assert indexer.index_chain(chain.w3).reorgs == 1

    listing = Listing.objects.get()
    assert listing.price == PRICE and listing.price == chain.market.get_listing(listing_id)["price"]
    assert not ListingUpdate.objects.exists()
    assert not ChainEvent.objects.filter(tx_hash=tx_hash).exists()
    assert mirror(publisher_client, version, tx_hash).json()["error"]["code"] == "not_mined"


def test_a_reorganisation_that_orphans_a_listing_removes_its_link(chain, publisher_client):
    version = version_of(chain)
    snapshot = chain.rpc("evm_snapshot")
    tx_hash = create_listing(chain, PUBLISHER, version.content_hash)
    assert link(publisher_client, version, tx_hash).status_code == 201
    assert Dataset.objects.get().status == "pending_review"

    chain.rpc("evm_revert", [snapshot])
    mined_past(chain)
    assert indexer.index_chain(chain.w3).reorgs == 1

    assert not Listing.objects.exists() and Dataset.objects.get().status == "draft"
    review = DatasetRevision.objects.get(version=version, kind="version")
    assert review.status == "superseded" and "orphaned" in review.reason
    # The version needs listing again, and is linked when it is.
    assert publisher_client.get(listing_url(version, "/prepare")).status_code == 200
    again = create_listing(chain, PUBLISHER, version.content_hash)
    assert link(publisher_client, version, again).status_code == 201


def test_a_reorganisation_that_orphans_an_approval_makes_the_listing_unapproved(
        chain, publisher_client, staff_client):
    version = listed_version(chain, publisher_client)
    admin_action(staff_client, "approve_on_chain", version.dataset)
    snapshot = chain.rpc("evm_snapshot")
    send_approvals(chain)
    assert Listing.objects.get().approved is True and Dataset.objects.get().status == "listed"

    chain.rpc("evm_revert", [snapshot])
    mined_past(chain)
    assert indexer.index_chain(chain.w3).reorgs == 1

    listing = Listing.objects.get()
    assert listing.approved is False
    assert chain.market.get_listing(int(listing.listing_id))["approved"] is False
    assert Dataset.objects.get().status == "pending_review", "not listed, no listing is approved"

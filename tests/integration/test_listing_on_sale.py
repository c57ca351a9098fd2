"""What counts as a listing on sale (catalog/removal.on_sale_listings, which a removal records for
its restore) and whether an approval may still put a listing on sale (catalog/listing.
unapproved_version, which the operator sender and the console's retry ask), read from the
database as the indexer and the sender leave it: PostgreSQL, no chain needed."""
from django.conf import settings
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog import listing, removal
from marketplace.catalog.models import Dataset, DatasetVersion, Listing
from marketplace.chain.models import OperatorAction

pytestmark = pytest.mark.django_db
PUBLISHER = "0x" + "7a" * 20
HASH = "0x" + "ab" * 32


@pytest.fixture
def on_chain():
    """A listed dataset whose version is approved and whose listing the indexer read as approved."""
    dataset = Dataset.objects.create(owner=wallet_user(PUBLISHER), slug="rain", title="Rain", license="CC0-1.0",
                                     payout_address=PUBLISHER, status="listed")
    version = DatasetVersion.objects.create(dataset=dataset, number=1, file="x", original_name="x.csv", format="csv",
                                            size=1, content_hash=HASH, price=1, token=PUBLISHER,
                                            analysis_status="done", review="approved")
    row = Listing.objects.create(chain_id=settings.CHAIN_ID, listing_id=7, version=version, owner=PUBLISHER,
                                 token=PUBLISHER, price=1, payout=PUBLISHER, tx_hash="0x" + "11" * 32, log_index=0,
                                 block_number=5, approved=True)
    return dataset, version, row


def action(kind, status, **context):
    return OperatorAction.objects.create(kind=kind, chain_id=settings.CHAIN_ID, market=PUBLISHER, listing_id=7,
                                         expected_owner=PUBLISHER, expected_content_hash=HASH, status=status,
                                         context=context)


def test_a_confirmed_clearing_the_indexer_has_not_read_takes_the_listing_off_sale(on_chain):
    dataset, _, _ = on_chain
    assert removal.on_sale_listings(dataset) == [on_chain[2]]
    action("unapprove", "confirmed")
    assert removal.on_sale_listings(dataset) == [], "still approved here, but its clearing is mined"
    action("approve", "pending")
    assert removal.on_sale_listings(dataset) == [on_chain[2]], "an approval on its way puts it back"


def test_a_confirmed_approval_leaves_it_to_what_the_indexer_read(on_chain):
    dataset, _, row = on_chain
    action("approve", "confirmed")
    Listing.objects.filter(pk=row.pk).update(approved=False)  # cleared on-chain since, by other means
    assert removal.on_sale_listings(dataset) == []


def test_an_approval_of_a_listing_row_a_reorganisation_dropped_is_not_sent(on_chain):
    _, version, row = on_chain
    queued = action("approve", "pending", listing=row.pk)
    assert listing.unapproved_version(queued) == ""
    row.delete()  # catalog.handlers.drop_listings, the listing's event gone with its block
    assert "no longer linked to a version" in listing.unapproved_version(queued)
    # Mined again and linked again: a new row, its version back in review until a moderator decides.
    Listing.objects.create(chain_id=settings.CHAIN_ID, listing_id=7, version=version, owner=PUBLISHER,
                           token=PUBLISHER, price=1, payout=PUBLISHER, tx_hash="0x" + "12" * 32, log_index=0,
                           block_number=6)
    DatasetVersion.objects.filter(pk=version.pk).update(review="pending")
    assert "waiting for review" in listing.unapproved_version(queued)
    DatasetVersion.objects.filter(pk=version.pk).update(review="approved")
    assert listing.unapproved_version(queued) == ""

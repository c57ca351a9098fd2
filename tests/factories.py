"""Catalog rows for tests that exercise pages and search rather than the chain: a version made
public as the review and the chain would make it (an approved revision, an approved listing)."""
from django.utils import timezone

from marketplace.catalog.models import Dataset, DatasetVersion, Listing

_listing_ids = iter(range(1_000_000, 2_000_000))


def make_public(version: DatasetVersion, *, chain_id: int = 31337) -> DatasetVersion:
    """Approve `version` and give it an approved listing row at its intended price, and list and
    publish its dataset: what a moderator's decisions and the operator's receipt leave behind."""
    listing_id = next(_listing_ids)
    Listing.objects.create(
        chain_id=chain_id, listing_id=listing_id, version=version, owner=version.dataset.owner.address or "",
        token=version.token, price=version.price, payout=version.dataset.payout_address, dispute_window=3 * 86400,
        active=True, approved=True, tx_hash="0x" + f"{listing_id:064x}", log_index=0, block_number=1,
    )
    DatasetVersion.objects.filter(pk=version.pk).update(review=DatasetVersion.Review.APPROVED)
    Dataset.objects.filter(pk=version.dataset_id).update(
        status=Dataset.Status.LISTED, published_at=version.dataset.published_at or timezone.now())
    version.refresh_from_db()
    return version


def decide_every_open_revision(dataset: Dataset, *, decision: str, moderator) -> list:
    """The same decision on every open revision of `dataset`, details first (people decide on
    the revisions they were shown)."""
    from marketplace.catalog import revisions
    from marketplace.catalog.models import DatasetRevision

    results = []
    order = {"details": 0, "version": 1, "preview": 2}
    for revision in sorted(DatasetRevision.objects.filter(dataset=dataset, status__in=DatasetRevision.OPEN),
                           key=lambda r: (order[r.kind], r.created_at, r.pk)):
        try:
            results.append(revisions.decide(revision, decision=decision, moderator=moderator))
        except revisions.StaleDecision:
            continue  # decided along with an earlier one (a rejected submission takes its versions)
    return results

"""What the catalog does when chain/ forgets a chain (a wiped local chain, or --forget-chain)."""
from django.dispatch import receiver

from marketplace.chain.signals import chain_reset

from .models import Dataset, DatasetVersion, Listing
from .revisions import close_for_chain_reset


@receiver(chain_reset)
def forget_listings(sender, chain_id, **kwargs):
    """Drop the chain-derived listings; datasets and their files stay, needing relisting, and the
    reviews waiting on those listings close. A new listing goes to review again: the approvals
    of the versions that were listed there end with their listings (chain/ cancels the operator
    actions queued for that chain, so none of them reaches a listing of the new chain). A dataset
    a moderator rejected or delisted stays so: relisting it is a new submission of a rejected or
    delisted dataset, never a fresh one's."""
    affected = list(Listing.objects.filter(chain_id=chain_id).values_list("version__dataset_id", flat=True))
    # The datasets first, in one order, as every other writer of versions and revisions locks them
    # (revisions.record_analysis, decide, change_preview): no deadlock with an analysis ending now.
    list(Dataset.objects.select_for_update().filter(pk__in=affected).order_by("pk").values_list("pk", flat=True))
    versions = list(Listing.objects.filter(chain_id=chain_id).values_list("version_id", flat=True))
    DatasetVersion.objects.filter(listings__chain_id=chain_id, review=DatasetVersion.Review.APPROVED).update(
        review=DatasetVersion.Review.PENDING)
    Listing.objects.filter(chain_id=chain_id).delete()
    close_for_chain_reset(chain_id, versions)
    (Dataset.objects.filter(pk__in=affected).exclude(versions__listings__isnull=False)
     .exclude(status__in=[Dataset.Status.REJECTED, Dataset.Status.DELISTED]).update(status=Dataset.Status.DRAFT))

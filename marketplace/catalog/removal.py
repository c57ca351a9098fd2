"""Removing a dataset for legal reasons, and restoring a delisted or removed one.

`remove` delists the dataset at once (the operator sender clears its approvals on-chain, so
purchases revert once the clearing is confirmed), marks it removed (`Dataset.removed_at`: every
download path refuses its files with 451, orders.delivery), and purges what the site derived from
its files: the versions' sample rows and column statistics, its search entry (the status change
reaches the index through SearchChange; the results page reads only listed datasets already) and
the shared facet counts. The files themselves stay in the private storage, refused: a court may
still need them, and a restore needs them. `restore` reverses either a removal or a delisting:
the approvals of the approved versions go on-chain again and a removed dataset's files are
analysed again; a removal of a dataset an earlier decision had delisted or rejected goes back to
that status instead, approving nothing, and a restore of a removal approves again only the
listings that were on sale at the removal (`on_sale_listings`, recorded by the caller). Nothing
is put back on sale for a publisher banned from publishing. The moderation app records and
announces both (it calls these; the catalog imports nothing of it).
"""
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from marketplace.outbox.services import enqueue

from . import revisions, services
from .models import Dataset, DatasetVersion, Listing
from .uploads import TABULAR


class AlreadyDone(Exception):
    """The dataset is already in the state asked for (nothing was changed)."""


class PublisherBanned(Exception):
    """The restore would put a dataset back on sale (or in review) while its publisher is banned
    from publishing (nothing was changed)."""


def on_chain_listings(dataset):
    return list(Listing.objects.filter(version__dataset=dataset, chain_id=settings.CHAIN_ID)
                .select_related("version__dataset__owner").order_by("pk"))


def _lock(dataset) -> Dataset:
    return Dataset.objects.select_for_update(of=("self",)).select_related("owner").get(pk=dataset.pk)


def is_delisting(dataset) -> bool:
    """A clearing sent (or to be sent) to delist `dataset` is on its way."""
    from marketplace.chain.models import OperatorAction

    ids = [str(i) for i in Listing.objects.filter(version__dataset=dataset).values_list("listing_id", flat=True)]
    return OperatorAction.objects.filter(
        chain_id=settings.CHAIN_ID, listing_id__in=ids, kind=OperatorAction.Kind.UNAPPROVE,
        status__in=OperatorAction.OPEN).exists()


def clearing_unread(dataset) -> bool:
    """A clearing of one of `dataset`'s approvals was sent, but the indexer has not read it (the
    listing is still approved here). Restoring meanwhile would race it: the indexer, reading the
    clearing sent to delist, would delist the dataset again. (An unsent clearing is safe: the
    restore cancels it.)"""
    from marketplace.chain.models import OperatorAction

    Status = OperatorAction.Status
    # Wait for a sender preparing one of them (it holds the row while it signs): what it sends is
    # SENT once it commits, and seen below.
    ids = [str(i) for i in Listing.objects.filter(version__dataset=dataset, chain_id=settings.CHAIN_ID)
           .values_list("listing_id", flat=True)]
    list(OperatorAction.objects.select_for_update().filter(chain_id=settings.CHAIN_ID, listing_id__in=ids,
                                                           status__in=OperatorAction.OPEN).values_list("pk", flat=True))
    for listing in Listing.objects.filter(version__dataset=dataset, chain_id=settings.CHAIN_ID, approved=True):
        latest = (OperatorAction.objects.filter(chain_id=listing.chain_id, listing_id=listing.listing_id)
                  .exclude(status=Status.CANCELLED).order_by("-pk").first())
        if latest is not None and latest.kind == OperatorAction.Kind.UNAPPROVE and latest.status in (
                Status.SENT, Status.CONFIRMED):
            return True
    return False


def on_sale_listings(dataset) -> list[Listing]:
    """`dataset`'s listings on this chain that are on sale, or about to be: approved on-chain (as
    the indexer read it) with no clearing on its way, or with an approval on its way (pending or
    sent). The latest of a listing's open or confirmed actions decides, as in clearing_unread: a
    confirmed clearing takes it off sale even before the indexer has read it (or after a
    reorganisation orphaned the event); a confirmed approval leaves it to what the indexer read.
    What a removal records, so that its restore puts back on sale exactly these."""
    from marketplace.chain.models import OperatorAction

    Kind, Status = OperatorAction.Kind, OperatorAction.Status
    listings = on_chain_listings(dataset)
    latest = {}
    for action in OperatorAction.objects.filter(
            chain_id=settings.CHAIN_ID, listing_id__in=[listing.listing_id for listing in listings],
            kind__in=(Kind.APPROVE, Kind.UNAPPROVE),
            status__in=(*OperatorAction.OPEN, Status.CONFIRMED)).order_by("id"):
        latest[int(action.listing_id)] = action

    def on_sale(listing) -> bool:
        action = latest.get(int(listing.listing_id))
        if action is None or (action.kind == Kind.APPROVE and action.status == Status.CONFIRMED):
            return listing.approved
        return action.kind == Kind.APPROVE

    return [listing for listing in listings if on_sale(listing)]


def remove(dataset, *, moderator=None) -> bool:
    """Remove `dataset` for legal reasons. Returns True when an approval on-chain is being cleared.
    Raises AlreadyDone for a dataset removed already."""
    with transaction.atomic():
        dataset = _lock(dataset)
        if dataset.removed_at is not None:
            raise AlreadyDone(f"{dataset.title} is removed already.")
        revisions.close_open(dataset, moderator=moderator, reason="The dataset was removed for legal reasons.")
        result = services.ModerationResult()
        on_chain = services._clear_approvals(dataset, on_chain_listings(dataset), intent="delist",
                                             moderator=moderator, result=result)
        dataset.status = Dataset.Status.DELISTED  # at once: off the site before the chain confirms
        dataset.removed_at = timezone.now()
        dataset.save(update_fields=["status", "removed_at", "updated_at"])
        DatasetVersion.objects.filter(dataset=dataset).update(sample=[], columns=[])
        with connection.cursor() as cursor:  # facet counts that may still count it
            cursor.execute("DELETE FROM catalog_searchfacets")
        if result.queued:
            enqueue("chain.send_operator_actions")
    return on_chain


OFF_SALE = (Dataset.Status.DELISTED, Dataset.Status.REJECTED)


def restore(dataset, *, moderator=None, back_to=None, listings=None) -> str:
    """Put a delisted or removed dataset back: the approvals of its approved versions' listings are
    queued again (the dataset waits in review until the indexer reads them, then is listed), a
    removed dataset's files are served again and analysed again; a clearing not sent yet is
    cancelled. `back_to` (delisted, rejected or draft) is the status a removed dataset goes back
    to when nothing of it was on sale at its removal (an earlier decision had taken it off sale,
    or nothing was approved): its files are served again and it takes that status, nothing
    approved. `listings` (on-chain listing ids, as text) are those a removed dataset had on sale
    at its removal: only they are approved again, and only those whose version is still
    approved; when none is, the dataset stays delisted; when there were none (and no `back_to`),
    its latest listed version goes back to review (None: every approved version's listing, as
    for a removal recorded before the listings were). Returns the new status. Raises
    AlreadyDone for a dataset neither delisted (nor being delisted), rejected nor removed, and
    PublisherBanned when the restore would approve or resubmit something of a publisher banned
    from publishing."""
    from marketplace.accounts.bans import PUBLISH, is_banned

    with transaction.atomic():
        dataset = _lock(dataset)
        removed = dataset.removed_at is not None
        if not removed and dataset.status not in (Dataset.Status.DELISTED, Dataset.Status.REJECTED) \
                and not is_delisting(dataset):  # a delisting not sent yet is cancelled
            raise AlreadyDone(f"{dataset.title} is {dataset.get_status_display().lower()}: there is nothing to "
                              "restore.")
        stays_off_sale = removed and back_to is not None
        approved = []
        if not stays_off_sale:
            approved = [listing for listing in on_chain_listings(dataset)
                        if listing.version.review == DatasetVersion.Review.APPROVED
                        and (listings is None or not removed or str(int(listing.listing_id)) in listings)]
            if removed and listings and not approved:  # none of them is approved any more
                stays_off_sale, back_to = True, Dataset.Status.DELISTED
        if not stays_off_sale and is_banned(dataset.owner.address, PUBLISH):
            raise PublisherBanned(f"The publisher of {dataset.title} is banned from publishing: restoring the "
                                  "dataset would put its listings back on sale (or in review). Lift the publishing "
                                  "ban first.")
        if removed:
            dataset.removed_at = None
            dataset.save(update_fields=["removed_at", "updated_at"])
            tabular = set(TABULAR.values())
            for version in DatasetVersion.objects.filter(dataset=dataset).order_by("number"):
                if version.format in tabular:
                    DatasetVersion.objects.filter(pk=version.pk).update(
                        analysis_status=DatasetVersion.Analysis.PENDING, analysis_progress=0.0,
                        analysis_attempts=0, analysis_message="analysed again after a restore")
                    enqueue("catalog.analyse_version", args=[version.pk])
        if stays_off_sale:
            Dataset.objects.filter(pk=dataset.pk).update(status=back_to)
            return back_to
        if approved:
            # Waiting for the approval in review; the indexer lists it when it reads it.
            Dataset.objects.filter(pk=dataset.pk).update(status=Dataset.Status.PENDING_REVIEW)
            services.approve_listings(approved, moderator=moderator)
        else:
            # Nothing approved (a rejected new dataset): its latest listed version goes back to
            # the review queue, or the dataset to draft when nothing is listed.
            listings = on_chain_listings(dataset)
            Dataset.objects.filter(pk=dataset.pk).update(
                status=Dataset.Status.PENDING_REVIEW if listings else Dataset.Status.DRAFT)
            if listings:
                latest = max(listings, key=lambda item: item.version.number)
                revisions.submit_version(latest.version, latest, by=dataset.owner)
        return Dataset.objects.values_list("status", flat=True).get(pk=dataset.pk)

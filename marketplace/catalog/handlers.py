"""The chain indexer's handlers for the market's listing events, and their rollback after a
reorganisation: the only writers of `Listing` and `ListingUpdate` rows (`catalog.listing` answers
the listing endpoints from what they wrote).

- `ListingCreated` links the listing to the dataset version it can only be: one whose dataset's
  owner is the listing's owner, with the listing's content hash and token (a token the market
  accepted then), and not listed on this chain yet. Linking puts the version up for review, and a
  draft, rejected or delisted dataset back in review. A listing that matches no version (listed
  from a script, or a file never uploaded here) stays a ChainEvent only. One that several
  versions match (one owner uploaded the same file twice) links none of them: the owner's
  `POST .../listing` names the version, and `link` links it then; so does a version uploaded
  after its file was listed.
- `ListingUpdated`, `ListingActiveSet` and `ListingApprovalSet` set the terms and flags of linked
  listings (each price change is also kept as a ListingUpdate). An approval lists a dataset in
  review whose text a moderator approved; a clearing the operator sent to delist (the intent its
  OperatorAction recorded, found by any hash signed for its transaction's nonce) delists the
  dataset once none of its listings is approved.
- After a reorganisation, `on_rollback` drops the listings created in orphaned blocks (their
  versions wait for a new listing, as after a chain reset: `drop_listings`) and replays the
  listings whose terms or flags changed there from their surviving events (`replay`). A dataset
  listed by an orphaned approval goes back to review; a rollback never lists a dataset.

The indexer calls these in its range's transaction, holding the cursor's row lock, which `link`
takes too: one writer at a time. Datasets are locked after it, in id order. A listing that fails
to link (a bug) is logged and left to `link`, never allowed to stop the indexer.
"""
import logging

from django.db import transaction
from django.db.models import Q

from marketplace.chain.events import checksum
from marketplace.chain.indexer import EVENT_FIELDS, Event
from marketplace.chain.models import ChainEvent, IndexerCursor, OperatorAction

from . import revisions
from .models import Dataset, DatasetVersion, Listing, ListingUpdate

logger = logging.getLogger(__name__)

LISTING_EVENTS = ("ListingCreated", "ListingUpdated", "ListingActiveSet", "ListingApprovalSet")
TERM_EVENTS = LISTING_EVENTS[1:]
_TERMS = ["price", "payout", "dispute_window", "active", "approved"]


def _listing_id(event: Event) -> int:
    return int(event.args["listingId"])


def created(event: Event, version: DatasetVersion | None = None) -> Listing:
    """A ListingCreated event as its listing's row (not saved): active and not approved, as the
    market creates every listing."""
    args = event.args
    return Listing(chain_id=event.chain_id, listing_id=int(args["listingId"]), version=version,
                   owner=args["owner"], token=args["token"], price=int(args["price"]),
                   payout=args["payout"], dispute_window=int(args["disputeWindow"]), active=True,
                   approved=False, tx_hash=event.tx_hash, log_index=event.log_index,
                   block_number=event.block_number)


def apply(listing: Listing, event: Event) -> None:
    """Set what one of the listing's term events says."""
    args = event.args
    if event.name == "ListingUpdated":
        listing.price, listing.payout = int(args["price"]), args["payout"]
    elif event.name == "ListingActiveSet":
        listing.active = args["active"]
    elif event.name == "ListingApprovalSet":
        listing.approved = args["approved"]


def token_allowed(event: Event) -> bool:
    """Whether the market accepted the listing's token when `event` was emitted (its last
    TokenConfigured before it). The market reverts createListing in any other token, so this only
    fails for a market that does not behave as ours."""
    before = Q(block_number__lt=event.block_number) | Q(block_number=event.block_number,
                                                         log_index__lt=event.log_index)
    last = (ChainEvent.objects.filter(before, chain_id=event.chain_id, address=event.address,
                                      name="TokenConfigured", args__token=event.args["token"])
            .order_by("-block_number", "-log_index").values_list("args", flat=True).first())
    return bool(last and last["allowed"])


def _is(address: str, checksummed: str) -> bool:
    try:
        return bool(address) and checksum(address) == checksummed
    except ValueError:  # not an address
        return False


def refusal(version: DatasetVersion, event: Event) -> str | None:
    """Why the listing of `event` (a ListingCreated) is not `version`'s, as an error code
    (`content_hash_mismatch`, `not_dataset_owner`, `token_mismatch`, `token_not_allowed`); None
    when it is. The token must be the version's: the page, the API and search show it beside the
    listing's price, and a listing in another token would charge buyers in a currency they were
    not shown."""
    args = event.args
    if args["contentHash"].lower() != version.content_hash.lower():
        return "content_hash_mismatch"
    if not _is(version.dataset.owner.address, args["owner"]):
        return "not_dataset_owner"
    if not _is(version.token, args["token"]):
        return "token_mismatch"
    if not token_allowed(event):
        return "token_not_allowed"
    return None


def _versions_for(chain_id: int, created_events: list[Event]) -> dict[int, DatasetVersion]:
    """event id -> the one version each ListingCreated is for (events that match no version, or
    several, are left out; a version takes at most one listing)."""
    hashes = {e.args["contentHash"].lower() for e in created_events}
    unlisted = {}
    for version in (DatasetVersion.objects.filter(content_hash__in=hashes)
                    .exclude(listings__chain_id=chain_id)
                    .select_related("dataset__owner").order_by("pk")):
        unlisted.setdefault(version.content_hash.lower(), []).append(version)
    found, taken = {}, set()
    for event in created_events:
        fitting = [v for v in unlisted.get(event.args["contentHash"].lower(), [])
                   if v.pk not in taken and refusal(v, event) is None]
        if len(fitting) == 1:
            found[event.id] = fitting[0]
            taken.add(fitting[0].pk)
        elif fitting:
            logger.info("listing %s (%s) matches versions %s: linked when its owner names one",
                        _listing_id(event), event.tx_hash, [v.pk for v in fitting])
    return found


def _lock_datasets(ids) -> dict[int, Dataset]:
    # The datasets' rows only (of=self): FOR UPDATE on the joined owner would also block every
    # insert that names that user (a revision's created_by takes a KEY SHARE lock on it), and an
    # analysis ending meanwhile (record_analysis: its dataset, then a revision) deadlocked with
    # this, the indexer's transaction being the one PostgreSQL ended.
    locked = Dataset.objects.select_for_update(of=("self",)).filter(pk__in=ids).select_related("owner")
    return {d.pk: d for d in locked.order_by("pk")}


def _link(version: DatasetVersion, event: Event, dataset: Dataset) -> Listing:
    """Store `version`'s listing and put the version up for review (a draft, rejected or delisted
    dataset goes back to review; a listed one stays listed while its new version waits)."""
    listing = created(event, version)
    listing.save()
    # A dataset removed for legal reasons stays down until a moderator restores it.
    if dataset.status in (Dataset.Status.DRAFT, Dataset.Status.REJECTED, Dataset.Status.DELISTED) \
            and dataset.removed_at is None:
        dataset.status = Dataset.Status.PENDING_REVIEW
        dataset.save(update_fields=["status", "updated_at"])
    revisions.submit_version(version, listing, by=dataset.owner)
    return listing


def _price_change(listing: Listing, event: Event) -> ListingUpdate:
    args = event.args
    return ListingUpdate(listing=listing, price=int(args["price"]), payout=args["payout"],
                         tx_hash=event.tx_hash, log_index=event.log_index,
                         block_number=event.block_number)


def on_listing_events(events: list[Event]) -> None:
    """One range's listing events, in chain order: new listings linked, then the terms and flags
    of linked listings set in bulk, then what approvals and clearings do to their datasets."""
    chain_id = events[0].chain_id
    created_events = [e for e in events if e.name == "ListingCreated"]
    changes = [e for e in events if e.name in TERM_EVENTS]
    versions = _versions_for(chain_id, created_events) if created_events else {}
    listings = {}
    if changes:
        ids = {_listing_id(e) for e in changes}
        rows = (Listing.objects.filter(chain_id=chain_id, listing_id__in=ids)
                .select_related("version"))
        listings = {int(listing.listing_id): listing for listing in rows}
    approvals = [e for e in changes if e.name == "ListingApprovalSet"]
    approved = [listings[_listing_id(e)] for e in approvals if _listing_id(e) in listings]
    datasets = _lock_datasets({v.dataset_id for v in versions.values()}
                              | {listing.version.dataset_id for listing in approved})
    for event in created_events:
        version = versions.get(event.id)
        if version is None:
            continue
        try:
            with transaction.atomic():
                listings[_listing_id(event)] = _link(version, event, datasets[version.dataset_id])
        except Exception:  # never jam the indexer (and every app's events) on one listing
            logger.exception("listing %s (%s) was not linked to version %s; posting its "
                             "transaction links it", _listing_id(event), event.tx_hash, version.pk)
            datasets[version.dataset_id].refresh_from_db(fields=["status"])  # as rolled back
    changed, price_changes = {}, []
    for event in changes:
        listing = listings.get(_listing_id(event))
        if listing is None:
            continue  # a listing not linked to a version here
        apply(listing, event)
        changed[listing.pk] = listing
        if event.name == "ListingUpdated":
            price_changes.append(_price_change(listing, event))
    Listing.objects.bulk_update(changed.values(), _TERMS)
    ListingUpdate.objects.bulk_create(price_changes)
    approvals = [e for e in approvals if _listing_id(e) in listings]
    if approvals:
        _moderated(chain_id, approvals, listings, datasets)


def _moderated(chain_id: int, approvals: list[Event], listings: dict, datasets: dict) -> None:
    """Datasets listed by an approval, or delisted by a clearing sent to delist them."""
    intents = {}
    clearings = {e.tx_hash for e in approvals if not e.args["approved"]}
    for tx_hash in clearings:
        # Any hash signed for the action's nonce may be the one mined (a replacement's, too).
        sent = OperatorAction.objects.filter(
            Q(tx_hash=tx_hash) | Q(transaction__hashes__contains=[tx_hash]),
            chain_id=chain_id, kind=OperatorAction.Kind.UNAPPROVE)
        for listing_id, context in sent.values_list("listing_id", "context"):
            intents[(tx_hash, int(listing_id))] = (context or {}).get("intent")
    for event in approvals:
        listing = listings[_listing_id(event)]
        dataset = datasets[listing.version.dataset_id]
        if event.args["approved"]:
            # A dataset whose text no moderator has approved yet waits for that decision, which
            # lists it then (services.approve_listings).
            if dataset.status == Dataset.Status.PENDING_REVIEW and revisions.is_published(dataset):
                dataset.status = Dataset.Status.LISTED
                dataset.save(update_fields=["status", "updated_at"])
        elif (intents.get((event.tx_hash, _listing_id(event))) == "delist"
              and dataset.status in (Dataset.Status.LISTED, Dataset.Status.PENDING_REVIEW)
              and not Listing.objects.filter(version__dataset=dataset, approved=True).exists()):
            dataset.status = Dataset.Status.DELISTED
            dataset.save(update_fields=["status", "updated_at"])
            # What was submitted while the delisting was on its way cannot be approved any more.
            revisions.close_open(dataset, moderator=None, reason="The dataset was delisted.")


# Listings the owner names, and reorganisations -------------------------------------------------


def replay(listing: Listing, *, through: int | None = None) -> list[Event]:
    """Set `listing`'s terms and flags to what its ListingCreated and its later stored events (up
    to block `through`) say; returns the ListingUpdated events among them. A listing whose
    ListingCreated is not stored (a test's row) keeps its terms."""
    row = ChainEvent.objects.filter(chain_id=listing.chain_id, tx_hash=listing.tx_hash,
                                    log_index=listing.log_index).values(*EVENT_FIELDS).first()
    if row is None:
        return []
    fresh = created(Event(**row))
    events = ChainEvent.objects.filter(chain_id=listing.chain_id, address=row["address"],
                                       name__in=TERM_EVENTS,
                                       args__listingId=str(listing.listing_id))
    if through is not None:
        events = events.filter(block_number__lte=through)
    applied = [Event(**e) for e in
               events.order_by("block_number", "log_index").values(*EVENT_FIELDS)]
    for event in applied:
        apply(fresh, event)
    for name in _TERMS:
        setattr(listing, name, getattr(fresh, name))
    listing.save(update_fields=_TERMS)
    return [e for e in applied if e.name == "ListingUpdated"]


def link(version: DatasetVersion, event: Event) -> Listing | None:
    """Link `version`, named by its owner, to the listing of a stored ListingCreated that the
    handler left unlinked (the caller has checked that it is the version's: `refusal`), and
    replay the listing's later events. Holds the indexer cursor's row lock meanwhile. Returns the
    listing's row (another version's if one was linked meanwhile), or None when the event is gone
    (a reorganisation) or the version was linked to another listing meanwhile."""
    with transaction.atomic():
        list(IndexerCursor.objects.select_for_update().filter(chain_id=event.chain_id))
        if not ChainEvent.objects.filter(pk=event.id).exists():
            return None
        dataset = _lock_datasets([version.dataset_id])[version.dataset_id]
        existing = Listing.objects.filter(chain_id=event.chain_id,
                                          listing_id=_listing_id(event)).first()
        if existing is not None:
            return existing
        if version.listings.filter(chain_id=event.chain_id).exists():
            return None
        listing = _link(version, event, dataset)
        ListingUpdate.objects.bulk_create([_price_change(listing, e) for e in replay(listing)])
    return listing


def drop_listings(chain_id: int, *, after_block: int | None = None, why: str) -> int:
    """Delete the listings of chain `chain_id` (those created after block `after_block`, or all):
    their versions wait for a new listing and a new review (approved ones go back to pending),
    the reviews waiting on those listings close, and a dataset left with no listing goes back to
    draft unless a moderator rejected or delisted it (relisting it is then a new submission).
    Datasets and files stay. Returns the listings deleted."""
    gone = Listing.objects.filter(chain_id=chain_id)
    if after_block is not None:
        gone = gone.filter(block_number__gt=after_block)
    rows = list(gone.values_list("pk", "listing_id", "version_id", "version__dataset_id"))
    if not rows:
        return 0
    # The datasets first, in one order, as every other writer of versions and revisions locks them
    # (revisions.record_analysis, decide, change_preview): no deadlock with an analysis ending now.
    affected = _lock_datasets({dataset_id for *_, dataset_id in rows})
    versions = {version_id for _, _, version_id, _ in rows}
    DatasetVersion.objects.filter(pk__in=versions, review=DatasetVersion.Review.APPROVED).update(
        review=DatasetVersion.Review.PENDING)
    Listing.objects.filter(pk__in=[pk for pk, *_ in rows]).delete()
    lost = None if after_block is None else [listing_id for _, listing_id, *_ in rows]
    revisions.close_for_lost_listings(chain_id, versions, lost, why=why)
    (Dataset.objects.filter(pk__in=affected).exclude(versions__listings__isnull=False)
     .exclude(status__in=[Dataset.Status.REJECTED, Dataset.Status.DELISTED])
     .update(status=Dataset.Status.DRAFT))
    return len(rows)


def on_rollback(chain_id: int, ancestor: int, orphaned: list[Event]) -> None:
    """Listings created in orphaned blocks go; listings whose terms or flags changed there are
    replayed from their surviving events (price changes of orphaned blocks go too). A dataset
    left listed with no approved listing goes back to review."""
    mine = [e for e in orphaned if e.name in LISTING_EVENTS]
    if not mine:
        return
    touched = list(Listing.objects.filter(
        chain_id=chain_id, listing_id__in={_listing_id(e) for e in mine if e.name in TERM_EVENTS},
        block_number__lte=ancestor).select_related("version"))
    gone = Listing.objects.filter(chain_id=chain_id, block_number__gt=ancestor).values_list(
        "version__dataset_id", flat=True)
    datasets = _lock_datasets({*gone, *(l.version.dataset_id for l in touched)})
    drop_listings(chain_id, after_block=ancestor,
                  why="a reorganisation of the chain orphaned its listing")
    ListingUpdate.objects.filter(listing__chain_id=chain_id, block_number__gt=ancestor).delete()
    unapproved = set()
    for listing in touched:
        was_approved = listing.approved
        replay(listing, through=ancestor)
        if was_approved and not listing.approved:
            unapproved.add(listing.version.dataset_id)
    for dataset_id in unapproved:
        dataset = datasets[dataset_id]
        dataset.refresh_from_db(fields=["status"])
        if dataset.status == Dataset.Status.LISTED and not Listing.objects.filter(
                version__dataset=dataset, approved=True).exists():
            dataset.status = Dataset.Status.PENDING_REVIEW
            dataset.save(update_fields=["status", "updated_at"])

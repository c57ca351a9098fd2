"""Review before changes go public: the actions on DatasetRevision (see its docstring).

- `edit_dataset`: the owner's edit. A published dataset's public text waits in a `details`
  revision (a newer edit supersedes the open one); a dataset never approved is edited in place,
  and an open snapshot of it is replaced by a fresh one, so that a moderator never approves text
  they were not shown.
- `submit_version`: a newly linked listing puts its version up for review (`version` revision).
- `change_preview`: what shows less applies at once; what shows more waits (`preview` revision).
  `hide_as_the_file_names` makes the hidden names the file's own after its analysis; a version
  whose hidden names do not all match a column of its file is not approved.
- `decide`: a moderator approves, rejects or asks for changes to exactly one open revision; a
  decision on a revision that is no longer open, or that names other listings or content hashes
  than the revision's, is refused (StaleDecision, HTTP 409).

Every function here takes the dataset's row lock first, so that edits and decisions on one dataset
happen one at a time.
"""
from dataclasses import dataclass
import time

from django.db import OperationalError, transaction
from django.utils import timezone

from .models import Dataset, DatasetRevision, DatasetVersion, Listing
from .preview import PreviewSettings, column_names, match_hidden, unmatched_hidden

PUBLIC_TEXT = ("title", "summary", "description", "tags", "category", "license")
Kind, Status = DatasetRevision.Kind, DatasetRevision.Status


class StaleDecision(Exception):
    """The revision is no longer what the moderator was shown."""


class DecisionRefused(Exception):
    """The decision cannot be taken in this order (e.g. a version before its dataset's details)."""


class DecisionBlocked(DecisionRefused):
    """A receiver of `signals.revision_deciding` refused the decision (another moderator holds the
    item: moderation's review claims); `code` names why for the API (409)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _lock(dataset: Dataset) -> Dataset:
    return Dataset.objects.select_for_update().get(pk=dataset.pk)


def _open(dataset, kind, version=None):
    revisions = DatasetRevision.objects.select_for_update().filter(dataset=dataset, kind=kind, status__in=DatasetRevision.OPEN)
    if version is not None:
        revisions = revisions.filter(version=version)
    return list(revisions.order_by("created_at", "id"))


def _supersede(revisions, by: DatasetRevision | None, reason: str = "") -> None:
    for revision in revisions:
        revision.status = Status.SUPERSEDED
        revision.superseded_by = by
        if reason:
            revision.reason = reason
        revision.save(update_fields=["status", "superseded_by", "reason"])


def public_text(dataset: Dataset) -> dict:
    return {field: getattr(dataset, field) for field in PUBLIC_TEXT}


def is_published(dataset: Dataset) -> bool:
    """A moderator has approved the dataset's text, so edits to it wait for review. A listed or
    delisted dataset counts as published even without `published_at` (one listed by an approval
    queued before reviews existed, which migration 0004 could not see)."""
    return dataset.published_at is not None or dataset.status in (Dataset.Status.LISTED, Dataset.Status.DELISTED)


def open_details(dataset: Dataset) -> DatasetRevision | None:
    return (DatasetRevision.objects.filter(dataset=dataset, kind=Kind.DETAILS, status__in=DatasetRevision.OPEN)
            .order_by("-created_at", "-id").first())


# The owner's changes ------------------------------------------------------------------------------


@dataclass
class EditResult:
    dataset: Dataset
    revision: DatasetRevision | None  # the details revision now waiting for review, if any


def edit_dataset(dataset: Dataset, *, by, **changes) -> EditResult:
    """Apply the owner's edit (fields as `services.EDITABLE`; values already validated).

    The payout address applies at once (it is not shown, and only new listings use it). Public
    text: see the module's docstring. An edit that brings a published dataset's text back to what
    is public withdraws the open revision instead of creating one.
    """
    from . import services

    with transaction.atomic():
        dataset = _lock(dataset)
        text = {k: v for k, v in changes.items() if k in PUBLIC_TEXT}
        other = {k: v for k, v in changes.items() if k not in PUBLIC_TEXT}
        if other:
            services.update_dataset(dataset, **other)
        if not text:
            return EditResult(dataset, open_details(dataset))
        open_revisions = _open(dataset, Kind.DETAILS)
        if not is_published(dataset):
            services.update_dataset(dataset, **text)
            revision = None
            if open_revisions:  # the dataset is in its first review: what is shown changed
                revision = DatasetRevision.objects.create(
                    dataset=dataset, kind=Kind.DETAILS, created_by=by, changes=public_text(dataset))
                _supersede(open_revisions, revision)
            return EditResult(dataset, revision)
        proposed = {**(open_revisions[-1].changes if open_revisions else public_text(dataset)),
                    **_normalised(text)}
        if proposed == public_text(dataset):
            _supersede(open_revisions, None, "withdrawn: the text was changed back to what is public")
            return EditResult(dataset, None)
        revision = DatasetRevision.objects.create(dataset=dataset, kind=Kind.DETAILS, created_by=by, changes=proposed)
        _supersede(open_revisions, revision)
        return EditResult(dataset, revision)


def _normalised(text: dict) -> dict:
    """The values as update_dataset would store them (tags normalised), so that comparisons with
    the public text are exact."""
    from .services import normalise_tags

    return {k: normalise_tags(v) if k == "tags" else v for k, v in text.items()}


def submit_version(version: DatasetVersion, listing: Listing, *, by) -> DatasetRevision:
    """A listing was newly linked to `version`: put it up for review with exactly that listing,
    content hash and preview (what the public would see of the file). A dataset never approved
    gets a snapshot of its text to review as well."""
    with transaction.atomic():
        dataset = _lock(version.dataset)
        version = DatasetVersion.objects.select_for_update().get(pk=version.pk)
        revision = DatasetRevision.objects.create(
            dataset=dataset, version=version, kind=Kind.VERSION, created_by=by,
            changes={"preview": PreviewSettings.of(version).to_json()},
            listings=[{"chain_id": listing.chain_id, "listing_id": str(listing.listing_id),
                       "content_hash": version.content_hash}],
        )
        _supersede([r for r in _open(dataset, Kind.VERSION, version) if r.pk != revision.pk], revision)
        if not is_published(dataset) and not _open(dataset, Kind.DETAILS):
            DatasetRevision.objects.create(dataset=dataset, kind=Kind.DETAILS, created_by=by,
                                           changes=public_text(dataset))
        return revision


@dataclass
class PreviewResult:
    version: DatasetVersion
    revision: DatasetRevision | None  # what waits for review, if anything


def is_public(version: DatasetVersion) -> bool:
    """A version the public may see: approved, with an approved listing, of a listed dataset."""
    return (version.review == DatasetVersion.Review.APPROVED
            and version.dataset.status == Dataset.Status.LISTED
            and any(listing.approved for listing in version.listings.all()))


def change_preview(version: DatasetVersion, settings: PreviewSettings, *, by) -> PreviewResult:
    """The owner's preview choice for `version`. Before the version is approved it applies as it
    is, and the version's own review covers it: an open version revision is superseded by one
    showing the new choice, so a moderator never approves a preview they were not shown. After,
    whatever shows less applies at once and what shows more waits in a `preview` revision (a newer
    choice supersedes an open one)."""
    with transaction.atomic():
        dataset = _lock(version.dataset)
        version = DatasetVersion.objects.select_for_update().get(pk=version.pk)
        current = PreviewSettings.of(version)
        open_revisions = _open(dataset, Kind.PREVIEW, version)
        if version.review != DatasetVersion.Review.APPROVED:
            _apply_preview(version, settings)
            # Nothing of an unapproved version is public: its own review covers the preview, and a
            # preview revision still open from before (a chain reset) must not outlive this choice.
            _supersede(open_revisions, None, "withdrawn: the version's own review covers its preview")
            # The version's review shows its preview: a changed one is a new revision to look at.
            waiting = _open(dataset, Kind.VERSION, version)
            if waiting and waiting[-1].changes.get("preview") != settings.to_json():
                revision = DatasetRevision.objects.create(
                    dataset=dataset, version=version, kind=Kind.VERSION, created_by=by,
                    changes={**waiting[-1].changes, "preview": settings.to_json()}, listings=waiting[-1].listings)
                _supersede(waiting, revision)
                return PreviewResult(version, revision)
            return PreviewResult(version, waiting[-1] if waiting else None)
        _apply_preview(version, settings.at_most(current))
        if not settings.shows_more_than(current):
            _supersede(open_revisions, None, "withdrawn: the preview was changed to show no more than it does")
            return PreviewResult(version, None)
        revision = DatasetRevision.objects.create(dataset=dataset, version=version, kind=Kind.PREVIEW,
                                                  created_by=by, changes=settings.to_json())
        _supersede(open_revisions, revision)
        return PreviewResult(version, revision)


def _apply_preview(version: DatasetVersion, settings: PreviewSettings) -> None:
    version.hidden_columns = list(settings.hidden_columns)
    version.show_sample = settings.show_sample
    version.show_distributions = settings.show_distributions
    version.save(update_fields=["hidden_columns", "show_sample", "show_distributions"])


def hide_as_the_file_names(version: DatasetVersion, *, by) -> PreviewResult:
    """After the analysis: the hidden names become the columns they match as the file spells them
    (`Email` for `email `); a name that matches no column stays, and keeps the version from
    approval until the owner changes it. Before approval this is a preview change like the
    owner's (an open review gets a revision showing it); an approved version keeps its names,
    which hide the same columns (preview.column_key)."""
    with transaction.atomic():
        _lock(version.dataset)
        version = DatasetVersion.objects.select_for_update().get(pk=version.pk)
        current = PreviewSettings.of(version)
        matched, unmatched = match_hidden(current.hidden_columns, column_names(version))
        settings = PreviewSettings(tuple(sorted({*matched, *unmatched})), current.show_sample,
                                   current.show_distributions)
        if settings == current or version.review == DatasetVersion.Review.APPROVED:
            return PreviewResult(version, None)
        return change_preview(version, settings, by=by)


DEADLOCK_RETRIES = 3


def record_analysis(version_id: int, **fields) -> None:
    """Store the end of a version's analysis (done or failed: `fields` of DatasetVersion). What
    the version's review shows (its columns, sample rows and statistics, or that it has none)
    changes with it, so an open version revision is superseded by a copy of itself: a decision
    prepared on a page shown while the analysis ran is refused as stale (StaleDecision).

    Two analyses of one file can end together (the worker's and the demo's); should PostgreSQL
    end one of them as a deadlock, the whole transaction is run again (nothing of it was kept)."""
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            return _record_analysis(version_id, fields)
        except OperationalError as exc:
            deadlock = getattr(getattr(exc, "__cause__", None), "sqlstate", None) == "40P01"
            if not deadlock or attempt == DEADLOCK_RETRIES or transaction.get_connection().in_atomic_block:
                raise
            time.sleep(0.05 * (attempt + 1))


def _record_analysis(version_id: int, fields: dict) -> None:
    with transaction.atomic():
        dataset_id = DatasetVersion.objects.values_list("dataset_id", flat=True).get(pk=version_id)
        dataset = Dataset.objects.select_for_update().get(pk=dataset_id)
        if dataset.removed_at is not None:
            # Removed for legal reasons while it ran: its sample and statistics stay purged (a
            # restore analyses the file again).
            fields = {k: v for k, v in fields.items() if k not in ("sample", "columns")}
        DatasetVersion.objects.filter(pk=version_id).update(**fields)
        waiting = _open(dataset, Kind.VERSION, version_id)
        if waiting:
            last = waiting[-1]
            # The copy keeps the revision's state: a moderator's request for changes stands.
            revision = DatasetRevision.objects.create(
                dataset=dataset, version_id=version_id, kind=Kind.VERSION, created_by=last.created_by,
                changes=last.changes, listings=last.listings, status=last.status, reason=last.reason,
                decided_by=last.decided_by, decided_at=last.decided_at)
            _supersede(waiting, revision)


def approved_preview(version: DatasetVersion) -> PreviewSettings | None:
    """The preview a moderator last approved for `version` (its version revision's, or a later
    preview revision's); None when the version was never approved. A version revision that did
    not record its preview (one made by migration 0004) counts as showing the least."""
    revision = (DatasetRevision.objects.filter(version=version, kind__in=[Kind.VERSION, Kind.PREVIEW],
                                               status=Status.APPROVED).order_by("-decided_at", "-id").first())
    return None if revision is None else approval_preview(revision.kind, revision.changes)


def approval_preview(kind: str, changes: dict) -> PreviewSettings:
    """The preview an approved version or preview revision (its kind and changes) showed."""
    shown = changes.get("preview") if kind == Kind.VERSION else changes
    return PreviewSettings.from_json(shown or {})


def proposed_preview(version: DatasetVersion) -> PreviewSettings:
    """What the owner asked for: the open preview revision's settings, else the version's."""
    revision = (DatasetRevision.objects.filter(version=version, kind=Kind.PREVIEW, status__in=DatasetRevision.OPEN)
                .order_by("-created_at", "-id").first())
    return PreviewSettings.from_json(revision.changes) if revision else PreviewSettings.of(version)


# Moderators' decisions -------------------------------------------------------------------------


class Decision:
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"
    ALL = (APPROVE, REJECT, REQUEST_CHANGES)


DECISION_CODES = list(Decision.ALL)  # the API's choices (RevisionDecisionEnum)
APPROVAL_ONLY = [Decision.APPROVE]  # the schemas' branch of an approval (ApprovalDecisionEnum)


@dataclass
class DecisionResult:
    revision: DatasetRevision
    queued: int = 0  # on-chain approvals or clearings queued for the operator sender


def decide(revision: DatasetRevision, *, decision: str, moderator, reason: str = "",
           expected_listings: list | None = None, reason_code: str = "", internal_note: str = "") -> DecisionResult:
    """Approve, reject or ask for changes to exactly `revision`.

    Refused with StaleDecision when the revision is no longer open (superseded, or decided), or
    when `expected_listings` (the listing ids and content hashes the moderator was shown, as
    `[{"listing_id", "content_hash"}]`) differs from the revision's. Refused with
    DecisionRefused when a new dataset's version is approved before its details, or a version
    (or its preview) before the version's analysis has ended. The decision is
    recorded on the revision (who, when, why); approving a version queues the on-chain approval of
    exactly its listings. `reason_code` (a policy code) and `internal_note` (for moderators only)
    are not kept on the revision: they go with `signals.revision_decided` to the audit log.
    Before deciding, `signals.revision_deciding` is sent: a receiver may refuse with
    DecisionBlocked (another moderator's claim on the revision).
    """
    if decision not in Decision.ALL:
        raise ValueError(f"unknown decision {decision!r}")
    with transaction.atomic():
        dataset = _lock(revision.dataset)
        revision = DatasetRevision.objects.select_for_update().get(pk=revision.pk)
        if revision.status not in DatasetRevision.OPEN:
            later = f" by revision #{revision.superseded_by_id}" if revision.superseded_by_id else ""
            raise StaleDecision(f"Revision #{revision.pk} is {revision.get_status_display().lower()}{later}: "
                                "reload it and decide on what is open now.")
        if expected_listings is not None and _shown(expected_listings) != _shown(revision.listings):
            raise StaleDecision(f"Revision #{revision.pk} puts other listings on sale than the ones shown: reload it.")
        from .signals import revision_deciding

        revision_deciding.send(sender=DatasetRevision, revision=revision, decision=decision, moderator=moderator)
        result = DecisionResult(revision)
        # A new dataset's text in its first review stands for the whole dataset (its rejection
        # rejects it all, its approval publishes it); any other revision is about a part of it.
        why = {"reason_code": reason_code, "internal_note": internal_note,
               "whole_dataset": revision.kind == Kind.DETAILS and not is_published(dataset)}
        if decision == Decision.REQUEST_CHANGES:
            _record(revision, Status.CHANGES_REQUESTED, moderator, reason, **why)
            return result
        if decision == Decision.REJECT:
            _reject(dataset, revision, moderator, reason, result, **why)
            return result
        _approve(dataset, revision, moderator, reason, result, **why)
        return result


def _being_taken_down(dataset) -> bool:
    """A delisting or rejection of `dataset` is on its way to the chain."""
    from marketplace.chain.models import OperatorAction

    return OperatorAction.objects.filter(
        kind=OperatorAction.Kind.UNAPPROVE, status__in=OperatorAction.OPEN, context__dataset=dataset.pk,
        context__intent__in=["delist", "reject"]).exists()


def close_open(dataset: Dataset, *, moderator, reason: str) -> int:
    """Reject every open revision of `dataset`, which a moderator took down as a whole (delisted
    or rejected): nothing waiting from before can put it back on sale."""
    with transaction.atomic():
        dataset = _lock(dataset)
        waiting = list(DatasetRevision.objects.select_for_update().filter(dataset=dataset,
                                                                          status__in=DatasetRevision.OPEN))
        for revision in waiting:
            _record(revision, Status.REJECTED, moderator, reason)
        return len(waiting)


def _shown(listings) -> list:
    return sorted((str(item.get("listing_id")), str(item.get("content_hash", "")).lower()) for item in listings or [])


def _record(revision, status, moderator, reason, *, reason_code="", internal_note="", whole_dataset=False):
    revision.status = status
    revision.decided_by = moderator
    revision.decided_at = timezone.now()
    revision.reason = reason or ""
    revision.save(update_fields=["status", "decided_by", "decided_at", "reason"])
    from .signals import revision_decided

    revision_decided.send(sender=DatasetRevision, revision=revision, status=status, moderator=moderator,
                          reason=revision.reason, reason_code=reason_code, internal_note=internal_note,
                          whole_dataset=whole_dataset)


def _approve(dataset, revision, moderator, reason, result, **why):
    from . import services

    if revision.kind == Kind.DETAILS:
        services.update_dataset(dataset, **revision.changes)
        if dataset.published_at is None:
            dataset.published_at = timezone.now()
            dataset.save(update_fields=["published_at", "updated_at"])
    elif revision.kind == Kind.VERSION:
        from marketplace.accounts.bans import PUBLISH, is_banned

        if is_banned(dataset.owner.address, PUBLISH):
            raise DecisionRefused(f"The publisher of {dataset.title!r} is banned from publishing: none of its "
                                  "versions goes on sale while the ban holds. Reject it, or lift the ban first.")
        if dataset.status in (Dataset.Status.DELISTED, Dataset.Status.REJECTED) or _being_taken_down(dataset):
            state = "being delisted" if dataset.status == Dataset.Status.LISTED else dataset.get_status_display().lower()
            raise DecisionRefused(f"{dataset.title!r} is {state}: none of its versions goes on sale. The publisher "
                                  "can submit a new version, which comes back here.")
        version = DatasetVersion.objects.select_for_update().get(pk=revision.version_id)
        shown = revision.changes.get("preview")
        if shown is not None and shown != PreviewSettings.of(version).to_json():
            raise StaleDecision(f"Revision #{revision.pk} showed another preview of version {version.number} than "
                                "it has now: reload it.")
        _require_analysed(version)
        _check_hidden_columns(version, PreviewSettings.of(version))
        # Not is_published: a dataset listed before its text was ever approved (the demo's, or one
        # listed by an older release) has text a moderator has not seen.
        if dataset.published_at is None and _open(dataset, Kind.DETAILS):
            raise DecisionRefused(f"{dataset.title!r} has never been approved: decide on its details "
                                  f"(revision #{_open(dataset, Kind.DETAILS)[-1].pk}) first.")
        if dataset.published_at is None:
            dataset.published_at = timezone.now()
            dataset.save(update_fields=["published_at", "updated_at"])
        DatasetVersion.objects.filter(pk=revision.version_id).update(review=DatasetVersion.Review.APPROVED)
        listings = Listing.objects.filter(
            version_id=revision.version_id,
            **_listing_filter(revision.listings),
        )
        result.queued = services.approve_listings(list(listings), moderator=moderator)
    else:
        version = DatasetVersion.objects.select_for_update().get(pk=revision.version_id)
        settings = PreviewSettings.from_json(revision.changes)
        _require_analysed(version)
        _check_hidden_columns(version, settings)
        _apply_preview(version, settings)
    _record(revision, Status.APPROVED, moderator, reason, **why)


def _require_analysed(version):
    """What a version shows (its columns, its sample rows) is known only once its analysis has
    ended: approving it earlier would publish what the analysis finds later, unseen. A failed
    analysis stores nothing to show, and is never run again."""
    if version.analysis_status in (DatasetVersion.Analysis.PENDING, DatasetVersion.Analysis.RUNNING):
        raise DecisionRefused(f"Version {version.number} of {version.dataset.title!r} is still being analysed: "
                              "what it would show is not known yet. Decide once its analysis has ended.")


def _check_hidden_columns(version: DatasetVersion, settings: PreviewSettings) -> None:
    """Refuses (DecisionRefused) a preview one of whose hidden names matches no column of the
    analysed file: what the publisher meant to hide may be public under another name."""
    unmatched = unmatched_hidden(version, settings)
    if unmatched:
        raise DecisionRefused(
            f"Version {version.number} hides {', '.join(repr(name) for name in unmatched)}, but no column of its "
            "file has that name, so the column meant to be hidden may be public under another name. The "
            "publisher chooses the hidden columns again on the version's page; that comes back here.")


def _listing_filter(items) -> dict:
    from django.db.models import Q

    ids = [(int(item["chain_id"]), int(item["listing_id"])) for item in items]
    query = Q(pk__in=[])
    for chain_id, listing_id in ids:
        query |= Q(chain_id=chain_id, listing_id=listing_id)
    return {"pk__in": Listing.objects.filter(query).values("pk")}


def _reject(dataset, revision, moderator, reason, result, **why):
    from . import services

    _record(revision, Status.REJECTED, moderator, reason, **why)
    if revision.kind == Kind.VERSION:
        DatasetVersion.objects.filter(pk=revision.version_id).update(review=DatasetVersion.Review.REJECTED)
        result.queued = services.clear_listing_approvals(
            list(Listing.objects.filter(version_id=revision.version_id)), intent="reject", moderator=moderator)
    elif revision.kind == Kind.DETAILS and not is_published(dataset):
        # A new dataset's submission as a whole: its open versions go with it.
        for other in _open(dataset, Kind.VERSION):
            _record(other, Status.REJECTED, moderator, reason, **why)
            DatasetVersion.objects.filter(pk=other.version_id).update(review=DatasetVersion.Review.REJECTED)
        result.queued = services.reject([dataset], moderator=moderator).queued


def close_for_lost_listings(chain_id: int, version_ids=(), listing_ids=None, *, why: str) -> int:
    """Listings of chain `chain_id` are gone (`listing_ids`, or all of them after a chain reset):
    the open version revisions naming them put nothing on sale any more, and the open preview
    revisions of their versions (`version_ids`) asked to show more of a version that now waits
    for a review of its own, which covers its preview. `why` starts each revision's reason."""
    closed = DatasetRevision.objects.filter(kind=Kind.PREVIEW, status__in=DatasetRevision.OPEN,
                                            version_id__in=list(version_ids)).update(
        status=Status.SUPERSEDED, reason=f"{why}: the version's next review covers its preview")
    lost = None if listing_ids is None else {int(i) for i in listing_ids}
    def names_lost(item):
        return int(item.get("chain_id", 0)) == chain_id and (
            lost is None or int(item.get("listing_id", -1)) in lost)

    for revision in DatasetRevision.objects.filter(kind=Kind.VERSION, status__in=DatasetRevision.OPEN):
        if any(names_lost(item) for item in revision.listings):
            revision.status = Status.SUPERSEDED
            revision.reason = f"{why}: the version needs listing again"
            revision.save(update_fields=["status", "reason"])
            closed += 1
    return closed

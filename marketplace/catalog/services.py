"""Catalog actions: the only writers of datasets and versions."""
import os
from pathlib import Path
import re

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.db import transaction
from django.utils.text import slugify
from eth_utils import to_checksum_address
from markdown_it import MarkdownIt
import nh3

from marketplace.limits.services import settle_storage
from marketplace.outbox.services import enqueue

from . import revisions
from .models import Dataset, DatasetVersion
from .uploads import TABULAR, ReceivedFile

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
# No <img>: an image from another site would tell it who reads the page (and the site's
# Content-Security-Policy would block it anyway). Changing this list means re-rendering what is
# stored (see migration 0005_rerender_descriptions).
ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
}


def render_markdown(text: str) -> str:
    """Markdown to HTML that is safe to show: raw HTML is escaped by the parser, and nh3 keeps
    only harmless tags and attributes (no scripts, no event handlers, no javascript: URLs, no
    images)."""
    return nh3.clean(
        _markdown.render(text or ""),
        tags=ALLOWED_TAGS,
        attributes={"a": {"href", "title"}, "th": {"align"}, "td": {"align"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener noreferrer",
    )


def normalise_tags(tags) -> list[str]:
    seen = []
    for tag in tags or []:
        tag = re.sub(r"\s+", "-", str(tag).strip().lower())[:40]
        if tag and tag not in seen:
            seen.append(tag)
    return seen[:20]


def unique_slug(title: str) -> str:
    base = slugify(title)[:100] or "dataset"
    slug, n = base, 1
    while Dataset.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def create_dataset(*, owner, title, summary="", description="", tags=(), category="other", license, payout_address=None) -> Dataset:
    return Dataset.objects.create(
        owner=owner,
        slug=unique_slug(title),
        title=title,
        summary=summary,
        description=description,
        description_html=render_markdown(description),
        tags=normalise_tags(tags),
        category=category,
        license=license,
        payout_address=to_checksum_address(payout_address or owner.address),
    )


EDITABLE = ("title", "summary", "description", "tags", "category", "license", "payout_address")


def update_dataset(dataset: Dataset, **changes) -> Dataset:
    """Write fields of `dataset` as they are: what the public sees changes only through
    catalog.revisions (edits of a published dataset's text wait there for a moderator)."""
    fields = []
    for field, value in changes.items():
        if field not in EDITABLE:
            raise ValueError(f"{field} cannot be edited")
        if field == "tags":
            value = normalise_tags(value)
        if field == "payout_address":
            value = to_checksum_address(value)
        setattr(dataset, field, value)
        fields.append(field)
    if "description" in changes:
        dataset.description_html = render_markdown(dataset.description)
        fields.append("description_html")
    dataset.save(update_fields=fields + ["updated_at"])
    return dataset


class _MovableFile(File):
    """Lets FileSystemStorage move the finished upload into place instead of copying it."""

    def temporary_file_path(self):
        return self.file.name


def add_version(dataset: Dataset, received: ReceivedFile, *, price: int, token: str, preview=None,
                reservation=None) -> DatasetVersion:
    """Store a received file as the dataset's next version and queue its analysis. If anything
    fails, neither the stored file nor the row stays behind. `preview` (a PreviewSettings) is the
    publisher's choice of what the public sees of it (the default shows no sample rows and no
    distributions); the version's own review covers it. A storage `reservation` (uploads through
    the API) is settled into its quotas in the same transaction."""
    from .preview import PreviewSettings

    preview = preview or PreviewSettings()
    storage = storages["private"]
    stored_name = None
    try:
        with transaction.atomic():
            number = (Dataset.objects.select_for_update().get(pk=dataset.pk).versions.count()) + 1
            with open(received.path, "rb") as handle:
                stored_name = storage.save(
                    f"datasets/{dataset.pk}/v{number}/{Path(received.original_name).name}", _MovableFile(handle)
                )
            tabular = received.format in TABULAR.values()
            version = DatasetVersion.objects.create(
                dataset=dataset,
                number=number,
                file=stored_name,
                original_name=received.original_name,
                format=received.format,
                size=received.size,
                content_hash=received.content_hash,
                price=price,
                token=to_checksum_address(token),
                analysis_status=DatasetVersion.Analysis.PENDING if tabular else DatasetVersion.Analysis.NOT_TABULAR,
                hidden_columns=list(preview.hidden_columns),
                show_sample=preview.show_sample,
                show_distributions=preview.show_distributions,
            )
            if tabular:
                enqueue("catalog.analyse_version", args=[version.pk])
            if reservation is not None:
                settle_storage(reservation, size=received.size)
    except BaseException:
        if stored_name:
            storage.delete(stored_name)
        raise
    finally:
        received.discard()
    return version


MAX_ANALYSIS_ATTEMPTS = 3


def analyse_version(version_id: int) -> None:
    """Analyse a version's file in a child process within the configured limits (see
    catalog.analysis.sandbox) and store schema, statistics and sample, or why it failed; then
    store the hidden columns as the file names them (revisions.hide_as_the_file_names).
    Idempotent: a finished analysis is not redone. Each attempt is counted and committed before it
    starts, so a file that kills the worker (redelivered, acks_late) fails after
    MAX_ANALYSIS_ATTEMPTS instead of looping."""
    from .analysis import AnalysisFailed, Limits
    from .analysis.sandbox import analyse_in_child

    Status = DatasetVersion.Analysis
    with transaction.atomic():
        # By pk only: the model's ordering joins the dataset, and FOR UPDATE would lock its row too
        # (before record_analysis, which locks the dataset first: a deadlock between two versions).
        version = DatasetVersion.objects.select_for_update().filter(pk=version_id).order_by("pk").first()
        if version is None or version.analysis_status not in (Status.PENDING, Status.RUNNING):
            return
        gave_up = version.analysis_attempts >= MAX_ANALYSIS_ATTEMPTS
        if not gave_up:
            version.analysis_attempts += 1
            version.analysis_status, version.analysis_progress = Status.RUNNING, 0.0
            version.analysis_message = "reading the file"
            version.save(update_fields=["analysis_attempts", "analysis_status", "analysis_progress",
                                        "analysis_message"])
    if gave_up:  # outside the version's lock: record_analysis locks the dataset first
        revisions.record_analysis(version_id, analysis_status=Status.FAILED, analysis_progress=1.0, analysis_message=(
            f"The analysis stopped {version.analysis_attempts} times without finishing (the file may need more "
            "memory than the server allows); it is not tried again."))
        return

    def progress(fraction, message):
        DatasetVersion.objects.filter(pk=version_id).update(
            analysis_status=Status.RUNNING, analysis_progress=fraction, analysis_message=message[:500]
        )

    limits = Limits(memory_mb=settings.ANALYSIS_MEMORY_LIMIT_MB, cpu_seconds=settings.ANALYSIS_CPU_SECONDS,
                    wall_seconds=settings.ANALYSIS_WALL_SECONDS, temp_mb=settings.ANALYSIS_TEMP_LIMIT_MB)
    storage = storages["private"]
    local_copy = None
    try:
        try:
            path = storage.path(version.file)
        except NotImplementedError:  # a remote storage (S3): analyse a local copy
            path = None
        if path is None or not os.path.isfile(path):  # in memory, or remote: analyse a local copy
            path = local_copy = _local_copy(storage, version.file)
        data = analyse_in_child(path, version.format, limits=limits, progress=progress)
    except AnalysisFailed as failure:
        revisions.record_analysis(
            version_id, analysis_status=Status.FAILED, analysis_progress=1.0, analysis_message=failure.reason[:500])
        return
    finally:
        if local_copy:
            Path(local_copy).unlink(missing_ok=True)
    rejected = data.get("rejected_rows", 0)
    revisions.record_analysis(
        version_id,
        analysis_status=Status.DONE_WITH_REJECTS if rejected else Status.DONE,
        analysis_progress=1.0,
        analysis_message=(f"Analysed with {rejected:,} rejected rows: " + "; ".join(data.get("warnings", [])))[:500]
        if rejected else "",
        row_count=data["row_count"],
        rejected_rows=rejected,
        columns=data["columns"],
        sample=data["sample"],
    )
    version = DatasetVersion.objects.select_related("dataset__owner").get(pk=version_id)
    revisions.hide_as_the_file_names(version, by=version.dataset.owner)


def _local_copy(storage, name):
    """A private temporary copy of a stored file; the caller deletes it."""
    import shutil
    import tempfile

    target = tempfile.NamedTemporaryFile(dir=settings.UPLOAD_TMP_DIR, suffix=Path(name).suffix, delete=False)
    try:
        with storage.open(name, "rb") as source, target:
            shutil.copyfileobj(source, target, 1024 * 1024)
    except BaseException:
        Path(target.name).unlink(missing_ok=True)
        raise
    return target.name


# Moderation on-chain ---------------------------------------------------------------------------
# A moderator's decision and the operator transaction it needs are written in one database
# transaction (chain.OperatorAction is an outbox, whose context records the intent); the single
# operator sender sends them later, and the chain indexer's ListingApprovalSet handler marks the
# listings approved and the datasets listed, or delisted for a clearing sent to delist
# (catalog.handlers). Nothing here talks to the chain. Approvals come from decisions on revisions
# (catalog.revisions); `reject` and `delist` act on whole datasets.

ON_OPERATOR_ACTION = "marketplace.catalog.listing.on_operator_action"


class ModerationResult:
    def __init__(self):
        self.queued = 0  # operator actions written
        self.updated = 0  # datasets whose status changed
        self.notes = []  # what was skipped, and why

    def __repr__(self):
        return f"ModerationResult(queued={self.queued}, updated={self.updated}, notes={self.notes})"


def _open_actions(listing):
    from marketplace.chain.models import OperatorAction

    return list(OperatorAction.objects.select_for_update().filter(
        chain_id=listing.chain_id, listing_id=listing.listing_id, status__in=OperatorAction.OPEN,
    ))


def _queue_operator_action(listing, kind, *, intent, moderator):
    from marketplace.chain.models import OperatorAction
    from marketplace.chain.services import deployed_address

    dataset = listing.version.dataset
    return OperatorAction.objects.create(
        kind=kind, chain_id=listing.chain_id, market=deployed_address(listing.chain_id, "DataMarket") or "",
        listing_id=listing.listing_id, expected_owner=dataset.owner.address,
        expected_content_hash=listing.version.content_hash, on_done=ON_OPERATOR_ACTION,
        context={"intent": intent, "dataset": dataset.pk, "listing": listing.pk, "version": listing.version.number},
        created_by=str(getattr(moderator, "username", "") or ""),
    )


def _cancel(action, reason):
    action.status = action.Status.CANCELLED
    action.error = reason
    action.save(update_fields=["status", "error", "updated_at"])


def _moderated(datasets):
    from .models import Listing

    ids = [d.pk for d in datasets]
    for dataset in Dataset.objects.select_for_update(of=("self",)).filter(pk__in=ids).select_related("owner").order_by("pk"):
        listings = list(Listing.objects.filter(version__dataset=dataset, chain_id=settings.CHAIN_ID)
                        .select_related("version__dataset__owner").order_by("pk"))
        yield dataset, listings


def _set_status(dataset, status, result):
    if dataset.status != status:
        dataset.status = status
        dataset.save(update_fields=["status", "updated_at"])
        result.updated += 1


def approve_listings(listings, *, moderator=None) -> int:
    """Queue the on-chain approval of each of `listings` that is not approved (or being cleared);
    returns how many were queued. A dataset not yet listed waits in pending review until the
    indexer reads the approval and lists it, or is listed now when a listing is approved on-chain
    already (the indexer read it before the review ended). Callers hold the dataset's row lock
    (revisions.decide)."""
    from marketplace.chain.models import OperatorAction

    Kind, Status = OperatorAction.Kind, OperatorAction.Status
    queued = 0
    for listing in listings:
        open_actions = _open_actions(listing)
        for action in open_actions:
            if action.kind == Kind.UNAPPROVE and action.status == Status.PENDING:
                _cancel(action, f"cancelled: approved again by {getattr(moderator, 'username', 'a moderator')}")
        clearing = any(a.kind == Kind.UNAPPROVE and a.status == Status.SENT for a in open_actions)
        if any(a.kind == Kind.APPROVE for a in open_actions):
            continue
        if listing.approved and not clearing:
            Dataset.objects.filter(pk=listing.version.dataset_id, status=Dataset.Status.PENDING_REVIEW).update(
                status=Dataset.Status.LISTED)
            continue
        _queue_operator_action(listing, Kind.APPROVE, intent="approve", moderator=moderator)
        queued += 1
        dataset = listing.version.dataset
        if dataset.status != Dataset.Status.LISTED:
            Dataset.objects.filter(pk=dataset.pk).exclude(status=Dataset.Status.PENDING_REVIEW).update(
                status=Dataset.Status.PENDING_REVIEW)
    if queued:
        enqueue("chain.send_operator_actions")
    return queued


def clear_listing_approvals(listings, *, intent, moderator=None) -> int:
    """Cancel unsent approvals of `listings` and queue the clearing of any approval that is, or
    may be about to be, on-chain; returns how many clearings were queued."""
    result = ModerationResult()
    by_dataset = {}
    for listing in listings:
        by_dataset.setdefault(listing.version.dataset_id, (listing.version.dataset, []))[1].append(listing)
    for dataset, group in by_dataset.values():
        _clear_approvals(dataset, group, intent=intent, moderator=moderator, result=result)
    if result.queued:
        enqueue("chain.send_operator_actions")
    return result.queued


def _clear_approvals(dataset, listings, *, intent, moderator, result) -> bool:
    """Cancel unsent approvals and queue the clearing of any approval that is, or may be about to
    be, on-chain. True when something is (or will be) cleared on-chain."""
    from marketplace.chain.models import OperatorAction

    Kind, Status = OperatorAction.Kind, OperatorAction.Status
    clearing = False
    for listing in listings:
        open_actions = _open_actions(listing)
        for action in open_actions:
            if action.kind == Kind.APPROVE and action.status == Status.PENDING:
                _cancel(action, f"cancelled: {intent} by {getattr(moderator, 'username', 'a moderator')}")
        maybe_approved = listing.approved or any(
            a.kind == Kind.APPROVE and a.status == Status.SENT for a in open_actions)
        if not maybe_approved:
            continue
        clearing = True
        if not any(a.kind == Kind.UNAPPROVE for a in open_actions):
            _queue_operator_action(listing, Kind.UNAPPROVE, intent=intent, moderator=moderator)
            result.queued += 1
    return clearing


def reject(datasets, *, moderator=None) -> ModerationResult:
    """Reject `datasets` at once; any approval on-chain is cleared by the sender."""
    result = ModerationResult()
    with transaction.atomic():
        for dataset, listings in _moderated(datasets):
            _clear_approvals(dataset, listings, intent="reject", moderator=moderator, result=result)
            _set_status(dataset, Dataset.Status.REJECTED, result)
            revisions.close_open(dataset, moderator=moderator, reason="The dataset was rejected.")
        if result.queued:
            enqueue("chain.send_operator_actions")
    return result


def delist(datasets, *, moderator=None, reason="", statement="", internal_note="") -> ModerationResult:
    """Delist `datasets`: the sender clears their approval on-chain and the indexer marks them
    delisted when it reads the clearing; a dataset with nothing approved on-chain is delisted at
    once. Each delisting is announced (signals.dataset_delisted, with the moderator's policy
    `reason`, `statement` for the publisher and `internal_note`) in the same transaction."""
    from .signals import dataset_delisted

    result = ModerationResult()
    with transaction.atomic():
        for dataset, listings in _moderated(datasets):
            revisions.close_open(dataset, moderator=moderator, reason="The dataset was delisted.")
            on_chain = _clear_approvals(dataset, listings, intent="delist", moderator=moderator, result=result)
            if on_chain:
                result.notes.append(f"{dataset.slug}: delisted once the chain confirms")
            elif dataset.status == Dataset.Status.DELISTED:
                continue  # delisted already: nothing happened, nothing to announce
            else:
                _set_status(dataset, Dataset.Status.DELISTED, result)
            dataset_delisted.send(sender=Dataset, dataset=dataset, moderator=moderator, on_chain=on_chain,
                                  reason=reason, statement=statement, internal_note=internal_note)
        if result.queued:
            enqueue("chain.send_operator_actions")
    return result

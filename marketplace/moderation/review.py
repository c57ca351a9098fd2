"""The review queue console: what waits for a moderator (open revisions, oldest first, against a
target time), what one item shows side by side (sample, schema, statistics, the revision's diff,
the publisher's history, personal-data flags), and claims. Decisions are the catalog's
(`catalog.revisions.decide`); a claim refuses another moderator's through the catalog's
`revision_deciding` signal (receivers.py), and the audit entry is written by receivers.py."""
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import difflib
import re

from django.conf import settings
from django.db import transaction
from django.db.models import CharField, Count, Window
from django.db.models.functions import Cast
from django.utils import timezone

from marketplace.catalog import revisions
from marketplace.catalog.models import Dataset, DatasetRevision, DatasetVersion
from marketplace.catalog.preview import PreviewSettings

from .models import AuditEntry, ReviewClaim

PAGE_SIZE = 50
SAMPLE_ROWS = 20
Kind = DatasetRevision.Kind


def target_hours() -> int:
    """How long an item may wait before it is overdue (setting REVIEW_TARGET_HOURS, 24)."""
    return settings.REVIEW_TARGET_HOURS


def claim_minutes() -> int:
    """How long a claim holds (setting REVIEW_CLAIM_MINUTES, 30)."""
    return settings.REVIEW_CLAIM_MINUTES


# The queue ---------------------------------------------------------------------------------------

QUEUE_FIELDS = ("id", "kind", "created_at", "dataset_id", "dataset__slug", "dataset__title", "dataset__published_at",
                "dataset__owner__username", "dataset__owner__address", "version__number",
                "claim__moderator__username", "claim__expires_at")


def queue(*, kind: str = "", after: int | None = None, limit: int = PAGE_SIZE, now: datetime | None = None) -> list:
    """The revisions waiting for a moderator, oldest first, `limit` a page: those after revision
    `after` in (created_at, id) order (keyset, read through the partial indexes revision_waiting
    and revision_waiting_kind, so a deep page costs what the first does). One query: each row
    carries its dataset, publisher, version and claim."""
    now = now or timezone.now()
    rows = DatasetRevision.objects.filter(status=DatasetRevision.Status.PENDING)
    if kind:
        rows = rows.filter(kind=kind)
    if after is not None:
        mark = DatasetRevision.objects.filter(pk=after).values_list("created_at", flat=True).first()
        if mark is None:
            return []
        rows = rows.extra(where=["(catalog_datasetrevision.created_at, catalog_datasetrevision.id) > (%s, %s)"],
                          params=[mark, after])
    target = timedelta(hours=target_hours())
    items = []
    for row in rows.order_by("created_at", "id").values(*QUEUE_FIELDS)[:limit]:
        claimed = row["claim__expires_at"] is not None and row["claim__expires_at"] > now
        due = row["created_at"] + target
        items.append({
            "id": row["id"], "kind": row["kind"], "created_at": row["created_at"],
            "dataset": {"id": row["dataset_id"], "slug": row["dataset__slug"], "title": row["dataset__title"],
                        "new": row["dataset__published_at"] is None},
            "publisher": row["dataset__owner__username"], "publisher_address": row["dataset__owner__address"] or "",
            "version": row["version__number"], "due_at": due, "overdue": due <= now, "age": now - row["created_at"],
            "waited": waited(now - row["created_at"]),
            # Times as the page prints them, in UTC (strftime: a 50-row page through the template's
            # date filter cost more than its query)
            "due_text": f"{due.astimezone(UTC):%-d %b, %H:%M}",
            "claim_until": f"{row['claim__expires_at'].astimezone(UTC):%H:%M}" if claimed else "",
            "claimed_by": row["claim__moderator__username"] if claimed else None,
            "claim_expires_at": row["claim__expires_at"] if claimed else None,
        })
    return items


def waited(delta: timedelta) -> str:
    """"2 d 4 h", "3 h 12 min", "5 min": how long an item has waited, for people."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {mins} min" if hours else f"{mins} min"


# Claims ------------------------------------------------------------------------------------------


class Claimed(Exception):
    """Another moderator holds the item."""

    def __init__(self, claim: ReviewClaim):
        self.claim = claim
        super().__init__(f"Revision #{claim.revision_id} is claimed by {holder_name(claim.moderator)} until "
                         f"{claim.expires_at:%H:%M} UTC: leave it to them, or wait until the claim expires.")


class NotOpen(Exception):
    """The revision is decided or superseded: nothing to claim."""


def holder_name(user) -> str:
    return user.username or user.address or f"user {user.pk}"


def _open_revision(revision_id: int) -> DatasetRevision:
    revision = DatasetRevision.objects.select_for_update().get(pk=revision_id)
    if revision.status not in DatasetRevision.OPEN:
        raise NotOpen(f"Revision #{revision.pk} is {revision.get_status_display().lower()}: there is nothing to "
                      "claim. Reload the queue.")
    return revision


def claim(revision_id: int, *, moderator) -> ReviewClaim:
    """Claim (or extend one's own claim on) an open revision for claim_minutes(). Refused with
    Claimed while another moderator's claim holds, NotOpen once it is decided. The revision's row
    lock orders a claim and a decision taken at once (revisions.decide takes it too)."""
    with transaction.atomic():
        revision = _open_revision(revision_id)
        now = timezone.now()
        held = ReviewClaim.objects.select_for_update().select_related("moderator").filter(revision=revision).first()
        if held and held.moderator_id != moderator.pk and held.expires_at > now:
            raise Claimed(held)
        expires = now + timedelta(minutes=claim_minutes())
        if held is None:
            return ReviewClaim.objects.create(revision=revision, moderator=moderator, claimed_at=now, expires_at=expires)
        if held.moderator_id != moderator.pk or held.expires_at <= now:
            held.claimed_at = now
        held.moderator = moderator
        held.expires_at = expires
        held.save(update_fields=["moderator", "claimed_at", "expires_at"])
        return held


def release(revision_id: int, *, moderator) -> bool:
    """Give up one's claim; True if there was one. Another moderator's live claim is refused
    (Claimed); an expired one is simply removed."""
    with transaction.atomic():
        held = ReviewClaim.objects.select_for_update().select_related("moderator").filter(
            revision_id=revision_id).first()
        if held is None:
            return False
        if held.moderator_id != moderator.pk and held.expires_at > timezone.now():
            raise Claimed(held)
        held.delete()
        return held.moderator_id == moderator.pk


def live_claim(revision_id: int) -> ReviewClaim | None:
    return (ReviewClaim.objects.select_related("moderator")
            .filter(revision_id=revision_id, expires_at__gt=timezone.now()).first())


def refuse_if_claimed_by_another(revision, moderator) -> None:
    """Called inside revisions.decide (the revision locked): another moderator's live claim
    refuses the decision (DecisionBlocked `claimed`, a 409)."""
    if moderator is None:  # the system (the indexer closing a delisted dataset's reviews)
        return
    held = live_claim(revision.pk)
    if held is not None and held.moderator_id != moderator.pk:
        raise revisions.DecisionBlocked("claimed", str(Claimed(held)))


# Deciding ----------------------------------------------------------------------------------------


def decide(revision: DatasetRevision, *, moderator, decision: str, reason_code: str = "", statement: str = "",
           internal_note: str = "", listings: list | None = None) -> revisions.DecisionResult:
    """A moderator's decision from the console (values validated by review_api.ReviewDecisionRequest):
    the catalog's decide, with the policy code and the internal note for the audit entry."""
    return revisions.decide(revision, decision=decision, moderator=moderator, reason=statement,
                            expected_listings=listings, reason_code=reason_code, internal_note=internal_note)


# One item ----------------------------------------------------------------------------------------


@dataclass
class Item:
    revision: DatasetRevision
    dataset: Dataset
    version: DatasetVersion | None  # the revision's version, else the dataset's latest (what it sells)
    claim: ReviewClaim | None
    diff: dict
    columns: list
    sample: list
    sample_columns: list
    statistics: dict
    flags: list
    history: dict
    record: list  # the audit entries about this dataset, internal notes included
    due_at: datetime
    overdue: bool
    waited: str


def item(revision_id: int, *, now: datetime | None = None) -> Item:
    """Everything the item page shows (DatasetRevision.DoesNotExist for an unknown id)."""
    now = now or timezone.now()
    revision = (DatasetRevision.objects.select_related("dataset", "dataset__owner", "version", "decided_by",
                                                       "claim", "claim__moderator").get(pk=revision_id))
    held = getattr(revision, "claim", None)
    if held is not None and held.expires_at <= now:
        held = None
    dataset = revision.dataset
    version = revision.version
    if version is None:
        version = DatasetVersion.objects.filter(dataset=dataset).order_by("-number").first()
    columns = list(version.columns or []) if version else []
    sample = list(version.sample or [])[:SAMPLE_ROWS] if version else []
    names = [c.get("name") for c in columns if isinstance(c, dict)] or (list(sample[0]) if sample else [])
    due = revision.created_at + timedelta(hours=target_hours())
    return Item(
        revision=revision, dataset=dataset, version=version, claim=held,
        diff=revision_diff(revision, dataset), columns=columns, sample=sample, sample_columns=names,
        statistics=statistics(version), flags=personal_data_flags(columns, sample),
        history=publisher_history(dataset.owner), record=dataset_record(dataset),
        due_at=due, overdue=revision.status in DatasetRevision.OPEN and due <= now,
        waited=waited(now - revision.created_at))


def statistics(version: DatasetVersion | None) -> dict:
    if version is None:
        return {}
    return {"number": version.number, "format": version.format, "size": version.size,
            "content_hash": version.content_hash, "row_count": version.row_count,
            "rejected_rows": version.rejected_rows, "analysis": version.get_analysis_status_display(),
            "analysis_message": version.analysis_message, "columns": len(version.columns or [])}


def revision_diff(revision: DatasetRevision, dataset: Dataset) -> dict:
    """What approving the revision changes: for details, each public field now and as proposed
    (the description line by line); for a preview, the settings now and as proposed; for a
    version, the listings it puts on sale and the preview it would show, against the last one
    approved."""
    if revision.kind == Kind.DETAILS:
        published = revisions.is_published(dataset)
        current = revisions.public_text(dataset) if published else {f: "" for f in revisions.PUBLIC_TEXT}
        fields = []
        for name in revisions.PUBLIC_TEXT:
            now, proposed = _text(current.get(name)), _text(revision.changes.get(name, current.get(name)))
            entry = {"field": name, "current": now, "proposed": proposed, "changed": now != proposed}
            if name == "description" and entry["changed"] and published:
                entry["lines"] = line_diff(now, proposed)
            fields.append(entry)
        return {"kind": "details", "published": published, "fields": fields}
    version = revision.version
    if revision.kind == Kind.PREVIEW:
        return {"kind": "preview", "rows": preview_rows(PreviewSettings.of(version),
                                                        PreviewSettings.from_json(revision.changes))}
    shown = revision.changes.get("preview")
    approved = revisions.approved_preview(version) if version else None
    rows = preview_rows(approved or PreviewSettings(), PreviewSettings.from_json(shown)) if shown is not None else []
    return {"kind": "version", "listings": revision.listings, "rows": rows, "first_approval": approved is None}


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def line_diff(old: str, new: str) -> list[tuple[str, str]]:
    """(mark, line) pairs: "-" removed, "+" added, " " kept."""
    return [(line[0], line[2:]) for line in difflib.ndiff(old.splitlines(), new.splitlines()) if line[0] in "-+ "]


def preview_rows(current: PreviewSettings, proposed: PreviewSettings) -> list[dict]:
    def hidden(s):
        return ", ".join(s.hidden_columns) or "none"

    def yes(flag):
        return "shown" if flag else "hidden"

    return [
        {"setting": "Hidden columns", "current": hidden(current), "proposed": hidden(proposed),
         "changed": current.hidden_columns != proposed.hidden_columns},
        {"setting": "Sample rows", "current": yes(current.show_sample), "proposed": yes(proposed.show_sample),
         "changed": current.show_sample != proposed.show_sample},
        {"setting": "Distributions", "current": yes(current.show_distributions),
         "proposed": yes(proposed.show_distributions), "changed": current.show_distributions != proposed.show_distributions},
    ]


HISTORY_ACTIONS = ("dataset.approve", "dataset.reject", "dataset.request_changes", "dataset.delist")
RECORD_FIELDS = ("id", "created_at", "actor", "actor_role", "action", "target_id", "reason", "statement",
                 "internal_note", "details")


def publisher_history(owner, *, limit: int = 10) -> dict:
    """The publisher's datasets and the decisions about them (counted by action from the audit
    log, and the latest `limit` entries). Three queries, each through an index (the datasets'
    owner, the entries' (target_type, target_id, id)), however many datasets they have."""
    datasets = list(Dataset.objects.filter(owner=owner).order_by("-created_at", "-id")
                    .annotate(total=Window(Count("id"))).values("id", "slug", "title", "status", "total")[:limit])
    # The entries' target ids are text: the owner's dataset ids as text, in the database.
    ids = Dataset.objects.filter(owner=owner).annotate(text_id=Cast("pk", CharField())).values("text_id")
    about = AuditEntry.objects.filter(target_type="dataset", target_id__in=ids)
    counts = dict(about.filter(action__in=HISTORY_ACTIONS).values_list("action").annotate(n=Count("id"))
                  .values_list("action", "n")) if datasets else {}
    return {
        "publisher": owner, "dataset_count": datasets[0]["total"] if datasets else 0, "datasets": datasets,
        "counts": {action.split(".")[1]: counts.get(action, 0) for action in HISTORY_ACTIONS},
        "latest": list(about.order_by("-id").values(*RECORD_FIELDS)[:limit]) if datasets else [],
    }


def dataset_record(dataset: Dataset, *, limit: int = 10) -> list[dict]:
    return list(AuditEntry.objects.filter(target_type="dataset", target_id=str(dataset.pk))
                .order_by("-id").values(*RECORD_FIELDS)[:limit])


# Personal data ----------------------------------------------------------------------------------

EMAIL_NAME = re.compile(r"(^|[^a-z])(e[-_ ]?mail|mail[-_ ]?address|courriel)([^a-z]|$)", re.I)
PHONE_NAME = re.compile(r"(^|[^a-z])(phone|telephone|tel|mobile|cell|msisdn|fax|phone[-_ ]?number)([^a-z]|$)", re.I)
EMAIL_VALUE = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
# A phone number as people write it: an international "+" prefix, or digit groups split by spaces,
# dashes or a bracketed area code. Bare digits (ids, amounts) and dates are not taken for one.
PHONE_VALUE = re.compile(r"^(\+\d[\d ().-]{6,20}|\(?\d{2,5}\)?[ -]\d{2,5}([ -]\d{2,5}){0,3})$")
DATE_LIKE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}|^\d{1,2}[-/]\d{1,2}[-/]\d{2,4}$")
VALUE_SHARE = 0.5  # of a column's non-empty sample values that must look like one


def looks_like_email(value) -> bool:
    return isinstance(value, str) and bool(EMAIL_VALUE.match(value.strip()))


def looks_like_phone(value) -> bool:
    if not isinstance(value, str):
        return False
    text = value.strip()
    if not PHONE_VALUE.match(text) or DATE_LIKE.match(text):
        return False
    return 7 <= sum(ch.isdigit() for ch in text) <= 15


def personal_data_flags(columns: list, sample: list) -> list[dict]:
    """Columns that look like personal data, by name or by sample values: e-mail addresses and
    phone numbers. Each flag: {"column", "kind" ("email" | "phone"), "by" (["name"], ["values"] or
    both), "matches", "of"} (sample values that look like one, of the non-empty ones). `columns`
    are the analysis' column dicts (or names); `sample` its rows (dicts)."""
    names = [c.get("name") if isinstance(c, dict) else c for c in columns]
    for row in sample:
        if isinstance(row, dict):
            names.extend(name for name in row if name not in names)
    flags = []
    for name in names:
        values = [row.get(name) for row in sample if isinstance(row, dict)]
        values = [v for v in values if v not in (None, "")]
        words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name))  # customerEmail: customer_Email
        for kind, by_name, check in (("email", EMAIL_NAME, looks_like_email), ("phone", PHONE_NAME, looks_like_phone)):
            matches = sum(1 for v in values if check(v))
            by = []
            if by_name.search(words):
                by.append("name")
            if values and matches / len(values) >= VALUE_SHARE:
                by.append("values")
            if by:
                flags.append({"column": str(name), "kind": kind, "by": by, "matches": matches, "of": len(values)})
    return flags

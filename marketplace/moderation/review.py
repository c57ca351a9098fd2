"""The review queue console: what waits for a moderator (open revisions, oldest first, against a
target time), what one item shows side by side (sample, schema, statistics, the revision's diff,
the publisher's history, personal-data flags), and claims. Decisions are the catalog's
(`catalog.revisions.decide`); a claim refuses another moderator's through the catalog's
`revision_deciding` signal (receivers.py), and the audit entry is written by receivers.py."""
from dataclasses import dataclass
from functools import cache
from datetime import UTC, datetime, timedelta
import difflib
import re

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from marketplace import prepared
from marketplace.catalog import revisions
from marketplace.catalog.models import Dataset, DatasetRevision, DatasetVersion
from marketplace.catalog.preview import PreviewSettings

from . import policy
from .models import ReviewClaim

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

# One statement per shape (a kind or not, a keyset mark or not, the page size), each prepared once
# per database connection (marketplace/prepared.py); both read the partial indexes
# revision_waiting(_kind). The page size is in the text, not a parameter: PostgreSQL's generic
# plan of an unknown LIMIT is a parallel scan of every waiting item (40 ms instead of 0.8).
QUEUE_SQL = """
SELECT r.id, r.kind, r.created_at, r.dataset_id, d.slug, d.title, d.published_at, o.username, o.address,
       v.number AS version, m.username AS claimed_by, c.expires_at AS claim_expires_at
FROM catalog_datasetrevision r
JOIN catalog_dataset d ON d.id = r.dataset_id
JOIN accounts_user o ON o.id = d.owner_id
LEFT JOIN catalog_datasetversion v ON v.id = r.version_id
LEFT JOIN moderation_reviewclaim c ON c.revision_id = r.id
LEFT JOIN accounts_user m ON m.id = c.moderator_id
WHERE r.status = 'pending' {kind} {after}
ORDER BY r.created_at, r.id
LIMIT {limit}"""
QUEUE_KIND = "AND r.kind = %(kind)s"
QUEUE_AFTER = ("AND (r.created_at, r.id) > (SELECT a.created_at, a.id FROM catalog_datasetrevision a "
               "WHERE a.id = %(after)s)")


def queue(*, kind: str = "", after: int | None = None, limit: int = PAGE_SIZE, now: datetime | None = None) -> list:
    """The revisions waiting for a moderator, oldest first, `limit` a page: those after revision
    `after` in (created_at, id) order (keyset, read through the partial indexes revision_waiting
    and revision_waiting_kind, so a deep page costs what the first does; an unknown `after` gives
    an empty page). One prepared statement: each row carries its dataset, publisher, version and
    claim."""
    now = now or timezone.now()
    sql = QUEUE_SQL.format(kind=QUEUE_KIND if kind else "", after=QUEUE_AFTER if after is not None else "",
                           limit=int(limit))
    target = timedelta(hours=target_hours())
    items = []
    for row in prepared.rows(sql, {"kind": kind, "after": after}):
        expires = row["claim_expires_at"]
        claimed = expires is not None and expires > now
        created = row["created_at"]
        due = created + target
        items.append({
            "id": row["id"], "kind": row["kind"], "created_at": created,
            "dataset": {"id": row["dataset_id"], "slug": row["slug"], "title": row["title"],
                        "new": row["published_at"] is None},
            "publisher": row["username"], "publisher_address": row["address"] or "",
            "version": row["version"], "due_at": due, "overdue": due <= now, "age": now - created,
            "waited": waited(now - created),
            # Times as the page prints them, in UTC (strftime: a 50-row page through the template's
            # date filter cost more than its query)
            "due_text": f"{due.astimezone(UTC):%-d %b, %H:%M}",
            "claim_until": f"{expires.astimezone(UTC):%H:%M}" if claimed else "",
            "claimed_by": row["claimed_by"] if claimed else None,
            "claim_expires_at": expires if claimed else None,
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
    reports: list  # the open reports on the dataset and on its publisher, grouped by target
    due_at: datetime
    overdue: bool
    waited: str


@cache
def _item_sql() -> str:
    """The revision with its dataset, publisher, version (the revision's, else the dataset's
    latest), live or expired claim and its holder, and who decided it: one prepared statement."""
    from marketplace.accounts.models import User

    return f"""
SELECT {prepared.columns(DatasetRevision, "r", "r_")}, {prepared.columns(Dataset, "d", "d_")},
       {prepared.columns(User, "o", "o_")}, {prepared.columns(DatasetVersion, "v", "v_")},
       {prepared.columns(ReviewClaim, "c", "c_")}, {prepared.columns(User, "m", "m_")},
       {prepared.columns(User, "b", "b_")}, ap.kind AS approved_kind, ap.changes AS approved_changes
FROM catalog_datasetrevision r
JOIN catalog_dataset d ON d.id = r.dataset_id
JOIN accounts_user o ON o.id = d.owner_id
LEFT JOIN catalog_datasetversion v ON v.id = COALESCE(r.version_id, (
    SELECT l.id FROM catalog_datasetversion l WHERE l.dataset_id = r.dataset_id ORDER BY l.number DESC LIMIT 1))
LEFT JOIN moderation_reviewclaim c ON c.revision_id = r.id
LEFT JOIN accounts_user m ON m.id = c.moderator_id
LEFT JOIN accounts_user b ON b.id = r.decided_by_id
LEFT JOIN LATERAL (  -- a new version's last approved preview (catalog.revisions.approved_preview)
    SELECT a.kind, a.changes FROM catalog_datasetrevision a
    WHERE a.version_id = r.version_id AND a.kind IN ('version', 'preview') AND a.status = 'approved'
    ORDER BY a.decided_at DESC, a.id DESC LIMIT 1) ap ON r.kind = 'version'
WHERE r.id = %(revision)s"""


def item(revision_id: int, *, now: datetime | None = None) -> Item:
    """Everything the item page shows (DatasetRevision.DoesNotExist for an unknown id). Two
    prepared statements: the revision with what it belongs to (and a new version's last approved
    preview); the publisher's history with the dataset's record."""
    from marketplace.accounts.models import User

    now = now or timezone.now()
    found = prepared.rows(_item_sql(), {"revision": revision_id})
    if not found:
        raise DatasetRevision.DoesNotExist(f"No revision {revision_id}.")
    row = found[0]
    revision = prepared.instance(DatasetRevision, row, "r_")
    dataset = prepared.instance(Dataset, row, "d_")
    dataset.owner = prepared.instance(User, row, "o_")
    revision.dataset = dataset
    version = prepared.instance(DatasetVersion, row, "v_")
    if version is not None:
        version.dataset = dataset
    revision.version = version if revision.version_id is not None else None
    revision.decided_by = prepared.instance(User, row, "b_")
    held = prepared.instance(ReviewClaim, row, "c_")
    if held is not None:
        held.moderator = prepared.instance(User, row, "m_")
        if held.expires_at <= now:
            held = None
    columns = list(version.columns or []) if version else []
    sample = list(version.sample or [])[:SAMPLE_ROWS] if version else []
    names = [c.get("name") for c in columns if isinstance(c, dict)] or (list(sample[0]) if sample else [])
    due = revision.created_at + timedelta(hours=target_hours())
    history, record, reports = history_record_and_reports(dataset)
    approved = (revisions.approval_preview(row["approved_kind"], prepared.loads(row["approved_changes"]))
                if row["approved_kind"] else None)
    return Item(
        revision=revision, dataset=dataset, version=version, claim=held,
        diff=revision_diff(revision, dataset, approved), columns=columns, sample=sample, sample_columns=names,
        statistics=statistics(version), flags=personal_data_flags(columns, sample),
        history=history, record=record, reports=reports,
        due_at=due, overdue=revision.status in DatasetRevision.OPEN and due <= now,
        waited=waited(now - revision.created_at))


def statistics(version: DatasetVersion | None) -> dict:
    if version is None:
        return {}
    return {"number": version.number, "format": version.format, "size": version.size,
            "content_hash": version.content_hash, "row_count": version.row_count,
            "rejected_rows": version.rejected_rows, "analysis": version.get_analysis_status_display(),
            "analysis_message": version.analysis_message, "columns": len(version.columns or [])}


def revision_diff(revision: DatasetRevision, dataset: Dataset, approved: PreviewSettings | None) -> dict:
    """What approving the revision changes: for details, each public field now and as proposed
    (the description line by line); for a preview, the settings now and as proposed; for a
    version, the listings it puts on sale and the preview it would show, against the last one
    approved (`approved`: revisions.approved_preview of the version, None if never approved)."""
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
HISTORY_LIMIT = 10
_RECORD = ", ".join(f"e.{name}" for name in RECORD_FIELDS)
# The publisher's datasets and the decisions about them (counted by action from the audit log,
# and the latest ones), the dataset's own record, and the open reports on the dataset and on its
# publisher: one prepared statement, each part through an index (the datasets' owner; the entries'
# and the reports' target) however many datasets the publisher has. The entries' target ids are
# text: the owner's dataset ids as text.
HISTORY_SQL = f"""
WITH owned AS (SELECT id, slug, title, status, created_at FROM catalog_dataset WHERE owner_id = %(owner)s),
about AS MATERIALIZED (SELECT {_RECORD} FROM moderation_auditentry e
                       WHERE e.target_type = 'dataset' AND e.target_id IN (SELECT id::text FROM owned))
SELECT (SELECT count(*) FROM owned) AS dataset_count,
       (SELECT json_agg(x) FROM (SELECT id, slug, title, status FROM owned
                                 ORDER BY created_at DESC, id DESC LIMIT {HISTORY_LIMIT}) x) AS datasets,
       (SELECT json_object_agg(action, n) FROM (SELECT action, count(*) AS n FROM about
                                                WHERE action IN ({", ".join(f"'{a}'" for a in HISTORY_ACTIONS)})
                                                GROUP BY action) c) AS counts,
       (SELECT json_agg(x) FROM (SELECT * FROM about ORDER BY id DESC LIMIT {HISTORY_LIMIT}) x) AS latest,
       (SELECT json_agg(x) FROM (SELECT {_RECORD} FROM moderation_auditentry e
                                 WHERE e.target_type = 'dataset' AND e.target_id = %(dataset)s
                                 ORDER BY e.id DESC LIMIT {HISTORY_LIMIT}) x) AS record,
       (SELECT json_agg(x) FROM (SELECT id, target_type, target_id, reason, evidence, created_at
                                 FROM moderation_report
                                 WHERE status = 'open' AND ((target_type = 'dataset' AND target_id = %(dataset)s)
                                       OR (target_type = 'publisher' AND target_id = %(address)s))
                                 ORDER BY id DESC LIMIT 1000) x) AS reports"""


def _entries(value) -> list[dict]:
    entries = prepared.loads(value) or []
    for entry in entries:
        entry["created_at"] = datetime.fromisoformat(entry["created_at"])
    return entries


def history_record_and_reports(dataset: Dataset) -> tuple[dict, list[dict], list[dict]]:
    """The publisher's history: their datasets (the latest 10 and how many), the decisions about
    them counted by action and the latest 10 entries; the dataset's own record (its latest 10
    entries, internal notes included); and the open reports on the dataset and on its publisher,
    one group each (how many, the reasons, the newest, the group's page)."""
    (row,) = prepared.rows(HISTORY_SQL, {"owner": dataset.owner_id, "dataset": str(dataset.pk),
                                         "address": dataset.owner.address or ""})
    counts = prepared.loads(row["counts"]) or {}
    history = {
        "publisher": dataset.owner, "dataset_count": row["dataset_count"],
        "datasets": prepared.loads(row["datasets"]) or [],
        "counts": {action.split(".")[1]: counts.get(action, 0) for action in HISTORY_ACTIONS},
        "latest": _entries(row["latest"]),
    }
    found, groups = _entries(row["reports"]), []
    for target_type, about in (("dataset", "This dataset"), ("publisher", "Its publisher")):
        rows = [r for r in found if r["target_type"] == target_type]
        if rows:
            groups.append({"about": about, "count": len(rows), "newest": rows[0],
                           "reasons": sorted({policy.label(r["reason"]) for r in rows}),
                           "link": f"/moderation/reports/{target_type}/{rows[0]['target_id']}"})
    return history, _entries(row["record"]), groups


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

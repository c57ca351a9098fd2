"""Reports and notices. Anyone signed in reports a dataset or a publisher (`file_report`); anyone,
signed in or not, files a notice through the public form (`file_notice`) and gets a reference
token to check it later (no e-mail is sent). Reports on one target form a group, which a moderator
closes with one outcome (`close_group`): each report closed is an audit entry `report.close`
naming its reporter (never shown to publishers), and signed-in reporters are notified. The reads
for the moderators' pages, the notifier's status page and the review queue (`open_reports_for`)
are here too. Filing counts against the limits' rule `report` (per client address and wallet).
See docs/moderation.md, "Reports and notices"."""
from dataclasses import dataclass
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlsplit

from django.contrib.postgres.aggregates import ArrayAgg
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Min, Q
from django.utils import timezone
from eth_utils import is_address, to_checksum_address

from marketplace.api import Refused
from marketplace.accounts.models import User
from marketplace.catalog import services as catalog_services
from marketplace.catalog.models import Dataset
from marketplace.limits.services import consume

from . import audit, policy
from .models import AuditEntry, Report
from .notifications import email, notify
from .receivers import role_of

NAME_MAX = 120
EMAIL_MAX = 254
LAW_MAX = 300
TARGET_TEXT_MAX = 500
EVIDENCE_MAX = 5000
STATEMENT_MAX = policy.STATEMENT_MAX
NOTE_MAX = policy.NOTE_MAX
GROUP_PAGE_SIZE = 50
REPORTER_MAX = AuditEntry._meta.get_field("reporter").max_length
# Datasets that are, or were, public: what a reporter can have seen. A draft, a dataset waiting for
# its first review or a rejected one is "unknown" to a reporter (saying otherwise would reveal it).
REPORTABLE = (Dataset.Status.LISTED, Dataset.Status.DELISTED)
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{20,64}")
SLUG_RE = re.compile(r"[-a-zA-Z0-9_]{1,120}")
DATASET_PATH_RE = re.compile(r"/datasets/([-a-zA-Z0-9_]{1,120})(?:/.*)?")


class ReportRefused(Refused):
    """A report or a closing that cannot be taken (a 400 unless it says otherwise)."""

    default_status = 400


@dataclass(frozen=True)
class Target:
    """What a report is about, as the pages and the API show it."""

    type: str
    id: str
    label: str
    link: str  # a path in the site, or "" when it has no public page
    state: str  # listed, delisted, removed, publisher, gone
    owner_id: int | None = None

    @property
    def off_sale_message(self) -> str:
        if self.state == "removed":
            return ("This dataset was already removed for legal reasons. Your report is kept with the others on it, "
                    "and a moderator will still read it.")
        if self.state == "delisted":
            return ("This dataset is already delisted: it is no longer for sale (its buyers keep access). Your report "
                    "is kept with the others on it, and a moderator will still read it.")
        return ""

    def as_dict(self) -> dict:
        return {"type": self.type, "id": self.id, "label": self.label, "link": self.link, "state": self.state}


def _dataset_target(dataset: Dataset) -> Target:
    if getattr(dataset, "removed_at", None):  # a removal for legal reasons (the legal removal's field)
        state = "removed"
    else:
        state = "listed" if dataset.status == Dataset.Status.LISTED else "delisted"
    return Target("dataset", str(dataset.pk), dataset.title,
                  f"/datasets/{dataset.slug}" if state == "listed" else "", state, dataset.owner_id)


def _publisher_target(user: User) -> Target:
    label = f"{user.display_name} ({user.address})" if user.display_name else user.address
    return Target("publisher", user.address, label, f"/?publisher={user.address}", "publisher", user.pk)


def find_dataset(ref: str) -> Target | None:
    """A reportable dataset by slug, or by id."""
    datasets = Dataset.objects.filter(status__in=REPORTABLE)
    dataset = datasets.filter(slug=ref).first() if SLUG_RE.fullmatch(ref) else None
    if dataset is None and ref.isdigit() and len(ref) < 19:
        dataset = datasets.filter(pk=int(ref)).first()
    return _dataset_target(dataset) if dataset else None


def find_publisher(ref: str) -> Target | None:
    """A publisher by wallet address (any case): someone with a dataset that is, or was, public."""
    if not is_address(ref):
        return None
    user = User.objects.filter(address=to_checksum_address(ref), datasets__status__in=REPORTABLE).first()
    return _publisher_target(user) if user else None


def resolve_target(target_type: str, ref: str) -> Target:
    """The target a signed-in report names; ReportRefused (400, field `target`) when unknown."""
    ref = ref.strip()
    if target_type == Report.TargetType.DATASET:
        found = find_dataset(ref)
        if found is None:
            raise ReportRefused("unknown_target", f"No dataset {ref!r} is in the catalog: give its name as in its "
                                "address (/datasets/<name>) or its id.", field="target")
        return found
    if target_type == Report.TargetType.PUBLISHER:
        found = find_publisher(ref)
        if found is None:
            raise ReportRefused("unknown_target", f"{ref!r} is not the wallet address of a publisher in the catalog.",
                                field="target")
        return found
    raise ReportRefused("invalid", "Report a dataset or a publisher.", field="target_type")


def parse_notice_target(text: str) -> Target:
    """The target a notice names, as anyone would copy it: the dataset's address in the site
    (https://…/datasets/<name>, or the path alone), its name, or a publisher's wallet address
    (alone, or the catalog's /?publisher=0x… link). Only the path and query of an address are
    read: the host is not checked, so a copy from a mirror or a proxy works too."""
    text = text.strip()
    if is_address(text):
        return _must(find_publisher(text), text)
    if "/" in text or "?" in text:
        try:
            parts = urlsplit(text if "://" in text or text.startswith("/") else "https://" + text)
        except ValueError:  # e.g. a bracketed host that is no IPv6 address
            parts = None
        if parts is None:
            _must(None, text)
        match = DATASET_PATH_RE.fullmatch(parts.path)
        if match:
            return _must(find_dataset(match[1]), text)
        publisher = parse_qs(parts.query).get("publisher", [""])[0]
        if parts.path in ("", "/") and publisher:
            return _must(find_publisher(publisher), text)
    elif SLUG_RE.fullmatch(text):
        return _must(find_dataset(text), text)
    raise ReportRefused("unknown_target", "Give the dataset's address on this site (…/datasets/<name>), its name, "
                        "or the publisher's wallet address (0x…).", field="target")


def _must(target: Target | None, text: str) -> Target:
    if target is None:
        raise ReportRefused("unknown_target", f"Nothing in the catalog matches {text[:100]!r}: give the dataset's "
                            "address on this site (…/datasets/<name>), its name, or the publisher's wallet address.",
                            field="target")
    return target


def _wallet_key(user) -> str | None:
    """The limits' key of a signed-in person (as limits.http.wallet_of)."""
    if user is None or not user.is_authenticated:
        return None
    return user.address.lower() if user.address else f"user-{user.pk}"


def _check_reason(reason: str) -> None:
    if reason not in policy.REASONS:
        raise ReportRefused("invalid", f"Choose one of: {', '.join(policy.REASONS)}.", field="reason")


# Filing -----------------------------------------------------------------------------------------


def file_report(*, reporter, target_type: str, target: str, reason: str, evidence: str, law: str = "",
                ip: str | None = None) -> tuple[Report, Target]:
    """A signed-in person's report. Refused: an unknown target (400), their own dataset or
    themselves (400), a second open report of theirs on the same target (409, the first is
    kept as it was); over the rate, limits.services.LimitExceeded (nothing stored, nothing counted).
    A report on a dataset already delisted or removed is taken (Target.off_sale_message says so)."""
    _check_reason(reason)
    found = resolve_target(target_type, target)
    if found.owner_id == reporter.pk:
        whose = "your own dataset" if found.type == "dataset" else "yourself"
        raise ReportRefused("own_target", f"You cannot report {whose}.", field="target")
    with transaction.atomic():
        earlier = Report.objects.filter(reporter=reporter, source=Report.Source.USER, target_type=found.type,
                                        target_id=found.id, status=Report.Status.OPEN).first()
        if earlier is not None:
            raise _already_reported(earlier, found)
        consume("report", ip=ip, wallet=_wallet_key(reporter))
        try:
            with transaction.atomic():
                report = Report.objects.create(
                    target_type=found.type, target_id=found.id, source=Report.Source.USER, reporter=reporter,
                    reason=reason, evidence=evidence, law=law)
        except IntegrityError:  # the same report, sent twice at once: the other one was stored
            raise _already_reported(None, found) from None
    return report, found


def _already_reported(earlier, found: Target) -> ReportRefused:
    which = f" (report #{earlier.pk}, filed {earlier.created_at:%d %b %Y})" if earlier else ""
    return ReportRefused("already_reported", f"You have reported this {found.type} already{which} and a moderator "
                         "has not closed that report yet: it counts once. You are told the outcome when it is closed.",
                         status=409)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def file_notice(*, name: str, email: str, law: str, target: str, reason: str, evidence: str, user=None,
                ip: str | None = None) -> tuple[Report, str, Target]:
    """A notice through the public form (signed in or not). Returns the report, its reference
    token (kept only as a hash: shown once, it is the notifier's way to check the notice) and the
    target. Notices are not merged: each gets its own reference, whoever sends it."""
    _check_reason(reason)
    found = parse_notice_target(target)
    token = secrets.token_urlsafe(24)
    signed_in = user if user is not None and user.is_authenticated else None
    with transaction.atomic():
        consume("report", ip=ip, wallet=_wallet_key(signed_in))
        report = Report.objects.create(
            target_type=found.type, target_id=found.id, source=Report.Source.NOTICE, reporter=signed_in,
            notifier_name=name, notifier_email=email, law=law, target_text=target, reason=reason, evidence=evidence,
            token_hash=token_hash(token))
    return report, token, found


# Closing ----------------------------------------------------------------------------------------


@dataclass
class Closed:
    reports: list
    still_open: int
    target: Target


def reporter_text(report: Report) -> str:
    """Who reported it, as the audit entry's `reporter` keeps it (never shown to publishers)."""
    who = []
    if report.source == Report.Source.NOTICE:
        who.append(f"{report.notifier_name} <{report.notifier_email}>")
    if report.reporter_id:
        who.append(report.reporter.get_username())
    suffix = f" (report #{report.pk})"
    # The entry's field holds 200 characters; the report keeps the whole name and address.
    return " / ".join(who)[:REPORTER_MAX - len(suffix)] + suffix


def close_group(*, target_type: str, target_id: str, moderator, outcome: str, statement: str,
                internal_note: str = "", through: int) -> Closed:
    """Close the open reports on one target whose id is at most `through` (the newest the
    moderator saw: a report filed since stays open) with one outcome and a statement the reporters
    read. `delisted` delists the dataset (catalog.services.delist: cleared on-chain, recorded and
    told to its publisher) unless it is delisted already. Each report closed: an audit entry
    `report.close` and, for a signed-in reporter, a notification. Refused: nothing open any more
    (409: another moderator closed it), no such group (404), `delisted` for a publisher (400)."""
    if outcome not in Report.Outcome.values:
        raise ReportRefused("invalid", f"Choose one of: {', '.join(Report.Outcome.values)}.", field="outcome")
    if not statement.strip():
        raise ReportRefused("invalid", "Write what was decided, for the reporters.", field="statement")
    if outcome == Report.Outcome.DELISTED and target_type != Report.TargetType.DATASET:
        raise ReportRefused("invalid", "Only a dataset is delisted: for a publisher, choose no action or other "
                            "(a ban is decided on the wallet).", field="outcome")
    key = target_key(target_type, target_id)
    if key is None:
        raise ReportRefused("not_found", "No report names this target.", status=404)
    target_type, target_id = key
    with transaction.atomic():
        reports = list(Report.objects.select_for_update(of=("self",)).select_related("reporter")
                       .filter(target_type=target_type, target_id=target_id, status=Report.Status.OPEN,
                               pk__lte=through).order_by("pk"))
        if not reports:
            if not Report.objects.filter(target_type=target_type, target_id=target_id).exists():
                raise ReportRefused("not_found", "No report names this target.", status=404)
            raise ReportRefused("already_closed", "These reports were closed already (another moderator may have "
                                "closed them): reload the page to see the outcome.", status=409)
        if outcome == Report.Outcome.DELISTED:
            dataset = Dataset.objects.filter(pk=int(target_id)).first()
            if dataset is None:
                raise ReportRefused("gone", "The dataset no longer exists.", status=409)
            # The delisting's own entry and the publisher's notice cite the reports' commonest
            # reason and the moderator's statement: it is the decision the publisher may appeal.
            reasons = [r.reason for r in reports]
            catalog_services.delist([dataset], moderator=moderator, reason=max(set(reasons), key=reasons.count),
                                    statement=statement, internal_note=internal_note)
        target = describe(target_type, target_id)
        now = timezone.now()
        Report.objects.filter(pk__in=[r.pk for r in reports]).update(
            status=Report.Status.CLOSED, outcome=outcome, statement=statement, closed_at=now, closed_by=moderator)
        role = role_of(moderator)
        outcome_label = Report.Outcome(outcome).label
        for report in reports:
            details = {"report": report.pk, "outcome": outcome, "source": report.source}
            if target_type == Report.TargetType.DATASET and target.slug:
                details["dataset"] = target.slug
            audit.record(action="report.close", target_type=target_type, target_id=target_id, actor=moderator,
                         actor_role=role, reason=report.reason, statement=statement, internal_note=internal_note,
                         reporter=reporter_text(report), details=details)
            if report.reporter_id:
                notify(report.reporter, kind="report.close",
                       text=f"Your report on {target.label} (#{report.pk}) was closed: {outcome_label}. {statement}",
                       link=target.link)
            elif report.notifier_email:  # a notice: its status page says it; e-mail too when that is on
                email(report.notifier_email, text=f"Your notice about {target.label} (#{report.pk}) was decided: "
                      f"{outcome_label}. {statement}")
        still_open = Report.objects.filter(target_type=target_type, target_id=target_id,
                                           status=Report.Status.OPEN).count()
        for report in reports:
            report.status, report.outcome, report.statement = Report.Status.CLOSED, outcome, statement
            report.closed_at, report.closed_by = now, moderator
    return Closed(reports, still_open, target)


# Reads ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Described(Target):
    slug: str = ""
    publisher: str = ""  # a dataset's publisher's address


def describe(target_type: str, target_id: str) -> Described:
    """A target as the moderators see it, whatever its state now (a dataset since deleted: gone)."""
    return describe_many([(target_type, target_id)])[(target_type, target_id)]


def describe_many(keys) -> dict:
    """describe() of many targets in two queries."""
    keys = list(keys)
    dataset_ids = [int(i) for t, i in keys if t == "dataset" and i.isdigit() and len(i) < 19]
    addresses = [i for t, i in keys if t == "publisher"]
    datasets = {str(d.pk): d for d in Dataset.objects.filter(pk__in=dataset_ids).select_related("owner")}
    users = {u.address: u for u in User.objects.filter(address__in=addresses)}
    described = {}
    for kind, ident in keys:
        if kind == "dataset" and ident in datasets:
            d = datasets[ident]
            base = _dataset_target(d) if d.status in REPORTABLE else Target("dataset", ident, d.title, "", d.status,
                                                                            d.owner_id)
            described[kind, ident] = Described(**base.__dict__, slug=d.slug, publisher=d.owner.address or "")
        elif kind == "publisher" and ident in users:
            described[kind, ident] = Described(**_publisher_target(users[ident]).__dict__)
        else:
            described[kind, ident] = Described(kind, ident, f"{kind} {ident} (no longer exists)", "", "gone")
    return described


def report_groups(*, sort: str = "newest", page: int = 1, size: int = GROUP_PAGE_SIZE):
    """One row per target with open reports: how many, the first and the latest, their reasons;
    newest (latest report first) or count (most reports first). Returns (rows, has_next)."""
    order = ("-open_count", "-latest_at") if sort == "count" else ("-latest_at",)
    groups = (Report.objects.filter(status=Report.Status.OPEN).values("target_type", "target_id")
              .annotate(open_count=Count("id"), latest_at=Max("created_at"), first_at=Min("created_at"),
                        newest_id=Max("id"), notices=Count("id", filter=Q(source=Report.Source.NOTICE)),
                        reasons=ArrayAgg("reason", distinct=True, order_by="reason"))
              .order_by(*order, "target_type", "target_id"))
    start = (page - 1) * size
    rows = list(groups[start:start + size + 1])
    has_next = len(rows) > size
    rows = rows[:size]
    targets = describe_many((r["target_type"], r["target_id"]) for r in rows)
    for row in rows:
        row["target"] = targets[row["target_type"], row["target_id"]]
    return rows, has_next


def target_key(target_type: str, target_id: str) -> tuple[str, str] | None:
    """A group's (type, id) as stored, from an address in the site; None when it cannot name a
    target (so that nothing odd, a NUL or a 10,000-character id, reaches the database)."""
    if target_type == Report.TargetType.DATASET and target_id.isdigit() and len(target_id) < 19:
        return target_type, str(int(target_id))
    if target_type == Report.TargetType.PUBLISHER and is_address(target_id):
        return target_type, to_checksum_address(target_id)
    return None


def group_reports(target_type: str, target_id: str) -> list[Report]:
    """Every report on one target, open ones first, newest first."""
    if target_key(target_type, target_id) is None:
        return []
    target_type, target_id = target_key(target_type, target_id)
    return sorted(Report.objects.filter(target_type=target_type, target_id=target_id)
                  .select_related("reporter", "closed_by"),
                  key=lambda r: (r.status != Report.Status.OPEN, -r.pk))


def open_reports_for(target_type: str, target_id) -> list[Report]:
    """The open reports on a dataset (its id) or a publisher (an address, any case), newest first:
    what the review queue's item page shows beside the item."""
    target_id = str(target_id)
    if target_type == Report.TargetType.PUBLISHER and is_address(target_id):
        target_id = to_checksum_address(target_id)
    return list(Report.objects.filter(target_type=target_type, target_id=target_id, status=Report.Status.OPEN)
                .select_related("reporter").order_by("-pk"))


def notice_by_token(token: str) -> Report | None:
    if not TOKEN_RE.fullmatch(token or ""):
        return None
    return Report.objects.filter(source=Report.Source.NOTICE, token_hash=token_hash(token)).first()


def reports_of(user, *, limit: int = 50) -> list[Report]:
    """A signed-in person's own reports and notices, newest first."""
    return list(Report.objects.filter(reporter=user).order_by("-pk")[:limit])

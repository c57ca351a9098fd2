"""Fetch jobs on the server: made from collection targets, leased to nodes of different wallets and
networks, committed to, revealed, and settled into work credits, community-dataset rows, and
(for a node caught disagreeing with a canary or the server's own fetch) a quality drop and a flag.
docs/rewards-jobs.md tells the whole lifecycle.

The writers here are the only ones of FetchJob, JobAssignment and CollectedRow. Each takes the
job's row lock, so a job's assignments, its phase and its settlement change one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
import ipaddress
import logging
import random

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from . import extracting, fetching
from .models import (
    CollectedRow,
    CollectionTarget,
    Contributor,
    Device,
    FetchJob,
    Flag,
    JobAssignment,
    WorkCredit,
)

logger = logging.getLogger(__name__)

IPV4_RANGE = 24
IPV6_RANGE = 56
MAX_DECLINES_PER_REPLICA = 3  # a job declined this many times per replica fails
_draw = random.SystemRandom()


class JobError(Exception):
    """A node's request about a job that must be refused; `code` is stable, `message` for people."""

    def __init__(self, code: str, message: str, status: int = 409):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


# Networks ---------------------------------------------------------------------------------------


def network_of(ip: str | None) -> str:
    """The range two nodes of one job must not share: the /24 of an IPv4 address, the /56 of an
    IPv6 one (an IPv4-mapped address counts as IPv4). Empty for an address inside
    REWARD_TRUSTED_NETWORKS (the demo's and the tests' nodes all come from 127.0.0.1): those are
    not told apart by network, only by wallet."""
    if not ip:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "unknown"
    address = getattr(address, "ipv4_mapped", None) or address
    for trusted in settings.REWARD_TRUSTED_NETWORKS:
        network = ipaddress.ip_network(trusted, strict=False)
        if address.version == network.version and address in network:
            return ""
    prefix = IPV4_RANGE if address.version == 4 else IPV6_RANGE
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


# Making jobs ------------------------------------------------------------------------------------


def server_fetch(*, url: str, extractor: dict, max_bytes: int, timeout: float) -> list[dict]:
    """The server's own fetch of a job's page, through the same guard and extractor as a node's;
    hosts in REWARD_FETCH_ALLOW (the demo's site) may be local. Raises FetchError, ExtractError."""
    fetched = fetching.fetch(
        url,
        max_bytes=max_bytes,
        timeout=timeout,
        allow=fetching.AllowList(settings.REWARD_FETCH_ALLOW),
    )
    return extracting.extract(extractor, fetched.body, fetched.content_type)


def create_job(
    *,
    target: CollectionTarget,
    now=None,
    canary: bool | None = None,
    server_check: bool | None = None,
) -> FetchJob:
    """One job of `target`, saved (make_due_jobs saves the beat's jobs together)."""
    job = new_job(target=target, now=now, canary=canary, server_check=server_check)
    job.save()
    return job


def new_job(
    *,
    target: CollectionTarget,
    now=None,
    canary: bool | None = None,
    server_check: bool | None = None,
) -> FetchJob:
    """One job of `target`, not yet saved. Whether it is a canary (REWARD_CANARY_RATE) and whether
    the server fetches it when it settles (REWARD_SERVER_CHECK_RATE) are drawn here unless given.
    A canary's answer is fetched now, before any node sees the job; if that fetch fails, the job
    is an ordinary one. Nothing a node is shown differs between them: the URL, the extractor, the
    limits and the deadlines (from `now`, not from when the fetch ended) are the target's."""
    now = now or timezone.now()
    slot = int(now.timestamp()) // max(1, target.every_seconds)
    url = target.url.replace("{slot}", str(slot))
    if canary is None:
        canary = _draw.random() < settings.REWARD_CANARY_RATE
    if server_check is None:
        server_check = not canary and _draw.random() < settings.REWARD_SERVER_CHECK_RATE
    expected = ""
    if canary:
        try:
            expected = extracting.rows_hash(
                server_fetch(
                    url=url,
                    extractor=target.extractor,
                    max_bytes=target.max_bytes,
                    timeout=target.timeout_seconds,
                )
            )
        except (fetching.FetchError, extracting.ExtractError) as exc:
            logger.warning("canary of target %s not made: %s", target.pk, exc)
            canary = False
    reveal_at = now + timedelta(seconds=settings.REWARD_JOB_COMMIT_SECONDS)
    return FetchJob(
        target=target,
        dataset_id=target.dataset_id,
        url=url,
        extractor=target.extractor,
        max_bytes=target.max_bytes,
        timeout_seconds=target.timeout_seconds,
        replicas=settings.REWARD_JOB_REPLICAS,
        is_canary=canary,
        expected_hash=expected,
        server_check=server_check,
        created_at=now,
        reveal_at=reveal_at,
        settle_at=reveal_at + timedelta(seconds=settings.REWARD_JOB_REVEAL_SECONDS),
    )


def make_due_jobs(now=None) -> int:
    """A job of every active target that is due (the beat, rewards.make_jobs); returns how many.
    Each target is claimed under its row lock and its next run moved first, so two beats at once
    make one job. The canaries' answers are fetched first (outside that transaction); then the
    beat's jobs are inserted together, in random order, by one statement: every job of a beat
    becomes visible at the same moment (a canary does not appear later, after the server's fetch)
    and ids say nothing of which jobs are canaries."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            CollectionTarget.objects.select_for_update(skip_locked=True).filter(
                Q(next_run_at__isnull=True) | Q(next_run_at__lte=now), active=True
            )
        )
        for target in due:
            target.next_run_at = now + timedelta(seconds=target.every_seconds)
            target.save(update_fields=["next_run_at"])
    made = [new_job(target=target, now=now) for target in due]
    _draw.shuffle(made)
    FetchJob.objects.bulk_create(made)
    return len(made)


# Leases -----------------------------------------------------------------------------------------


def expire_leases(now=None) -> int:
    """Leases nobody committed to in time end, freeing their place for another node; each is a
    strike against its device (ended_at), unless it was shorter than a full lease (taken near
    the job's reveal_at, e.g. a place someone declined at the last moment): a node given too
    little time to fetch is not struck for it."""
    now = now or timezone.now()
    due = JobAssignment.objects.filter(state=JobAssignment.State.LEASED, lease_expires_at__lte=now)
    full = F("leased_at") + timedelta(seconds=settings.REWARD_JOB_LEASE_SECONDS)
    short = due.filter(lease_expires_at__lt=full).update(state=JobAssignment.State.EXPIRED)
    return short + due.update(state=JobAssignment.State.EXPIRED, ended_at=F("lease_expires_at"))


def _until_under(rows, field: str, allowed: int, window: timedelta):
    """When fewer than `allowed` of `rows` have `field` inside the window: the allowed-th latest
    must leave it first; None when fewer are in it already. `rows` is filtered to the window."""
    if allowed <= 0:
        return None
    times = list(rows.order_by(f"-{field}").values_list(field, flat=True)[:allowed])
    return times[-1] + window if len(times) >= allowed else None


def suspended_until(device: Device, now=None):
    """When the device may lease again, or None when it may now. No new lease while, within the
    last REWARD_JOB_STRIKE_WINDOW seconds,

    - the device has REWARD_JOB_STRIKES leases that ended without a result (expired before a
      commitment, or committed and never revealed) or REWARD_JOB_DECLINES declined ones;
    - its wallet's leases together (every device the wallet had then: a fresh key bound to the
      wallet inherits them) have REWARD_JOB_WALLET_STRIKES strikes or REWARD_JOB_WALLET_DECLINES
      declines;

    nor while, within the last hour, the device has leased REWARD_JOB_LEASES_PER_HOUR jobs or its
    wallet's devices together REWARD_JOB_WALLET_LEASES_PER_HOUR: each lease is a draw, and
    drawing again must cost something. Each lasts until enough of them leave their window."""
    now = now or timezone.now()
    window = timedelta(seconds=settings.REWARD_JOB_STRIKE_WINDOW)
    hour = timedelta(hours=1)
    ended = JobAssignment.objects.filter(ended_at__gt=now - window)
    recent = JobAssignment.objects.filter(leased_at__gt=now - hour)
    checks = [
        (ended.filter(device=device, state__in=JobAssignment.STRIKES), "ended_at",
         settings.REWARD_JOB_STRIKES, window),
        (ended.filter(device=device, state=JobAssignment.State.DECLINED), "ended_at",
         settings.REWARD_JOB_DECLINES, window),
        (recent.filter(device=device), "leased_at", settings.REWARD_JOB_LEASES_PER_HOUR, hour),
    ]
    wallet = device.contributor.wallet if device.contributor_id else None
    if wallet:
        checks += [
            (ended.filter(wallet=wallet, state__in=JobAssignment.STRIKES), "ended_at",
             settings.REWARD_JOB_WALLET_STRIKES, window),
            (ended.filter(wallet=wallet, state=JobAssignment.State.DECLINED), "ended_at",
             settings.REWARD_JOB_WALLET_DECLINES, window),
            (recent.filter(wallet=wallet), "leased_at",
             settings.REWARD_JOB_WALLET_LEASES_PER_HOUR, hour),
        ]
    until = [_until_under(rows, field, allowed, span) for rows, field, allowed, span in checks]
    return max((u for u in until if u is not None), default=None)


#: An assignment is open until it is revealed, declined or expired: leased and not yet committed
#: to, or committed and not yet revealed (a commitment never revealed ends as unrevealed, a strike,
#: when its job settles). Committing at once does not free a place: otherwise a node could lease,
#: commit a dummy hash and lease again without limit, redrawing until it holds a partner's job.
OPEN = (JobAssignment.State.LEASED, JobAssignment.State.COMMITTED)


def _open_leases(**where) -> int:
    return (
        JobAssignment.objects.filter(state__in=OPEN, **where)
        .exclude(job__state=FetchJob.State.SETTLED)  # a job failed by declines ends them all
        .count()
    )


def _leased_since(since, **where) -> int:
    return JobAssignment.objects.filter(leased_at__gt=since, **where).count()


def lease(*, device: Device, ip: str | None, want: int, now=None) -> list[JobAssignment]:
    """Up to `want` new jobs for `device` (at most REWARD_JOB_LEASES_PER_REQUEST, and no more than
    leaves the device under REWARD_JOB_OPEN_LEASES_PER_DEVICE and its wallet under
    REWARD_JOB_OPEN_LEASES_PER_WALLET open assignments (OPEN: leased or committed, not yet
    revealed), the device under REWARD_JOB_LEASES_PER_HOUR leases in the last hour and its wallet
    under REWARD_JOB_WALLET_LEASES_PER_HOUR; none while suspended_until says so),
    each a job whose live assignments have none of the device's wallet or network (network_of),
    fewer than its replicas, and time left to commit.

    The jobs are drawn at random among the eligible ones, never the oldest first: a node cannot
    choose its job, so two colluding nodes asking one after the other do not get the same job
    (the partner's job is one of many). The wallet's row is locked for the request, so the caps
    hold against concurrent requests of its devices."""
    now = now or timezone.now()
    wallet = device.contributor.wallet
    network = network_of(ip)
    expire_leases(now)
    leased = []
    with transaction.atomic():
        Contributor.objects.select_for_update().filter(pk=device.contributor_id).first()
        want = min(
            want,
            settings.REWARD_JOB_LEASES_PER_REQUEST,
            settings.REWARD_JOB_OPEN_LEASES_PER_DEVICE - _open_leases(device=device),
            settings.REWARD_JOB_OPEN_LEASES_PER_WALLET - _open_leases(wallet=wallet),
            settings.REWARD_JOB_LEASES_PER_HOUR
            - _leased_since(now - timedelta(hours=1), device=device),
            settings.REWARD_JOB_WALLET_LEASES_PER_HOUR
            - _leased_since(now - timedelta(hours=1), wallet=wallet),
        )
        if want <= 0 or suspended_until(device, now):
            return leased
        live = JobAssignment.objects.filter(job=OuterRef("pk"), state__in=JobAssignment.LIVE)
        taken = live.order_by().values("job").annotate(n=Count("pk")).values("n")
        eligible = (
            FetchJob.objects.filter(state=FetchJob.State.OPEN, reveal_at__gt=now)
            .exclude(Exists(JobAssignment.objects.filter(job=OuterRef("pk"), device=device)))
            .exclude(Exists(live.filter(wallet=wallet)))
            .alias(taken=Coalesce(Subquery(taken), 0))
            .filter(taken__lt=F("replicas"))
        )
        if network:
            eligible = eligible.exclude(Exists(live.filter(network=network)))
        jobs = list(
            eligible.select_for_update(skip_locked=True, of=("self",)).order_by("?")[:want]
        )
        others = {}  # checked again under the jobs' locks: a concurrent lease may have come first
        for a in JobAssignment.objects.filter(job__in=jobs, state__in=JobAssignment.LIVE).values(
            "job_id", "wallet", "network"
        ):
            others.setdefault(a["job_id"], []).append(a)
        for job in jobs:
            mine = others.get(job.pk, [])
            if len(mine) >= job.replicas or any(o["wallet"] == wallet for o in mine):
                continue
            if network and any(o["network"] == network for o in mine):
                continue
            leased.append(
                JobAssignment.objects.create(
                    job=job,
                    device=device,
                    wallet=wallet,
                    ip=ip,
                    network=network,
                    leased_at=now,
                    lease_expires_at=min(
                        now + timedelta(seconds=settings.REWARD_JOB_LEASE_SECONDS), job.reveal_at
                    ),
                )
            )
    return leased


def phase(assignment: JobAssignment, now=None) -> str:
    """What the node does next: fetch (and commit), wait (for the other commitments), reveal, or
    done (revealed, declined or expired: nothing more)."""
    now = now or timezone.now()
    job = assignment.job
    if assignment.state == JobAssignment.State.LEASED:
        return (
            "fetch"
            if assignment.lease_expires_at > now and job.state == FetchJob.State.OPEN
            else "done"
        )
    if assignment.state == JobAssignment.State.COMMITTED and job.state != FetchJob.State.SETTLED:
        if job.state == FetchJob.State.REVEALING or now >= job.reveal_at:
            return "reveal" if now < job.settle_at else "done"
        return "wait"
    return "done"


def current(device: Device, now=None) -> list[JobAssignment]:
    """The device's assignments that still want something of it (phase fetch, wait or reveal)."""
    now = now or timezone.now()
    mine = (
        JobAssignment.objects.select_related("job")
        .filter(
            device=device, state__in=[JobAssignment.State.LEASED, JobAssignment.State.COMMITTED]
        )
        .exclude(job__state=FetchJob.State.SETTLED)
        .order_by("job_id")
    )
    return [a for a in mine if phase(a, now) != "done"]


# Commit, reveal, decline ------------------------------------------------------------------------


def _locked(device: Device, job_id: int) -> tuple[FetchJob, JobAssignment]:
    job = FetchJob.objects.select_for_update().filter(pk=job_id).first()
    assignment = job and JobAssignment.objects.filter(job=job, device=device).first()
    if assignment is None:
        raise JobError("not_assigned", "This job is not leased to this device.", status=404)
    assignment.job = job
    return job, assignment


def commit(*, device: Device, job_id: int, commit_hash: str, now=None) -> JobAssignment:
    """Record the node's commitment (extracting.commitment of its rows and a secret salt). Once
    every replica has committed, reveals open at once instead of at the job's reveal_at."""
    now = now or timezone.now()
    with transaction.atomic():
        job, assignment = _locked(device, job_id)
        if assignment.state in (JobAssignment.State.COMMITTED, JobAssignment.State.REVEALED):
            raise JobError("already_committed", "This device has committed to this job already.")
        if assignment.state != JobAssignment.State.LEASED or assignment.lease_expires_at <= now:
            raise JobError("lease_expired", "The lease of this job has ended; ask for new jobs.")
        if job.state != FetchJob.State.OPEN or now >= job.reveal_at:
            raise JobError("commit_closed", "This job takes no more commitments.")
        assignment.state, assignment.commit_hash, assignment.committed_at = (
            JobAssignment.State.COMMITTED,
            commit_hash.lower(),
            now,
        )
        assignment.save(update_fields=["state", "commit_hash", "committed_at"])
        committed = job.assignments.filter(state=JobAssignment.State.COMMITTED).count()
        if committed >= job.replicas:
            job.state = FetchJob.State.REVEALING
            job.save(update_fields=["state"])
    return assignment


def _valid_rows(rows) -> list[dict]:
    if not isinstance(rows, list) or len(rows) > extracting.MAX_ROWS:
        raise JobError(
            "invalid_rows", f"rows is a list of at most {extracting.MAX_ROWS} objects.", status=400
        )
    for row in rows:
        if (
            not isinstance(row, dict)
            or len(row) > extracting.MAX_FIELDS
            or any(
                not isinstance(v, (str, int, bool, type(None)))
                or (isinstance(v, str) and len(v) > extracting.MAX_CELL)
                for v in row.values()
            )
        ):
            raise JobError(
                "invalid_rows",
                "Each row is an object of strings, integers, booleans and nulls.",
                status=400,
            )
    try:
        extracting.canonical(rows)
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") JSON allows and UTF-8 does not
        raise JobError("invalid_rows", "The rows hold text that is not valid Unicode.", status=400) from None
    return rows


def reveal(*, device: Device, job_id: int, rows, salt: str, now=None) -> JobAssignment:
    """Record the node's rows once they match its commitment. Reveals open when every replica has
    committed or at the job's reveal_at, whichever comes first. When the last committed node has
    revealed, a job the server need not fetch itself is settled here; the others are settled by
    the beat (settle_due), which fetches outside any transaction."""
    now = now or timezone.now()
    rows = _valid_rows(rows)
    with transaction.atomic():
        job, assignment = _locked(device, job_id)
        if assignment.state == JobAssignment.State.REVEALED:
            raise JobError(
                "already_revealed", "This device has revealed its result for this job already."
            )
        if assignment.state != JobAssignment.State.COMMITTED:
            raise JobError("not_committed", "Commit to a result before revealing it.")
        if job.state == FetchJob.State.SETTLED or now >= job.settle_at:
            raise JobError("reveal_closed", "This job takes no more reveals.")
        if job.state != FetchJob.State.REVEALING and now < job.reveal_at:
            raise JobError(
                "reveal_too_early",
                "Not every node has committed yet: reveal when the job's phase is 'reveal'.",
            )
        expected = extracting.commitment(job_id=job.pk, device=device.address, rows=rows, salt=salt)
        if expected != assignment.commit_hash:
            raise JobError(
                "reveal_mismatch",
                "These rows and salt do not match the commitment this device sent.",
            )
        assignment.state, assignment.rows, assignment.revealed_at = (
            JobAssignment.State.REVEALED,
            rows,
            now,
        )
        assignment.result_hash = extracting.rows_hash(rows)
        assignment.save(update_fields=["state", "rows", "revealed_at", "result_hash"])
        if not job.server_check and _all_revealed(job):
            _settle(job, now)
    return assignment


def _all_revealed(job: FetchJob) -> bool:
    return (
        not job.assignments.filter(state=JobAssignment.State.COMMITTED).exists()
        and job.assignments.filter(state=JobAssignment.State.REVEALED).exists()
    )


def decline(*, device: Device, job_id: int, reason: str, now=None) -> JobAssignment:
    """The node will not do a leased job (robots.txt disallows it, its address is refused, it is
    too large, the node's bandwidth cap): its place goes to another node. A job declined
    MAX_DECLINES_PER_REPLICA times per replica settles as failed."""
    now = now or timezone.now()
    with transaction.atomic():
        job, assignment = _locked(device, job_id)
        if assignment.state != JobAssignment.State.LEASED:
            raise JobError("not_leased", "Only a leased job not yet committed to can be declined.")
        assignment.state, assignment.decline_reason = JobAssignment.State.DECLINED, reason[:300]
        assignment.ended_at = now
        assignment.save(update_fields=["state", "decline_reason", "ended_at"])
        job.declines += 1
        job.save(update_fields=["declines"])
        if (
            job.declines >= job.replicas * MAX_DECLINES_PER_REPLICA
            and job.state == FetchJob.State.OPEN
        ):
            job.state, job.outcome, job.settled_at = (
                FetchJob.State.SETTLED,
                FetchJob.Outcome.FAILED,
                now,
            )
            job.save(update_fields=["state", "outcome", "settled_at"])
            # The other leases of a failed job end now, and no strike is held against them.
            job.assignments.filter(state=JobAssignment.State.LEASED).update(
                state=JobAssignment.State.EXPIRED
            )
    return assignment


# Settling ---------------------------------------------------------------------------------------


@dataclass
class Settled:
    outcome: str
    agreeing: list
    disagreeing: list


def _settle(job: FetchJob, now) -> Settled:
    """Judge the revealed results of `job` (locked) and write what follows. With a reference (a
    canary's known answer, or the server's fetch), results equal to it are accepted, even one
    alone, and each other result opens a flag and lowers its device's quality. Without one, the
    results of the largest group of at least two equal ones, larger than every other, are
    accepted; the rest earn nothing but are not flagged (nothing says which side is wrong)."""
    revealed = list(
        job.assignments.filter(state=JobAssignment.State.REVEALED).select_related("device")
    )
    reference, flag_kind = "", ""
    if job.is_canary and job.expected_hash:
        reference, flag_kind = job.expected_hash, Flag.Kind.CANARY
    elif job.server_check and job.server_hash:
        reference, flag_kind = job.server_hash, Flag.Kind.SERVER
    if reference:
        agreeing = [a for a in revealed if a.result_hash == reference]
        disagreeing = [a for a in revealed if a.result_hash != reference]
        for a in disagreeing:
            _penalise(a, job, reference, flag_kind)
        outcome = (
            FetchJob.Outcome.ACCEPTED
            if agreeing
            else (FetchJob.Outcome.DISAGREED if revealed else FetchJob.Outcome.UNVERIFIED)
        )
    else:
        groups = {}
        for a in revealed:
            groups.setdefault(a.result_hash, []).append(a)
        sizes = sorted((len(g) for g in groups.values()), reverse=True)
        agreeing = []
        if sizes and sizes[0] >= 2 and (len(sizes) == 1 or sizes[0] > sizes[1]):
            agreeing = max(groups.values(), key=len)
        disagreeing = [a for a in revealed if a not in agreeing]
        outcome = (
            FetchJob.Outcome.ACCEPTED
            if agreeing
            else FetchJob.Outcome.UNVERIFIED
            if len(revealed) < 2
            else FetchJob.Outcome.DISAGREED
        )
    for a in revealed:
        a.agreed = a in agreeing
    JobAssignment.objects.bulk_update(revealed, ["agreed"])
    # A commitment never revealed is a strike against its device (suspended_until).
    job.assignments.filter(state=JobAssignment.State.COMMITTED).update(
        state=JobAssignment.State.UNREVEALED, ended_at=now
    )
    if agreeing:
        WorkCredit.objects.bulk_create(
            [
                WorkCredit(
                    device=a.device,
                    wallet=a.wallet,
                    kind=WorkCredit.Kind.JOB,
                    points=settings.REWARD_JOB_POINTS,
                    quality_bps=a.device.quality_bps,  # the quality the work is earned at
                    ref=f"job:{job.pk}",
                    earned_at=now,
                )
                for a in agreeing
            ],
            ignore_conflicts=True,
        )
        _store_rows(job, agreeing[0].rows, sorted({a.wallet for a in agreeing}), now)
        job.accepted_hash = agreeing[0].result_hash
    job.state, job.outcome, job.settled_at = FetchJob.State.SETTLED, outcome, now
    job.save(update_fields=["state", "outcome", "settled_at", "accepted_hash"])
    return Settled(outcome, agreeing, disagreeing)


def _store_rows(job: FetchJob, rows: list[dict], wallets: list[str], now) -> None:
    """Each row once per dataset (by content hash): a row collected before keeps its first
    collectors, so collecting an unchanged page again adds no rows and no shares."""
    unique = {}
    for row in rows:
        unique.setdefault(extracting.row_hash(row), row)
    CollectedRow.objects.bulk_create(
        [
            CollectedRow(
                dataset_id=job.dataset_id,
                content_hash=h,
                data=row,
                job=job,
                wallets=wallets,
                collected_at=now,
            )
            for h, row in unique.items()
        ],
        ignore_conflicts=True,
    )


def _penalise(assignment: JobAssignment, job: FetchJob, reference: str, kind: str) -> None:
    # What the flag takes off is kept on it: clearing the flag gives exactly that back.
    quality = Device.objects.select_for_update().values_list("quality_bps", flat=True).get(pk=assignment.device_id)
    penalty = min(settings.REWARD_QUALITY_PENALTY_BPS, quality)
    Device.objects.filter(pk=assignment.device_id).update(
        quality_bps=Greatest(F("quality_bps") - Value(penalty), Value(0))
    )
    Flag.objects.create(
        quality_penalty_bps=penalty,
        kind=kind,
        wallet=assignment.wallet,
        device=assignment.device,
        evidence={
            "job": job.pk,
            "url": job.url,
            "expected_hash": reference,
            "got_hash": assignment.result_hash,
            "got_rows": (assignment.rows or [])[:5],
        },
    )


def _due(now):
    """Jobs to settle now: past settle_at, or whose reveals are all in (every committed node has
    revealed and no more commitments can come)."""
    candidates = (
        FetchJob.objects.exclude(state=FetchJob.State.SETTLED)
        .filter(Q(settle_at__lte=now) | Q(state=FetchJob.State.REVEALING) | Q(reveal_at__lte=now))
        .order_by("pk")
    )
    return [job for job in candidates[:500] if job.settle_at <= now or _all_revealed(job)]


def settle_due(now=None) -> int:
    """The beat (rewards.settle_jobs): expire leases, fetch what the server checks, settle what is
    due; returns how many jobs it settled."""
    now = now or timezone.now()
    expire_leases(now)
    settled = 0
    for job in _due(now):
        if job.server_check and not (job.server_hash or job.server_error):
            try:
                rows = server_fetch(
                    url=job.url,
                    extractor=job.extractor,
                    max_bytes=job.max_bytes,
                    timeout=job.timeout_seconds,
                )
                job.server_hash = extracting.rows_hash(rows)
            except (fetching.FetchError, extracting.ExtractError) as exc:
                job.server_error = str(exc)[:300]  # no reference: settled on the nodes' agreement
            FetchJob.objects.filter(pk=job.pk).update(
                server_hash=job.server_hash, server_error=job.server_error
            )
        with transaction.atomic():
            locked = FetchJob.objects.select_for_update().get(pk=job.pk)
            if locked.state != FetchJob.State.SETTLED:
                _settle(locked, now)
                settled += 1
    return settled


# Reads ------------------------------------------------------------------------------------------


def row_counts(dataset_id: int, *, version_id: int | None = None) -> dict[str, int]:
    """{wallet: rows} of a community dataset's collected rows that no version has taken yet (or
    that `version_id` took): what CommunityShare records when a version is cut."""
    from django.db import connection

    condition = "version_id = %s" if version_id is not None else "version_id IS NULL"
    params = [dataset_id] + ([version_id] if version_id is not None else [])
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT w, count(*) FROM rewards_collectedrow, unnest(wallets) AS w "  # noqa: S608
            f"WHERE dataset_id = %s AND {condition} GROUP BY w",
            params,
        )
        return dict(cursor.fetchall())

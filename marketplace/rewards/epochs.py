"""The epoch close: a state machine that beat runs every few seconds (`rewards.close_epochs`).

    open -> scored -> queued -> proposed -> matured

- **open**: the current window; rows for windows that have begun are created as time passes.
- **scored** (one transaction, once the window has ended, the previous epoch is scored and the
  latest earlier root is final: matured, or revoked, so the tree builds on a known base): the
  pool's parts, the points, the amounts, the held amounts, the leaves (every wallet's cumulative
  amount), the tree's nodes and root are computed from the database and stored together. This
  is the only step that decides amounts. Heartbeats count by the server's time, so they do not
  change for a past window; work credits, community revenue and settled held amounts are
  claimed by the step (each row marked with the epoch that counted it, in the same
  transaction), so a step killed midway rolls back its claims with everything else, and the
  same rows scored again give the same root. Only one root is ever stored for an epoch.
- **queued** (once every earlier epoch is proposed): the treasury's transfer of the emission,
  when REWARD_TREASURY_KEY is set (tied to one nonce of the treasury: signed and recorded before
  it is broadcast, re-sent and repriced only at that nonce, so at most one transfer is ever
  mined), and an `OperatorAction(propose_root)` with the stored
  epoch, root and total. The operator sender checks the distributor's last epoch and balance
  before signing (an unfunded root waits, pending, with the reason) and confirms the action from
  the `RootProposed` the indexer stores. A failed action is queued again with the same root.
- **proposed**: set by the indexer's handler when `RootProposed` with this epoch and root is
  stored (`handlers.py`), with its `validAt`.
- **matured**: once the time of the last block the indexer stored passes `validAt` (so a
  `RootRevoked` mined before it is always stored first). Never an epoch whose root was revoked
  and whose earnings the next epoch counted again (`revoked_back_in`, see `score`), even if a
  reorganisation took its RootRevoked: the close then revokes it again (`revoke_again`).

Every step runs under one PostgreSQL advisory lock (transaction-scoped), so two workers running
the close at once do each step once. An epoch that adds nothing to anyone's cumulative amount
proposes no root (the previous root stands) and goes straight to matured.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone
import io
import logging
import time

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import to_checksum_address
from hexbytes import HexBytes
import requests
from web3.exceptions import TransactionNotFound, Web3RPCError

from marketplace.chain import sender
from marketplace.chain.client import WrongChain, check_signer
from marketplace.chain.models import OperatorAction
from marketplace.chain.services import deployed_address

from . import scoring
from .merkle import MerkleTree
from .models import (
    CommunityRevenue,
    CommunityShare,
    Contributor,
    Device,
    Epoch,
    EpochTree,
    Flag,
    HeldAmount,
    WorkCredit,
)

logger = logging.getLogger(__name__)

LOCK_NAME = "rewards.epochs"
RETRY_AFTER = timedelta(seconds=30)  # before a failed proposeRoot is queued again
FUNDING_WAIT = 5  # seconds a run waits for the treasury's transfer to be mined
State = Epoch.State
ActionStatus = OperatorAction.Status


def epoch_seconds() -> int:
    return int(settings.REWARD_EPOCH_SECONDS)


def _lock() -> bool:
    """This transaction's hold on the close (released at commit or rollback)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", [LOCK_NAME])
        return cursor.fetchone()[0]


@dataclass
class CloseReport:
    skipped: str = ""
    opened: list = field(default_factory=list)
    scored: list = field(default_factory=list)
    queued: list = field(default_factory=list)
    matured: list = field(default_factory=list)
    waiting: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Opening


def open_epochs(now: datetime | None = None) -> list[int]:
    """Create the rows of every window that has begun (the first epoch's window is the one that
    holds `now`, aligned to REWARD_EPOCH_SECONDS). Returns the numbers created."""
    now = now or timezone.now()
    length = timedelta(seconds=epoch_seconds())
    created = []
    with transaction.atomic():
        if not _lock():
            return created
        last = Epoch.objects.order_by("-number").first()
        if last is None:
            start = datetime.fromtimestamp(
                int(now.timestamp()) // epoch_seconds() * epoch_seconds(), tz=dt_timezone.utc
            )
            last = Epoch.objects.create(number=1, starts_at=start, ends_at=start + length)
            created.append(1)
        while last.ends_at <= now:
            last = Epoch.objects.create(
                number=last.number + 1, starts_at=last.ends_at, ends_at=last.ends_at + length
            )
            created.append(last.number)
    return created


# ---------------------------------------------------------------------------------------------
# Scoring


def _rows(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


#: A device's bindings over time, from its binding history: (device, wallet or NULL when unbound,
#: since, until). Uptime counts for the wallet the device was bound to when each heartbeat came.
#: The changes are taken in the order the database wrote them (their ids: each change of a device
#: is written under its row lock), never by their times, and a span starts at the latest time
#: written so far, so spans never overlap even if the clock that stamped them went back. Before its
#: first change a device held the wallet that change took it from (an unbind's wallet, a rebind's
#: previous one): a device made by hand earns for that wallet until then.
_SPANS = """
    WITH changes AS (
        SELECT device_id, id, action, wallet, previous_wallet,
               max(created_at) OVER (PARTITION BY device_id ORDER BY id) AS since
        FROM rewards_bindingevent
        WHERE action IN ('bound', 'rebound', 'unbound')),
    spans AS (
        SELECT device_id,
               CASE WHEN action IN ('bound', 'rebound') THEN wallet END AS wallet,
               since,
               lead(since) OVER (PARTITION BY device_id ORDER BY id) AS until
        FROM changes
        UNION ALL
        (SELECT DISTINCT ON (device_id) device_id,
                CASE action WHEN 'unbound' THEN wallet WHEN 'rebound' THEN NULLIF(previous_wallet, '') END,
                '-infinity'::timestamptz,
                since
         FROM changes ORDER BY device_id, id))
    SELECT device_id, wallet, since, until FROM spans WHERE since < %(end)s
"""


#: The network a heartbeat came from, as the scoring's rules count it: the /24 of an IPv4 address
#: (an IPv4-mapped IPv6 address counts as IPv4), the /56 of an IPv6 one; NULL for no address or
#: one inside REWARD_TRUSTED_NETWORKS (exempt).
_NETWORK = """
    CASE WHEN addr IS NULL OR addr <<= ANY(%(trusted)s::inet[]) THEN NULL
         ELSE network(set_masklen(addr, CASE WHEN family(addr) = 4 THEN 24 ELSE 56 END))::text END
"""
_UNMAPPED = """
    CASE WHEN family(ip) = 6 AND ip << '::ffff:0.0.0.0/96'::inet
         THEN '0.0.0.0'::inet + (ip - '::ffff:0.0.0.0'::inet) ELSE ip END
"""


def _uptime(window: dict, weights: scoring.Weights) -> dict[tuple[int, str], tuple[int, str]]:
    """{(device, wallet): (verified slots, most frequent ip)} of the window: each probe-answered
    heartbeat counts for the wallet its device was bound to when the server received it (a device
    moved to another wallet mid-epoch splits its uptime; one unbound earns nothing). A device
    with no binding history (made by hand, by the admin) counts for its current wallet; one made
    by hand and changed later, for the wallet its first change took it from until then.

    A slot is one wallet's: the wallet the device was bound to at its first probe-answered
    heartbeat in the slot (a device moved mid-slot must not earn that slot for both wallets). Of
    the devices whose first probe-answered heartbeat of a slot came from one network (/24, /56;
    trusted networks exempt), only REWARD_DEVICES_PER_NETWORK earn the slot: the first by a keyed
    hash of (slot, device id), md5 of a key derived from SECRET_KEY, the slot and the device id
    (ties by device id), a draw per slot that nobody without the key can predict or steer, where
    ordering by arrival let a farm that sent its heartbeats right at each slot's start take every
    place of a network shared with honest devices. A farm of device keys behind one address range
    earns at most the uptime of that many devices. The rule reads stored rows and the key only, so
    a rerun agrees (as long as SECRET_KEY is the same)."""
    import hashlib
    import hmac

    params = {
        **window,
        "trusted": [str(n) for n in weights.trusted],
        "cap": weights.devices_per_network,
        "rank_key": hmac.new(
            settings.SECRET_KEY.encode(), b"rewards uptime rank", hashlib.sha256
        ).hexdigest(),
    }
    rows = _rows(
        f"""WITH spans AS (
                {_SPANS}
                UNION ALL
                SELECT d.id, c.wallet, '-infinity'::timestamptz, NULL::timestamptz
                FROM rewards_device d JOIN rewards_contributor c ON c.id = d.contributor_id
                WHERE NOT EXISTS (SELECT 1 FROM rewards_bindingevent e WHERE e.device_id = d.id
                                  AND e.action IN ('bound', 'rebound', 'unbound'))),
            beats AS (
                SELECT h.device_id, s.wallet, h.slot, h.probe_ok, h.ip, h.received_at
                FROM rewards_heartbeat h
                JOIN spans s ON s.device_id = h.device_id AND h.received_at >= s.since
                            AND (s.until IS NULL OR h.received_at < s.until)
                WHERE h.received_at >= %(start)s AND h.received_at < %(end)s AND s.wallet IS NOT NULL),
            firsts AS (
                SELECT DISTINCT ON (device_id, slot) device_id, slot, wallet, received_at,
                       {_UNMAPPED} AS addr
                FROM beats WHERE probe_ok
                ORDER BY device_id, slot, received_at),
            networked AS (SELECT device_id, slot, wallet, received_at, {_NETWORK} AS network FROM firsts),
            ranked AS (
                SELECT device_id, wallet, network,
                       row_number() OVER (
                           PARTITION BY slot, network
                           ORDER BY md5(%(rank_key)s || ':' || slot::text || ':' || device_id::text),
                                    device_id) AS place
                FROM networked),
            counted AS (
                SELECT device_id, wallet,
                       count(*) FILTER (WHERE network IS NULL OR %(cap)s <= 0 OR place <= %(cap)s) AS slots
                FROM ranked GROUP BY device_id, wallet),
            seen AS (
                SELECT device_id, wallet, mode() WITHIN GROUP (ORDER BY ip) AS ip
                FROM beats GROUP BY device_id, wallet)
            SELECT s.device_id, s.wallet, coalesce(c.slots, 0), s.ip
            FROM seen s LEFT JOIN counted c ON c.device_id = s.device_id AND c.wallet = s.wallet""",
        params,
    )
    return {(device, wallet): (slots, ip) for device, wallet, slots, ip in rows}


def _quality_at(device_ids: list[int], at: datetime) -> dict[int, int]:
    """Each device's quality at `at`: its quality now, with what flags changed since undone
    (a flag raised since took its `quality_penalty_bps` off; a flag cleared since gave it back).
    Flags are the only writers of quality, so the answer does not depend on when scoring runs."""
    if not device_ids:
        return {}
    rows = _rows(
        """SELECT d.id, d.quality_bps
                  + COALESCE(SUM(f.quality_penalty_bps) FILTER (WHERE f.created_at >= %(at)s), 0)
                  - COALESCE(SUM(f.quality_penalty_bps) FILTER (
                        WHERE f.status = 'cleared' AND f.decided_at >= %(at)s), 0)
           FROM rewards_device d
           LEFT JOIN rewards_flag f ON f.device_id = d.id AND f.quality_penalty_bps > 0
           WHERE d.id = ANY(%(ids)s) GROUP BY d.id""",
        {"ids": device_ids, "at": at},
    )
    return {device: min(max(int(quality), 0), scoring.QUALITY_SCALE) for device, quality in rows}


def _device_work(epoch: Epoch, weights: scoring.Weights) -> list[scoring.DeviceWork]:
    """Each device's verified uptime slots (probe-answered heartbeats received in the window, one
    per slot, for the wallet it was bound to then) and verified job points (the credits this
    epoch claims: written since the last scoring and earned before the window's end, per wallet
    they were earned for), with the quality and the network it mostly connected from. Job points
    weigh by the quality each credit was earned at; uptime by the device's quality at the
    window's end."""
    window = {"start": epoch.starts_at, "end": epoch.ends_at, "epoch": epoch.pk}
    uptime = _uptime(window, weights)
    # Credits count by insertion: this epoch claims every credit no epoch has counted that was
    # earned before its end (one written late, after its window's epoch was scored, is paid now),
    # and sums what it claimed (a rerun of the step sums the same rows).
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE rewards_workcredit SET epoch_id = %(epoch)s WHERE epoch_id IS NULL AND earned_at < %(end)s",
            window,
        )
    # Each credit weighs by the quality it was earned at (a later flag or clear does not change it).
    jobs = _rows(
        """SELECT device_id, wallet, quality_bps, SUM(points) FROM rewards_workcredit
           WHERE epoch_id = %(epoch)s GROUP BY device_id, wallet, quality_bps
           ORDER BY device_id, wallet, quality_bps""",
        window,
    )
    ids = {device for device, _ in uptime} | {device for device, _, _, _ in jobs}
    devices = {
        d["id"]: d
        for d in Device.objects.filter(id__in=ids).values("id", "quality_bps", "last_ip")
    }
    quality_at_end = _quality_at(sorted(ids), epoch.ends_at)
    ips = {device: ip for (device, _), (_, ip) in sorted(uptime.items()) if ip}
    works = []
    for (device_id, wallet), (slots, ip) in sorted(uptime.items()):
        device = devices.get(device_id)
        if device is None or not slots:
            continue
        works.append(
            scoring.DeviceWork(
                device_id,
                wallet,
                quality_at_end[device_id],
                uptime_slots=slots,
                network=scoring.network_of(ip or device["last_ip"], weights.trusted),
            )
        )
    for device_id, wallet, quality, points in jobs:
        device = devices.get(device_id)
        if device is None:
            continue
        ip = ips.get(device_id) or device["last_ip"]
        works.append(
            scoring.DeviceWork(
                device_id,
                wallet,
                quality,
                job_points=int(points),
                network=scoring.network_of(ip, weights.trusted),
            )
        )
    return works


def _referrals(wallets: set[str], works: list[scoring.DeviceWork]) -> scoring.Referrals:
    """Referrers (two tiers) of the wallets that scored, when each referee first earned verified
    work, and the networks and devices each of those wallets used (for voiding)."""
    referrer = {}
    frontier = set(wallets)
    for _tier in range(2):
        found = dict(
            Contributor.objects.filter(wallet__in=frontier, referred_by__isnull=False).values_list(
                "wallet", "referred_by__wallet"
            )
        )
        referrer.update(found)
        frontier = set(found.values()) - set(referrer)
    everyone = set(wallets) | set(referrer.values())
    first = (
        dict(
            _rows(
                """SELECT wallet, MIN(earned_at) FROM rewards_workcredit WHERE wallet = ANY(%s)
                          GROUP BY wallet""",
                [sorted(wallets)],
            )
        )
        if wallets
        else {}
    )
    networks, devices = defaultdict(set), defaultdict(set)
    for w in works:
        if w.network:
            networks[w.wallet].add(w.network)
    for device_id, wallet in (
        _rows(
            """SELECT DISTINCT device_id, wallet FROM rewards_workcredit
                                      WHERE wallet = ANY(%s)""",
            [sorted(everyone)],
        )
        if everyone
        else []
    ):
        devices[wallet].add(device_id)
    for device_id, wallet, ip in Device.objects.filter(
        contributor__wallet__in=everyone
    ).values_list("id", "contributor__wallet", "last_ip"):
        devices[wallet].add(device_id)
        network = scoring.network_of(ip, scoring.Weights.from_settings().trusted)
        if network:
            networks[wallet].add(network)
    return scoring.Referrals(
        referrer,
        first,
        {w: frozenset(n) for w, n in networks.items()},
        {w: frozenset(d) for w, d in devices.items()},
    )


class ScoringError(Exception):
    """An epoch's amounts do not add up: nothing is stored (the scoring transaction rolls back)."""


def _previous_leaves(epoch: Epoch) -> tuple[Epoch | None, dict[str, int]]:
    """The latest earlier epoch with a tree whose root was not revoked, and its cumulative amounts:
    what the new tree builds on. A revoked root never became claimable (the distributor revokes
    only a pending root), so nothing was claimed against it, and the root before it holds every
    amount claimed so far; what the revoked root counted is counted again (`score`)."""
    previous = (
        Epoch.objects.filter(number__lt=epoch.number, leaves__gt=0)
        .exclude(root="")
        .exclude(root_status=Epoch.RootStatus.REVOKED)
        # Its amounts went back to a pool already (even if a chain reset or a reorganisation has
        # since taken the RootRevoked event): never built on again.
        .exclude(revoked_back_in__isnull=False)
        .order_by("-number")
        .first()
    )
    if previous is None:
        return None, {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT wallet, cumulative FROM rewards_epochleaf WHERE epoch_id = %s", [previous.pk]
        )
        return previous, {wallet: int(cumulative) for wallet, cumulative in cursor}


def _copy(table: str, columns: tuple, rows) -> None:
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def score(epoch: Epoch) -> None:
    """The `scored` step for `epoch` (locked by the caller's transaction): see the module."""
    started = time.monotonic()
    weights = scoring.Weights.from_settings()
    before = Epoch.objects.filter(number__lt=epoch.number).order_by("-number").first()
    carried = int(before.carried_out) if before else 0

    # Revoked roots (the new tree builds on the last root that was not revoked, _previous_leaves):
    # what each counted is counted again here, once (`revoked_back_in`): its work credits and its
    # community revenue rows are unclaimed (both were earned or stored before its end, so this
    # epoch claims them), the held amounts it released are held again (settled below), and the
    # held amounts it recorded never settle (what they came from is earned again here). The rest
    # of what it paid and held, its pool's own money (emission, carried, returned, revoked, spent
    # on uptime and job points), goes back to this pool: `revoked_in` = paid + held − revenue −
    # released (below 0 only when it carried out part of the revenue counted again here, which
    # its `carried_out` brings a second time).
    # Only a root newer than the tree this one builds on: one revoked after a later tree was built
    # on it (a RootRevoked a deep reorganisation brought in) has its amounts in that tree and every
    # later one, and counting them again would pay them twice; the operator is told to act.
    previous, cumulative = _previous_leaves(epoch)
    base = previous.number if previous is not None else 0
    revoked = list(
        Epoch.objects.select_for_update()
        .filter(number__lt=epoch.number, number__gt=base, root_status=Epoch.RootStatus.REVOKED,
                revoked_back_in__isnull=True)
        .exclude(root="")
        .order_by("number")
    )
    for late in Epoch.objects.filter(number__lte=base, root_status=Epoch.RootStatus.REVOKED,
                                     revoked_back_in__isnull=True).exclude(root=""):
        logger.error(
            "epoch %s's root %s is revoked on-chain, but epoch %s's tree already built on it: its amounts stay in "
            "the later trees and are not counted again; if it must not pay, suspend the distributor's root "
            "(suspendCurrentRoot) and correct by hand", late.number, late.root, base)
    revoked_in = 0
    for gone in revoked:
        WorkCredit.objects.filter(epoch=gone).update(epoch=None)
        CommunityRevenue.objects.filter(counted_in=gone).update(counted_in=None)
        HeldAmount.objects.filter(settled_in=gone, status=HeldAmount.Status.RELEASED).update(
            status=HeldAmount.Status.HELD, settled_in=None)
        HeldAmount.objects.filter(epoch=gone, status=HeldAmount.Status.HELD).update(
            status=HeldAmount.Status.RETURNED, settled_in=epoch)
        revoked_in += int(gone.paid) + int(gone.held) - int(gone.revenue_in) - int(gone.released_in)
    Epoch.objects.filter(pk__in=[e.pk for e in revoked]).update(revoked_back_in=epoch)

    # Flags: open ones hold what their wallet earns; decided ones settle earlier held amounts.
    open_flags = {}
    for flag in Flag.objects.filter(status=Flag.Status.OPEN).order_by("created_at", "id"):
        open_flags.setdefault(flag.wallet, flag)
    released, returned = defaultdict(int), 0
    settling = list(
        HeldAmount.objects.select_for_update()
        .filter(status=HeldAmount.Status.HELD)
        .exclude(flag__status=Flag.Status.OPEN)
        # A wallet with another flag still open keeps everything held until that one is decided.
        .exclude(wallet__in=list(open_flags))
        .select_related("flag", "epoch")
        .order_by("id")
    )
    # A held amount goes back to the pool if any flag of its wallet raised by the time it was held
    # (its epoch's scoring) was confirmed (not only the flag it was recorded under): clearing a benign flag never pays
    # what was earned while a confirmed one was open.
    confirmed = defaultdict(list)
    for wallet_, raised in Flag.objects.filter(
            status=Flag.Status.CONFIRMED, wallet__in={h.wallet for h in settling}).values_list("wallet", "created_at"):
        confirmed[wallet_].append(raised)
    for held in settling:
        held_at = held.epoch.scored_at or held.epoch.ends_at
        caught = any(raised <= held_at for raised in confirmed[held.wallet])
        if held.flag.status == Flag.Status.CLEARED and not caught:
            released[held.wallet] += int(held.amount)
            held.status = HeldAmount.Status.RELEASED
        else:
            returned += int(held.amount)
            held.status = HeldAmount.Status.RETURNED
        held.settled_in = epoch
    HeldAmount.objects.bulk_update(settling, ["status", "settled_in"])

    # Community revenue indexed before the window ended and not counted yet.
    revenue_share, revenue_in, revenue_pool = defaultdict(int), 0, 0
    sales = list(
        CommunityRevenue.objects.select_for_update()
        .filter(counted_in__isnull=True, created_at__lt=epoch.ends_at)
        .order_by("block_number", "log_index")
    )
    shares_of = defaultdict(dict)
    for version_id, wallet, rows in CommunityShare.objects.filter(
        version_id__in={s.version_id for s in sales if s.version_id}
    ).values_list("version_id", "wallet", "rows"):
        shares_of[version_id][wallet] = rows
    for sale in sales:
        revenue_in += int(sale.amount)
        paid, rest = scoring.share_revenue(
            int(sale.amount), shares_of.get(sale.version_id, {}), sale.buyer
        )
        for wallet, value in paid.items():
            revenue_share[wallet] += value
        revenue_pool += rest
    CommunityRevenue.objects.filter(pk__in=[s.pk for s in sales]).update(counted_in=epoch)

    # Points and the pool's amounts.
    works = _device_work(epoch, weights)
    scores = scoring.score_wallets(works, weights)
    bonuses = scoring.referral_bonuses(
        scores, _referrals(set(scores), works), weights, epoch.starts_at
    )
    points = {wallet: s.points for wallet, s in scores.items()}
    for wallet, bonus in bonuses.items():
        points[wallet] = points.get(wallet, 0) + bonus
    emission = int(settings.REWARD_EMISSION_PER_EPOCH)
    pool_for_points = emission + carried + returned + revenue_pool + revoked_in
    if pool_for_points < 0:  # never stored: the transaction rolls back and the close says why
        raise ScoringError(f"epoch {epoch.number}'s pool would be {pool_for_points} (revoked_in {revoked_in})")
    amounts, remainder = scoring.allocate(pool_for_points, points)

    # Per wallet: paid into the tree, or held.
    wallets = sorted(set(points) | set(revenue_share) | set(released))
    rows, held_rows, paid_total, held_total = [], [], 0, 0
    for wallet in wallets:
        earned = amounts.get(wallet, 0) + revenue_share.get(wallet, 0)
        credit = released.get(wallet, 0)
        flag = open_flags.get(wallet)
        held = earned if flag is not None else 0
        if held:
            held_rows.append(
                HeldAmount(
                    epoch=epoch,
                    wallet=wallet,
                    flag=flag,
                    amount=held,
                    reason=f"flag #{flag.pk}: {flag.get_kind_display()}"[:200],
                )
            )
        paid = earned - held + credit
        if paid:
            cumulative[wallet] = cumulative.get(wallet, 0) + paid
        paid_total += paid
        held_total += held
        s = scores.get(wallet)
        rows.append(
            (
                epoch.pk,
                wallet,
                s.uptime_slots if s else 0,
                s.job_points if s else 0,
                bonuses.get(wallet, 0),
                points.get(wallet, 0),
                amounts.get(wallet, 0),
                revenue_share.get(wallet, 0),
                credit,
                held,
            )
        )
    _copy(
        "rewards_epochamount",
        (
            "epoch_id",
            "wallet",
            "uptime_slots",
            "job_points",
            "referral_points",
            "points",
            "amount",
            "revenue",
            "released",
            "held",
        ),
        rows,
    )
    HeldAmount.objects.bulk_create(held_rows)

    epoch.emission, epoch.carried_in, epoch.returned_in = emission, carried, returned
    epoch.revenue_in, epoch.released_in = revenue_in, sum(released.values())
    epoch.revoked_in = revoked_in
    epoch.pool = emission + carried + returned + revenue_in + epoch.released_in + revoked_in
    epoch.paid, epoch.held, epoch.carried_out = paid_total, held_total, remainder
    epoch.points = sum(points.values())
    if epoch.paid + epoch.held + epoch.carried_out != epoch.pool:  # checked also under python -O
        raise ScoringError(f"epoch {epoch.number} would pay {epoch.paid + epoch.held + epoch.carried_out}, its pool "
                           f"is {epoch.pool}")

    # The tree: every wallet's cumulative amount (none ever decreases; a wallet keeps its leaf).
    if paid_total and cumulative:
        store_tree(epoch, cumulative)
    elif previous is not None:
        epoch.root, epoch.total, epoch.leaves = (
            "",
            previous.total,
            0,
        )  # nothing new: the previous root stands
    epoch.state = State.SCORED if epoch.root else State.MATURED
    epoch.scored_at, epoch.waiting = timezone.now(), ""
    epoch.score_seconds = time.monotonic() - started
    epoch.save()


def store_tree(epoch: Epoch, cumulative: dict[str, int]) -> None:
    """Build the tree of `cumulative` and store its leaves (COPY) and nodes (one bytea)."""
    entries = sorted(cumulative.items())
    # Lower case: the leaf is the same, and the tree skips re-checking a million EIP-55 checksums
    # of addresses this database wrote.
    tree, positions = MerkleTree.with_positions(
        [(wallet.lower(), amount) for wallet, amount in entries]
    )
    buffer = io.StringIO()
    for (wallet, amount), node in zip(entries, positions):
        buffer.write(f"{epoch.pk}\t{wallet}\t{amount}\t{node}\n")
    buffer.seek(0)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            "COPY rewards_epochleaf (epoch_id, wallet, cumulative, node) FROM STDIN"
        ) as copy,
    ):
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE rewards_epochleaf")  # fresh statistics for the proofs' lookups
    EpochTree.objects.create(epoch=epoch, nodes=bytes(tree.nodes))
    epoch.root, epoch.total, epoch.leaves = tree.root_hex, sum(cumulative.values()), len(tree)


def score_next() -> int | None:
    """Score the oldest ended, unscored epoch, if every earlier one is scored and the latest
    earlier root is final: matured (no longer revocable) or revoked, so the tree builds on a root
    whose fate is known (one transaction). Returns its number. An epoch has ended
    REWARD_SCORE_GRACE seconds after its window: a heartbeat stamped inside it may still be
    committing then."""
    with transaction.atomic():
        if not _lock():
            return None
        epoch = (
            Epoch.objects.select_for_update()
            .filter(state=State.OPEN,
                    ends_at__lte=timezone.now() - timedelta(seconds=settings.REWARD_SCORE_GRACE))
            .order_by("number")
            .first()
        )
        if epoch is None:
            return None
        last = Epoch.objects.filter(number__lt=epoch.number).exclude(root="").order_by("-number").first()
        final = last is None or (
            last.state == State.MATURED
            or last.root_status == Epoch.RootStatus.REVOKED
            or last.revoked_back_in_id is not None
        )
        if not final:
            waiting = f"scored once epoch {last.number}'s root has matured or was revoked"
            if epoch.waiting != waiting:
                Epoch.objects.filter(pk=epoch.pk).update(waiting=waiting, updated_at=timezone.now())
            return None
        try:
            with transaction.atomic():  # a savepoint: nothing of a refused scoring is stored
                score(epoch)
        except ScoringError as error:
            logger.error("epoch %s not scored: %s", epoch.number, error)
            Epoch.objects.filter(pk=epoch.pk).update(waiting=f"not scored: {error}"[:500], updated_at=timezone.now())
            return None
        return epoch.number


# ---------------------------------------------------------------------------------------------
# Funding and queueing


def treasury_account():
    key = settings.REWARD_TREASURY_KEY
    return Account.from_key(key) if key else None


def fund(epoch: Epoch, w3, distributor) -> str:
    """Have the treasury's transfer for this epoch mined, once: what the root needs beyond what
    the distributor holds (its total less what was claimed, less the balance: the emission, plus
    the carried amounts of epochs that proposed no root). The transfer is tied to one nonce of the
    treasury: signed and recorded in its own transaction before the broadcast, broadcast again
    (the same bytes) while the chain has not got it, and replaced at the same nonce with higher
    fees when it waits too long, so at most one transfer signed for the epoch can be mined.
    Returns why it waits ("" when funded or nothing to fund)."""
    treasury = treasury_account()
    if treasury is None:
        return ""
    try:  # the node runs CHAIN_ID, and a dev key signs only on a node that runs anvil's chain
        check_signer(w3, treasury.address, "REWARD_TREASURY_KEY")
    except WrongChain as exc:
        return f"waiting for funding: {exc}"[:500]
    if not epoch.funding_tx:
        needed = int(epoch.total) - distributor.total_claimed() - distributor.token_balance()
        if needed <= 0:
            return ""
        token = w3.eth.contract(address=distributor.token_address(), abi=_erc20_abi())
        holds = token.functions.balanceOf(treasury.address).call()
        if holds < needed:
            # Nothing is signed that would revert: the close waits, and says what is missing.
            return (f"waiting for funding: the treasury {treasury.address} holds {holds} of the reward token, "
                    f"{needed} needed")
        try:  # a transfer the token would refuse (paused, a blocklist) is never signed: it would revert again
            token.functions.transfer(distributor.address, needed).call({"from": treasury.address})
        except Exception as exc:  # noqa: BLE001 - any refusal of the simulation
            return f"waiting for funding: the token refuses the treasury's transfer ({exc})"[:500]
        nonce = w3.eth.get_transaction_count(treasury.address, "pending")
        max_fee, priority = sender.fees(w3)
        built = token.functions.transfer(distributor.address, needed).build_transaction(
            {
                "from": treasury.address,
                "nonce": nonce,
                "chainId": settings.CHAIN_ID,
                "gas": 100_000,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": priority,
            }
        )
        if not _record_funding(epoch, treasury.sign_transaction(built), nonce, replacing=""):
            return "funding recorded by another run"
        logger.info(
            "epoch %s: the treasury transfers %s to the distributor (%s, nonce %s)",
            epoch.number,
            needed,
            epoch.funding_tx,
            nonce,
        )
    return _follow_funding(epoch, w3, treasury)


def _record_funding(epoch: Epoch, signed, nonce: int, *, replacing: str) -> bool:
    """Record a signed transfer as the epoch's (the first, or one `replacing` the latest at its
    nonce), in its own transaction, before it is broadcast. False when another run changed the
    epoch's transfer meanwhile."""
    tx_hash = "0x" + bytes(signed.hash).hex()
    with transaction.atomic():
        locked = Epoch.objects.select_for_update().get(pk=epoch.pk)
        if locked.funding_tx != replacing:
            return False
        locked.funding_tx, locked.funding_raw = tx_hash, "0x" + bytes(signed.raw_transaction).hex()
        locked.funding_nonce, locked.funding_signed_at = nonce, timezone.now()
        # A row signed before hashes were kept names only its latest one.
        locked.funding_hashes = [*((locked.funding_hashes or [replacing]) if replacing else []), tx_hash]
        locked.save(update_fields=["funding_tx", "funding_raw", "funding_nonce", "funding_hashes",
                                   "funding_signed_at", "updated_at"])
    for name in ("funding_tx", "funding_raw", "funding_nonce", "funding_hashes", "funding_signed_at"):
        setattr(epoch, name, getattr(locked, name))
    return True


def _signed_funding(epoch: Epoch) -> dict:
    """The fields of the epoch's latest signed transfer (nonce, to, data, gas, fees)."""
    return TypedTransaction.from_bytes(HexBytes(epoch.funding_raw)).as_dict()


def _funding_receipt(w3, epoch: Epoch):
    """The receipt of whichever transfer signed at the epoch's nonce was mined, if one was."""
    for tx_hash in reversed(epoch.funding_hashes or [epoch.funding_tx]):
        try:
            return w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            continue
    return None


def _follow_funding(epoch: Epoch, w3, treasury) -> str:
    """Look for the epoch's transfer on the chain: mined, lost (its nonce went to another
    transaction in a confirmed block), waiting (broadcast again; replaced at its nonce when it
    waited OPERATOR_REPLACE_AFTER), or reverted. Returns why it waits ("" when it is mined)."""
    nonce = epoch.funding_nonce if epoch.funding_nonce is not None else _signed_funding(epoch)["nonce"]
    confirmed = max(0, w3.eth.block_number - settings.CHAIN_CONFIRMATIONS)
    receipt = _funding_receipt(w3, epoch)
    if receipt is None and w3.eth.get_transaction_count(treasury.address, confirmed) > nonce:
        # The nonce is used in a block with the confirmations: if none of the transfers signed
        # for it has a receipt (read after the count, so a transfer mined meanwhile is seen),
        # another transaction of the treasury took it and no transfer of this epoch can be mined.
        receipt = _funding_receipt(w3, epoch)
        if receipt is None:
            lost = epoch.funding_tx
            _forget_funding(epoch, f"the treasury's nonce {nonce} was used by another transaction by block "
                            f"{confirmed}")
            return (f"the treasury's nonce {nonce} went to another transaction, so its transfer {lost} can never "
                    "be mined: a new one follows")
    if receipt is None:
        refused = _broadcast_funding(w3, epoch)
        if _funding_due_for_replacement(epoch, w3, treasury, nonce):
            refused = _replace_funding(epoch, w3, treasury, nonce)
        try:
            receipt = w3.eth.wait_for_transaction_receipt(epoch.funding_tx, timeout=FUNDING_WAIT, poll_latency=0.2)
        except Exception:  # noqa: BLE001 - not mined yet (an earlier one at the nonce is found next run)
            return (refused or f"waiting for the treasury's transfer {epoch.funding_tx} (nonce {nonce})")[:500]
    if receipt["status"] == 1:
        return ""
    reverted = "0x" + bytes(receipt["transactionHash"]).hex()
    if receipt["blockNumber"] > confirmed:
        # A reorganisation could still mine it again, and succeed: nothing new is signed yet.
        return f"the treasury's transfer {reverted} reverted in block {receipt['blockNumber']}; waiting for its confirmations"
    _forget_funding(epoch, "it reverted")  # mined and failed for good: the next run signs a new one
    return f"the treasury's transfer {reverted} reverted; a new one follows once the treasury holds enough"


def _broadcast_funding(w3, epoch: Epoch) -> str:
    """Send the latest signed transfer again, as it is; returns why the node refused it, if it did
    (nothing is decided from a refusal: a lagging node may say "nonce too low" of a transfer
    that is not mined)."""
    try:
        w3.eth.send_raw_transaction(epoch.funding_raw)
    except Exception as exc:  # noqa: BLE001 - already known, or the node refused it: look again next run
        if "already known" in str(exc) or "already imported" in str(exc):
            return ""
        return f"the node refused the treasury's transfer {epoch.funding_tx}: {exc}"[:500]
    return ""


def _funding_due_for_replacement(epoch: Epoch, w3, treasury, nonce: int) -> bool:
    """The transfer waited OPERATOR_REPLACE_AFTER since it was signed and its nonce is the one the
    chain waits for (one behind another transaction of the treasury is not underpriced)."""
    signed_at = epoch.funding_signed_at
    if signed_at is not None and (timezone.now() - signed_at).total_seconds() < sender.replace_after():
        return False
    return w3.eth.get_transaction_count(treasury.address, "latest") == nonce


def _replace_funding(epoch: Epoch, w3, treasury, nonce: int) -> str:
    """Sign the same transfer at the same nonce with fees raised by at least a quarter (within
    OPERATOR_MAX_FEE_PER_GAS), record it and broadcast it; returns why it waits, if it does."""
    try:
        fields = _signed_funding(epoch)
    except (TypeError, ValueError):  # not an EIP-1559 transfer: it is only broadcast again
        return f"waiting for the treasury's transfer {epoch.funding_tx} (it cannot be repriced)"
    max_fee, priority = sender.replacement_fees(w3, fields["maxFeePerGas"], fields["maxPriorityFeePerGas"])
    if max_fee > sender.max_fee_cap() or priority > max_fee:
        return (f"waiting for the treasury's transfer {epoch.funding_tx}: not repriced, {max_fee:,} wei per gas "
                f"would be above OPERATOR_MAX_FEE_PER_GAS ({sender.max_fee_cap():,})")
    replaced = epoch.funding_tx
    signed = treasury.sign_transaction({
        "chainId": fields["chainId"], "nonce": nonce, "to": to_checksum_address(fields["to"]),
        "data": "0x" + bytes(fields["data"]).hex(), "value": 0, "gas": fields["gas"],
        "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority, "type": 2})
    if not _record_funding(epoch, signed, nonce, replacing=replaced):
        return "funding recorded by another run"
    logger.info("epoch %s: the treasury's transfer %s replaced at nonce %s by %s (max fee %s)",
                epoch.number, replaced, nonce, epoch.funding_tx, max_fee)
    return _broadcast_funding(w3, epoch)


def _forget_funding(epoch: Epoch, why: str) -> None:
    logger.warning("epoch %s: the treasury's transfer %s is forgotten: %s", epoch.number, epoch.funding_tx, why)
    with transaction.atomic():
        Epoch.objects.select_for_update().filter(pk=epoch.pk, funding_tx=epoch.funding_tx).update(
            funding_tx="", funding_raw="", funding_nonce=None, funding_hashes=[], funding_signed_at=None)
    epoch.funding_tx = epoch.funding_raw = ""
    epoch.funding_nonce, epoch.funding_hashes, epoch.funding_signed_at = None, [], None


def _erc20_abi():
    from marketplace.chain.artifacts import load_artifact

    return load_artifact("TestUSDC").abi


def queue_action(epoch: Epoch, distributor_address: str) -> OperatorAction:
    """An OperatorAction proposing the stored root (in the caller's transaction)."""
    action = OperatorAction.objects.create(
        kind=OperatorAction.Kind.PROPOSE_ROOT,
        chain_id=settings.CHAIN_ID,
        market=distributor_address,
        payload={"epoch": epoch.number, "root": epoch.root, "total": str(int(epoch.total))},
        created_by="epoch close",
        context={"epoch": epoch.number},
    )
    epoch.action, epoch.proposals = action, epoch.proposals + 1
    return action


def queue_next(w3) -> int | None:
    """Fund and queue the oldest scored epoch once every earlier epoch is proposed; re-queue a
    queued epoch whose action failed. Returns the epoch number queued, if any."""
    from marketplace.chain.contracts import RewardDistributor
    from marketplace.outbox.services import enqueue

    chain_id = settings.CHAIN_ID
    address = deployed_address(chain_id, "RewardDistributor")
    if address is None:
        return None
    epoch = Epoch.objects.filter(state__in=(State.SCORED, State.QUEUED)).order_by("number").first()
    if (
        epoch is None
        or Epoch.objects.filter(
            number__lt=epoch.number, state__in=(State.OPEN, State.SCORED, State.QUEUED)
        ).exists()
    ):
        return None
    distributor = RewardDistributor(w3, address)
    if epoch.state == State.SCORED:
        waiting = fund(epoch, w3, distributor)
        if waiting:
            Epoch.objects.filter(pk=epoch.pk).update(waiting=waiting, updated_at=timezone.now())
            return None
    with transaction.atomic():
        if not _lock():
            return None
        epoch = Epoch.objects.select_for_update().get(pk=epoch.pk)
        if epoch.state == State.SCORED:
            queue_action(epoch, address)
            epoch.state, epoch.waiting = State.QUEUED, ""
            epoch.save(update_fields=["action", "proposals", "state", "waiting", "updated_at"])
        elif epoch.state == State.QUEUED:
            action = epoch.action
            # Confirmed while the epoch is still queued: a reorganisation took its RootProposed
            # (the handler moves the epoch in the transaction that stores it). Queued again: the
            # sender first broadcasts the lost transaction again, and the new action then fails
            # its pre-check (the epoch is proposed), so the epoch still gets one root.
            lost = action is not None and action.status == ActionStatus.CONFIRMED
            if (
                action is None
                or lost
                or (
                    action.status in (ActionStatus.FAILED, ActionStatus.CANCELLED)
                    and timezone.now() - action.updated_at >= RETRY_AFTER
                )
            ):
                queue_action(epoch, address)
                why = (
                    "its RootProposed left the chain"
                    if lost
                    else (action.error if action else "no action")
                )
                epoch.waiting = f"proposeRoot queued again ({why})"
                epoch.save(update_fields=["action", "proposals", "waiting", "updated_at"])
            else:
                status = action.get_status_display().lower()
                waiting = (
                    action.error
                    if action.status == ActionStatus.PENDING
                    else f"proposeRoot {status}: {action.error}".rstrip(": ")
                )
                if waiting != epoch.waiting:
                    epoch.waiting = waiting
                    epoch.save(update_fields=["waiting", "updated_at"])
                return None
        else:
            return None
        enqueue("chain.send_operator_actions")
    return epoch.number


# ---------------------------------------------------------------------------------------------
# Maturing


def mature(w3) -> list[int]:
    """Proposed epochs whose root's `validAt` the indexed chain's time has passed become matured:
    the time of the last block the indexer stored, not the chain's head, so that a `RootRevoked`
    mined before `validAt` is always stored before its epoch counts as matured (the next epoch
    builds on a matured root, and the proof API serves it)."""
    from marketplace.chain.models import IndexerCursor

    indexed = (
        IndexerCursor.objects.filter(chain_id=settings.CHAIN_ID)
        .values_list("block_number", flat=True)
        .first()
    )
    if indexed is None or not Epoch.objects.filter(state=State.PROPOSED).exists():
        return []
    now = datetime.fromtimestamp(w3.eth.get_block(indexed)["timestamp"], tz=dt_timezone.utc)
    with transaction.atomic():
        if not _lock():
            return []
        due = list(
            Epoch.objects.select_for_update()
            .filter(state=State.PROPOSED, valid_at__lte=now)
            # Never a root whose amounts went back to a pool: a reorganisation deeper than the
            # confirmations may have taken its RootRevoked (`revoke_again` revokes it again).
            .filter(revoked_back_in__isnull=True)
            .values_list("number", flat=True)
        )
        Epoch.objects.filter(number__in=due).update(
            state=State.MATURED, waiting="", updated_at=timezone.now()
        )
    return due


def _operator_is_admin(distributor) -> bool:
    """Whether the operator key may revoke a pending root (DEFAULT_ADMIN_ROLE on the distributor)."""
    from marketplace.chain.client import OperatorKeyMissing, operator_account

    try:
        return distributor.has_role("DEFAULT_ADMIN_ROLE", operator_account().address)
    except OperatorKeyMissing:
        return False


def revoke_again(w3) -> list[int]:
    """Epochs whose amounts went back to a pool (`revoked_back_in`) but whose root is proposed on
    the chain again: a reorganisation deeper than the confirmations took their RootRevoked and it
    was not mined again. Left alone, the root would mature and its amounts be claimed while the
    later epoch pays them to others. If the operator key holds DEFAULT_ADMIN_ROLE on the
    distributor, an `OperatorAction(revoke_root)` is queued (its pre-check: the root is still the
    pending one; confirmed by the RootRevoked the indexer stores); otherwise, or once the root
    has matured on the chain, the epoch's `waiting` says what the admin must do, and it is logged
    as an error. Returns the epochs whose revoke was queued."""
    from marketplace.chain.contracts import RewardDistributor
    from marketplace.outbox.services import enqueue

    # Revoked (or replaced) again: what was said meanwhile is over.
    Epoch.objects.filter(revoked_back_in__isnull=False).exclude(root_status=Epoch.RootStatus.PROPOSED).exclude(
        waiting="").update(waiting="", updated_at=timezone.now())
    lost = list(Epoch.objects.filter(revoked_back_in__isnull=False, root_status=Epoch.RootStatus.PROPOSED)
                .exclude(root="").order_by("number"))
    if not lost:
        return []
    address = deployed_address(settings.CHAIN_ID, "RewardDistributor")
    if address is None:
        return []
    distributor = RewardDistributor(w3, address)
    head = w3.eth.get_block("latest")["timestamp"]
    queued = []
    for epoch in lost:
        back_in = Epoch.objects.values_list("number", flat=True).get(pk=epoch.revoked_back_in_id)
        lead = (f"epoch {epoch.number}'s root was revoked and its amounts went back to epoch {back_in}'s pool, "
                f"but its RootRevoked left the chain (a reorganisation) and the root is pending again")
        open_action = OperatorAction.objects.filter(
            kind=OperatorAction.Kind.REVOKE_ROOT, chain_id=settings.CHAIN_ID,
            payload__epoch=epoch.number, payload__root=epoch.root).order_by("-id").first()
        if epoch.valid_at is not None and int(epoch.valid_at.timestamp()) <= head:
            waiting = (f"{lead}; it matured on the chain at {epoch.valid_at.isoformat()}: its amounts are claimable "
                       "twice, the admin must suspend it (suspendCurrentRoot) at once")
        elif open_action is not None and open_action.status in OperatorAction.OPEN:
            waiting = f"{lead}: revokePendingRoot queued again (operator action #{open_action.pk})"
        elif open_action is not None and open_action.status == ActionStatus.FAILED \
                and timezone.now() - open_action.updated_at < RETRY_AFTER:
            waiting = f"{lead}: revokePendingRoot failed ({open_action.error}); queued again shortly"
        elif not _operator_is_admin(distributor):
            waiting = (f"{lead}: the admin (DEFAULT_ADMIN_ROLE, which the operator key does not hold) must call "
                       f"revokePendingRoot() before {epoch.valid_at.isoformat() if epoch.valid_at else 'validAt'}")
        else:
            with transaction.atomic():
                if not _lock() or OperatorAction.objects.filter(
                        kind=OperatorAction.Kind.REVOKE_ROOT, chain_id=settings.CHAIN_ID, payload__epoch=epoch.number,
                        status__in=OperatorAction.OPEN).exists():
                    continue  # another run is queueing it, or has
                action = OperatorAction.objects.create(
                    kind=OperatorAction.Kind.REVOKE_ROOT, chain_id=settings.CHAIN_ID, market=address,
                    payload={"epoch": epoch.number, "root": epoch.root}, created_by="epoch close",
                    context={"epoch": epoch.number})
                enqueue("chain.send_operator_actions")
            queued.append(epoch.number)
            waiting = f"{lead}: revokePendingRoot queued again (operator action #{action.pk})"
        if waiting != epoch.waiting:
            logger.error("%s", waiting)
            Epoch.objects.filter(pk=epoch.pk).update(waiting=waiting[:500], updated_at=timezone.now())
    return queued


def close_epochs(w3=None, now: datetime | None = None) -> CloseReport:
    """One run of the close (beat, every few seconds): open, score, queue, mature, each step in
    its own transaction under the lock. Safe to run at any time, any number of times."""
    from marketplace.chain.client import get_web3

    report = CloseReport()
    report.opened = open_epochs(now)
    while (number := score_next()) is not None:
        report.scored.append(number)
    if not (Epoch.objects.filter(state__in=(State.SCORED, State.QUEUED, State.PROPOSED)).exists()
            or Epoch.objects.filter(revoked_back_in__isnull=False, root_status=Epoch.RootStatus.PROPOSED).exists()):
        return report
    w3 = w3 or get_web3()
    try:
        revoke_again(w3)  # before anything matures: a revoked root is never claimable
        report.matured = mature(w3)
        while report.matured and (number := score_next()) is not None:  # waited for that root
            report.scored.append(number)
        number = queue_next(w3)  # one at a time: the next waits until this one is proposed
        if number is not None:
            report.queued.append(number)
        report.matured += mature(w3)
    except (OSError, ValueError, Web3RPCError, requests.RequestException) as exc:
        # The node is down or refused a call: scoring went on without it; the next run goes on.
        logger.warning("epoch close: the chain did not answer (%s: %s)", type(exc).__name__, exc)
        report.skipped = f"the chain did not answer: {type(exc).__name__}"
    report.waiting = dict(Epoch.objects.exclude(waiting="").values_list("number", "waiting"))
    return report

"""Reads for the contributor's dashboard and the public network page: a wallet's devices and
their state, its uptime and points over time, its referrals; the leaderboard and the network's
figures. Amounts are token base units (ints); the pages format them."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from .models import CollectedRow, Contributor, Device, DeviceDay, Epoch, EpochAmount, PendingBinding, WorkCredit

#: A device is online when its last heartbeat is this recent (a few heartbeat intervals).
ONLINE_WITHIN = timedelta(minutes=3)
#: Days of uptime in the dashboard's chart, and epochs in its points chart.
CHART_DAYS = 14
CHART_EPOCHS = 24


@dataclass
class DeviceState:
    device: Device
    online: bool
    pending_wallet: str
    pending_at: object
    today: object = None  # the device's DeviceDay of today: its own reported traffic and latency


def devices(wallet: str) -> list[DeviceState]:
    """The wallet's bound devices, oldest first, with whether each is online, a rebinding waiting
    for its cooldown (to another wallet), if any, and today's roll-up (the figures the node
    reports of itself, bytes and latency, are shown to its owner only: never scored or
    published)."""
    now = timezone.now()
    rows = list(Device.objects.filter(contributor__wallet=wallet).order_by("created_at"))
    pending = {p.device_id: p for p in PendingBinding.objects.filter(device__in=rows)}
    today = {d.device_id: d for d in DeviceDay.objects.filter(device__in=rows, day=now.date())}
    return [DeviceState(d, bool(d.last_seen_at and now - d.last_seen_at <= ONLINE_WITHIN),
                        pending[d.pk].wallet if d.pk in pending else "",
                        pending[d.pk].effective_at if d.pk in pending else None, today.get(d.pk)) for d in rows]


def uptime_days(wallet: str, *, days: int = CHART_DAYS, today: date | None = None) -> list[dict]:
    """Verified uptime per day for the wallet's devices, the last `days` days (oldest first):
    {day, slots, hours, heartbeats}. From the daily roll-up, so today's figure trails the
    heartbeats by the roll-up's interval."""
    today = today or timezone.now().date()
    first = today - timedelta(days=days - 1)
    found = {row["day"]: row for row in DeviceDay.objects.filter(
        device__contributor__wallet=wallet, day__gte=first, day__lte=today)
        .values("day").annotate(slots=Sum("verified_slots"), heartbeats=Sum("heartbeats"))}
    slot_hours = settings.REWARD_SLOT_SECONDS / 3600
    out = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = found.get(day, {})
        slots = int(row.get("slots") or 0)
        out.append({"day": day, "slots": slots, "hours": round(slots * slot_hours, 1),
                    "heartbeats": int(row.get("heartbeats") or 0)})
    return out


def today_figures(wallet: str) -> dict:
    """Today's verified slots (straight from the heartbeats, not the roll-up) and verified jobs."""
    start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT (h.device_id, h.slot)) FROM rewards_heartbeat h "
            "JOIN rewards_device d ON d.id = h.device_id JOIN rewards_contributor c ON c.id = d.contributor_id "
            "WHERE c.wallet = %s AND h.received_at >= %s AND h.probe_ok", [wallet, start])
        (slots,) = cursor.fetchone()
    jobs = WorkCredit.objects.filter(wallet=wallet, earned_at__gte=start).count()
    return {"slots": slots, "hours": round(slots * settings.REWARD_SLOT_SECONDS / 3600, 1), "jobs": jobs}


def points_by_epoch(wallet: str, *, epochs: int = CHART_EPOCHS) -> list[dict]:
    """The wallet's points (unscaled) and amount in each of the last `epochs` scored epochs,
    oldest first (0 in an epoch it earned nothing in)."""
    recent = list(Epoch.objects.exclude(state=Epoch.State.OPEN).order_by("-number")[:epochs])
    mine = {a.epoch_id: a for a in EpochAmount.objects.filter(wallet=wallet, epoch__in=recent)}
    return [{"epoch": e.number, "points": int(mine[e.pk].points) // 10_000 if e.pk in mine else 0,
             "amount": int(mine[e.pk].amount) if e.pk in mine else 0} for e in reversed(recent)]


def referrals(contributor: Contributor | None) -> list[dict]:
    """The wallets the contributor referred (first tier), newest first, with when their bonus can
    start (the referee's first verified activity plus REWARD_REFERRAL_DELAY_DAYS)."""
    if contributor is None:
        return []
    out = []
    for referee in contributor.referrals.order_by("-created_at"):
        first = (WorkCredit.objects.filter(wallet=referee.wallet).order_by("earned_at")
                 .values_list("earned_at", flat=True).first())
        starts = first + timedelta(days=settings.REWARD_REFERRAL_DELAY_DAYS) if first else None
        out.append({"wallet": referee.wallet, "since": referee.created_at, "bonus_from": starts})
    return out


class ReferralRefused(Exception):
    pass


def set_referrer(contributor: Contributor, code: str) -> Contributor:
    """Record who referred the contributor, once, before it has earned anything: the code must be
    another contributor's, and no referral loop may form. Every contributor row is locked for the
    check (a referral is rare): two wallets naming each other's codes at once cannot both pass."""
    from django.db import transaction

    code = code.strip()
    with transaction.atomic():
        list(Contributor.objects.select_for_update().order_by("pk").values_list("pk", flat=True))
        contributor = Contributor.objects.get(pk=contributor.pk)
        if contributor.referred_by_id is not None:
            raise ReferralRefused("You already named who referred you; it cannot be changed.")
        if EpochAmount.objects.filter(wallet=contributor.wallet).exists():
            raise ReferralRefused("A referral is named before a wallet's first reward epoch; this wallet has "
                                  "already earned rewards.")
        referrer = Contributor.objects.filter(referral_code=code).first()
        if referrer is None:
            raise ReferralRefused("No contributor has that referral code; check the link you were given.")
        seen, current = set(), referrer
        while current is not None and current.pk not in seen:
            if current.pk == contributor.pk:
                raise ReferralRefused("That is your own code, or a wallet you referred: a referral cannot loop.")
            seen.add(current.pk)
            current = current.referred_by
        contributor.referred_by = referrer
        contributor.save(update_fields=["referred_by"])
    return contributor


def leaderboard(limit: int = 50) -> list[dict]:
    """Wallets by what they earned in all (amounts paid from pools, community sales, released
    held amounts), leaving out those that opted out; with their device count."""
    hidden = set(Contributor.objects.filter(leaderboard_opt_out=True).values_list("wallet", flat=True))
    rows = (EpochAmount.objects.exclude(wallet__in=hidden).values("wallet")
            .annotate(earned=Sum("amount") + Sum("revenue") + Sum("released") - Sum("held"),
                      points=Sum("points"), epochs=Count("epoch"))
            .order_by("-earned", "wallet")[:limit])
    devices_of = dict(Device.objects.filter(contributor__wallet__in=[r["wallet"] for r in rows])
                      .values("contributor__wallet").annotate(n=Count("id")).values_list("contributor__wallet", "n"))
    return [{"rank": i + 1, "wallet": r["wallet"], "earned": int(r["earned"] or 0),
             "points": int(r["points"] or 0) // 10_000, "epochs": r["epochs"],
             "devices": devices_of.get(r["wallet"], 0)} for i, r in enumerate(rows)]


def network() -> dict:
    """The network's figures: nodes online now and in all, contributors, verified jobs in the
    last hour, rows collected, and the current and latest claimable epochs."""
    now = timezone.now()
    current = Epoch.objects.filter(state=Epoch.State.OPEN).order_by("-number").first()
    last = Epoch.objects.exclude(state=Epoch.State.OPEN).order_by("-number").first()
    return {
        "nodes_online": Device.objects.filter(contributor__isnull=False,
                                              last_seen_at__gte=now - ONLINE_WITHIN).count(),
        "nodes": Device.objects.filter(contributor__isnull=False).count(),
        "contributors": Contributor.objects.filter(devices__isnull=False).distinct().count(),
        "jobs_last_hour": WorkCredit.objects.filter(earned_at__gte=now - timedelta(hours=1)).count(),
        "rows_collected": CollectedRow.objects.count(),  # deduplicated rows of community datasets
        "current_epoch": current,
        "last_epoch": last,
    }

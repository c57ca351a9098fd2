"""Metering: the heartbeat table's upkeep and what is read from it besides scoring.

- Partitions: each day's is made ahead (`maintain_partitions`); a day that found none had its
  rows go to the DEFAULT partition, and they are moved into the day's new partition in the same
  transaction. Days older than REWARD_HEARTBEAT_RETENTION_DAYS are rolled up a last time and
  dropped whole (with their IP addresses): no row-by-row DELETE, no table bloat.
- Roll-up (`roll_up`): per device per UTC day, heartbeats, verified slots, self-reported bytes
  and latency, for the dashboards once the raw rows are gone. Recomputed, so reruns agree.
- Flags (`flag_abuse`): one device key on two connections (heartbeats from different addresses
  within one slot), uptime over wall time, many wallets from one address in a day. Addresses in
  REWARD_TRUSTED_NETWORKS are exempt. Each flag is raised once per (kind, device or wallet, day).
"""
from __future__ import annotations

from datetime import date, datetime, time as dt_time, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import connection, transaction

from .models import AddressWallet, BindingEvent, Device, Flag

PARTITION_PREFIX = "rewards_heartbeat_"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, dt_time.min, tzinfo=dt_timezone.utc)
    return start, start + timedelta(days=1)


def today() -> date:
    return datetime.now(dt_timezone.utc).date()


# Partitions ---------------------------------------------------------------------------------------


def partitions() -> dict[date, str]:
    """The day partitions that exist (the DEFAULT one aside)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "WHERE i.inhparent = 'rewards_heartbeat'::regclass")
        names = [row[0] for row in cursor.fetchall()]
    found = {}
    for name in names:
        suffix = name.removeprefix(PARTITION_PREFIX)
        if suffix.isdigit() and len(suffix) == 8:
            found[date(int(suffix[:4]), int(suffix[4:6]), int(suffix[6:]))] = name
    return found


def create_partition(day: date) -> str:
    """The day's partition, made if missing. Rows of that day already in the DEFAULT partition
    (no partition existed when they came) are moved into it in the same transaction: PostgreSQL
    refuses to create a partition whose range the DEFAULT partition holds rows of."""
    start, end = day_bounds(day)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM rewards_heartbeat_default WHERE received_at >= %s AND received_at < %s LIMIT 1",
                       [start, end])
        if cursor.fetchone() is None:
            cursor.execute("SELECT rewards_heartbeat_partition(%s)", [day])
            return cursor.fetchone()[0]
        # Inserts of that day wait on this lock (for the moment of the move), others do not.
        cursor.execute("LOCK TABLE rewards_heartbeat_default IN ACCESS EXCLUSIVE MODE")
        cursor.execute("CREATE TEMP TABLE heartbeat_moving ON COMMIT DROP AS "
                       "SELECT * FROM rewards_heartbeat_default WITH NO DATA")
        cursor.execute("WITH moved AS (DELETE FROM rewards_heartbeat_default WHERE received_at >= %s "
                       "AND received_at < %s RETURNING *) INSERT INTO heartbeat_moving SELECT * FROM moved",
                       [start, end])
        cursor.execute("SELECT rewards_heartbeat_partition(%s)", [day])
        name = cursor.fetchone()[0]
        cursor.execute("INSERT INTO rewards_heartbeat SELECT * FROM heartbeat_moving")
        return name


def drop_partition(day: date) -> None:
    """Roll the day up a last time, then drop its raw rows (and addresses) with the partition."""
    roll_up(day)
    name = partitions().get(day)
    with transaction.atomic(), connection.cursor() as cursor:
        if name:
            cursor.execute(f'DROP TABLE IF EXISTS "{name}"')
        cursor.execute("DELETE FROM rewards_heartbeat_default WHERE received_at >= %s AND received_at < %s",
                       day_bounds(day))


def maintain_partitions(*, days_ahead: int = 3, now: date | None = None) -> dict:
    """Make the coming days' partitions (today included) and drop those past retention."""
    current = now or today()
    made = [create_partition(current + timedelta(days=d)) for d in range(0, days_ahead + 1)]
    oldest_kept = current - timedelta(days=settings.REWARD_HEARTBEAT_RETENTION_DAYS)
    with connection.cursor() as cursor:  # rows of days that never had a partition
        cursor.execute("SELECT DISTINCT (received_at AT TIME ZONE 'UTC')::date FROM rewards_heartbeat_default "
                       "WHERE received_at < %s", [day_bounds(oldest_kept)[0]])
        stray = [row[0] for row in cursor.fetchall()]
    dropped = []
    for day in sorted(set(partitions()) | set(stray)):
        if day < oldest_kept:
            drop_partition(day)
            dropped.append(day.isoformat())
    return {"made": made, "dropped": dropped}


# Roll-up ------------------------------------------------------------------------------------------

_ROLL_UP = """
INSERT INTO rewards_deviceday (device_id, day, heartbeats, verified_slots, bytes_up, bytes_down, latency_ms_avg,
                               updated_at)
SELECT h.device_id, %(day)s, count(*), count(DISTINCT h.slot) FILTER (WHERE h.probe_ok), sum(h.bytes_up),
       sum(h.bytes_down), coalesce(round(avg(h.latency_ms)), 0), now()
FROM rewards_heartbeat h JOIN rewards_device d ON d.id = h.device_id
WHERE h.received_at >= %(start)s AND h.received_at < %(end)s
GROUP BY h.device_id
ON CONFLICT (device_id, day) DO UPDATE SET heartbeats = EXCLUDED.heartbeats, verified_slots = EXCLUDED.verified_slots,
    bytes_up = EXCLUDED.bytes_up, bytes_down = EXCLUDED.bytes_down, latency_ms_avg = EXCLUDED.latency_ms_avg,
    updated_at = EXCLUDED.updated_at"""


def roll_up(day: date) -> int:
    """Write (or rewrite) every device's figures of `day`; returns the devices rolled up."""
    start, end = day_bounds(day)
    with connection.cursor() as cursor:
        cursor.execute(_ROLL_UP, {"day": day, "start": start, "end": end})
        return cursor.rowcount


def roll_up_recent(*, now: date | None = None) -> int:
    """Today and yesterday (heartbeats of yesterday's last minutes land after midnight's run)."""
    current = now or today()
    return roll_up(current - timedelta(days=1)) + roll_up(current)


# Flags --------------------------------------------------------------------------------------------

_TWO_CONNECTIONS = """
SELECT h.device_id, h.slot, array_agg(DISTINCT host(h.ip) ORDER BY host(h.ip))
FROM rewards_heartbeat h
WHERE h.received_at >= %(since)s AND h.ip IS NOT NULL AND NOT (h.ip <<= ANY(%(trusted)s::inet[]))
GROUP BY h.device_id, h.slot
HAVING count(DISTINCT h.ip) >= %(ips)s"""

# A device's answered-probe slots beyond the slots its first and last heartbeat span, or its own
# clock (sent_at) running ahead of the server's over the day, by more than the slack.
_OVER_WALL_TIME = """
SELECT h.device_id, count(DISTINCT h.slot) FILTER (WHERE h.probe_ok) AS slots, max(h.slot) - min(h.slot) + 1 AS span,
       extract(epoch FROM max(h.sent_at) - min(h.sent_at)) AS claimed,
       extract(epoch FROM max(h.received_at) - min(h.received_at)) AS wall
FROM rewards_heartbeat h
WHERE h.received_at >= %(start)s AND h.received_at < %(end)s
GROUP BY h.device_id
HAVING count(DISTINCT h.slot) FILTER (WHERE h.probe_ok) > max(h.slot) - min(h.slot) + 1
    OR extract(epoch FROM max(h.sent_at) - min(h.sent_at))
       > extract(epoch FROM max(h.received_at) - min(h.received_at)) + %(slack)s"""

_ADDRESS_WALLETS = """
INSERT INTO rewards_addresswallet (day, ip, wallet)
SELECT DISTINCT (h.received_at AT TIME ZONE 'UTC')::date, h.ip, c.wallet
FROM rewards_heartbeat h JOIN rewards_device d ON d.id = h.device_id
JOIN rewards_contributor c ON c.id = d.contributor_id
WHERE h.received_at >= %(since)s AND h.ip IS NOT NULL
ON CONFLICT DO NOTHING"""


def _raise_flag(*, kind: str, wallet: str, device_id: int | None, key: str, evidence: dict) -> bool:
    """One flag per (kind, wallet, device, key): a rerun over the same rows raises nothing new."""
    evidence = {"key": key, **evidence}
    if Flag.objects.filter(kind=kind, wallet=wallet, device_id=device_id, evidence__key=key).exists():
        return False
    Flag.objects.create(kind=kind, wallet=wallet, device_id=device_id, evidence=evidence)
    return True


def _wallets(device_ids) -> dict[int, str]:
    return dict(Device.objects.filter(pk__in=device_ids, contributor__isnull=False)
                .values_list("pk", "contributor__wallet"))


def flag_abuse(*, window_seconds: int = 900, now: datetime | None = None) -> list[Flag]:
    """Look at the last `window_seconds` of heartbeats (and today's for wall time) and raise the
    flags they show; returns the new flags. The window overlaps the previous run's (the task runs
    every 5 minutes): the same evidence raises no second flag."""
    now = now or datetime.now(dt_timezone.utc)
    since = now - timedelta(seconds=window_seconds)
    trusted = list(settings.REWARD_TRUSTED_NETWORKS)
    before = Flag.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    with connection.cursor() as cursor:
        cursor.execute(_TWO_CONNECTIONS, {"since": since, "trusted": trusted,
                                          "ips": settings.REWARD_IPS_PER_DEVICE_SLOT})
        rows = cursor.fetchall()
    wallets = _wallets({r[0] for r in rows})
    for device_id, slot, ips in rows:
        if device_id in wallets:
            _raise_flag(kind=Flag.Kind.TWO_CONNECTIONS, wallet=wallets[device_id], device_id=device_id,
                        key=f"slot:{slot}", evidence={"slot": slot, "addresses": ips,
                                                      "slot_seconds": settings.REWARD_SLOT_SECONDS})

    start, end = day_bounds(now.date())
    with connection.cursor() as cursor:
        cursor.execute(_OVER_WALL_TIME, {"start": start, "end": end, "slack": settings.REWARD_WALL_TIME_SLACK})
        rows = cursor.fetchall()
    wallets = _wallets({r[0] for r in rows})
    for device_id, slots, span, claimed, wall in rows:
        if device_id in wallets:
            _raise_flag(kind=Flag.Kind.OVER_WALL_TIME, wallet=wallets[device_id], device_id=device_id,
                        key=f"day:{now.date().isoformat()}",
                        evidence={"day": now.date().isoformat(), "verified_slots": slots, "slots_spanned": span,
                                  "seconds_claimed": float(claimed or 0), "seconds_elapsed": float(wall or 0)})

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_ADDRESS_WALLETS, {"since": since})
        for event in BindingEvent.objects.filter(created_at__gte=since, ip__isnull=False):
            AddressWallet.objects.get_or_create(day=event.created_at.date(), ip=event.ip, wallet=event.wallet)
    from .ingest import trusted as is_trusted

    crowded = {}
    for day, ip, wallet in AddressWallet.objects.filter(day__gte=since.date()).values_list("day", "ip", "wallet"):
        crowded.setdefault((day, ip), []).append(wallet)
    for (day, ip), found in crowded.items():
        if len(found) <= settings.REWARD_WALLETS_PER_IP_DAY or is_trusted(ip):
            continue
        for wallet in found:
            _raise_flag(kind=Flag.Kind.WALLETS_PER_ADDRESS, wallet=wallet, device_id=None,
                        key=f"ip:{ip}:{day.isoformat()}",
                        evidence={"day": day.isoformat(), "address": ip, "wallets": sorted(found)})
    return list(Flag.objects.filter(pk__gt=before).order_by("pk"))

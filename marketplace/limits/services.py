"""Counting requests and reserving storage, shared by every process and host.

Rates are sliding logs: a key keeps the times of its requests within the last period, and a
request goes through while fewer than the rate's count are that recent. So "30 per minute" means
at most 30 in any 60 seconds (a fixed window lets twice that through around its edge), and a
refusal knows exactly when the oldest of them leaves the period (Retry-After). The test and the
append are one atomic step in the store (one upsert in PostgreSQL, one Lua script in Redis), so
concurrent requests never overshoot, and a refused request counts nowhere. Redis is used when
LIMITS_REDIS_URL is set; while it cannot be reached the counts fall back to PostgreSQL rather
than letting everything through or refusing everything.

Storage is a ledger per scope (a wallet, a client address): an upload reserves its declared size
under the scopes' row locks before a byte is read, and the reservation is settled into the ledger
in the transaction that stores the version, or deleted when the upload fails.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
import logging
import math
import os
from pathlib import Path
import re
import secrets
import shutil
import socket
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import storages
from django.db import connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from .models import RequestLog, StorageReservation, StorageUsage

logger = logging.getLogger(__name__)

# What each rule counts, as its refusal names it; the rates are in settings.LIMITS.
RULES = {
    "nonce": "sign-in requests",
    "sign_in": "sign-in attempts",
    "upload": "uploads",
    "dataset": "new datasets",
    "listing_receipt": "listing transactions to read from the chain",
    "download": "download links",
    "order_receipt": "purchase transactions to read from the chain",
    "relay": "signed order actions to relay",
    "statement": "dispute statements",
    "node_bind": "device bindings",
    "node_request": "node requests",
    "node_heartbeat": "heartbeats",
    "node_jobs": "node requests for fetch jobs",
    "report": "reports",
    "payment_required": "payment challenges (402 answers)",
    "payment": "new payments to check",
}
SCOPES = {"ip": "from your network address", "wallet": "for this wallet"}
PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


# Rates --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    count: int
    period: int  # seconds

    @classmethod
    def parse(cls, text: str) -> "Rate | None":
        """"30/minute" (second, minute, hour, day; a plural is fine); "off" for no limit."""
        text = str(text).strip().lower()
        if text == "off":
            return None
        match = re.fullmatch(r"(\d+)\s*/\s*(second|minute|hour|day)s?", text)
        if not match or int(match[1]) < 1:
            raise ValueError(f"{text!r} is not a rate: write it as 30/minute (second, minute, hour or day), or off")
        return cls(int(match[1]), PERIODS[match[2]])

    def __str__(self):
        unit = next(name for name, seconds in PERIODS.items() if seconds == self.period)
        return f"{self.count:,} per {unit}"


def configured_rates() -> dict[tuple[str, str], Rate | None]:
    """Every (rule, scope) rate in settings.LIMITS, checked; a bad one is a configuration error."""
    rates = {}
    for rule, scopes in settings.LIMITS.items():
        if rule not in RULES:
            raise ImproperlyConfigured(f"LIMITS names an unknown rule {rule!r} (known: {', '.join(RULES)})")
        for scope, text in scopes.items():
            if scope not in SCOPES:
                raise ImproperlyConfigured(f"LIMITS[{rule!r}] has an unknown scope {scope!r} (ip or wallet)")
            try:
                rates[rule, scope] = Rate.parse(text)
            except ValueError as exc:
                raise ImproperlyConfigured(f"LIMITS[{rule!r}][{scope!r}]: {exc}") from None
    return rates


def check_configuration() -> None:
    """Called at start: every rate parses, and LIMITS_REDIS_URL (if set) is a Redis URL."""
    configured_rates()
    if settings.LIMITS_REDIS_URL:
        try:
            counters()
        except ValueError as exc:
            raise ImproperlyConfigured(f"LIMITS_REDIS_URL: {exc}") from None


def rate_for(rule: str, scope: str) -> Rate | None:
    return configured_rates().get((rule, scope))


def retry_after(rate: Rate, now: float, hits) -> int:
    """Whole seconds until a request would go through, given the key's request times `hits`:
    until enough of those within the period have left it that fewer than rate.count remain."""
    recent = sorted(h for h in hits if h > now - rate.period)
    if len(recent) < rate.count:
        return 1  # a request was refused, and has been overtaken by time already
    leaving = recent[len(recent) - rate.count]  # once it leaves, count - 1 remain
    # Never more than the period: a request that read the clock just before another one stored
    # its own, later time (two threads, or two hosts) would otherwise be told period + 1.
    return min(rate.period, max(1, math.ceil(leaving + rate.period - now)))


# Stores -------------------------------------------------------------------------------------------


@dataclass
class Hit:
    allowed: bool
    token: object  # what undo() needs to take this request back out
    retry_after: int = 0


class PostgresCounters:
    """Request logs in the limits_requestlog table: test and append are one upsert, whose
    conflict branch runs under the key's row lock (concurrent requests for a key queue there)."""

    ADD = """
        INSERT INTO limits_requestlog AS r (key, hits, expires_at) VALUES (%(key)s, ARRAY[%(now)s::float8], %(expires)s)
        ON CONFLICT (key) DO UPDATE
            SET hits = array_append(ARRAY(SELECT h FROM unnest(r.hits) h WHERE h > %(since)s), %(now)s::float8),
                expires_at = %(expires)s
            WHERE (SELECT count(*) FROM unnest(r.hits) h WHERE h > %(since)s) < %(limit)s
        RETURNING 1
    """
    READ = "SELECT hits FROM limits_requestlog WHERE key = %s"
    # Takes out one occurrence of the hit (another request may have arrived at the same instant).
    UNDO = """
        UPDATE limits_requestlog SET hits = hits[:array_position(hits, %(hit)s::float8) - 1]
                                            || hits[array_position(hits, %(hit)s::float8) + 1:]
        WHERE key = %(key)s AND %(hit)s::float8 = ANY(hits)
    """

    def add(self, key: str, rate: Rate, now: float) -> Hit:
        params = {"key": key, "now": now, "since": now - rate.period, "limit": rate.count,
                  "expires": datetime.fromtimestamp(now + rate.period, tz=dt_timezone.utc)}
        with connection.cursor() as cursor:
            cursor.execute(self.ADD, params)
            if cursor.fetchone() is not None:
                return Hit(True, now)
            cursor.execute(self.READ, [key])
            row = cursor.fetchone()
        return Hit(False, None, retry_after(rate, now, row[0] if row else []))

    def undo(self, key: str, token) -> None:
        with connection.cursor() as cursor:
            cursor.execute(self.UNDO, {"key": key, "hit": token})


class RedisCounters:
    """Request logs in Redis sorted sets (member: a unique id, score: the time); one Lua script
    drops what left the period, counts, and adds, atomically."""

    ADD = """
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
        local count = redis.call('ZCARD', KEYS[1])
        local limit = tonumber(ARGV[3])
        if count < limit then
            redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
            redis.call('EXPIRE', KEYS[1], ARGV[5])
            return {1}
        end
        return {0, redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}
    """

    def __init__(self, url: str, prefix: str):
        import redis

        # A Redis that does not answer costs one request half a second; then counts stay in
        # PostgreSQL for REDIS_RETRY_AFTER (see _add).
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.prefix = prefix
        self._add = self.client.register_script(self.ADD)

    def add(self, key: str, rate: Rate, now: float) -> Hit:
        member = f"{now!r}:{secrets.token_hex(6)}"  # unique, so two requests at one instant both count
        reply = self._add(keys=[self.prefix + key],
                          args=[repr(now), repr(now - rate.period), rate.count, member, rate.period + 1])
        if reply[0] == 1:
            return Hit(True, member)
        return Hit(False, None, retry_after(rate, now, [float(score) for score in reply[1][1::2]]))

    def undo(self, key: str, token) -> None:
        self.client.zrem(self.prefix + key, token)


_postgres = PostgresCounters()
_redis: dict[tuple[str, str], RedisCounters] = {}
_redis_down_until = 0.0
REDIS_RETRY_AFTER = 10.0  # seconds the counts stay in PostgreSQL after Redis failed


def counters():
    """The configured store: Redis when LIMITS_REDIS_URL is set, else PostgreSQL."""
    url = settings.LIMITS_REDIS_URL
    if not url or time.monotonic() < _redis_down_until:
        return _postgres
    key = (url, settings.LIMITS_REDIS_PREFIX)
    if key not in _redis:
        _redis[key] = RedisCounters(url, settings.LIMITS_REDIS_PREFIX)
    return _redis[key]


def _add(key, rate, now):
    """Count in the configured store; while Redis fails, in PostgreSQL."""
    global _redis_down_until
    store = counters()
    if store is not _postgres:
        import redis

        try:
            return store, store.add(key, rate, now)
        except redis.RedisError as error:
            _redis_down_until = time.monotonic() + REDIS_RETRY_AFTER
            logger.warning("rate limits: Redis at LIMITS_REDIS_URL failed (%s); counting in PostgreSQL for %.0f s",
                           error, REDIS_RETRY_AFTER)
    return _postgres, _postgres.add(key, rate, now)


# Counting requests --------------------------------------------------------------------------------


class LimitExceeded(Exception):
    """A request over one of its rule's rates; `retry_after` is in whole seconds."""

    def __init__(self, rule: str, scope: str, rate: Rate, retry_after: int):
        self.rule, self.scope, self.rate, self.retry_after = rule, scope, rate, retry_after
        self.message = (f"Too many {RULES[rule]} {SCOPES[scope]} (at most {rate}); "
                        f"try again in {human_duration(retry_after)}.")
        super().__init__(self.message)


def consume(rule: str, *, ip: str | None = None, wallet: str | None = None, now: float | None = None) -> None:
    """Count one request of `rule` for each scope given (the client's address, the wallet).
    Raises LimitExceeded when a scope is full; the request then counts in no scope.

    Inside a transaction, PostgreSQL counts are part of it (and roll back with it)."""
    now = time.time() if now is None else now
    counted = []
    for scope, value in (("ip", ip), ("wallet", wallet)):
        rate = rate_for(rule, scope) if value else None
        if rate is None:
            continue
        key = f"{rule}:{scope}:{value}"
        store, hit = _add(key, rate, now)
        if not hit.allowed:
            for done_store, done_key, token in counted:
                done_store.undo(done_key, token)
            raise LimitExceeded(rule, scope, rate, hit.retry_after)
        counted.append((store, key, hit.token))


def human_duration(seconds: int) -> str:
    """Rounded up, in the largest unit that still reads precisely ("in 24 hours", not "in 1 day")."""
    for unit, size, below in (("second", 1, 100), ("minute", 60, 6000), ("hour", 3600, 48 * 3600)):
        if seconds < below:
            n = math.ceil(seconds / size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    n = math.ceil(seconds / 86400)
    return f"{n} days"


# Storage --------------------------------------------------------------------------------------------


class StorageRefused(Exception):
    def __init__(self, code: str, message: str, status: int):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def human_size(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size:,} bytes"


def reserve_storage(*, wallet: str, ip: str, size: int) -> StorageReservation:
    """Hold `size` bytes for an upload from `wallet` at client address `ip`, before it streams.

    Under the scopes' row locks (taken in one order, so two uploads never deadlock), each
    scope's stored bytes plus its live reservations plus `size` must fit its quota; and under
    this host's disk lock, the storage volumes must keep UPLOAD_MIN_FREE_DISK free once this and
    every other upload under way on this host are written. Raises StorageRefused."""
    wallet_scope, ip_scope = f"wallet:{wallet}", f"ip:{ip}"
    now = timezone.now()
    host = socket.gethostname()
    with transaction.atomic():
        StorageUsage.objects.bulk_create([StorageUsage(scope=wallet_scope), StorageUsage(scope=ip_scope)],
                                         ignore_conflicts=True)
        used = dict(StorageUsage.objects.select_for_update().filter(scope__in=[wallet_scope, ip_scope])
                    .order_by("scope").values_list("scope", "used"))
        live = StorageReservation.objects.filter(expires_at__gt=now)
        for kind, scope, quota in (("wallet", wallet_scope, settings.STORAGE_QUOTA_PER_WALLET),
                                   ("ip", ip_scope, settings.STORAGE_QUOTA_PER_IP)):
            if not quota:  # 0: no quota for this scope
                continue
            reserved = live.filter(**{kind: scope}).aggregate(total=Sum("size"))["total"] or 0
            if used[scope] + reserved + size > quota:
                whose = "this wallet's storage quota" if kind == "wallet" else "the storage quota of your network address"
                under_way = f", {human_size(reserved)} in uploads under way" if reserved else ""
                raise StorageRefused(
                    "storage_quota_exceeded",
                    f"This file ({human_size(size)}) does not fit in {whose}: {human_size(used[scope])} stored"
                    f"{under_way}, of {human_size(quota)}.", 413,
                )
        _check_free_disk(size, host, now)
        return StorageReservation.objects.create(
            wallet=wallet_scope, ip=ip_scope, size=size, host=host,
            expires_at=now + timedelta(seconds=settings.UPLOAD_RESERVATION_TTL),
        )


def _storage_dirs() -> list[Path]:
    """The local directories an upload is written to: the temporary directory, then the private
    storage's (none for a remote storage)."""
    dirs = [Path(settings.UPLOAD_TMP_DIR)]
    location = getattr(storages["private"], "location", None)
    if location:
        dirs.append(Path(location))
    return dirs


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_free_disk(size: int, host: str, now) -> None:
    with connection.cursor() as cursor:  # one disk check at a time on this host, so two cannot both pass
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"limits.disk:{host}"])
    # Whole reservations count, although an upload under way has already written part of its
    # file: erring towards refusing keeps the floor a floor.
    pending = (StorageReservation.objects.filter(host=host, expires_at__gt=now)
               .aggregate(total=Sum("size"))["total"] or 0)
    seen = set()
    for directory in map(_existing, _storage_dirs()):
        device = os.stat(directory).st_dev
        if device in seen:
            continue
        seen.add(device)
        if shutil.disk_usage(directory).free - pending - size < settings.UPLOAD_MIN_FREE_DISK:
            logger.warning("uploads refused: %s would drop below UPLOAD_MIN_FREE_DISK (%s free, %s pending, %s asked)",
                           directory, shutil.disk_usage(directory).free, pending, size)
            raise StorageRefused(
                "storage_low", "The server is low on disk space and is not taking uploads right now; try again later.",
                507,
            )


def keep_reservation(reservation: StorageReservation) -> None:
    """Push the reservation's expiry on while its upload is still streaming."""
    StorageReservation.objects.filter(pk=reservation.pk).update(
        expires_at=timezone.now() + timedelta(seconds=settings.UPLOAD_RESERVATION_TTL))


def settle_storage(reservation: StorageReservation, *, size: int) -> None:
    """Charge the stored file's `size` to the reservation's scopes and drop the reservation. Call
    it in the transaction that stores the file, so both happen or neither does."""
    scopes = sorted({reservation.wallet, reservation.ip})
    StorageUsage.objects.bulk_create([StorageUsage(scope=s) for s in scopes], ignore_conflicts=True)
    list(StorageUsage.objects.select_for_update().filter(scope__in=scopes).order_by("scope"))
    StorageUsage.objects.filter(scope__in=scopes).update(used=F("used") + size, updated_at=timezone.now())
    StorageReservation.objects.filter(pk=reservation.pk).delete()


def release_storage(reservation: StorageReservation) -> None:
    """Give a reservation back (nothing happens when it was settled)."""
    StorageReservation.objects.filter(pk=reservation.pk).delete()


# Housekeeping ---------------------------------------------------------------------------------------


def purge_expired() -> dict[str, int]:
    """Delete request logs whose every hit has left its period, and reservations whose upload
    died with its process (a live upload keeps pushing its expiry on)."""
    now = timezone.now()
    counters_deleted, _ = RequestLog.objects.filter(expires_at__lt=now).delete()
    reservations_deleted, _ = StorageReservation.objects.filter(expires_at__lt=now).delete()
    return {"counters": counters_deleted, "reservations": reservations_deleted}

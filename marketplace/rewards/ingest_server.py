"""The heartbeat ingest server: the node's two hot paths in a small ASGI application, outside
Django's request cycle, served by gunicorn with uvicorn workers (marketplace/ingest_conf.py):

    gunicorn -c marketplace/ingest_conf.py marketplace.rewards.ingest_server:app

    POST /api/v1/node/heartbeat
    GET  /api/v1/node/probe/<device>/<nonce>
    GET  /healthz

nginx sends those two paths here and everything else to the Django web process, so a node talks
to one address. The checks are ingest.check and ingest.why_refused, the ones the Django view makes
(a server without this process takes heartbeats through that view, one statement each).

What makes it faster than the view: no middleware or URL resolving, and group commit. Each worker
process keeps one PostgreSQL connection; a heartbeat that passed its checks waits in a queue, and
whatever waited while the previous statement ran goes in the next one: one conditional UPDATE of
the device rows feeding one INSERT, its own transaction. A heartbeat is acknowledged only after the
statement that stored it committed, so an acknowledged heartbeat is stored (the kill tests in
tests/integration/test_heartbeats.py); when the statement fails, every heartbeat of it gets a 503
and the node sends it again (nothing was stored: the statement is one transaction), and when it
failed on its data rather than the connection, its heartbeats are tried again one by one, so one
bad row fails only itself. (A connection lost while PostgreSQL committed leaves it unknown: the
node's resend then gets 409 `replayed` and it resumes from its session, as after any lost
answer.) A device appears at most once a statement; its later heartbeats wait for the next.
"""
from __future__ import annotations

import asyncio
from functools import lru_cache
import json
import logging
import os
import time
from types import SimpleNamespace

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import DatabaseError, close_old_connections  # noqa: E402
from django.http.request import split_domain_port, validate_host  # noqa: E402
import psycopg  # noqa: E402

from marketplace.limits.http import client_address  # noqa: E402

from . import ingest  # noqa: E402

log = logging.getLogger(__name__)

HEARTBEAT = "/api/v1/node/heartbeat"
PROBE = "/api/v1/node/probe/"
BATCH = 1000  # heartbeats a statement at most

_ACCEPT_MANY = """
WITH input AS (
    SELECT * FROM unnest(%(device)s::varchar[], %(seq)s::bigint[], %(next)s::varchar[], %(nonce)s::varchar[],
                         %(ip)s::inet[], %(now)s::timestamptz[], %(earliest)s::timestamptz[], %(slot)s::bigint[],
                         %(probe_ok)s::boolean[], %(sent)s::timestamptz[], %(bytes_up)s::bigint[],
                         %(bytes_down)s::bigint[], %(latency_ms)s::integer[])
        AS t(device, seq, next, nonce, ip, now, earliest, slot, probe_ok, sent, bytes_up, bytes_down, latency_ms)),
device AS (
    UPDATE rewards_device d SET seq = i.seq, nonce = i.next, last_seen_at = i.now, last_ip = i.ip
    FROM input i
    WHERE d.address = i.device AND d.contributor_id IS NOT NULL AND d.seq < i.seq AND d.nonce = i.nonce
      AND (d.last_seen_at IS NULL OR d.last_seen_at <= i.earliest)
      AND NOT """ + ingest.CONTRIBUTE_BANNED_SQL.format(device="d") + """
    RETURNING d.id, i.*),
stored AS (
    INSERT INTO rewards_heartbeat (device_id, seq, received_at, slot, probe_ok, ip, sent_at, bytes_up, bytes_down,
                                   latency_ms)
    SELECT id, seq, now, slot, probe_ok, ip, sent, bytes_up, bytes_down, latency_ms FROM device)
SELECT device FROM device"""

_WHY_MANY = ("SELECT address, seq, nonce, contributor_id, last_seen_at, "
             + ingest.CONTRIBUTE_BANNED_SQL.format(device="rewards_device")
             + " FROM rewards_device WHERE address = ANY(%s::varchar[])")

COLUMNS = ("device", "seq", "next", "nonce", "ip", "now", "earliest", "slot", "probe_ok", "sent", "bytes_up",
           "bytes_down", "latency_ms")


#: Connection parameters of Django's OPTIONS that libpq takes as they are (e.g. DATABASE_URL's
#: ?sslmode=require); Django's own options (pool, isolation level...) are not libpq's.
LIBPQ_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "application_name",
                 "target_session_attrs", "passfile", "service")


def _conninfo() -> dict:
    """The default database's connection parameters, for the writer's own async connection."""
    db = settings.DATABASES["default"]
    info = {"dbname": db["NAME"], "user": db.get("USER"), "password": db.get("PASSWORD"), "host": db.get("HOST"),
            "port": db.get("PORT")}
    info.update({key: value for key, value in (db.get("OPTIONS") or {}).items() if key in LIBPQ_OPTIONS})
    return {key: value for key, value in info.items() if value not in (None, "")}


class DatabaseDown(Exception):
    """The heartbeat was not stored (the database failed or did not answer): a 503."""


_NOT_STORED = object()


class Writer:
    """The heartbeats of this process, stored together (see the module's docstring).
    `store(params)` returns ingest.STORED once stored, or the device row that refused it ((seq,
    nonce, contributor_id, last_seen_at), None for no such device); it raises DatabaseDown when
    the heartbeat was not stored."""

    def __init__(self, statement: str = _ACCEPT_MANY, columns=COLUMNS):
        self.statement, self.columns = statement, columns
        self.pending: list[tuple[dict, asyncio.Future]] = []
        self.wake: asyncio.Event | None = None
        self.task: asyncio.Task | None = None
        self.conn: psycopg.AsyncConnection | None = None

    async def store(self, params: dict):
        if self.task is None or self.task.done():
            self.wake = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        self.pending.append((params, future))
        self.wake.set()
        return await future

    def _next_batch(self) -> list:
        batch, later, seen = [], [], set()
        for item in self.pending:
            device = item[0]["device"]
            if device in seen or len(batch) >= BATCH:
                later.append(item)
            else:
                seen.add(device)
                batch.append(item)
        self.pending = later
        return batch

    async def _run(self):
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                await self._settle(self._next_batch())

    async def _settle(self, batch: list):
        """Store a batch and answer each of its heartbeats. A statement that fails on its data
        (not the connection) is tried again one heartbeat at a time, so a row the checks let
        through but PostgreSQL refuses fails only its own heartbeat."""
        try:
            answers = await self._write([params for params, _ in batch])
        except Exception as error:  # noqa: BLE001 - each waiting heartbeat must get an answer
            lost = isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError, OSError))
            log.warning("heartbeats not stored (%s): %s", len(batch), error, exc_info=not lost)
            await self._close()
            if len(batch) > 1 and not lost:
                for item in batch:
                    await self._settle([item])
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(DatabaseDown(str(error)))
            return
        for params, future in batch:
            if not future.done():
                answer = answers.get(params["device"], _NOT_STORED)
                if answer is _NOT_STORED:
                    future.set_exception(DatabaseDown("the reason it was refused could not be read"))
                else:
                    future.set_result(answer)

    async def _write(self, rows: list[dict]) -> dict:
        """{device: ingest.STORED, or the device row that refused its heartbeat}. The heartbeats
        are stored once the first statement returns; the refused ones' rows are read after, and
        if that read fails they are left out of the answer (not stored: the node sends them
        again), never the stored ones."""
        if self.conn is None or self.conn.closed:
            # A statement stuck behind a lock ends after INGEST_STATEMENT_TIMEOUT ms (its
            # heartbeats get a 503), not never.
            timeout = int(os.environ.get("INGEST_STATEMENT_TIMEOUT", "10000"))
            self.conn = await psycopg.AsyncConnection.connect(**_conninfo(), autocommit=True, connect_timeout=5,
                                                              options=f"-c statement_timeout={timeout}")
        # In address order: two processes' statements lock the device rows in one order.
        rows = sorted(rows, key=lambda row: row["device"])
        arrays = {name: [row[name] for row in rows] for name in self.columns}
        async with self.conn.cursor() as cursor:
            # Autocommit: the statement is its own transaction, committed when execute returns.
            await cursor.execute(self.statement, arrays, prepare=True)
            if cursor.description is None:  # a statement that returns nothing stored every row (the bench's)
                return {row["device"]: ingest.STORED for row in rows}
            answers = {device: ingest.STORED for (device,) in await cursor.fetchall()}
            refused = [row["device"] for row in rows if row["device"] not in answers]
            if refused:
                try:
                    await cursor.execute(_WHY_MANY, [refused], prepare=True)
                    found = {address: rest for address, *rest in await cursor.fetchall()}
                except (psycopg.Error, OSError) as error:
                    log.warning("why %s heartbeats were refused is unknown: %s", len(refused), error)
                    await self._close()
                    return answers
                answers.update({device: found.get(device) for device in refused})
        return answers

    async def _close(self):
        if self.conn is not None:
            try:
                await self.conn.close()
            except (psycopg.Error, OSError):
                pass
            self.conn = None


writer = Writer()


@lru_cache(maxsize=64)
def _host_allowed(host: str) -> bool:
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


async def _send(send, status: int, body: dict, headers: dict | None = None):
    content = json.dumps(body, separators=(",", ":")).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
           (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})


async def _refuse(send, status: int, code: str, message: str, headers: dict | None = None):
    await _send(send, status, {"error": {"code": code, "message": message}}, headers)


async def _read_body(receive, limit: int) -> bytes | None:
    """The request's body, None once it passes `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _meta(scope, headers: dict) -> SimpleNamespace:
    """What ingest.check and the limits' client_address read of a request, as Django names it."""
    client = scope.get("client")
    return SimpleNamespace(META={"REMOTE_ADDR": client[0] if client else "",
                                 "HTTP_X_FORWARDED_FOR": headers.get(b"x-forwarded-for", b"").decode("latin-1")})


def _check_in_thread(raw, ip, request, now):
    """ingest.check in a worker thread, with that thread's Django connection: one that broke (a
    database restart) is dropped first, as Django's request cycle would."""
    close_old_connections()
    try:
        return ingest.check(raw, ip, request, now)
    except DatabaseError:
        close_old_connections()
        raise


async def heartbeat(scope, receive, send, headers: dict):
    if scope["method"] != "POST":
        return await _refuse(send, 405, "method_not_allowed", "Send heartbeats with POST.", {"Allow": "POST"})
    raw = await _read_body(receive, ingest.MAX_BODY)
    if raw is None:
        return await _refuse(send, 413, "body_too_large", f"A heartbeat is at most {ingest.MAX_BODY} bytes.")
    now = time.time()
    request = _meta(scope, headers)
    try:
        if settings.REWARD_HEARTBEAT_IP_COUNT == "shared":  # the limits service is synchronous Django
            try:
                body, params = await asyncio.to_thread(_check_in_thread, raw, client_address(request), request, now)
            except DatabaseError as error:
                log.warning("the shared address count did not answer: %s", error)
                return await _refuse(send, 503, "unavailable", "The heartbeat was not stored (the database did not "
                                     "answer): send it again.", {"Retry-After": "1"})
        else:
            body, params = ingest.check(raw, client_address(request), request, now)
        try:
            answer = await writer.store(params)
        except DatabaseDown:
            return await _refuse(send, 503, "unavailable", "The heartbeat was not stored (the database did not "
                                 "answer): send it again.", {"Retry-After": "1"})
        if answer is not ingest.STORED:
            raise ingest.why_refused(answer, body, now)
    except ingest.Refusal as refusal:
        return await _send(send, refusal.status, refusal.body(), refusal.headers)
    await _send(send, 200, ingest.acknowledgement(params, now))


async def probe(scope, send):
    if scope["method"] != "GET":
        return await _refuse(send, 405, "method_not_allowed", "Fetch a probe with GET.", {"Allow": "GET"})
    device, _, nonce = scope["path"][len(PROBE):].partition("/")
    answer = ingest.probe_body(device, nonce) if "/" not in nonce else None
    if answer is None:
        return await _refuse(send, 404, "not_found", "No such probe.")
    await _send(send, 200, answer)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await writer._close()
                return await send({"type": "lifespan.shutdown.complete"})
    if scope["type"] != "http":
        return
    headers = dict(scope["headers"])
    if not _host_allowed(headers.get(b"host", b"").decode("latin-1")):
        return await _refuse(send, 400, "bad_request", "This host name is not served here.")
    path = scope["path"]
    if path == HEARTBEAT:
        return await heartbeat(scope, receive, send, headers)
    if path.startswith(PROBE):
        return await probe(scope, send)
    if path == "/healthz":
        return await _send(send, 200, {"status": "ok", "service": "ingest"})
    await _refuse(send, 404, "not_found", "The ingest server answers only heartbeats and probes.")

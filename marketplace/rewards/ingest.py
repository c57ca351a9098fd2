"""Heartbeat ingest: the node's one hot endpoint. Its checks (`check`, `why_refused`) serve two
front ends with the same answers: the ingest server (ingest_server.py, where nginx sends
heartbeats; many a statement) and this module's plain Django view (no DRF: its parsing,
negotiation and schema machinery cost more than the check itself; one a statement), which a
setup without nginx uses.

    POST /api/v1/node/heartbeat   {device, seq, nonce, sent_at, probe, bytes_up, bytes_down,
                                   latency_ms, signature}
    GET  /api/v1/node/probe/<device>/<nonce>

A heartbeat is signed by the device key (signing.heartbeat_message) over the nonce the last
acknowledgement gave, so none can be made in advance; its sequence number only grows. The
accepted path is one SQL statement, so one transaction and one round trip: a conditional UPDATE
of the device row (bound, seq below, nonce equal, last heartbeat at least
REWARD_HEARTBEAT_MIN_INTERVAL ago) feeding the INSERT of the heartbeat row. The answer is sent
after that statement committed: an acknowledged heartbeat is stored. Only a refused heartbeat
reads the device row again, to say why.

Probes: an acknowledgement names /probe/<device>/<nonce>, whose answer (an HMAC of the server's
secret) the next heartbeat carries; a heartbeat whose answer is right has `probe_ok` and counts
for uptime (at most one slot of REWARD_SLOT_SECONDS per device).
"""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
from functools import lru_cache
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import threading
import time

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from marketplace import prepared
from marketplace.accounts.bans import CONTRIBUTE, CONTRIBUTE_BANNED_SQL, REFUSALS
from marketplace.api import error_response
from marketplace.limits import services as limits
from marketplace.limits.http import client_address, client_network

from . import signing

MAX_BODY = 4096
INT_FIELDS = ("seq", "sent_at", "bytes_up", "bytes_down", "latency_ms")
TEXT_FIELDS = ("device", "nonce", "probe", "signature")
BIGINT = 2**63 - 1
NONCE = re.compile(r"0x[0-9a-f]{64}")  # every nonce the server gives (secrets.token_hex)
STORED = "stored"  # ingest_server's answer for a heartbeat its statement took

_ACCEPT = """
WITH device AS (
    UPDATE rewards_device SET seq = %(seq)s, nonce = %(next)s::varchar, last_seen_at = %(now)s, last_ip = %(ip)s::inet
    WHERE address = %(device)s::varchar AND contributor_id IS NOT NULL AND seq < %(seq)s
      AND nonce = %(nonce)s::varchar AND (last_seen_at IS NULL OR last_seen_at <= %(earliest)s)
      AND NOT """ + CONTRIBUTE_BANNED_SQL.format(device="rewards_device") + """
    RETURNING id)
INSERT INTO rewards_heartbeat (device_id, seq, received_at, slot, probe_ok, ip, sent_at, bytes_up, bytes_down,
                               latency_ms)
SELECT id, %(seq)s, %(now)s, %(slot)s, %(probe_ok)s, %(ip)s::inet, %(sent)s, %(bytes_up)s, %(bytes_down)s,
       %(latency_ms)s
FROM device RETURNING device_id"""

_WHY = ("SELECT seq, nonce, contributor_id, last_seen_at, " + CONTRIBUTE_BANNED_SQL.format(device="rewards_device")
        + " FROM rewards_device WHERE address = %s")


def probe_answer(device: str, nonce: str) -> str:
    """What the probe URL answers for (device, nonce): only the server can make it."""
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, f"{device.lower()}|{nonce.lower()}".encode(), hashlib.sha256).hexdigest()


def probe_url(device: str, nonce: str) -> str:
    return f"/api/v1/node/probe/{device}/{nonce}"


def slot_of(received: float) -> int:
    return int(received // settings.REWARD_SLOT_SECONDS)


def trusted(ip: str) -> bool:
    """Inside REWARD_TRUSTED_NETWORKS: exempt from the rules on addresses."""
    return _trusted(ip, tuple(settings.REWARD_TRUSTED_NETWORKS))


@lru_cache(maxsize=4096)
def _trusted(ip: str, networks: tuple) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


class _PerAddress:
    """Heartbeats per client address a minute, counted in this process (a fixed window). A
    shared count (the limits service) costs a second database round trip per heartbeat, more
    than the heartbeat's own statement; the per-device interval, checked in that statement,
    holds everywhere. With W web processes an address gets at most W times the rate."""

    def __init__(self):
        self.lock = threading.Lock()
        self.window = 0
        self.counts: dict[str, int] = {}

    def allow(self, ip: str, now: float) -> bool:
        window = int(now // 60)
        ip = _counted_as(ip)
        with self.lock:
            if window != self.window:
                self.window, self.counts = window, {}
            count = self.counts.get(ip, 0) + 1
            self.counts[ip] = count
        return count <= settings.REWARD_HEARTBEATS_PER_IP_MINUTE


per_address = _PerAddress()


@lru_cache(maxsize=65536)
def _counted_as(ip: str) -> str:
    """Everyone in one IPv6 /64 counts as one address (what a single host or home is given), as
    the limits service counts them."""
    if ":" not in ip:
        return ip
    try:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    except ValueError:
        return ip


def _address_wait(ip: str, request, now: float) -> int:
    """Seconds the address must wait, 0 when this heartbeat is within its rate."""
    if settings.REWARD_HEARTBEAT_IP_COUNT == "shared":
        try:
            limits.consume("node_heartbeat", ip=client_network(request), now=now)
        except limits.LimitExceeded as exceeded:
            return exceeded.retry_after
        return 0
    return 0 if per_address.allow(ip, now) else 60 - int(now) % 60


class Refusal(Exception):
    """A heartbeat not taken: the status, the API's error code and message, and any fields added
    to the error (`seq`, `server_time`) or headers (`Retry-After`)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers or {}, extra

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def _parse(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except ValueError:
        raise Refusal(400, "invalid", "The body is not JSON.") from None
    if not isinstance(body, dict):
        raise Refusal(400, "invalid", "The body is a JSON object.")
    for name in INT_FIELDS:
        value = body.get(name, 0 if name in ("bytes_up", "bytes_down", "latency_ms") else None)
        if type(value) is not int or not 0 <= value <= BIGINT:
            raise Refusal(400, "invalid", f"{name} is a whole number from 0.")
        body[name] = value
    for name in TEXT_FIELDS:
        value = body.get(name, "" if name == "probe" else None)
        # Printable ASCII only: a NUL or another control character would not even reach the
        # database (and in the ingest server's batches it would fail the other devices' rows).
        if not isinstance(value, str) or len(value) > 200 or not (value.isascii() and value.isprintable()):
            raise Refusal(400, "invalid", f"{name} is a string of printable ASCII.")
        body[name] = value
    if not NONCE.fullmatch(body["nonce"]):
        raise Refusal(400, "invalid", "nonce is 0x and 64 lowercase hex digits, as the last acknowledgement gave it.")
    if body["latency_ms"] > 2**31 - 1:
        raise Refusal(400, "invalid", "latency_ms is too large.")
    return body


def check(raw: bytes, ip: str, request, now: float) -> tuple[dict, dict]:
    """Everything about a heartbeat that needs no database: the body, the clock, the address's
    rate and the device's signature. Returns (body, the parameters of the accepting statement)
    or raises Refusal. `request` (anything with a Django-style META) is read only when the
    address count is shared."""
    if len(raw) > MAX_BODY:
        raise Refusal(413, "body_too_large", f"A heartbeat is at most {MAX_BODY} bytes.")
    body = _parse(raw)
    skew = body["sent_at"] - now
    if abs(skew) > settings.REWARD_CLOCK_SKEW:
        raise Refusal(400, "clock_skew", f"The heartbeat's time is {int(skew)} seconds off the server's (at most "
                      f"{settings.REWARD_CLOCK_SKEW} allowed): set this machine's clock.", server_time=int(now))
    if not trusted(ip):
        wait = _address_wait(ip, request, now)
        if wait:
            raise Refusal(429, "throttled", f"At most {settings.REWARD_HEARTBEATS_PER_IP_MINUTE} heartbeats a "
                          "minute from one address.", headers={"Retry-After": str(wait)})
    try:
        device = signing.checksum(body["device"])
        message = signing.heartbeat_message(
            chain_id=settings.CHAIN_ID, device=device, seq=body["seq"], nonce=body["nonce"],
            sent_at=body["sent_at"], probe=body["probe"], bytes_up=body["bytes_up"],
            bytes_down=body["bytes_down"], latency_ms=body["latency_ms"])
        signer = signing.recover(message, body["signature"])
    except (ValueError, TypeError):  # BadSignature is a ValueError, as is a malformed address
        signer = None
    if signer != device:
        raise Refusal(401, "forged", "The heartbeat is not signed by the device it names.")
    nonce = body["nonce"]
    received = datetime.fromtimestamp(now, tz=dt_timezone.utc)
    params = {
        "seq": body["seq"], "next": "0x" + secrets.token_hex(32), "now": received,
        "ip": ip if ip != "unknown" else None, "device": device, "nonce": nonce,
        "earliest": datetime.fromtimestamp(now - settings.REWARD_HEARTBEAT_MIN_INTERVAL, tz=dt_timezone.utc),
        "slot": slot_of(now), "probe_ok": bool(body["probe"]) and hmac.compare_digest(
            body["probe"], probe_answer(device, nonce)),
        "sent": datetime.fromtimestamp(body["sent_at"], tz=dt_timezone.utc),
        "bytes_up": body["bytes_up"], "bytes_down": body["bytes_down"], "latency_ms": body["latency_ms"],
    }
    return body, params


def acknowledgement(params: dict, now: float) -> dict:
    """The answer to a stored heartbeat: the nonce the next one signs and the probe to fetch."""
    return {"seq": params["seq"], "nonce": params["next"], "probe": {"url": probe_url(params["device"], params["next"])},
            "slot": params["slot"], "server_time": now}


def _json(refusal: Refusal) -> JsonResponse:
    response = JsonResponse(refusal.body(), status=refusal.status)
    for name, value in refusal.headers.items():
        response[name] = value
    return response


@csrf_exempt
def heartbeat(request):
    """Take one heartbeat; answer the next nonce and probe once it is stored. (Behind nginx the
    heartbeats go to the ingest server, marketplace/rewards/ingest_server.py, which makes the same
    checks and stores many heartbeats a statement; this view takes them one at a time.)"""
    if request.method != "POST":
        response = error_response(405, "Send heartbeats with POST.", "method_not_allowed")
        response["Allow"] = "POST"
        return response
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY:
        return error_response(413, f"A heartbeat is at most {MAX_BODY} bytes.", "body_too_large")
    now = time.time()
    try:
        body, params = check(request.body, client_address(request), request, now)
        with prepared.cursor() as cursor:
            # Autocommit: the statement is its own transaction, committed when execute returns.
            cursor.execute(_ACCEPT, params, prepare=True)
            if cursor.fetchone() is None:
                cursor.execute(_WHY, [params["device"]], prepare=True)
                raise why_refused(cursor.fetchone(), body, now)
    except Refusal as refusal:
        return _json(refusal)
    return JsonResponse(acknowledgement(params, now))


def why_refused(row, body, now) -> Refusal:
    """A heartbeat the conditional UPDATE did not take: say which condition failed. `row` is the
    device's (seq, nonce, contributor_id, last_seen_at, banned), None for no such device; `banned`:
    its wallet has an active contribute ban (accounts.WalletBan)."""
    if row is None:
        return Refusal(404, "unknown_device", "No device has this key: bind it first (datamarket-node bind).")
    seq, nonce, contributor_id, last_seen_at, banned = row
    if contributor_id is None:
        return Refusal(403, "unbound_device", "This device is bound to no wallet: bind it (datamarket-node bind).")
    if banned:
        return Refusal(403, "banned", REFUSALS[CONTRIBUTE])
    if body["seq"] <= seq:
        code = "replayed" if body["seq"] == seq else "out_of_order"
        return Refusal(409, code, f"The server's last sequence number for this device is {seq}: send a greater one "
                       "(GET /api/v1/node/session resumes a node that lost its state).", seq=seq)
    if body["nonce"] != nonce:
        return Refusal(409, "precomputed", "The heartbeat does not sign the nonce of the last acknowledgement: a "
                       "heartbeat cannot be made in advance (GET /api/v1/node/session gives the current one).",
                       seq=seq)
    if last_seen_at is not None:
        wait = settings.REWARD_HEARTBEAT_MIN_INTERVAL - (now - last_seen_at.timestamp())
        if wait > 0:
            interval = settings.REWARD_HEARTBEAT_MIN_INTERVAL
            return Refusal(429, "too_soon", f"At most one heartbeat every {interval:g} seconds per device.",
                           headers={"Retry-After": str(max(1, int(wait + 0.999)))}, seq=seq)
    # Another heartbeat of this device changed its row between the two statements.
    return Refusal(409, "conflict", "Another heartbeat of this device was taken at the same moment.", seq=seq)


def probe_body(device: str, nonce: str) -> dict | None:
    """The probe's answer, None for a path that names no probe."""
    if len(device) != 42 or len(nonce) != 66:
        return None
    return {"answer": probe_answer(device, nonce)}


def probe(request, device: str, nonce: str):
    """The answer a node fetches and carries in its next heartbeat (no database: it is the HMAC
    of the device and nonce under the server's secret)."""
    if request.method != "GET":
        response = error_response(405, "Fetch a probe with GET.", "method_not_allowed")
        response["Allow"] = "GET"
        return response
    answer = probe_body(device, nonce)
    if answer is None:
        return error_response(404, "No such probe.", "not_found")
    return JsonResponse(answer)

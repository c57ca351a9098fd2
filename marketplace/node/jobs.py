"""The node's side of fetch jobs: each turn of the node's loop calls `work(client, state)`, which
asks for jobs, fetches and extracts them through the fetch guard, commits to each result, and
reveals it once the server opens reveals.

What a node refuses to do, whatever the server asks: fetch a private, loopback, link-local,
multicast or reserved address (unless its host and port are on the node's allow list, as the
demo's local site is), fetch what the site's robots.txt disallows, or go over its bandwidth cap.
It declines such a job with the reason, and the job goes to another node.

`client` is any object with:
    client.device -> str                                the device key's address
    client.signed_response(method, path, json=None) -> response  a request signed by the device key;
                                                        response.status_code, response.json()
`marketplace.node.client.NodeClient` is one.

Committed results wait in `state.pending` (rows and salt) until they are revealed; a node that
restarts between the two loses them and earns nothing for those jobs (the server settles them
without it).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
import logging
import secrets
import time
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from marketplace.rewards import extracting, fetching

logger = logging.getLogger(__name__)

JOBS_PATH = "/api/v1/node/jobs"
ROBOTS_AGENT = "datamarket-node"
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: crawlers must read at least 500 KiB
ROBOTS_TTL = 3600.0
ROBOTS_TIMEOUT = 10.0


class Bandwidth:
    """Bytes fetched in the last minute and the last hour, against the node's caps (None: none)."""

    def __init__(
        self, per_minute: int | None = None, per_hour: int | None = None, clock=time.monotonic
    ):
        self.per_minute, self.per_hour, self.clock = per_minute, per_hour, clock
        self.log: deque[tuple[float, int]] = deque()

    def record(self, size: int) -> None:
        if size:
            self.log.append((self.clock(), size))

    def used(self, seconds: float) -> int:
        now = self.clock()
        while self.log and self.log[0][0] <= now - 3600:
            self.log.popleft()
        return sum(size for at, size in self.log if at > now - seconds)

    def remaining(self) -> int | None:
        """Bytes that may still be fetched now (None: no cap)."""
        left = []
        if self.per_minute is not None:
            left.append(self.per_minute - self.used(60))
        if self.per_hour is not None:
            left.append(self.per_hour - self.used(3600))
        return max(0, min(left)) if left else None


class RobotsCache:
    """Each host's robots.txt (RFC 9309), fetched through the fetch guard and kept ROBOTS_TTL
    seconds. A robots.txt that is missing (4xx) allows everything; one that cannot be read (5xx,
    no connection, a timeout) disallows everything until it is read again."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.rules: dict[tuple, tuple[float, RobotFileParser | bool]] = {}

    def allowed(self, url: str, *, allow: fetching.AllowList, bandwidth: Bandwidth) -> bool:
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname, parts.port)
        cached = self.rules.get(key)
        if cached is None or cached[0] < self.clock():
            cached = (self.clock() + ROBOTS_TTL, self._read(parts, allow, bandwidth))
            self.rules[key] = cached
        rules = cached[1]
        if isinstance(rules, bool):
            return rules
        return rules.can_fetch(ROBOTS_AGENT, url)

    def _read(self, parts, allow, bandwidth):
        netloc = parts.netloc.rsplit("@", 1)[-1]
        try:
            fetched = fetching.fetch(
                f"{parts.scheme}://{netloc}/robots.txt",
                max_bytes=ROBOTS_MAX_BYTES,
                timeout=ROBOTS_TIMEOUT,
                allow=allow,
            )
        except fetching.FetchError as exc:
            bandwidth.record(exc.bytes_read)
            if exc.reason == "refused_address":
                raise
            return exc.status is not None and 400 <= exc.status < 500
        bandwidth.record(fetched.bytes_read)
        rules = RobotFileParser()
        rules.parse(fetched.body.decode("utf-8", errors="replace").splitlines())
        return rules


@dataclass
class JobsState:
    """What `work` keeps between turns. `allow` lists host:port entries the node may fetch
    although they are not public (the node's --allow flag: the demo's site); `want` is how many
    new jobs it asks for each turn."""

    allow: fetching.AllowList = field(default_factory=fetching.AllowList)
    bandwidth: Bandwidth = field(default_factory=Bandwidth)
    robots: RobotsCache = field(default_factory=RobotsCache)
    want: int = 2
    pending: dict[int, tuple[list, str]] = field(default_factory=dict)  # job id -> (rows, salt)
    totals: Counter = field(default_factory=Counter)  # committed, revealed, declined: since start
    last_error: str = ""


def work(client, state: JobsState) -> Counter:
    """One turn: lease (when the bandwidth cap leaves room), fetch and commit what is leased,
    reveal what is open for it. Returns this turn's counts (fetched, committed, revealed,
    declined, declined:<reason>) and adds them to state.totals. Never raises for a refusal of
    the server or for a server that cannot be reached: it is noted in state.last_error and the
    next turn tries again."""
    done = Counter()
    remaining = state.bandwidth.remaining()
    want = state.want if remaining is None or remaining > 0 else 0
    try:
        response = client.signed_response("POST", JOBS_PATH, {"want": want})
    except OSError as exc:
        state.last_error = f"the server cannot be reached: {exc}"
        return done
    if response.status_code != 200:
        state.last_error = _error(response)
        return done
    answer = response.json()
    listed = answer["jobs"]
    if answer.get("suspended_until"):
        state.last_error = (
            f"no new jobs until {answer['suspended_until']}: too many leases of this device or "
            "its wallet ended without a result or were declined lately, or the hour's leases "
            "are taken"
        )
    try:
        for job in listed:
            if job["phase"] == "fetch":
                _fetch_and_commit(client, state, job, done)
            elif job["phase"] == "reveal":
                _reveal(client, state, job, done)
    except OSError as exc:
        # The server went away mid-turn (stopped, restarted, the network): what was fetched
        # stays pending, and the next turn commits or reveals it when the lease is listed again.
        state.last_error = f"the server cannot be reached: {exc}"
    else:
        ids = {job["id"] for job in listed}
        state.pending = {job_id: kept for job_id, kept in state.pending.items() if job_id in ids}
    state.totals.update(done)
    return done


def _error(response) -> str:
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def _decline(client, state, job, reason: str, done: Counter) -> None:
    logger.info("declining job %s (%s)", job["id"], reason)
    response = client.signed_response("POST", f"{JOBS_PATH}/{job['id']}/decline", {"reason": reason})
    if response.status_code == 200:
        done["declined"] += 1
        done[f"declined:{reason}"] += 1
    else:
        state.last_error = _error(response)


def _fetch_and_commit(client, state: JobsState, job: dict, done: Counter) -> None:
    if job["id"] not in state.pending:
        url = job["url"]
        try:
            if not state.robots.allowed(url, allow=state.allow, bandwidth=state.bandwidth):
                return _decline(client, state, job, "robots_txt", done)
        except fetching.FetchError as exc:
            return _decline(client, state, job, exc.reason, done)
        remaining = state.bandwidth.remaining()
        if remaining is not None and remaining <= 0:
            return _decline(client, state, job, "bandwidth_cap", done)
        limit = job["max_bytes"] if remaining is None else min(job["max_bytes"], remaining)
        try:
            fetched = fetching.fetch(
                url, max_bytes=limit, timeout=job["timeout_seconds"], allow=state.allow
            )
        except fetching.FetchError as exc:
            state.bandwidth.record(exc.bytes_read)
            reason = exc.reason
            if reason == "too_large" and limit < job["max_bytes"]:
                reason = "bandwidth_cap"
            return _decline(client, state, job, reason, done)
        state.bandwidth.record(fetched.bytes_read)
        done["fetched"] += 1
        try:
            rows = extracting.extract(job["extract"], fetched.body, fetched.content_type)
        except extracting.ExtractError:
            return _decline(client, state, job, "extract_failed", done)
        state.pending[job["id"]] = (rows, secrets.token_hex(16))
    rows, salt = state.pending[job["id"]]
    commit = extracting.commitment(job_id=job["id"], device=client.device, rows=rows, salt=salt)
    response = client.signed_response("POST", f"{JOBS_PATH}/{job['id']}/commit", {"commit": commit})
    if response.status_code == 200:
        done["committed"] += 1
    else:
        state.last_error = _error(response)
        if response.status_code in (
            404,
            409,
        ):  # the lease is gone: the result will never be revealed
            state.pending.pop(job["id"], None)


def _reveal(client, state: JobsState, job: dict, done: Counter) -> None:
    kept = state.pending.get(job["id"])
    if kept is None:
        return  # committed before a restart: the salt is gone
    rows, salt = kept
    response = client.signed_response(
        "POST", f"{JOBS_PATH}/{job['id']}/reveal", {"rows": rows, "salt": salt}
    )
    if response.status_code == 200:
        done["revealed"] += 1
        state.pending.pop(job["id"], None)
        return
    state.last_error = _error(response)
    if response.status_code in (400, 404, 409) and "reveal_too_early" not in state.last_error:
        state.pending.pop(job["id"], None)

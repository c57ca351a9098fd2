"""The node's run loop: one heartbeat per interval, the probe its acknowledgement names, a turn
of fetch jobs (node/jobs.py), and a status line.

The sequence number is never reused: the state (seq, nonce) is written atomically after every
acknowledgement, and at start and after a 409 the node asks the server (GET /session, signed)
for its own record and carries on above it. When the server is down the node retries with
exponential backoff and jitter (so a thousand nodes do not come back in step)."""
from __future__ import annotations

import random
import signal
import sys
import time

from . import jobs
from .client import Refused, ServerDown

RESYNC_CODES = {"replayed", "out_of_order", "precomputed", "conflict"}
BACKOFF_START = 1.0
BACKOFF_CAP = 60.0
STATUS_EVERY = 60.0  # seconds between two status requests


def backoff(attempt: int, *, start: float = BACKOFF_START, cap: float = BACKOFF_CAP) -> float:
    """Full-range jitter over an exponential ceiling: between half and all of min(cap, start * 2^n)."""
    ceiling = min(cap, start * 2 ** attempt)
    return ceiling * random.uniform(0.5, 1.0)


class StatusLine:
    """One line, rewritten in place on a terminal; plain lines otherwise (a log, a test)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.width = 0

    def show(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class Runner:
    def __init__(self, client, node_dir, *, interval: float, count: int | None = None, stream=None,
                 jobs_state: jobs.JobsState | None = None):
        self.client, self.node_dir = client, node_dir
        self.jobs = jobs_state or jobs.JobsState()
        self.interval = interval
        self.count = count
        self.state = node_dir.state()
        self.line = StatusLine(stream)
        self.connection = "starting"
        self.figures: dict = {}
        self.status_at = 0.0
        self.acknowledged = 0
        self.stopping = False

    def stop(self, *_):
        self.stopping = True

    def render(self) -> str:
        f = self.figures
        parts = [f"[{self.connection}]", f"device {self.client.device[:10]}…", f"seq {self.state.seq}",
                 f"uptime today {f.get('verified_slots', '?')} slots", f"heartbeats {f.get('heartbeats', '?')}",
                 f"jobs done {f.get('jobs_done', self.state.jobs_done)}"]
        if "points" in f:
            parts.append(f"points today {f['points']}")
        if self.jobs.last_error:
            parts.append(f"jobs: {self.jobs.last_error[:60]}")
        return " | ".join(parts)

    def resync(self) -> dict:
        """Take the server's record of this device: its sequence number wins if it is ahead."""
        session = self.client.session()
        self.state.seq = max(self.state.seq, session["seq"])
        self.state.nonce = session["nonce"]
        self.state.probe_url = session["probe"]["url"]
        self.node_dir.save_state(self.state)
        self.interval = max(self.interval, float(session.get("min_interval", 0)))
        if session.get("wallet") is None:
            self.connection = "unbound"
        return session

    def beat(self) -> None:
        probe = ""
        if self.state.probe_url:
            try:
                probe = self.client.probe(self.state.probe_url)
            except Refused:
                probe = ""
        seq = self.state.seq + 1
        try:
            ack = self.client.heartbeat(seq=seq, nonce=self.state.nonce, probe=probe)
        except Refused as refused:
            if refused.code in RESYNC_CODES:
                # The server is ahead (a lost state file, another copy of this node): its
                # record is the truth; the next turn carries on above it.
                self.connection = f"resync ({refused.code})"
                self.resync()
                return
            raise
        self.state.seq, self.state.nonce, self.state.probe_url = ack["seq"], ack["nonce"], ack["probe"]["url"]
        self.node_dir.save_state(self.state)
        self.acknowledged += 1
        self.connection = "connected"

    def work(self) -> None:
        """A turn of fetch jobs (it never raises for the server's refusals: they are noted)."""
        done = jobs.work(self.client, self.jobs)
        if done["revealed"]:
            self.state.jobs_done += done["revealed"]
            self.node_dir.save_state(self.state)

    def refresh_status(self) -> None:
        if time.monotonic() - self.status_at < STATUS_EVERY and self.acknowledged > 1:
            return
        try:
            self.figures = self.client.status()
            self.status_at = time.monotonic()
        except Refused:
            pass

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        attempt = 0
        synced = False
        while not self.stopping:
            started = time.monotonic()
            try:
                if not synced:
                    self.resync()
                    synced = True
                if self.connection == "unbound":
                    self.line.show(self.render() + " | bind this device first (datamarket-node bind)")
                    self.connection = "starting"
                    synced = False
                    self._sleep(self.interval)
                    continue
                self.beat()
                self.refresh_status()
                self.work()
                attempt = 0
            except ServerDown as down:
                wait = backoff(attempt)
                attempt += 1
                self.connection = f"server unreachable, retry {attempt} in {wait:.1f}s ({str(down)[:60]})"
                self.line.show(self.render())
                self._sleep(wait)
                synced = False
                continue
            except Refused as refused:
                self.connection = f"refused: {refused}"
                self.line.show(self.render())
                if refused.code == "unbound_device":
                    synced = False
                elif refused.status in (401, 403, 404):
                    return 2
                self._sleep(self.interval)
                continue
            self.line.show(self.render())
            if self.count is not None and self.acknowledged >= self.count:
                break
            self._sleep(max(0.0, self.interval - (time.monotonic() - started)))
        self.node_dir.save_state(self.state)
        if self.line.tty:
            self.line.stream.write("\n")
        return 0

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.2, end - time.monotonic()))

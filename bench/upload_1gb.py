"""The real path for a ~1 GB CSV: upload through gunicorn, analysis by a Celery worker.

    DATABASE_URL=postgresql://... .venv/bin/python bench/upload_1gb.py
        [--path /tmp/analysis_1gb.csv] [--rows 10000000] [--regenerate]
        [--broker redis://127.0.0.1:6379/15] [--port 0] [--keep]

Starts gunicorn as the Procfile does (`gunicorn -c marketplace/gunicorn_conf.py`) and a
Celery worker (the Procfile's worker line: `celery -A marketplace worker --pool threads
--concurrency 4`) against DATABASE_URL, migrated first; the broker is CELERY_BROKER_URL or
--broker, else the project's default (kombu's SQLAlchemy transport on the same database). It
creates a wallet user and a dataset with the ORM and a signed-in session with Django's
SessionStore (no SIWE round trip), then streams the file (the same generated file as
bench/analysis_1gb.py) from a Python generator to POST /api/v1/datasets/<slug>/versions with a
Content-Length, as a browser or an API client does, with the session cookie and the CSRF header
that session authentication asks for. It prints:

- the upload's throughput, from the first byte sent to the 201 response;
- the peak RSS growth of the gunicorn worker that took the upload, sampled from /proc every
  50 ms against its RSS just before (after a few small uploads have warmed every worker up),
  and the Celery worker's during the analysis;
- the time from that response until the version's analysis is ready (status "analysed" or
  "analysed with N rejected rows" in PostgreSQL, polled every 50 ms), split into the wait for
  the worker to start and the analysis itself: the issue's target is 10 s.

Everything it starts is stopped on exit, on Ctrl-C and on SIGTERM; the uploaded file lives in a
temporary directory that is removed, and the dataset it created is deleted unless --keep.
"""
import argparse
import http.client
import json
import os
from pathlib import Path
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from marketplace.devstack import spawn, stop  # noqa: E402

BIN = Path(sys.executable).parent
TARGET_SECONDS = 10.0
CHUNK = 1024 * 1024
SAMPLE_SECONDS = 0.05
# Any well-formed address: the version records it, nothing here talks to a chain.
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss(pid: int) -> int | None:
    """Resident set size of a process in bytes, from /proc (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


class RssSampler(threading.Thread):
    """Samples the RSS of some processes every SAMPLE_SECONDS; keeps each one's first and peak."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids = list(pids)
        self.first = {pid: rss(pid) or 0 for pid in self.pids}
        self.peak = dict(self.first)
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(SAMPLE_SECONDS):
            for pid in self.pids:
                value = rss(pid)
                if value is not None and value > self.peak[pid]:
                    self.peak[pid] = value

    def stop(self):
        self.done.set()
        self.join()

    def growth(self) -> tuple[int, int, int]:
        """(pid, baseline, growth) of the process that grew most."""
        pid = max(self.pids, key=lambda p: self.peak[p] - self.first[p])
        return pid, self.first[pid], self.peak[pid] - self.first[pid]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(port: int, process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("gunicorn exited during start-up; see its log above")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer on port {port} within {timeout:.0f} s")


def wait_for_line(log: Path, text: str, process, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited during start-up:\n{log.read_text()[-3000:]}")
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise SystemExit(f"{name} was not ready within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def signed_in_session(user) -> str:
    """A session key for `user`, as django.contrib.auth.login would store it."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


WARM_UPS = 20  # at most: until every gunicorn worker has served one


def upload(port: int, path: Path, slug: str, session_key: str) -> tuple[float, float, int, dict]:
    """Stream the file as the request body; returns (start, response time, status, body)."""
    csrf = secrets.token_hex(16)  # a 32-character secret; the header repeats the cookie
    size = path.stat().st_size

    def body():
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request(
        "POST",
        f"/api/v1/datasets/{slug}/versions?filename={path.name}&price=25000000&token={TOKEN}",
        body=body(),
        headers={
            "Content-Length": str(size),
            "Content-Type": "text/csv",
            "Cookie": f"sessionid={session_key}; csrftoken={csrf}",
            "X-CSRFToken": csrf,
        },
    )
    response = conn.getresponse()
    data = response.read()
    answered = time.perf_counter()
    conn.close()
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = {"raw": data[:500].decode(errors="replace")}
    return started, answered, response.status, parsed


def wait_for_analysis(version_id: int, answered: float, timeout: float = 600) -> dict:
    """Poll the version until its analysis ends; returns what happened when."""
    from marketplace.catalog.models import DatasetVersion

    Status = DatasetVersion.Analysis
    done = {Status.DONE, Status.DONE_WITH_REJECTS, Status.FAILED}
    started_at = None
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        row = DatasetVersion.objects.filter(pk=version_id).values(
            "analysis_status", "analysis_message", "row_count", "rejected_rows"
        ).first()
        now = time.perf_counter()
        if row["analysis_status"] != Status.PENDING and started_at is None:
            started_at = now
        if row["analysis_status"] in done:
            return {**row, "ready": now - answered, "started": (started_at or now) - answered}
        time.sleep(SAMPLE_SECONDS)
    raise SystemExit(f"the analysis was not ready {timeout:.0f} s after the upload")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=Path("/tmp/analysis_1gb.csv"))
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--broker", help="CELERY_BROKER_URL for this run (default: the env's, "
                        "else the SQLAlchemy transport on DATABASE_URL)")
    parser.add_argument("--port", type=int, default=0, help="gunicorn's port (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the dataset it creates")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("set DATABASE_URL (an existing PostgreSQL database; it is migrated)")

    sys.path.insert(0, str(ROOT / "bench"))
    from analysis_1gb import generate

    if args.regenerate or not args.path.exists():
        generate(args.path, args.rows)
    size = args.path.stat().st_size

    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "marketplace.settings",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or "bench-only-not-a-secret",
        "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback
        "DJANGO_SECURE_COOKIES": "0",
        "DJANGO_MANIFEST_STATIC": "0",
        "DATA_DIR": str(work / "data"),
        "PRIVATE_STORAGE_DIR": str(work / "files"),
        "UPLOAD_TMP_DIR": str(work / "uploads"),
        "LOG_LEVEL": "WARNING",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    if args.broker:
        env["CELERY_BROKER_URL"] = args.broker
    os.environ.update(env)
    port = args.port or free_port()
    processes = []

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    dataset = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                       cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        from django.conf import settings

        from marketplace.accounts.services import wallet_user
        from marketplace.catalog import services

        user = wallet_user("0x" + secrets.token_hex(20))
        dataset = services.create_dataset(
            owner=user, title=f"Upload bench {time.strftime('%Y-%m-%d %H:%M:%S')}",
            summary="bench/upload_1gb.py", license="CC0-1.0",
        )
        session_key = signed_in_session(user)
        from django.db import connections

        connections.close_all()  # the children open their own; ours reconnects when polling

        web_log, worker_log = work / "gunicorn.log", work / "celery.log"
        web = spawn([BIN / "gunicorn", "-c", "marketplace/gunicorn_conf.py", "marketplace.wsgi",
                     "--bind", f"127.0.0.1:{port}"], log=web_log, env=env)
        processes.append((web, "gunicorn"))
        worker = spawn([BIN / "celery", "-A", "marketplace", "worker", "--loglevel", "INFO",
                        "--pool", "threads", "--concurrency", "4"], log=worker_log, env=env)
        processes.append((worker, "celery worker"))
        wait_for_http(port, web)
        wait_for_line(worker_log, " ready.", worker, "the Celery worker")
        web_workers = children(web.pid)
        broker = settings.CELERY_BROKER_URL.split("://", 1)[0]
        # Small uploads first, so that both gunicorn workers have imported what an upload uses
        # and the RSS growth below is the big upload's own.
        small = work / "warm-up.csv"
        small.write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(100)))
        cold = {pid: rss(pid) for pid in web_workers}
        for _ in range(WARM_UPS):
            status = upload(port, small, dataset.slug, session_key)[2]
            if status != 201:
                raise SystemExit(f"the warm-up upload answered {status}:\n"
                                 f"{web_log.read_text()[-3000:]}")
            warm = [pid for pid in web_workers if (rss(pid) or 0) > (cold[pid] or 0) + 2**20]
            if len(warm) == len(web_workers):
                break
        for version_id in dataset.versions.values_list("pk", flat=True):
            wait_for_analysis(version_id, time.perf_counter(), timeout=60)

        # Read the file once so the upload is timed against the page cache, not the disk.
        with open(args.path, "rb") as f:
            while f.read(1 << 24):
                pass
        load_before = os.getloadavg()[0]
        web_rss = RssSampler(web_workers)
        web_rss.start()
        started, answered, status, body = upload(port, args.path, dataset.slug, session_key)
        web_rss.stop()
        if status != 201:
            raise SystemExit(f"upload answered {status}: {body}\n{web_log.read_text()[-3000:]}")
        worker_rss = RssSampler([worker.pid])
        worker_rss.start()
        version_id = dataset.versions.get(number=body["number"]).pk
        analysis = wait_for_analysis(version_id, answered)
        worker_rss.stop()
        load_after = os.getloadavg()[0]

        seconds = answered - started
        pid, base, grown = web_rss.growth()
        _, worker_base, worker_grown = worker_rss.growth()
        ready = analysis["ready"]
        print(f"file              {size / 1e6:,.0f} MB ({args.path})")
        print(f"upload            {seconds:.2f} s, {size / 1e6 / seconds:,.0f} MB/s "
              f"(first byte sent to the 201 response, loopback)")
        print(f"gunicorn worker   RSS {base / 2**20:,.0f} MiB before, peak growth "
              f"{grown / 2**20:,.1f} MiB during the upload (pid {pid}, sampled every "
              f"{SAMPLE_SECONDS * 1000:.0f} ms)")
        message = analysis["analysis_message"] or ""
        print(f"analysis          {analysis['analysis_status']}: {analysis['row_count']:,} rows, "
              f"{analysis['rejected_rows']:,} rejected {message}".rstrip())
        print(f"ready after       {ready:.2f} s from the upload's response "
              f"({analysis['started']:.2f} s until the worker started it, "
              f"{ready - analysis['started']:.2f} s analysing), target {TARGET_SECONDS:.0f} s: "
              f"{'met' if ready <= TARGET_SECONDS else 'NOT met'}")
        print(f"celery worker     RSS {worker_base / 2**20:,.0f} MiB before, peak growth "
              f"{worker_grown / 2**20:,.1f} MiB during the analysis")
        print(f"broker            {broker}")
        print(f"load average      {load_before:.2f} before, {load_after:.2f} after, "
              f"on {os.cpu_count()} CPUs")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for process, name in reversed(processes):
            stop(process, name)
        if dataset is not None and not args.keep:
            try:
                dataset.delete()
            except Exception as exc:  # the database may be what failed
                print(f"could not delete the bench dataset {dataset.slug}: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The moderation audit log at 1,000,000 entries: loading them (hashes computed in Python, COPY,
then `check_audit`'s walk of the whole chain), then through gunicorn on loopback at concurrency 8
(wrk, signed in as a moderator or a publisher by a session cookie) the audit search API for every
shape moderators and publishers use, one line each with p50/p90/p95/p99, against a static file,
a signed-in API answer with nothing to list (the session, the user and two small queries: the
floor of any signed-in endpoint) and a `SELECT 1`, measured in the same run. The issue's bar: p95 under 50 ms.

    .venv/bin/python bench/audit.py [--rows 1000000] [--duration 10] [--workers 4] [--threads 2]
                                    [--shape NAME] [--keep]

It uses its own database `bench_audit` on DATABASE_URL's server (else the embedded PostgreSQL);
`--keep` reuses it when it is already loaded. Needs `wrk` (apt-get install wrk).
"""
import argparse
import hashlib
import json
import os
from pathlib import Path
import random
import shutil
import statistics
import sys
import time
import urllib.parse
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from wrk_run import gunicorn, wrk  # noqa: E402

DATASETS = 200_000  # targets of dataset entries; the bench publisher owns the first PUBLISHED
PUBLISHED = 40
ACTIONS = [  # (code, share): reviews dominate, as on a live marketplace
    ("dataset.approve", 40), ("dataset.request_changes", 10), ("dataset.reject", 8), ("dataset.delist", 3),
    ("flag.clear", 8), ("flag.confirm", 4), ("wallet.ban", 2), ("wallet.unban", 1), ("report.close", 8),
    ("dispute.resolve", 4), ("chain.confirmed", 12),
]
COMMON = ["spam", "misleading", "duplicate", "license", "personal", "quality"]  # each in ~1/6 of statements
MID = [f"policy{i}" for i in range(200)]
RARE = [f"case{i}" for i in range(100_000)]
MODERATORS = [f"mod{i}" for i in range(30)]


def database_url(fresh, name="bench_audit"):
    import dj_database_url
    import psycopg

    base = os.environ.get("DATABASE_URL")
    if not base:
        from marketplace.devstack import start_embedded_postgres

        base = start_embedded_postgres()
    db = dj_database_url.parse(base)
    admin = dict(dbname="postgres", user=db["USER"] or None, password=db["PASSWORD"] or None,
                 host=db["HOST"] or None, port=db["PORT"] or None)
    with psycopg.connect(**admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if fresh or not exists:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
            fresh = True
    return base.rsplit("/", 1)[0] + "/" + name, fresh


def target_of(action, rng):
    if action.startswith("dataset."):
        return "dataset", str(rng.randint(1, DATASETS))
    if action.startswith("flag."):
        return "flag", str(rng.randint(1, 50_000))
    if action.startswith("wallet."):
        return "wallet", f"0x{rng.getrandbits(160):040x}"
    if action == "dispute.resolve":
        return "order", str(rng.randint(1, 300_000))
    if action == "report.close":
        return "report", str(rng.randint(1, 100_000))
    return "transaction", f"0x{rng.getrandbits(256):064x}"


def load(rows):
    from datetime import datetime, timedelta, timezone

    from django.contrib.auth.models import Group
    from django.db import connection

    from marketplace.accounts.models import User
    from marketplace.catalog.models import Dataset
    from marketplace.moderation import audit

    rng = random.Random(7)
    moderator = User.objects.create_user("bench-moderator")
    Group.objects.get(name="moderator").user_set.add(moderator)
    publisher = User.objects.create_user("bench-publisher", address="0x" + "aa" * 20)
    Dataset.objects.bulk_create([Dataset(owner=publisher, slug=f"bench-{i}", title=f"Bench {i}", license="CC0-1.0",
                                         payout_address=publisher.address) for i in range(PUBLISHED)])
    # Entries about the publisher's datasets name their ids.
    owned = [str(pk) for pk in Dataset.objects.filter(owner=publisher).values_list("pk", flat=True)]
    codes = [code for code, share in ACTIONS for _ in range(share)]
    started = time.monotonic()
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    previous = audit.GENESIS
    with connection.cursor() as cursor:
        with cursor.connection.cursor().copy(
            "COPY moderation_auditentry (id, created_at, actor, actor_id, actor_role, action, target_type, target_id,"
            " reason, statement, internal_note, reporter, details, prev_hash, hash) FROM STDIN"
        ) as copy:
            for i in range(1, rows + 1):
                action = rng.choice(codes)
                target_type, target_id = target_of(action, rng)
                if target_type == "dataset" and rng.random() < 0.0002:
                    target_id = rng.choice(owned)
                when += timedelta(microseconds=rng.randint(1_000, 60_000_000))
                statement = " ".join([rng.choice(COMMON), rng.choice(MID), rng.choice(RARE)]) if rng.random() < 0.8 else ""
                fields = {
                    "id": i, "created_at": when, "actor": "" if action == "chain.confirmed" else rng.choice(MODERATORS),
                    "actor_id": None, "actor_role": "system" if action == "chain.confirmed" else "moderator",
                    "action": action, "target_type": target_type, "target_id": target_id,
                    "reason": rng.choice(MID) if rng.random() < 0.5 else "", "statement": statement,
                    "internal_note": f"see {rng.choice(RARE)}" if rng.random() < 0.2 else "",
                    "reporter": f"0x{rng.getrandbits(160):040x}" if action == "report.close" else "",
                    "details": {"revision": rng.randint(1, 10**6)} if target_type == "dataset" else {},
                    "prev_hash": previous,
                }
                previous = hashlib.sha256(audit.canonical(fields)).hexdigest()
                copy.write_row((i, when, fields["actor"], None, fields["actor_role"], action, target_type, target_id,
                                fields["reason"], statement, fields["internal_note"], fields["reporter"],
                                json.dumps(fields["details"]), fields["prev_hash"], previous))
        cursor.execute("SELECT setval(pg_get_serial_sequence('moderation_auditentry', 'id'), %s)", [rows])
        cursor.execute("VACUUM ANALYZE moderation_auditentry")
        cursor.execute("VACUUM ANALYZE moderation_auditword")  # the search's word index, filled by the COPY's trigger
    print(f"loaded {rows:,} audit entries (hashes computed, COPY, VACUUM ANALYZE) in {time.monotonic() - started:.1f} s")


def session_cookie(username):
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from marketplace.accounts.backends import PATH
    from marketplace.accounts.models import User
    from marketplace.accounts.sessions import SessionStore

    person = User.objects.get(username=username)
    session = SessionStore()
    session[SESSION_KEY] = str(person.pk)
    session[BACKEND_SESSION_KEY] = PATH
    session[HASH_SESSION_KEY] = person.get_session_auth_hash()
    session.save()
    return f"sessionid={session.session_key}"


def select_one(samples=2000):
    """p50 and p95 of `SELECT 1` on one connection, in ms: the database's floor in this run."""
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95)]


def shapes(rng, rows):
    enc = urllib.parse.urlencode
    api = "/api/v1/moderation/audit"
    return [
        ("moderator: no filter (first page)", "moderator", [api]),
        ("moderator: a common word", "moderator", [f"{api}?{enc({'q': rng.choice(COMMON)})}" for _ in range(50)]),
        ("moderator: a mid word", "moderator", [f"{api}?{enc({'q': rng.choice(MID)})}" for _ in range(100)]),
        ("moderator: a rare word", "moderator", [f"{api}?{enc({'q': rng.choice(RARE)})}" for _ in range(100)]),
        ("moderator: two words (common and mid)", "moderator",
         [f"{api}?{enc({'q': rng.choice(COMMON) + ' ' + rng.choice(MID)})}" for _ in range(100)]),
        ("moderator: an action", "moderator", [f"{api}?{enc({'action': code})}" for code, _ in ACTIONS]),
        ("moderator: a target", "moderator",
         [f"{api}?{enc({'target': f'dataset:{rng.randint(1, DATASETS)}'})}" for _ in range(100)]),
        ("moderator: an actor", "moderator", [f"{api}?{enc({'actor': rng.choice(MODERATORS)})}" for _ in range(30)]),
        ("moderator: a rare action and a common word", "moderator",
         [f"{api}?{enc({'action': 'wallet.unban', 'q': rng.choice(COMMON)})}" for _ in range(20)]),
        ("moderator: a deep page (before= far back)", "moderator",
         [f"{api}?{enc({'before': rng.randint(1000, rows // 10)})}" for _ in range(100)]),
        ("moderator: a common word, deep page", "moderator",
         [f"{api}?{enc({'q': rng.choice(COMMON), 'before': rng.randint(1000, rows // 10)})}" for _ in range(100)]),
        ("publisher: their datasets' entries", "publisher", ["/api/v1/me/audit"]),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per line")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (marketplace/gunicorn_conf.py: 4)")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker (marketplace/gunicorn_conf.py: 2)")
    parser.add_argument("--shape", action="append", help="only the shapes whose name contains this (repeatable)")
    parser.add_argument("--keep", action="store_true", help="reuse bench_audit if it is loaded")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
    os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "0"
    os.environ["DJANGO_MANIFEST_STATIC"] = "0"
    os.environ["LOG_LEVEL"] = "ERROR"
    os.environ["DATABASE_URL"], fresh = database_url(fresh=not args.keep)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    if fresh:
        load(args.rows)
    else:
        print("reusing the database bench_audit")
    started = time.monotonic()
    from io import StringIO

    out = StringIO()
    call_command("check_audit", stdout=out)
    print(f"check_audit: {out.getvalue().strip()[:60]}... in {time.monotonic() - started:.1f} s")
    cookies = {"moderator": session_cookie("bench-moderator"), "publisher": session_cookie("bench-publisher")}
    from django.db import connection

    connection.close()

    with gunicorn(args.workers, args.threads) as base:
        chosen = [s for s in shapes(random.Random(11), args.rows) if not args.shape or any(n in s[0] for n in args.shape)]
        for name, who, paths in chosen:  # warm each process and check the answers
            for path in paths[:8]:
                request = urllib.request.Request(base + path, headers={"Cookie": cookies[who]})
                body = json.loads(urllib.request.urlopen(request, timeout=60).read())
                assert "results" in body, body
        p50, p95 = select_one()
        print(f"\nthrough gunicorn ({args.workers} workers x {args.threads} threads) on loopback, wrk concurrency 8, "
              f"{args.duration} s each; the bar: p95 under 50 ms\n"
              f"{'reference: SELECT 1 (one connection)':<44} p50 {p50:.2f} ms   p95 {p95:.2f} ms")
        reference = wrk(base, ["/static/app.css"], args.duration, "reference: a static file")
        wrk(base, ["/api/v1/me/notifications"], args.duration, "reference: signed-in API, nothing to list",
            cookies["moderator"])
        figures = [(name, wrk(base, paths, args.duration, name, cookies[who])) for name, who, paths in chosen]
        print(f"\n{'shape':<44} {'p95 ms':>8}  req/s / static file's")
        for name, (rps, p95_ms) in figures:
            print(f"{name:<44} {p95_ms:>8}  {rps / reference[0]:.3f}" if reference[0] else name)


if __name__ == "__main__":
    main()

"""What a rate-limit check costs, in each store, against a plain round trip to that store.

    DATABASE_URL=postgresql://... .venv/bin/python bench/limits.py [--redis redis://127.0.0.1:6379/0]
        [--requests 3000] [--threads 50]

Migrates DATABASE_URL, then measures, one store at a time:

- one client: the latency (p50, p95) of one check (marketplace.limits.services' store .add(),
  the atomic test-and-append every limited request makes), against a `SELECT 1` on the same
  connection (PostgreSQL) or a PING (Redis) measured in the same run: the ratio is what the
  check costs in round trips, whatever this machine's speed is at the moment;
- the same check on a logged table (the migration makes the table UNLOGGED; the bench flips
  it for this line and back), to show what skipping the WAL buys;
- --threads clients at once, each with its own connection, on one key (all wait on its row
  lock) and on a key each: checks per second, against as many threads doing the reference
  round trip;
- DRF's AnonRateThrottle on Django's default local-memory cache, the limiter this replaced: it
  costs microseconds because it counts only in the process that runs it (each gunicorn worker
  and each host let the full rate through), which is the bug.

Rates are set so that every check is allowed (the refused path writes nothing). Keys start with
"bench:" and are deleted at the end.
"""
import argparse
import os
from pathlib import Path
import secrets
import sys
import threading
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402

from marketplace.limits.services import PostgresCounters, Rate, RedisCounters  # noqa: E402

RATE = Rate(10**9, 3600)  # never full: every check appends


def percentiles(samples):
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.95)]


def timed(call, n):
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def line(name, samples, reference=None):
    p50, p95 = percentiles(samples)
    ratio = f"   {p50 / percentiles(reference)[0]:4.1f}x the reference" if reference else ""
    print(f"  {name:<44} p50 {p50 * 1e6:8.0f} us   p95 {p95 * 1e6:8.0f} us{ratio}")


def select_one():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def rolling_keys(prefix, per_key):
    """A new key every `per_key` checks, so a key's log stays as long as a busy client's would."""
    count = 0

    def key():
        nonlocal count
        count += 1
        return f"{prefix}{count // per_key}"

    return key


def concurrent(threads, per_thread, work):
    """Checks per second with `threads` clients at once, each on its own connection."""
    start_line = threading.Barrier(threads + 1)
    done = []

    def run(i):
        start_line.wait()
        for j in range(per_thread):
            work(i, j)
        connections.close_all()
        done.append(i)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    start_line.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    return threads * per_thread / (time.perf_counter() - started)


def bench_postgres(args, tag):
    store = PostgresCounters()
    n = args.requests
    print(f"\nPostgreSQL ({connection.settings_dict['HOST'] or 'socket'}), one client, {n:,} checks")
    for _ in range(200):  # warm the connection and the plan cache
        select_one()
    reference = timed(select_one, n)
    line("reference: SELECT 1", reference)
    key = rolling_keys(f"bench:{tag}:pg:", 50)
    line("check (UNLOGGED table, as shipped)", timed(lambda: store.add(key(), RATE, time.time()), n), reference)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE limits_requestlog SET LOGGED")
    try:
        key = rolling_keys(f"bench:{tag}:pg-logged:", 50)
        line("check (the same table, logged)", timed(lambda: store.add(key(), RATE, time.time()), n), reference)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE limits_requestlog SET UNLOGGED")

    threads, per_thread = args.threads, max(1, n // args.threads)
    print(f"PostgreSQL, {threads} clients at once, {threads * per_thread:,} checks")
    ref_rate = concurrent(threads, per_thread, lambda i, j: select_one())
    print(f"  {'reference: SELECT 1':<44} {ref_rate:9,.0f} per second")
    one_key = concurrent(threads, per_thread, lambda i, j: store.add(f"bench:{tag}:pg-hot:{j // 50}", RATE, time.time()))
    print(f"  {'checks, all on one key':<44} {one_key:9,.0f} per second   {ref_rate / one_key:4.1f}x slower than the reference")
    own_key = concurrent(threads, per_thread, lambda i, j: store.add(f"bench:{tag}:pg-own:{i}:{j // 50}", RATE, time.time()))
    print(f"  {'checks, a key per client':<44} {own_key:9,.0f} per second   {ref_rate / own_key:4.1f}x slower than the reference")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM limits_requestlog WHERE key LIKE %s", [f"bench:{tag}:%"])


def bench_redis(args, tag):
    prefix = f"bench:{tag}:"
    store = RedisCounters(args.redis, prefix)
    n = args.requests
    print(f"\nRedis ({args.redis}), one client, {n:,} checks")
    for _ in range(200):
        store.client.ping()
    reference = timed(store.client.ping, n)
    line("reference: PING", reference)
    key = rolling_keys("one:", 50)
    line("check (Lua script: trim, count, add)", timed(lambda: store.add(key(), RATE, time.time()), n), reference)

    threads, per_thread = args.threads, max(1, n // args.threads)
    print(f"Redis, {threads} clients at once, {threads * per_thread:,} checks")
    ref_rate = concurrent(threads, per_thread, lambda i, j: store.client.ping())
    print(f"  {'reference: PING':<44} {ref_rate:9,.0f} per second")
    one_key = concurrent(threads, per_thread, lambda i, j: store.add(f"hot:{j // 50}", RATE, time.time()))
    print(f"  {'checks, all on one key':<44} {one_key:9,.0f} per second   {ref_rate / one_key:4.1f}x slower than the reference")
    for key in store.client.scan_iter(prefix + "*"):
        store.client.delete(key)


def bench_drf_locmem(args):
    from django.contrib.auth.models import AnonymousUser
    from django.core.cache import caches
    from django.test import RequestFactory
    from rest_framework.throttling import AnonRateThrottle

    class Throttle(AnonRateThrottle):
        rate = "1000000000/hour"
        cache = caches["default"]

    throttle, n = Throttle(), args.requests
    requests = []
    for i in range(n // 50 + 1):  # a new client every 50 checks, as for the other stores
        request = RequestFactory().post("/", REMOTE_ADDR=f"203.0.{i // 250}.{i % 250}")
        request.user = AnonymousUser()
        requests.append(request)
    count = iter(range(n))
    print(f"\nBefore: DRF AnonRateThrottle on Django's local-memory cache ({n:,} checks)")
    line("check (counts in this process only)", timed(lambda: throttle.allow_request(requests[next(count) // 50], None), n))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL ('' to skip)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=50)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    tag = secrets.token_hex(4)
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start")
    bench_postgres(args, tag)
    if args.redis:
        bench_redis(args, tag)
    bench_drf_locmem(args)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()

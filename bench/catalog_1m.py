"""A million-dataset catalog: load time (PostgreSQL rows and search index), then search API,
catalog page and a trivial endpoint through gunicorn on loopback at concurrency 8 (wrk).

    .venv/bin/python bench/catalog_1m.py [--rows 1000000] [--duration 20] [--workers 4] [--threads 1]
                                         [--keep DIR]

It uses its own database `bench_catalog` on DATABASE_URL's server (else the embedded
PostgreSQL under .data/) and its own index directory, so the demo's data is untouched. The
query mix: a quarter common words (tens of thousands of matches each), the rest mid and rare
words and two-word queries; every search asks for facets. Needs `wrk` (apt-get install wrk).
"""
import argparse
import os
from pathlib import Path
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COMMON = ["data", "survey", "prices", "annual", "population", "health", "market", "records"]
MID = [f"topic{i}" for i in range(300)]
RARE = [f"term{i}" for i in range(20000)]
CATEGORIES = ["economics", "health", "social", "environment", "science", "sports", "transport", "web", "ai", "other"]
LICENSES = ["CC0-1.0", "CC-BY-4.0", "ODbL-1.0", "MIT", "other"]
FORMATS = ["csv", "jsonl", "parquet"]


def database_url(fresh=True):
    import dj_database_url

    base = os.environ.get("DATABASE_URL")
    if not base:
        from marketplace.devstack import start_embedded_postgres

        base = start_embedded_postgres()
    db = dj_database_url.parse(base)
    import psycopg

    admin = dict(dbname="postgres", user=db["USER"] or None, password=db["PASSWORD"] or None,
                 host=db["HOST"] or None, port=db["PORT"] or None)
    if fresh:
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS bench_catalog WITH (FORCE)")
            conn.execute("CREATE DATABASE bench_catalog")
    return base.rsplit("/", 1)[0] + "/bench_catalog"


def words(rng):
    """Title words: one common word in a quarter of the entries per word pool, plus mid and rare."""
    picked = [rng.choice(MID), rng.choice(RARE), rng.choice(RARE)]
    if rng.random() < 0.3:
        picked.append(rng.choice(COMMON))
    return picked


def load(rows, index_dir):
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from marketplace.accounts.models import User
    from marketplace.catalog.indexing import SearchSync

    call_command("migrate", verbosity=0)
    owner = User.objects.create(username="0x" + "11" * 20, address="0x" + "11" * 20)
    rng = random.Random(7)
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE catalog_dataset DISABLE TRIGGER USER")
        cursor.execute("ALTER TABLE catalog_datasetversion DISABLE TRIGGER USER")
        raw = cursor.connection
        with raw.cursor().copy(
            "COPY catalog_dataset (id, owner_id, slug, title, summary, description, description_html, tags, category,"
            " license, payout_address, status, created_at, updated_at) FROM STDIN"
        ) as copy:
            for i in range(1, rows + 1):
                w = words(rng)
                tags = "{" + ",".join(rng.sample(MID, 2)) + "}"
                created = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d} 12:00:00+00"
                copy.write_row((i, owner.pk, f"d{i}", " ".join(w).title(), f"{rng.choice(COMMON)} {rng.choice(MID)} {rng.choice(RARE)}",
                                "", "", tags, rng.choice(CATEGORIES), rng.choice(LICENSES), owner.address, "listed", created, created))
        with raw.cursor().copy(
            "COPY catalog_datasetversion (dataset_id, number, file, original_name, format, size, content_hash, price, token,"
            " analysis_status, analysis_progress, analysis_message, row_count, rejected_rows, columns, sample, created_at)"
            " FROM STDIN"
        ) as copy:
            for i in range(1, rows + 1):
                copy.write_row((i, 1, f"bench/{i}.csv", f"{i}.csv", rng.choice(FORMATS), 1000, "0x" + "00" * 32,
                                rng.randint(1, 500) * 10**6, "0x" + "22" * 20, "done", 1.0, "", 100, 0, "[]", "[]",
                                "2026-01-01 00:00:00+00"))
        cursor.execute("SELECT setval('catalog_dataset_id_seq', %s)", [rows])
        cursor.execute("ALTER TABLE catalog_dataset ENABLE TRIGGER USER")
        cursor.execute("ALTER TABLE catalog_datasetversion ENABLE TRIGGER USER")
        cursor.execute("ANALYZE")
    loaded = time.monotonic() - started
    SearchSync(index_dir).rebuild()
    total = time.monotonic() - started
    print(f"loaded {rows:,} datasets into PostgreSQL in {loaded:.1f} s; with the search index {total:.1f} s")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(url_base, paths, duration, name):
    """Run wrk (2 threads, 8 connections) over `paths` in turn; print and return req/s and the
    latency percentiles (wrk's own histogram, read out by a Lua done() hook for p95)."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    quoted = ",".join('"' + p.replace('"', '\\"') + '"' for p in paths)
    script.write(f"""
local paths = {{{quoted}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
done = function(summary, latency, requests)
  for _, p in ipairs({{50, 90, 95, 99}}) do
    io.write(string.format("P%d %.2f\\n", p, latency:percentile(p) / 1000))
  end
  io.write(string.format("ERRORS %d\\n", summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
""")
    script.close()
    out = subprocess.run(["wrk", "-t", "2", "-c", "8", "-d", f"{duration}s", "-s", script.name, url_base],
                         capture_output=True, text=True).stdout
    os.unlink(script.name)
    marks = dict(line.split() for line in out.splitlines() if line.startswith(("P", "ERRORS")))
    rps = next((float(l.split()[1]) for l in out.splitlines() if l.startswith("Requests/sec")), 0.0)
    print(f"{name:<34} {rps:>8.1f} req/s   p50 {marks.get('P50', '?'):>7} ms   p90 {marks.get('P90', '?'):>7} ms"
          f"   p95 {marks.get('P95', '?'):>7} ms   p99 {marks.get('P99', '?'):>7} ms   errors {marks.get('ERRORS', '?')}")
    return rps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (the Procfile runs 4)")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (the Procfile runs sync workers: 1)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the loaded database and put the index in DIR; a later run with the same DIR "
                             "measures again without loading")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
    os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "0"
    os.environ["DJANGO_MANIFEST_STATIC"] = "0"
    os.environ["LOG_LEVEL"] = "ERROR"  # no per-request log lines in the figures
    reuse = args.keep is not None and (args.keep / "current").exists()
    os.environ["DATABASE_URL"] = database_url(fresh=not reuse)
    index_dir = args.keep or Path(tempfile.mkdtemp(prefix="bench-search-"))
    os.environ["SEARCH_INDEX_DIR"] = str(index_dir)
    if reuse:
        print(f"reusing the database bench_catalog and the index in {index_dir}")
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
    else:
        index_dir.mkdir(parents=True, exist_ok=True)
        load(args.rows, index_dir)

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "marketplace.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(args.workers), "--threads", str(args.threads), "--log-level", "warning"], cwd=ROOT, env=os.environ)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/api/v1/search?q=data", timeout=30).read()
                break
            except OSError:
                time.sleep(0.3)
        rng = random.Random(11)
        queries = ([rng.choice(COMMON) for _ in range(100)] + [rng.choice(MID) for _ in range(120)]
                   + [rng.choice(RARE) for _ in range(100)] + [f"{rng.choice(MID)} {rng.choice(RARE)}" for _ in range(80)])
        rng.shuffle(queries)
        search_paths = [f"/api/v1/search?q={q.replace(' ', '+')}" for q in queries]
        page_paths = [f"/?q={q.replace(' ', '+')}" for q in queries]
        for path in search_paths[:50] + page_paths[:50]:  # warm the processes' index readers and templates
            urllib.request.urlopen(base + path, timeout=30).read()
        print(f"\nthrough gunicorn ({args.workers} workers x {args.threads} threads) on loopback, wrk concurrency 8, "
              f"{args.duration} s each:")
        search = wrk(base, search_paths, args.duration, "search API (with facets)")
        wrk(base, page_paths, args.duration, "catalog page")
        trivial = wrk(base, ["/static/app.css"], args.duration, "trivial endpoint (a static file)")
        if trivial:
            print(f"search throughput / trivial endpoint throughput: {search / trivial:.2f}")
    finally:
        server.terminate()
        server.wait()
        if args.keep is None:
            shutil.rmtree(index_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

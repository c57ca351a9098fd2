"""A million-dataset catalog of 12,000 publishers: load time (PostgreSQL rows and search index),
then, through gunicorn on loopback at concurrency 8 (wrk), the search API and the catalog page
for every shape of request users make, one line each, and a static file as the reference.

    .venv/bin/python bench/catalog_1m.py [--rows 1000000] [--publishers 12000] [--duration 10]
                                         [--workers 4] [--threads 1] [--shape NAME] [--keep DIR]

The shapes: browsing with no words (the landing page, each sort, deep pages), filters alone
(category, license, format, price range, a tag, a publisher), one, two and three common words
(tens of thousands to hundreds of thousands of matches), a common word sorted by newest or price
and on deep pages, a mid word with tag and license filters, rare words. Every search asks for
facets, as the page does. The summary prints each shape's p95 and its throughput as a ratio to
the static file's, measured in the same run (the machine's speed varies between runs).

It uses its own database `bench_catalog` on DATABASE_URL's server (else the embedded
PostgreSQL under .data/) and its own index directory, so the demo's data is untouched.
`--keep DIR` keeps both for a later run with the same DIR, which measures without loading (the
first measurement after a fresh load reads cold pages). Needs `wrk` (apt-get install wrk).
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
import threading
import time
import urllib.parse
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from wrk_run import wrk  # noqa: E402

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


def load(rows, publishers, index_dir):
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from eth_utils import to_checksum_address

    from marketplace.accounts.models import User
    from marketplace.catalog.indexing import SearchSync

    call_command("migrate", verbosity=0)
    rng = random.Random(7)
    started = time.monotonic()
    addresses = [to_address(i + 1) for i in range(publishers)]
    User.objects.bulk_create([User(username=a, address=a) for a in addresses], batch_size=5000)
    owner_ids = dict(User.objects.filter(address__in=addresses).values_list("address", "pk"))
    owners = [(owner_ids[a], a) for a in addresses]
    token = to_checksum_address("0x" + "22" * 20)
    with connection.cursor() as cursor:
        for table in ("catalog_dataset", "catalog_datasetversion", "catalog_listing"):
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        raw = cursor.connection
        owner_of = []
        with raw.cursor().copy(
            "COPY catalog_dataset (id, owner_id, slug, title, summary, description, description_html, tags, category,"
            " license, payout_address, status, published_at, created_at, updated_at) FROM STDIN"
        ) as copy:
            for i in range(1, rows + 1):
                # A few publishers hold many datasets, most hold a handful (as in a real catalog).
                owner_pk, address = owners[int(publishers * rng.random() ** 3)]
                owner_of.append(address)
                w = words(rng)
                tags = "{" + ",".join(rng.sample(MID, 2)) + "}"
                created = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{i // 60 % 60:02d}+00"
                copy.write_row((i, owner_pk, f"d{i}", " ".join(w).title(), f"{rng.choice(COMMON)} {rng.choice(MID)} {rng.choice(RARE)}",
                                "", "", tags, rng.choice(CATEGORIES), rng.choice(LICENSES), address, "listed", created,
                                created, created))
        with raw.cursor().copy(
            "COPY catalog_datasetversion (id, dataset_id, number, file, original_name, format, size, content_hash, price,"
            " token, analysis_status, analysis_progress, analysis_message, row_count, rejected_rows, columns, sample,"
            " review, hidden_columns, show_sample, show_distributions, analysis_attempts, created_at) FROM STDIN"
        ) as copy:
            for i in range(1, rows + 1):
                copy.write_row((i, i, 1, f"bench/{i}.csv", f"{i}.csv", rng.choice(FORMATS), 1000, f"0x{i:064x}",
                                rng.randint(1, 500) * 10**6, token, "done", 1.0, "", 100, 0, "[]", "[]", "approved",
                                "{}", False, False, 1, "2026-01-01 00:00:00+00"))
        with raw.cursor().copy(
            "COPY catalog_listing (chain_id, listing_id, version_id, owner, token, price, payout, dispute_window, active,"
            " approved, tx_hash, log_index, block_number, created_at) FROM STDIN"
        ) as copy:
            for i in range(1, rows + 1):
                copy.write_row((31337, i, i, owner_of[i - 1], token, rng.randint(1, 500) * 10**6, owner_of[i - 1],
                                259200, True, True, f"0x{i:064x}", 0, i, "2026-01-01 00:00:00+00"))
        cursor.execute("SELECT setval('catalog_dataset_id_seq', %s)", [rows])
        cursor.execute("SELECT setval('catalog_datasetversion_id_seq', %s)", [rows])
        for table in ("catalog_dataset", "catalog_datasetversion", "catalog_listing"):
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        cursor.execute("ANALYZE")
    loaded = time.monotonic() - started
    SearchSync(index_dir).rebuild()
    total = time.monotonic() - started
    print(f"loaded {rows:,} datasets of {publishers:,} publishers into PostgreSQL in {loaded:.1f} s; "
          f"with the search index {total:.1f} s")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query_shapes(rng, publishers):
    """Every shape of request the catalog gets, each as a list of query strings. The first is the
    landing page (no words, newest first)."""
    def enc(**params):
        return urllib.parse.urlencode([(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])])

    pub = lambda: to_address(int(publishers * rng.random() ** 3) + 1)  # noqa: E731 (the loader's skew)
    return [
        ("no words, newest (the landing page)", [""] * 3 + [enc(sort="newest")]),
        ("no words, price low to high", [enc(sort="price_asc")]),
        ("no words, price high to low", [enc(sort="price_desc")]),
        ("no words, most bought", [enc(sort="most_bought")]),
        ("no words, deep pages (5 to 500)", [enc(sort="newest", page=rng.randint(5, 500)) for _ in range(100)]),
        ("filters alone (category, license, format)", [
            enc(**{k: v for k, v in (("category", rng.choice(CATEGORIES)), ("license", rng.choice(LICENSES)),
                                     ("format", rng.choice(FORMATS))) if rng.random() < 0.6} or {"category": "web"})
            for _ in range(100)]),
        ("filters alone, price range", [enc(price_min=lo, price_max=lo + rng.randint(5, 100))
                                        for lo in (rng.randint(0, 400) for _ in range(100))]),
        ("filters alone, a tag", [enc(tag=rng.choice(MID)) for _ in range(100)]),
        ("a publisher's datasets", [enc(publisher=pub()) for _ in range(100)]),
        ("one common word", [enc(q=rng.choice(COMMON)) for _ in range(100)]),
        ("two common words", [enc(q=" ".join(rng.sample(COMMON, 2))) for _ in range(100)]),
        ("three common words", [enc(q=" ".join(rng.sample(COMMON, 3))) for _ in range(100)]),
        ("a common word, newest", [enc(q=rng.choice(COMMON), sort="newest") for _ in range(100)]),
        ("a common word, by price", [enc(q=rng.choice(COMMON), sort=rng.choice(["price_asc", "price_desc"]))
                                     for _ in range(100)]),
        ("a common word, deep pages (5 to 500)", [enc(q=rng.choice(COMMON), page=rng.randint(5, 500)) for _ in range(100)]),
        ("a mid word", [enc(q=rng.choice(MID)) for _ in range(100)]),
        ("a mid word, tag and license", [enc(q=rng.choice(MID), tag=rng.choice(MID), license=rng.choice(LICENSES))
                                         for _ in range(100)]),
        ("a rare word", [enc(q=rng.choice(RARE)) for _ in range(100)]),
        ("a mid and a rare word", [enc(q=f"{rng.choice(MID)} {rng.choice(RARE)}") for _ in range(100)]),
    ]


def churn_seen(base, title, wait=10.0):
    """Whether a search for `title` finds it within `wait` seconds (search_sync applied it)."""
    if title is None:
        return False
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        query = urllib.parse.urlencode({"q": f'"{title}"'})
        body = urllib.request.urlopen(f"{base}/api/v1/search?{query}", timeout=30).read().decode()
        if title in body:
            return True
        time.sleep(0.5)
    return False


class Churn(threading.Thread):
    """A publisher's edit every 1/rate seconds: a title changes in PostgreSQL and search_sync
    commits it to the index, so readers see a new commit (and recompute what they keep per
    commit) as on a live catalog."""

    def __init__(self, rate, rows):
        super().__init__(daemon=True)
        self.rate, self.rows, self.edits, self.last_title = rate, rows, 0, None
        self._halt = threading.Event()

    def run(self):
        import psycopg

        rng = random.Random(13)
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            while not self._halt.wait(1 / self.rate):
                title = f"Edited {rng.choice(MID)} {rng.choice(RARE)} {self.edits}"
                conn.execute("UPDATE catalog_dataset SET title = %s, updated_at = now() WHERE id = %s",
                             [title, rng.randint(1, self.rows)])
                self.edits += 1
                self.last_title = title

    def stop(self):
        if self.is_alive():
            self._halt.set()
            self.join()


def to_address(n):
    from eth_utils import to_checksum_address

    return to_checksum_address(f"0x{n:040x}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--publishers", type=int, default=12_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per line")
    parser.add_argument("--churn", type=float, default=1.0,
                        help="dataset edits per second during the measurement, applied by the real search_sync "
                             "process (each one is an index commit); 0: a catalog that never changes")
    parser.add_argument("--shape", action="append", help="only the shapes whose name contains this (repeatable)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (marketplace/gunicorn_conf.py: 4)")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker (marketplace/gunicorn_conf.py: 2)")
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
        load(args.rows, args.publishers, index_dir)

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "marketplace/gunicorn_conf.py", "marketplace.wsgi",
         "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers), "--threads", str(args.threads),
         "--log-level", "warning", "--access-logfile", "/dev/null"], cwd=ROOT, env=os.environ)
    base = f"http://127.0.0.1:{port}"
    sync = churn = None
    try:
        if args.churn > 0:
            sync = subprocess.Popen([sys.executable, "manage.py", "search_sync"], cwd=ROOT, env=os.environ,
                                    stdout=subprocess.DEVNULL)
            churn = Churn(args.churn, args.rows)
            churn.start()
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/api/v1/search?q=data", timeout=30).read()
                break
            except OSError:
                time.sleep(0.3)
        shapes = [(name, queries) for name, queries in query_shapes(random.Random(11), args.publishers)
                  if not args.shape or any(s in name for s in args.shape)]
        for name, queries in shapes:  # warm the processes' index readers, caches and templates
            for query in queries[:8]:
                for path in ("/api/v1/search", "/"):
                    urllib.request.urlopen(f"{base}{path}?{query}", timeout=60).read()
        print(f"\nthrough gunicorn ({args.workers} workers x {args.threads} threads) on loopback, wrk concurrency 8, "
              f"{args.duration} s each; the bar: API p95 <= 50 ms, page p95 <= 100 ms")
        trivial = wrk(base, ["/static/app.css"], args.duration, "reference: a static file")
        figures = []
        for name, queries in shapes:
            api = wrk(base, [f"/api/v1/search?{q}" for q in queries], args.duration, f"API  {name}")
            page = wrk(base, [f"/?{q}" if q else "/" for q in queries], args.duration, f"page {name}")
            figures.append((name, api, page))
        print(f"\n{'shape':<44} {'API p95':>8} {'page p95':>9}  API req/s / reference req/s")
        for name, api, page in figures:
            ratio = f"{api[0] / trivial[0]:.3f}" if trivial[0] else "?"
            print(f"{name:<44} {api[1]:>8} {page[1]:>9}  {ratio}")
        if churn:
            churn.stop()
            print(f"\nmeanwhile {churn.edits} dataset edits were made; the last one "
                  f"{'is' if churn_seen(base, churn.last_title) else 'is NOT'} found by the search API")
    finally:
        if churn:
            churn.stop()
        if sync:
            sync.terminate()
            sync.wait()
        server.terminate()
        server.wait()
        if args.keep is None:
            shutil.rmtree(index_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

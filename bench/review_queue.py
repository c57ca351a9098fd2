"""The review queue console at 100,000 waiting items: seeds 1,000 publishers, 100,000 datasets (a
fifth with an analysed version: columns, statistics and 20 sample rows), 100,000 open revisions
(details, versions, previews; ages over four days, so some are overdue; a twentieth claimed) and
audit entries about the datasets (the publishers' histories), all with generate_series SQL and
one COPY; then through gunicorn on loopback at concurrency 8 (wrk, signed in as a moderator by a
session cookie): the queue page and API (first page, deep keyset pages, one kind) and item pages,
one line each with p50/p90/p95/p99, against a static file and a signed-in API answer with nothing
to list, measured in the same run (the ratio column: p95 / that answer's p95). The issue's bar:
p95 under 50 ms.

    .venv/bin/python bench/review_queue.py [--items 100000] [--audit 200000] [--duration 10]
                                           [--workers 4] [--threads 2] [--keep]

It uses its own database `bench_review` on DATABASE_URL's server (else the embedded PostgreSQL);
`--keep` reuses it when it is already loaded. Needs `wrk` (apt-get install wrk).
"""
import argparse
import hashlib
import json
import os
from pathlib import Path
import random
import shutil
import sys
import time
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from audit import database_url, select_one, session_cookie  # noqa: E402
from wrk_run import gunicorn, wrk  # noqa: E402

PUBLISHERS = 1_000
VERSION_SHARE = 5  # one dataset in 5 has an analysed version
COLUMNS = [
    {"name": "station", "type": "string", "duckdb_type": "VARCHAR", "null_count": 0, "distinct_count": 412,
     "top_values": [{"value": "Oslo", "count": 90}]},
    {"name": "contact_email", "type": "string", "duckdb_type": "VARCHAR", "null_count": 3, "distinct_count": 410},
    {"name": "phone", "type": "string", "duckdb_type": "VARCHAR", "null_count": 0, "distinct_count": 409},
    {"name": "day", "type": "date", "duckdb_type": "DATE", "null_count": 0, "distinct_count": 365,
     "min": "2024-01-01", "max": "2024-12-31"},
    {"name": "rain_mm", "type": "float", "duckdb_type": "DOUBLE", "null_count": 12, "distinct_count": 3012,
     "min": 0.0, "max": 182.5, "mean": 3.71},
    {"name": "temp_c", "type": "float", "duckdb_type": "DOUBLE", "null_count": 0, "distinct_count": 900,
     "min": -31.2, "max": 38.9, "mean": 7.4},
    {"name": "wind_kmh", "type": "integer", "duckdb_type": "BIGINT", "null_count": 0, "distinct_count": 120,
     "min": 0, "max": 160, "mean": 14.2},
    {"name": "quality", "type": "string", "duckdb_type": "VARCHAR", "null_count": 0, "distinct_count": 3},
]
SAMPLE = [{"station": f"Station {i}", "contact_email": f"keeper{i}@example.org", "phone": f"+47 22 {i:02d} 10 00",
           "day": f"2024-01-{i + 1:02d}", "rain_mm": round(i * 0.7, 1), "temp_c": -2.5 + i, "wind_kmh": 10 + i,
           "quality": "good"} for i in range(20)]


def seed(items: int, audit_rows: int) -> None:
    from django.contrib.auth.models import Group
    from django.db import connection

    from marketplace.accounts.models import User
    from marketplace.moderation import audit

    started = time.monotonic()
    moderator = User.objects.create_user("bench-moderator")
    Group.objects.get(name="moderator").user_set.add(moderator)
    with connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO accounts_user (password, is_superuser, username, first_name, last_name, email, is_staff,
                                       is_active, date_joined, address, display_name, avatar_digest)
            SELECT '!', false, 'publisher' || i, '', '', '', false, true, now(),
                   '0x' || lpad(to_hex(i), 40, '0'), '', ''
            FROM generate_series(1, %s) AS i""", [PUBLISHERS])
        cursor.execute("SELECT min(id) FROM accounts_user WHERE username LIKE %s", ["publisher%"])
        first_publisher = cursor.fetchone()[0]
        # Half the datasets are new (in their first review), half published (a text edit waits).
        cursor.execute("""
            INSERT INTO catalog_dataset (slug, title, summary, description, description_html, tags, category, license,
                                         payout_address, status, created_at, updated_at, owner_id, published_at)
            SELECT 'bench-' || i, 'Rainfall series ' || i, 'Daily rainfall at weather stations',
                   'Daily rainfall.' || chr(10) || 'From ' || (i %% 90 + 10) || ' stations.', '', ARRAY['weather'],
                   'environment', 'CC-BY-4.0', '0x' || lpad(to_hex(i), 40, '0'),
                   CASE WHEN i %% 2 = 0 THEN 'listed' ELSE 'pending_review' END,
                   now() - interval '10 days', now() - interval '10 days', %s + i %% %s,
                   CASE WHEN i %% 2 = 0 THEN now() - interval '9 days' END
            FROM generate_series(1, %s) AS i""", [first_publisher, PUBLISHERS, items])
        cursor.execute("SELECT min(id) FROM catalog_dataset")
        first_dataset = cursor.fetchone()[0]
        cursor.execute("""
            INSERT INTO catalog_datasetversion (number, file, original_name, format, size, content_hash, price, token,
                analysis_status, analysis_progress, analysis_message, row_count, rejected_rows, columns, sample,
                created_at, dataset_id, hidden_columns, review, show_distributions, show_sample, analysis_attempts)
            SELECT 1, 'datasets/' || d.id || '/v1/rain.csv', 'rain.csv', 'csv', 1048576,
                   '0x' || md5(d.id::text) || md5(d.slug), 25000000, '0x' || lpad('1', 40, '0'), 'done', 1, '',
                   150000, 0, %s::jsonb, %s::jsonb, d.created_at, d.id, ARRAY['phone'],
                   CASE WHEN d.published_at IS NULL THEN 'pending' ELSE 'approved' END, false, false, 1
            FROM catalog_dataset d WHERE (d.id - %s) %% %s = 0""",
                       [json.dumps(COLUMNS), json.dumps(SAMPLE), first_dataset, VERSION_SHARE])
        # One open revision a dataset: a dataset with a version waits for it (new) or for a preview
        # change (published); the others for their text. Ages spread over four days.
        cursor.execute("""
            INSERT INTO catalog_datasetrevision (kind, status, changes, listings, created_at, reason, created_by_id,
                                                 dataset_id, version_id)
            SELECT CASE WHEN v.id IS NULL THEN 'details' WHEN d.published_at IS NULL THEN 'version' ELSE 'preview' END,
                   'pending',
                   CASE WHEN v.id IS NULL THEN jsonb_build_object('title', d.title || ' (revised)', 'summary', d.summary,
                            'description', d.description || chr(10) || 'Now with 2024.', 'tags', to_jsonb(d.tags),
                            'category', d.category, 'license', d.license)
                        WHEN d.published_at IS NULL THEN jsonb_build_object('preview', jsonb_build_object(
                            'hidden_columns', jsonb_build_array('phone'), 'show_sample', false,
                            'show_distributions', false))
                        ELSE jsonb_build_object('hidden_columns', jsonb_build_array(), 'show_sample', true,
                                                'show_distributions', true) END,
                   CASE WHEN v.id IS NOT NULL AND d.published_at IS NULL THEN jsonb_build_array(jsonb_build_object(
                            'chain_id', 31337, 'listing_id', d.id::text, 'content_hash', v.content_hash))
                        ELSE '[]'::jsonb END,
                   now() - (random() * interval '4 days'), '', d.owner_id, d.id, v.id
            FROM catalog_dataset d LEFT JOIN catalog_datasetversion v ON v.dataset_id = d.id""")
        cursor.execute("""
            INSERT INTO moderation_reviewclaim (revision_id, moderator_id, claimed_at, expires_at)
            SELECT id, %s, now(), now() + interval '1 year' FROM catalog_datasetrevision WHERE id %% 20 = 0""",
                       [moderator.pk])
    print(f"seeded {PUBLISHERS:,} publishers, {items:,} datasets and open revisions "
          f"({items // VERSION_SHARE:,} versions) in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    rng = random.Random(5)
    actions = ["dataset.approve"] * 6 + ["dataset.reject"] * 2 + ["dataset.request_changes", "dataset.delist"]
    previous = audit.GENESIS
    from datetime import datetime, timedelta, timezone

    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with connection.cursor() as cursor:
        with cursor.connection.cursor().copy(
            "COPY moderation_auditentry (id, created_at, actor, actor_id, actor_role, action, target_type, target_id,"
            " reason, statement, internal_note, reporter, details, prev_hash, hash) FROM STDIN"
        ) as copy:
            for i in range(1, audit_rows + 1):
                when += timedelta(microseconds=rng.randint(1_000, 10_000_000))
                action = rng.choice(actions)
                fields = {"id": i, "created_at": when, "actor": "bench-moderator", "actor_id": None,
                          "actor_role": "moderator", "action": action, "target_type": "dataset",
                          "target_id": str(first_dataset + rng.randrange(items)),
                          "reason": "spam" if action == "dataset.reject" else "",
                          "statement": "Checked the sources." if rng.random() < 0.5 else "",
                          "internal_note": "seen before" if rng.random() < 0.1 else "", "reporter": "",
                          "details": {"revision": rng.randint(1, 10**6)}, "prev_hash": previous}
                previous = hashlib.sha256(audit.canonical(fields)).hexdigest()
                copy.write_row((i, when, fields["actor"], None, "moderator", action, "dataset", fields["target_id"],
                                fields["reason"], fields["statement"], fields["internal_note"], "",
                                json.dumps(fields["details"]), fields["prev_hash"], previous))
        cursor.execute("SELECT setval(pg_get_serial_sequence('moderation_auditentry', 'id'), %s)", [max(audit_rows, 1)])
        for table in ("accounts_user", "catalog_dataset", "catalog_datasetversion", "catalog_datasetrevision",
                      "moderation_reviewclaim", "moderation_auditentry"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"loaded {audit_rows:,} audit entries about the datasets (COPY, VACUUM ANALYZE) in "
          f"{time.monotonic() - started:.1f} s")


def shapes(rng):
    from marketplace.catalog.models import DatasetRevision

    ids = list(DatasetRevision.objects.filter(status="pending").order_by("created_at", "id")
               .values_list("id", flat=True))
    by_kind = {kind: list(DatasetRevision.objects.filter(status="pending", kind=kind).values_list("id", flat=True)[:5000])
               for kind in ("details", "version", "preview")}
    deep = [ids[rng.randrange(len(ids) // 2, len(ids) - 60)] for _ in range(100)]
    api = "/api/v1/moderation/queue"
    return [
        ("queue page: first page", ["/moderation/queue"]),
        ("queue page: deep pages (after= half way on)", [f"/moderation/queue?after={i}" for i in deep]),
        ("queue page: one kind (preview)", ["/moderation/queue?kind=preview"]),
        ("queue API: first page", [api]),
        ("queue API: deep pages", [f"{api}?after={i}" for i in deep]),
        ("item page: text edits", [f"/moderation/review/{rng.choice(by_kind['details'])}" for _ in range(200)]),
        ("item page: versions (schema, sample, flags)",
         [f"/moderation/review/{rng.choice(by_kind['version'])}" for _ in range(200)]),
        ("item page: previews", [f"/moderation/review/{rng.choice(by_kind['preview'])}" for _ in range(200)]),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--audit", type=int, default=200_000, help="audit entries about the datasets")
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per line")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (marketplace/gunicorn_conf.py: 4)")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker (marketplace/gunicorn_conf.py: 2)")
    parser.add_argument("--keep", action="store_true", help="reuse bench_review if it is loaded")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
    os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "0"
    os.environ["DJANGO_MANIFEST_STATIC"] = "0"
    os.environ["LOG_LEVEL"] = "ERROR"
    os.environ["DATABASE_URL"], fresh = database_url(fresh=not args.keep, name="bench_review")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    if fresh:
        seed(args.items, args.audit)
    else:
        print("reusing the database bench_review")
    cookie = session_cookie("bench-moderator")
    chosen = shapes(random.Random(3))
    from django.db import connection

    connection.close()
    with gunicorn(args.workers, args.threads) as base:
        for name, paths in chosen:  # warm each process and check the answers
            for path in paths[:8]:
                request = urllib.request.Request(base + path, headers={"Cookie": cookie})
                with urllib.request.urlopen(request, timeout=60) as answer:
                    body = answer.read()
                    assert answer.status == 200 and (b"data-review" in body or b'"results"' in body), (path, body[:300])
        p50, p95 = select_one()
        print(f"\nthrough gunicorn ({args.workers} workers x {args.threads} threads) on loopback, wrk concurrency 8, "
              f"{args.duration} s each; the bar: p95 under 50 ms\n"
              f"{'reference: SELECT 1 (one connection)':<46} p50 {p50:.2f} ms   p95 {p95:.2f} ms")
        wrk(base, ["/static/app.css"], args.duration, "reference: a static file", width=46)
        _, floor = wrk(base, ["/api/v1/me/notifications"], args.duration, "reference: signed-in API, nothing to list",
                       cookie, width=46)
        figures = [(name, wrk(base, paths, args.duration, name, cookie, width=46)) for name, paths in chosen]
        print(f"\n{'shape':<46} {'p95 ms':>8}  p95 / the signed-in reference's ({floor} ms)")
        for name, (_, p95_ms) in figures:
            try:
                ratio = f"{float(p95_ms) / float(floor):.2f}"
            except (TypeError, ValueError, ZeroDivisionError):
                ratio = "?"
            print(f"{name:<46} {p95_ms:>8}  {ratio}")


if __name__ == "__main__":
    main()

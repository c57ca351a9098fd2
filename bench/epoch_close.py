"""The epoch close at the issue's scale: an hour of 7.2 million heartbeats (2,000 a second) from
10,000 devices, and 1,000,000 leaves (the devices' wallets plus wallets that earned in earlier
epochs), then proofs served from the stored tree.

    .venv/bin/python bench/epoch_close.py [--devices 10000] [--heartbeats 7200000]
                                          [--leaves 1000000] [--proofs 2000]

It uses its own database `bench_epochs` on DATABASE_URL's server (made fresh and migrated), COPYs
the heartbeats into the day-partitioned table, work credits for every device and an earlier
scored epoch's leaves, then times the real close step (`epochs.score_next`: the heartbeat and
credit queries, points, amounts, the tree, the leaves' COPY and the nodes' bytea) with its parts
measured apart, and `selectors.proof` / GET /api/v1/rewards/proof/<wallet> for random wallets
(p50/p95). Reference figures from the same run: a plain COUNT(*) of the window's heartbeats and
a `SELECT 1` round trip. The issue's targets: the close under 60 s, a proof under 5 ms.
"""

import argparse
from datetime import datetime, timedelta, timezone
import io
import os
from pathlib import Path
import random
import statistics
import sys
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "bench_epochs"


def prepare_database():
    import dj_database_url
    import psycopg

    base = os.environ.get("DATABASE_URL")
    if not base:
        from marketplace.devstack import start_embedded_postgres

        base = start_embedded_postgres()
    db = dj_database_url.parse(base)
    admin = dict(
        dbname="postgres",
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
    )
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    os.environ["DATABASE_URL"] = base.rsplit("/", 1)[0] + "/" + DB_NAME
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    # Production-like: DEBUG off (it records every query), no HTTPS redirect for the test client.
    os.environ.setdefault("DJANGO_DEBUG", "0")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
    os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
    os.environ.setdefault("DJANGO_MANIFEST_STATIC", "0")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def timed(label, function, *args):
    started = time.perf_counter()
    result = function(*args)
    seconds = time.perf_counter() - started
    print(f"  {label:<52} {seconds:8.2f} s", flush=True)
    return result, seconds


def random_wallet(rng):
    from eth_utils import to_checksum_address

    return to_checksum_address(rng.randbytes(20))  # wallets are stored checksummed


def load(args, rng):
    from django.db import connection
    from django.utils import timezone as dj_timezone

    from marketplace.rewards.models import Contributor, Device, Epoch

    now = dj_timezone.now()
    hour = 3600
    window_start = datetime.fromtimestamp(
        (int(now.timestamp()) // hour - 1) * hour, tz=timezone.utc
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT rewards_heartbeat_partition(%s::date)", [window_start.date()])
    # Devices, each bound to its own wallet.
    wallets = [random_wallet(rng) for _ in range(args.devices)]
    Contributor.objects.bulk_create(
        [Contributor(wallet=w, referral_code=f"b{i}") for i, w in enumerate(wallets)],
        batch_size=5000,
    )
    contributors = dict(Contributor.objects.values_list("wallet", "id"))
    Device.objects.bulk_create(
        [
            Device(
                address=random_wallet(rng),
                contributor_id=contributors[w],
                quality_bps=rng.choice((10_000, 9_000, 7_500)),
                last_ip=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
            )
            for i, w in enumerate(wallets)
        ],
        batch_size=5000,
    )
    devices = list(
        Device.objects.order_by("id").values_list("id", "contributor__wallet", "last_ip")
    )

    # Heartbeats: spread evenly over the hour, one device after another in each round (as they
    # arrive), 5-second beats, one-minute slots.
    per_device = args.heartbeats // len(devices)
    step = hour / per_device

    def heartbeat_rows():
        buffer = io.StringIO()
        base = window_start.timestamp()
        for round_ in range(per_device):
            offset = round_ * step
            moments = [base + offset + k * step / 1000 for k in range(1000)]
            stamps = [
                (datetime.fromtimestamp(at, tz=timezone.utc).isoformat(), int(at) // 60)
                for at in moments
            ]
            lines = []
            for index, (device_id, _wallet, ip) in enumerate(devices):
                stamp, slot = stamps[index % 1000]
                lines.append(
                    f"{device_id}\t{round_ + 1}\t{stamp}\t{slot}\t"
                    f"{'t' if index % 50 else 'f'}\t{ip}\t"
                    f"{stamp}\n"
                )
            buffer.write("".join(lines))
            if buffer.tell() > 32 << 20:
                yield buffer.getvalue()
                buffer = io.StringIO()
        yield buffer.getvalue()

    def copy_heartbeats():
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(
                "COPY rewards_heartbeat (device_id, seq, received_at, slot, probe_ok, ip, sent_at) "
                "FROM STDIN"
            ) as copy,
        ):
            for chunk in heartbeat_rows():
                copy.write(chunk)

    timed(f"COPY {per_device * len(devices):,} heartbeats", copy_heartbeats)

    def copy_credits():
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(
                "COPY rewards_workcredit (device_id, wallet, kind, points, quality_bps, ref, earned_at) "
                "FROM STDIN"
            ) as copy,
        ):
            for device_id, wallet, _ip in devices:
                for j in range(3):
                    at = window_start + timedelta(seconds=rng.randrange(hour))
                    copy.write_row(
                        (device_id, wallet, "job", rng.randrange(1, 20), 10_000, f"job-{device_id}-{j}", at)
                    )

    timed(f"COPY {3 * len(devices):,} work credits", copy_credits)

    # An earlier scored epoch whose leaves bring the tree to --leaves.
    previous = Epoch.objects.create(
        number=1,
        starts_at=window_start - timedelta(hours=1),
        ends_at=window_start,
        state=Epoch.State.MATURED,
        root="0x" + "11" * 32,
        leaves=args.leaves - len(devices),
        total=0,
    )
    Epoch.objects.create(
        number=2, starts_at=window_start, ends_at=window_start + timedelta(hours=1)
    )

    def copy_leaves():
        total = 0
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(
                "COPY rewards_epochleaf (epoch_id, wallet, cumulative, node) FROM STDIN"
            ) as copy,
        ):
            for i in range(args.leaves - len(devices)):
                amount = rng.randrange(1, 10**9)
                total += amount
                copy.write_row((previous.pk, random_wallet(rng), amount, i))
        return total

    total, _ = timed(f"COPY {args.leaves - len(devices):,} earlier leaves", copy_leaves)
    Epoch.objects.filter(pk=previous.pk).update(total=total)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return window_start, devices


def measure_close(window_start):
    from django.db import connection

    from marketplace.rewards import epochs, scoring
    from marketplace.rewards.merkle import MerkleTree
    from marketplace.rewards.models import Epoch

    epoch = Epoch.objects.get(number=2)
    window = [epoch.starts_at, epoch.ends_at]
    print("reference:")

    def count():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM rewards_heartbeat "
                "WHERE received_at >= %s AND received_at < %s",
                window,
            )
            return cursor.fetchone()[0]

    rows, count_seconds = timed("plain COUNT(*) of the window's heartbeats", count)
    print(f"  ({rows:,} rows)")
    print("the close's parts, measured apart:")
    works, _ = timed(
        "heartbeat + credit queries (_device_work)",
        epochs._device_work,
        epoch,
        scoring.Weights.from_settings(),
    )
    timed("points (score_wallets)", scoring.score_wallets, works, scoring.Weights.from_settings())
    (_, previous), _ = timed("earlier leaves read", epochs._previous_leaves, epoch)
    entries = sorted(
        (wallet.lower(), amount) for wallet, amount in previous.items()
    )  # as the close does
    timed(f"tree of {len(entries):,} leaves with positions", MerkleTree.with_positions, entries)
    del previous, entries
    print("the close step (one transaction: score, tree, store):")
    _, close_seconds = timed("epochs.score_next()", epochs.score_next)
    epoch.refresh_from_db()
    print(
        f"  epoch {epoch.number}: {epoch.leaves:,} leaves, root {epoch.root}, state {epoch.state}"
    )
    return count_seconds, close_seconds


def measure_proofs(args, rng):
    from django.db import connection
    from django.test import Client

    from marketplace.rewards import selectors
    from marketplace.rewards.merkle import verify
    from marketplace.rewards.models import Epoch, EpochLeaf

    Epoch.objects.filter(number=2).update(
        state=Epoch.State.MATURED, root_status=Epoch.RootStatus.PROPOSED
    )
    epoch = Epoch.objects.get(number=2)
    ids = (
        EpochLeaf.objects.filter(epoch=epoch)
        .order_by("?")
        .values_list("wallet", flat=True)[: args.proofs]
    )
    wallets = list(ids)

    def reference():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def latencies(function):
        seen = []
        for wallet in wallets:
            started = time.perf_counter()
            function(wallet)
            seen.append((time.perf_counter() - started) * 1000)
        seen.sort()
        return statistics.median(seen), seen[int(len(seen) * 0.95) - 1]

    answer = selectors.proof(wallets[0])
    assert verify(epoch.root, wallets[0], int(answer["cumulative"]), answer["proof"]), (
        "a proof does not verify"
    )
    client = Client(HTTP_HOST="localhost")
    response = client.get(f"/api/v1/rewards/proof/{wallets[0]}")
    assert response.status_code == 200 and response.json()["proof"] == answer["proof"], (
        response.content[:200]
    )
    print(f"proofs ({len(wallets):,} random wallets of {epoch.leaves:,} leaves), p50 / p95:")
    for label, function in (
        ("SELECT 1 round trip (reference)", lambda w: reference()),
        ("selectors.proof(wallet)", selectors.proof),
        (
            "GET /api/v1/rewards/proof/<wallet> (Django client)",
            lambda w: client.get(f"/api/v1/rewards/proof/{w}"),
        ),
    ):
        p50, p95 = latencies(function)
        print(f"  {label:<52} {p50:6.2f} / {p95:6.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--heartbeats", type=int, default=7_200_000)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=2_000)
    args = parser.parse_args()
    rng = random.Random(19)
    prepare_database()
    print(
        f"loading ({args.devices:,} devices, {args.heartbeats:,} heartbeats, "
        f"{args.leaves:,} leaves):"
    )
    window_start, _ = load(args, rng)
    count_seconds, close_seconds = measure_close(window_start)
    measure_proofs(args, rng)
    print(
        f"summary: close {close_seconds:.1f} s (target 60 s), "
        f"{close_seconds / count_seconds:.1f}x a plain "
        f"COUNT(*) of the window ({count_seconds:.2f} s) in the same run"
    )


if __name__ == "__main__":
    main()

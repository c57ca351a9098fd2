"""Worker time of small CSV files (under 1 MB) through the real analysis path: a child process
within the server's limits, pre-started as the worker's threads have it.

    .venv/bin/python bench/analysis_small.py [--files 60] [--gap 0.1]

For each shape (10 rows, 1,000 rows, 20 columns, 300 columns), --files different files are
analysed one after another by `analyse_in_child`, --gap seconds apart (a worker between tasks:
the thread's next child gets ready in the gap), and the wall time of each call is the worker's
time (the child's work, the pipe, starting the next child). The issue's target: under 50 ms.
The reference, measured in the same run on the same files: DuckDB's own `count(*)` of
`read_csv` (sniffing included) on an open connection, the least any analysis must read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from marketplace.catalog.analysis import Limits  # noqa: E402
from marketplace.catalog.analysis.sandbox import analyse_in_child  # noqa: E402

TARGET_MS = 50.0
CITIES = ["Paris", "Lyon", "Nice", "Lille", "Nantes", "Rennes", "Brest", "Dijon"]
SHAPES = {  # name: (rows, columns)
    "10 rows x 6": (10, 6),
    "1,000 rows x 6": (1_000, 6),
    "1,000 rows x 20": (1_000, 20),
    "100 rows x 300": (100, 300),
}


def cell(column: int, row: int, rng: random.Random) -> str:
    kind = column % 6
    if kind == 0:
        return str(row)
    if kind == 1:
        return f"{rng.gauss(50, 15):.3f}"
    if kind == 2:
        return rng.choice(CITIES)
    if kind == 3:
        return (dt.date(2020, 1, 1) + dt.timedelta(days=rng.randrange(1500))).isoformat()
    if kind == 4:
        return rng.choice(["true", "false"])
    return f"item {rng.randrange(10**6)}"


def write_csv(path: Path, rows: int, columns: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = [",".join(f"col{c}" for c in range(columns))]
    lines += [",".join(cell(c, r, rng) for c in range(columns)) for r in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 1_000_000, path
    return path


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=60, help="files of each shape")
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between two files")
    args = parser.parse_args()

    limits = Limits()  # the settings' defaults
    reference = duckdb.connect(":memory:")
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {args.files} files a shape, "
          f"{args.gap:.2f} s apart; worker time = the analyse_in_child call (target {TARGET_MS:.0f} ms)")
    print(f"{'shape':18s} {'size':>8s} {'p50':>7s} {'p95':>7s} {'ref p50':>8s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory(prefix="analysis-small-") as directory:
        analyse_in_child(write_csv(Path(directory) / "warm.csv", 10, 3, 0), "csv", limits=limits)
        for name, (rows, columns) in SHAPES.items():
            files = [write_csv(Path(directory) / f"{rows}x{columns}-{n}.csv", rows, columns, n)
                     for n in range(args.files)]
            worker, counted = [], []
            for path in files:
                time.sleep(args.gap)
                started = time.perf_counter()
                result = analyse_in_child(path, "csv", limits=limits)
                worker.append(time.perf_counter() - started)
                assert result["row_count"] == rows and len(result["columns"]) == columns
                started = time.perf_counter()
                reference.execute(f"SELECT count(*) FROM read_csv('{path}')").fetchone()
                counted.append(time.perf_counter() - started)
            p50, ref = statistics.median(worker) * 1000, statistics.median(counted) * 1000
            size = statistics.mean(f.stat().st_size for f in files)
            print(f"{name:18s} {size / 1000:6.1f} KB {p50:5.1f} ms {percentile(worker, 0.95) * 1000:5.1f} ms "
                  f"{ref:6.1f} ms {p50 / ref:5.1f}x")


if __name__ == "__main__":
    main()

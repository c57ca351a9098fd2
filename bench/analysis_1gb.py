"""Time `analyse()` end to end on a ~1 GB CSV, against the issue's 10 s target.

    .venv/bin/python bench/analysis_1gb.py [--path /tmp/analysis_1gb.csv] [--rows 10000000]
                                           [--regenerate] [--no-compare] [--threads N]
                                           [--memory-mb 4096] [--check] [--json out.json]

The file (12 mixed columns: integers, floats with nulls, strings of low, middle and near-unique
cardinality, dates, timestamps, booleans) is generated once by DuckDB and reused. Prints the file
size, rows, wall and CPU seconds, MB/s, peak RSS, and, unless --no-compare, DuckDB's own count(*)
and SUMMARIZE of the same file on the same machine right after, so the figure can be read
against "SUMMARIZE of such a file takes 4.4 s here" even when the machine is busier or the file
heavier than when that was measured. With --check it then measures how far the estimated
figures (distinct counts; histogram and top-value counts of a sampled file) are from the exact
ones, computed by DuckDB over the whole file.
"""
import argparse
import json
import os
from pathlib import Path
import resource
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from marketplace.catalog.analysis import Limits, analyse, to_json  # noqa: E402

TARGET_SECONDS = 10.0

# hash(i) gives every row 64 pseudo-random bits; the columns take different slices of them.
GENERATE = """
COPY (
  SELECT
    i AS id,
    (h % 1000000)::BIGINT AS user_id,
    CASE WHEN h % 17 = 0 THEN NULL ELSE round(((h >> 8) % 1000000) / 100.0 - 5000, 2) END AS amount,
    ((h >> 16) % 100000) / 1000.0 AS score,
    1 + ((h >> 24) % 100)::INTEGER AS quantity,
    ['books', 'music', 'games', 'garden', 'toys', 'food', 'health', 'sports', 'tools', 'travel']
        [1 + ((h >> 28) % 10)::INTEGER] AS category,
    'city_' || ((h >> 32) % 2000)::VARCHAR AS city,
    'SKU-' || lpad(((h >> 4) % 100000000)::VARCHAR, 8, '0') AS sku,
    DATE '2015-01-01' + ((h >> 40) % 3650)::INTEGER AS day,
    TIMESTAMP '2020-01-01' + to_seconds(((h >> 12) % 157680000)::BIGINT) AS created_at,
    (h >> 50) % 3 = 0 AS active,
    CASE WHEN (h >> 44) % 5 = 0 THEN NULL ELSE 'note ' || ((h >> 20) % 50000)::VARCHAR END AS note
  FROM (SELECT i, hash(i) AS h FROM range({rows}) r(i))
) TO '{path}' (FORMAT csv, HEADER)
"""


def generate(path: Path, rows: int) -> None:
    print(f"generating {rows:,} rows into {path} ...", flush=True)
    started = time.perf_counter()
    # In a child process, so that the generator's memory does not count in the peak RSS below.
    code = (
        "import duckdb, sys; con = duckdb.connect(config={'preserve_insertion_order': False}); "
        "con.execute('SET enable_progress_bar = false'); con.execute(sys.stdin.read())"
    )
    tmp = path.with_suffix(path.suffix + ".part")
    sql = GENERATE.format(rows=rows, path=str(tmp).replace("'", "''"))
    subprocess.run([sys.executable, "-c", code], input=sql, text=True, check=True)
    tmp.replace(path)
    print(f"generated {path.stat().st_size / 1e6:,.0f} MB in {time.perf_counter() - started:.1f} s")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=Path("/tmp/analysis_1gb.csv"))
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--no-compare", dest="compare", action="store_false")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--memory-mb", type=int, default=Limits.memory_mb,
                        help="the analysis's address space; DuckDB's memory_limit is half of it")
    parser.add_argument("--json", type=Path, help="also write the analysis to this file")
    parser.add_argument("--check", action="store_true",
                        help="compare the estimated figures with exact ones (slow)")
    args = parser.parse_args()

    if args.regenerate or not args.path.exists():
        generate(args.path, args.rows)
    size = args.path.stat().st_size
    # Read the file once so the timing is of parsing, not of the disk.
    with open(args.path, "rb") as f:
        while f.read(1 << 24):
            pass

    load_before = os.getloadavg()[0]
    marks: list[tuple[float, str]] = []
    started, cpu_started = time.perf_counter(), cpu_seconds()

    def progress(fraction: float, message: str) -> None:
        marks.append((time.perf_counter() - started, f"{fraction:.2f} {message}"))

    analysis = analyse(
        args.path, "csv", progress=progress,
        limits=Limits(threads=args.threads, memory_mb=args.memory_mb),
    )
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    load_after = os.getloadavg()[0]

    if args.json:
        args.json.write_text(json.dumps(to_json(analysis), indent=1))
    loaded_at = next((t for t, m in marks if "computing" in m), float("nan"))
    print(f"file            {size / 1e6:,.0f} MB, {len(analysis.columns)} columns")
    print(f"rows            {analysis.row_count:,} (rejected {analysis.rejected_rows:,})")
    print(f"analyse()       {seconds:.2f} s wall ({loaded_at:.2f} s reading, "
          f"{seconds - loaded_at:.2f} s statistics), {cpu:.2f} s CPU, "
          f"target {TARGET_SECONDS:.0f} s: {'met' if seconds <= TARGET_SECONDS else 'NOT met'}")
    print(f"throughput      {size / 1e6 / seconds:,.0f} MB/s")
    print(f"peak RSS        {peak_rss / 2**20:,.0f} MiB (whole process)")
    print(f"load average    {load_before:.2f} before, {load_after:.2f} after, "
          f"on {os.cpu_count()} CPUs")
    print("columns         " + ", ".join(f"{c.name}:{c.type}" for c in analysis.columns))
    sampled = [c.name for c in analysis.columns if c.sampled]
    print(f"sample          {analysis.stats_sample_rows:,} rows for histograms and top values; "
          f"estimated counts in: {', '.join(sampled) or 'none'}")
    if analysis.warnings:
        print("warnings        " + "; ".join(analysis.warnings))

    if args.compare:
        con = duckdb.connect(config={"threads": args.threads} if args.threads else {})
        con.execute("SET enable_progress_bar = false")
        source = f"read_csv('{str(args.path).replace(chr(39), chr(39) * 2)}')"
        for label, sql in (
            ("count(*)", f"SELECT count(*) FROM {source}"),
            ("SUMMARIZE", f"SUMMARIZE SELECT * FROM {source}"),
        ):
            t0, c0 = time.perf_counter(), cpu_seconds()
            con.execute(sql).fetchall()
            print(f"duckdb {label:9s}{time.perf_counter() - t0:6.2f} s wall, "
                  f"{cpu_seconds() - c0:.2f} s CPU (same file, same machine, just after)")
        con.close()
    if args.check:
        check(args.path, analysis)


def check(path: Path, analysis) -> None:
    """Print how far each estimated figure is from the exact one."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    quoted = str(path).replace("'", "''")
    con.execute(f"CREATE TEMP TABLE data AS SELECT * FROM read_csv('{quoted}')")
    print("check           estimated vs exact, over the whole file:")
    for col in analysis.columns:
        c = '"' + col.name.replace('"', '""') + '"'
        distinct = con.execute(f"SELECT count(DISTINCT {c}) FROM data").fetchone()[0]
        line = (f"  {col.name:12s} distinct {col.distinct_count:>11,} vs {distinct:>11,} "
                f"({(col.distinct_count - distinct) / max(distinct, 1):+.2%})")
        if col.histogram and col.type in ("integer", "float", "decimal"):
            worst, low = 0.0, None
            for b in col.histogram:
                where = f"{c} <= ?" + (f" AND {c} > ?" if low is not None else "")
                params = [b["end"]] + ([low] if low is not None else [])
                true = con.execute(f"SELECT count(*) FROM data WHERE {where}", params).fetchone()[0]
                worst = max(worst, abs(b["count"] - true) / max(true, 1))
                low = b["end"]
            line += f"; histogram bins within {worst:.1%}"
        if col.top_values and col.type == "string":
            worst = max(
                abs(t["count"] - con.execute(f"SELECT count(*) FROM data WHERE {c} = ?",
                                             [t["value"]]).fetchone()[0])
                / t["count"]
                for t in col.top_values
            )
            line += f"; top-value counts within {worst:.1%}"
        print(line)
    con.close()


if __name__ == "__main__":
    main()

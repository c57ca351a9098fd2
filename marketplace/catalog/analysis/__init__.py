"""Schema, row count, sample and column statistics of a tabular file, computed with DuckDB.

What a dataset page shows, as Hugging Face's dataset viewer does: per column its type, null count,
distinct count, min/max/mean and a small histogram for numbers and dates, the most frequent values
for text and booleans. Pure Python and DuckDB (no Django), so the Celery task, the bench and the
tests call the same function.

How it stays fast (bench/analysis_1gb.py): parsing is most of the cost, so a file is parsed once
and not copied. A large CSV or Parquet file is not loaded into a table (for a 1 GB CSV the copy
cost more CPU than the parse): one ungrouped aggregate over the file computes every exact figure
(row count, null counts, min, max, mean, true/false counts, the distinct counts of columns whose
first rows hold few distinct values) and estimates the other distinct counts from the values'
hashes. Histograms and top values are then counted on a sample of the rows: whole lines from
blocks spread over a CSV file (collecting sampled rows inside the scan doubled its cost), DuckDB's
reservoir sampling of a table or Parquet file. Those counts are estimates scaled to the column's
exact number of values, and the column says so (`sampled`). A file small enough to be its own
sample (STATS_SAMPLE_CELLS values, STATS_SAMPLE_BYTES) is loaded into a table and every figure of
it is exact; a CSV file of at most a thousand rows is read straight into Python and counted there
(pyscan.py), where DuckDB would spend more on planning its queries than on the rows. The first
rows, read before the scan, give the schema, the rows shown on the page and the plan of the scan.

A CSV file is sniffed once, and every read of it takes the sniffed layout as explicit options. It
is read leniently from the start (`store_rejects=true`, which keeps DuckDB's parallel reader): a
clean file reads exactly as a strict read would, and a file that parses badly deeper in needs no
second pass to learn what went wrong. Rows DuckDB cannot parse are counted and the first one
explained; if they outnumber the good rows (a file that is not UTF-8 at all, a file whose rows all
disagree with its header) the analysis fails with that explanation instead.

The server never runs it in the worker's own process: sandbox.analyse_in_child runs each file in
a child process within memory and CPU limits, on a Workspace whose DuckDB connection reads that
one file only; caps.py bounds what a file may expand to (see docs/architecture.md, Analysis).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import duckdb

from .caps import gunzip_capped, is_gzip
from .connection import Limits, Progress, _configure, _connect, _Reporter, _seal
from .csv import _load_csv
from .errors import _clean_error
from .histograms import _histograms
from .jsonl import _load_jsonl
from .parquet import _load_parquet
from .results import NEEDS_MORE_MEMORY, Analysis, AnalysisFailed, ColumnStats
from .stats import _exact_distinct_counts, _Scan
from .topvalues import _top_values
from .values import _sample, _sample_of

__all__ = [
    "FORMATS", "Analysis", "AnalysisFailed", "ColumnStats", "Limits", "Workspace", "analyse",
    "to_json",
]

FORMATS = ("csv", "jsonl", "parquet")
ONE_THREAD_MAX_BYTES = 4 * 1024 * 1024


def analyse(
    path: str | Path,
    fmt: str,
    *,
    progress: Progress | None = None,
    limits: Limits = Limits(),
) -> Analysis:
    """Analyse the CSV, JSON Lines or Parquet file at `path` in this process (the server runs it in
    a child process with the limits enforced: see sandbox.analyse_in_child).

    `progress(fraction, message)` is called from this thread with non-decreasing fractions:
    (0.0, "reading"), then while the file is read, (0.5, "computing statistics"), (1.0, "done").
    Raises AnalysisFailed with a publisher-facing reason when the file cannot be read.
    """
    with Workspace(limits) as workspace:
        return workspace.analyse(path, fmt, progress=progress)


class Workspace:
    """A private directory and a DuckDB connection for one analysis. The file is given to DuckDB
    as `data.<format>` in that directory (a link, or the decompressed copy of a gzip file), so no
    name from outside reaches SQL or a glob, and the connection can read nothing else."""

    def __init__(self, limits: Limits = Limits(), con=None, directory: Path | None = None):
        """`con`: an unused connection from connection._connect (a child's, opened before it
        was forked), else one is opened. `directory`: an empty directory to work in (the
        sandbox's parent makes it, and removes it whatever becomes of the child), else a new
        temporary one."""
        self.dir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="analysis-"))
        self.spill_dir = self.dir / "spill"
        self.spill_dir.mkdir()
        self.con = con or _connect()
        self.limits = limits
        self.data_bytes = 0  # the file as DuckDB reads it (decompressed), once analyse has it
        _configure(self.con, limits, self.spill_dir)

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def analyse(self, path: str | Path, fmt: str, *, progress: Progress | None = None) -> Analysis:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise ValueError(f"unsupported format {fmt!r}; expected one of {FORMATS}")
        report = _Reporter(progress)
        report(0.0, "reading")
        try:
            size = Path(path).stat().st_size
        except OSError as exc:
            raise AnalysisFailed("The file could not be opened.") from exc
        if size == 0:
            raise AnalysisFailed("The file is empty.")
        data = self.dir / f"data.{fmt}"
        if fmt != "parquet" and is_gzip(path):
            # The copy counts against the analysis's disk budget: DuckDB may spill what is left.
            copied = gunzip_capped(Path(path), data, max_bytes=self.limits.temp_mb * 2**20)
            spill_mb = max(1, self.limits.temp_mb - copied // 2**20)
            self.con.execute(f"SET max_temp_directory_size = '{spill_mb}MB'")
        else:
            data.symlink_to(Path(path).resolve())
        self.data_bytes = data.stat().st_size
        if self.data_bytes > ONE_THREAD_MAX_BYTES:
            # A small file keeps one thread: its queries take milliseconds, and one thread spends
            # none handing work to others (the worker's other threads have their own children).
            self.con.execute(f"SET threads = {self.limits.threads or os.cpu_count() or 1}")
        _seal(self.con, data, self.spill_dir)
        con = self.con
        try:
            loader = {"csv": _load_csv, "jsonl": _load_jsonl, "parquet": _load_parquet}[fmt]
            loaded = loader(con, data, report, self.spill_dir)
            _finish(con, loaded.scan)
            report(0.95, "computing statistics")
            columns = loaded.scan.columns
            if loaded.scan.first_rows is not None:  # read already, in file order
                sample = _sample_of([c.name for c in columns], loaded.scan.first_rows)
            else:
                sample = _sample(con, loaded.sample_sql, columns)
            row_count = loaded.scan.row_count
        except duckdb.OutOfMemoryException as exc:
            raise AnalysisFailed(NEEDS_MORE_MEMORY) from exc
        except duckdb.Error as exc:
            raise AnalysisFailed(_clean_error(str(exc), data)) from exc

        warnings = list(loaded.warnings)
        if row_count == 0:
            warnings.append("The file has no data rows.")
        report(1.0, "done")
        return Analysis(
            format=fmt,
            row_count=row_count,
            columns=columns,
            sample=sample,
            rejected_rows=loaded.rejected_rows,
            warnings=warnings,
            stats_sample_rows=loaded.scan.sample_rows,
        )


def to_json(analysis: Analysis) -> dict:
    """The analysis as plain dicts and lists (every value is already JSON-safe). Its lists are
    the analysis's own, not copies: dataclasses.asdict deep-copies every value, which took 24 ms
    of a 300-column file's analysis."""
    plain = {f.name: getattr(analysis, f.name) for f in dataclasses.fields(analysis)}
    plain["columns"] = [{f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
                        for c in analysis.columns]
    return plain


def _finish(con, scan: _Scan) -> None:
    """Histograms and top values, counted on the sample; exact distinct counts when it is whole."""
    if scan.exact:
        _exact_distinct_counts(con, [s for s in scan.slots if s.in_sample and not s.exact_distinct])
    _histograms(con, scan)
    _top_values(con, scan)

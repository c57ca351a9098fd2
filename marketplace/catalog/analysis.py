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
it is exact. The first rows, read before the scan, give the schema, the rows shown on the page and
the plan of the scan.

A CSV file is sniffed once, and every read of it takes the sniffed layout as explicit options. It
is read leniently from the start (`store_rejects=true`, which keeps DuckDB's parallel reader): a
clean file reads exactly as a strict read would, and a file that parses badly deeper in needs no
second pass to learn what went wrong. Rows DuckDB cannot parse are counted and the first one
explained; if they outnumber the good rows (a file that is not UTF-8 at all, a file whose rows all
disagree with its header) the analysis fails with that explanation instead.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import decimal
import json
import math
import re
import tempfile
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

FORMATS = ("csv", "jsonl", "parquet")
SAMPLE_ROWS = 20
HISTOGRAM_BINS = 10
TOP_VALUES = 10
# The first FIRST_ROWS rows (fewer when the file is wide: at most FIRST_CELLS values) plan the
# scan. A column with at most FEW_DISTINCT distinct values there gets an exact distinct count
# (cheap for such a column); the others an estimate (see DISTINCT_HASHES_KEPT). Text whose distinct
# values are at least NEARLY_UNIQUE of its values there (ids, free text) has nothing frequent to
# show: no top values are computed for it.
FIRST_ROWS = 100_000
FIRST_CELLS = 4_000_000
FEW_DISTINCT = 5_000
NEARLY_UNIQUE = 0.9
# A file of at most about STATS_SAMPLE_CELLS values and STATS_SAMPLE_BYTES is its own sample: its
# statistics are exact. A larger one is sampled, at most STATS_SAMPLE_CELLS values: a CSV file in
# blocks of at least SAMPLE_BLOCK_BYTES (whole lines), about STATS_SAMPLE_BLOCK_BYTES in all.
STATS_SAMPLE_CELLS = 4_000_000
STATS_SAMPLE_BYTES = 256 * 1024 * 1024
SAMPLE_BLOCK_BYTES = 64 * 1024
STATS_SAMPLE_BLOCK_BYTES = 32 * 1024 * 1024
# Distinct counts that are not exact are estimated from the values' hashes: the distinct hashes
# under a threshold, a known share of all hashes, are counted exactly and scaled by that share
# (hash-threshold sampling, as in a bottom-k sketch). The share is chosen from the first rows to
# keep about DISTINCT_HASHES_KEPT hashes, for an error of about 1/sqrt(kept): within 0.5 % on the
# bench's 10M-row file but for the 100,000-value column (2 %), where DuckDB's approx_count_distinct
# (HyperLogLog) was 4-22 % off, at the same cost; a bitmap (linear counting) was slower.
DISTINCT_HASHES_KEPT = 2**18
# Top values of a sampled file are ranked on one half of the sample and counted on the other (the
# most frequent of many equally frequent values would otherwise be overcounted); a value counted
# fewer than MIN_SAMPLED_TOP_COUNT times there is not shown: nothing about it is frequent.
MIN_SAMPLED_TOP_COUNT = 10
# Above this many distinct values a text column's top values come from approx_top_k candidates
# (then counted exactly) rather than a GROUP BY holding every value.
EXACT_TOP_VALUES_MAX_DISTINCT = 100_000
# Error records DuckDB keeps for a lenient CSV read (a ragged line can produce several).
REJECTS_LIMIT = 200_000
# Attempts at re-typing CSV columns whose sniffed type is contradicted deeper in the file.
CSV_RETYPE_ATTEMPTS = 3
DEFAULT_MEMORY_LIMIT = "2GB"
# Long text is cut in the sample and in top values: the analysis is stored in a JSON column.
MAX_SAMPLE_TEXT = 1_000
MAX_TOP_VALUE_TEXT = 200
PROGRESS_POLL_SECONDS = 0.5

Progress = Callable[[float, str], None]

_INTEGER_TYPES = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
}
# Integer types whose values may not fit the BIGINT boundaries of a histogram.
_WIDE_INTEGER_TYPES = {"HUGEINT", "UBIGINT", "UHUGEINT"}
_FLOAT_TYPES = {"FLOAT", "DOUBLE"}
_TIMESTAMP_TYPES = {
    "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE",
}
_STRING_TYPES = {"VARCHAR", "UUID"}
_EPOCH_DATE = dt.date(1970, 1, 1)
_EPOCH = dt.datetime(1970, 1, 1)


@dataclass
class ColumnStats:
    name: str
    # "integer" | "float" | "decimal" | "boolean" | "date" | "timestamp" | "string" | "other"
    type: str
    duckdb_type: str
    null_count: int
    # Exact for booleans, for columns with few distinct values and for files sampled whole;
    # otherwise an estimate, typically within a per cent or two (see DISTINCT_HASHES_KEPT).
    distinct_count: int
    min: Any = None  # numbers as int/float (decimals as str), dates and timestamps as ISO strings
    max: Any = None
    mean: float | None = None  # numbers only
    histogram: list[dict] = field(default_factory=list)  # {"start", "end", "count"}, numbers/dates
    # {"value", "count"}, most frequent first, for text (unless nearly unique) and booleans
    top_values: list[dict] = field(default_factory=list)
    # True when the histogram and top-value counts are estimates from a uniform sample of the rows
    # (scaled to the column's exact count); null counts, min, max and mean are always exact.
    sampled: bool = False


@dataclass
class Analysis:
    format: str  # "csv" | "jsonl" | "parquet"
    row_count: int
    columns: list[ColumnStats]
    sample: list[dict]  # the first SAMPLE_ROWS rows, JSON-safe
    rejected_rows: int = 0  # rows a lenient read skipped
    warnings: list[str] = field(default_factory=list)
    # Rows the histograms and top values were counted on (row_count when the file is its own sample)
    stats_sample_rows: int = 0


class AnalysisFailed(Exception):
    """The file cannot be analysed; `reason` says why in words for the publisher."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def analyse(
    path: str | Path,
    fmt: str,
    *,
    progress: Progress | None = None,
    threads: int | None = None,
    memory_limit: str | None = None,
) -> Analysis:
    """Analyse the CSV, JSON Lines or Parquet file at `path`.

    `progress(fraction, message)` is called from this thread with non-decreasing fractions:
    (0.0, "reading"), then while the file is read, (0.5, "computing statistics"), (1.0, "done").
    Raises AnalysisFailed with a publisher-facing reason when the file cannot be read.
    """
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unsupported format {fmt!r}; expected one of {FORMATS}")
    path = Path(path)
    report = _Reporter(progress)
    report(0.0, "reading")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AnalysisFailed("The file could not be opened.") from exc
    if size == 0:
        raise AnalysisFailed("The file is empty.")

    with tempfile.TemporaryDirectory(prefix="analysis-") as spill_dir:
        con = _connect(threads=threads, memory_limit=memory_limit, spill_dir=spill_dir)
        try:
            loader = {"csv": _load_csv, "jsonl": _load_jsonl, "parquet": _load_parquet}[fmt]
            loaded = loader(con, path, report, Path(spill_dir))
            _finish(con, loaded.scan)
            report(0.95, "computing statistics")
            columns = loaded.scan.columns
            sample = _sample(con, loaded.sample_sql, columns)
            row_count = loaded.scan.row_count
        except duckdb.OutOfMemoryException as exc:
            raise AnalysisFailed(
                "The file needs more memory to analyse than the server allows."
            ) from exc
        except duckdb.Error as exc:
            raise AnalysisFailed(_clean_error(str(exc), path)) from exc
        finally:
            con.close()

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
    """The analysis as plain dicts and lists (every value is already JSON-safe)."""
    return dataclasses.asdict(analysis)


# --- connection and progress -------------------------------------------------------------------


def _connect(*, threads: int | None, memory_limit: str | None, spill_dir: str):
    config: dict[str, Any] = {
        "memory_limit": memory_limit or DEFAULT_MEMORY_LIMIT,
        "temp_directory": spill_dir,
        # Row order only matters for the sample, which is read separately with order preserved.
        "preserve_insertion_order": False,
        "autoinstall_known_extensions": False,
    }
    if threads:
        config["threads"] = threads
    con = duckdb.connect(":memory:", config=config)
    # Progress is tracked (for query_progress) but never printed.
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    # Zoned timestamps are shown in UTC, whatever the server's zone.
    con.execute("SET TimeZone = 'UTC'")
    return con


class _Reporter:
    """Calls the caller's progress callback with fractions that never go backwards."""

    def __init__(self, callback: Progress | None):
        self.callback = callback
        self.last = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        if self.callback is None:
            return
        self.last = max(self.last, min(1.0, fraction))
        self.callback(self.last, message)


def _run_tracked(con, sql: str, report: _Reporter, start: float, end: float, message: str):
    """Run a long statement, reporting DuckDB's own progress between `start` and `end`.

    The statement runs on a helper thread so that the callback is only ever called from the
    caller's thread; an exception from the callback interrupts the statement.
    """
    if report.callback is None:
        return con.execute(sql).fetchall()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(lambda: con.execute(sql).fetchall())
        while True:
            try:
                return future.result(timeout=PROGRESS_POLL_SECONDS)
            except FutureTimeout:
                percent = con.query_progress()
                if percent >= 0:
                    try:
                        report(start + (end - start) * percent / 100, message)
                    except BaseException:
                        con.interrupt()
                        try:
                            future.result()
                        except duckdb.Error:
                            pass
                        raise

# --- loading -----------------------------------------------------------------------------------


@dataclass
class _Loaded:
    scan: _Scan  # what the scan of the whole file found
    sample_sql: str  # the first rows, in file order
    rejected_rows: int = 0
    warnings: list[str] = field(default_factory=list)


def _make_head(con, select_sql: str) -> tuple[int, int]:
    """The first rows of `select_sql`, in order, as the temporary table `head`.

    At most FIRST_ROWS rows and FIRST_CELLS values, so that a very wide file keeps it small.
    Returns (rows read, the limit): fewer rows than the limit were the whole file.
    """
    width = len(con.execute(f"DESCRIBE {select_sql}").fetchall())
    limit = max(SAMPLE_ROWS, min(FIRST_ROWS, FIRST_CELLS // max(width, 1)))
    con.execute("SET preserve_insertion_order = true")
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE head AS {select_sql} LIMIT {limit}")
    finally:
        con.execute("SET preserve_insertion_order = false")
    rows = con.execute("SELECT count(*) FROM head").fetchone()[0]
    return rows, limit


def _estimate_lines(path: Path, size: int, newline: bytes, chunk: int = 4 << 20) -> int:
    """The number of lines of a text file, extrapolated from its first few MB."""
    with open(path, "rb") as f:
        head = f.read(chunk)
    lines = head.count(newline) + (0 if head.endswith(newline) else 1)
    return max(1, math.ceil(lines * size / max(len(head), 1)))


def _load_csv(con, path: Path, report: _Reporter, workdir: Path) -> _Loaded:
    size = path.stat().st_size
    types: dict[str, str] = {}
    retype_notes: dict[str, str] = {}
    for attempt in range(CSV_RETYPE_ATTEMPTS + 1):
        errors, scans = f"csv_errors_{attempt}", f"csv_scans_{attempt}"
        try:
            layout = _sniff_csv(con, path, types)
            source = _csv_source(path, layout, errors, scans)
            # The first rows' own rejects go to throwaway tables.
            head_source = _csv_source(
                path, layout, f"head_errors_{attempt}", f"head_scans_{attempt}"
            )
            head_rows, limit = _make_head(con, f"SELECT * FROM {head_source}")
            # The first rows were the whole file, or else its size tells roughly how many there are.
            rows = head_rows if head_rows < limit else _estimate_lines(path, size, layout.newline)
            whole = rows <= _sample_budget(len(layout.columns)) and size <= STATS_SAMPLE_BYTES
            if whole:
                # Small enough to load: every figure is then counted exactly on the table.
                _run_tracked(
                    con, f"CREATE OR REPLACE TEMP TABLE data AS SELECT * FROM {source}",
                    report, 0.0, 0.5, "reading",
                )
                scan = _scan(con, "data", rows=rows, report=report, start=0.5, end=0.5,
                             message="reading")
            else:
                # Scanned in place, once; histograms and top values come from blocks of lines.
                scan = _scan(con, source, rows=rows, report=report, start=0.0, end=0.5,
                             message="reading")
        except duckdb.Error as exc:
            if isinstance(exc, duckdb.OutOfMemoryException):
                raise
            raise AnalysisFailed(_clean_error(str(exc), path)) from exc
        retyped = _csv_retype(con, errors, types)
        if not retyped or attempt == CSV_RETYPE_ATTEMPTS:
            break
        for name, (old, new, line, value) in retyped.items():
            types[name] = new
            retype_notes[name] = (
                f'Column "{name}" was read as {_FRIENDLY_NEW_TYPE[new]}: line {line:,} has '
                f'"{_shorten(value, 40)}", which is not {_article(old)} {old}.'
            )
    warnings = list(retype_notes.values())

    good = scan.row_count
    rejected, records = con.execute(
        f"SELECT count(DISTINCT line), count(*) FROM {errors}"
    ).fetchone()
    if rejected:
        fatal = good == 0 or rejected > good
        reason = _first_csv_reject(con, errors, path, fatal=fatal)
        if fatal:
            raise AnalysisFailed(reason)
        at_least = "at least " if records >= REJECTS_LIMIT else ""
        noun = "row" if rejected == 1 else "rows"
        warnings.append(f"analysed with {at_least}{rejected:,} rejected {noun}: {reason}")
    report(0.5, "computing statistics")
    if whole:
        _take_sample(con, scan, [("data", "false")], exact=True)
    else:
        _take_csv_blocks(con, scan, path, size, rows, layout, workdir)
    return _Loaded(
        scan=scan,
        sample_sql=f"SELECT * FROM head LIMIT {SAMPLE_ROWS}",
        rejected_rows=rejected,
        warnings=warnings,
    )


def _take_csv_blocks(
    con, scan: _Scan, path: Path, size: int, rows: int, layout: _Layout, workdir: Path,
) -> None:
    """The sample of a large CSV: whole lines from blocks spread evenly over the file.

    Reading about STATS_SAMPLE_BLOCK_BYTES costs little next to the scan, where collecting sampled
    rows (a list aggregate) doubled its cost. Even blocks make one half, odd ones the other. A
    block that starts inside a quoted field spanning lines may yield rejected or odd rows: the
    sample only feeds estimates.
    """
    per_row = size / max(rows, 1)
    wanted = min(_sample_budget(len(scan.fields)) * per_row, STATS_SAMPLE_BLOCK_BYTES)
    block = min(max(SAMPLE_BLOCK_BYTES, math.ceil(8 * per_row)), STATS_SAMPLE_BLOCK_BYTES)
    # At least one block for each half.
    count = max(min(2, size // block), min(math.ceil(wanted / block), size // block), 1)
    spacing = size / count
    halves = [workdir / "sample-0.csv", workdir / "sample-1.csv"]
    newline = layout.newline
    with open(path, "rb") as f, open(halves[0], "wb") as even, open(halves[1], "wb") as odd:
        for i in range(count):
            f.seek(int(spacing * (i + 0.5)))  # never at 0: the header stays out
            data = f.read(block)
            first, last = data.find(newline), data.rfind(newline)
            if 0 <= first < last:
                (even if i % 2 == 0 else odd).write(data[first + len(newline): last + len(newline)])
    parts = [
        (_csv_source(half, layout, f"sample_errors_{n}", f"sample_scans_{n}", whole_file=False),
         "true" if n else "false")
        for n, half in enumerate(halves)
        if half.stat().st_size
    ]
    try:
        _take_sample(con, scan, parts or [("head WHERE false", "false")], exact=False)
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.OutOfMemoryException):
            raise
        # Blocks DuckDB cannot read at all: no histograms or top values, every other figure.
        _take_sample(con, scan, [("head WHERE false", "false")], exact=False)


# What sniff_csv reports for an option that is not set.
_SNIFFED_NOTHING = "(empty)"
# Sniffed formats left out of the options: DuckDB reads ISO 8601 dates and times without one,
# faster (a format goes through strptime, which cost about a second per GB for a date column).
_ISO_FORMATS = {"%Y-%m-%d", "%Y-%m-%d %H:%M:%S"}


@dataclass
class _Layout:
    """A CSV file's layout as sniffed once: explicit read_csv options for every read of it."""

    options: dict[str, str]  # read_csv option -> SQL value
    columns: list[tuple[str, str]]  # (name, DuckDB type)
    newline: bytes


def _sniff_csv(con, path: Path, types: dict[str, str]) -> _Layout:
    """Sniffed with the options the reads use (a lenient read sniffs past ragged lines), `types`
    overriding sniffed column types. Reads with explicit options sniff nothing again."""
    options = "store_rejects = true"
    if types:
        pairs = ", ".join(f"{_sql_string(k)}: {_sql_string(v)}" for k, v in types.items())
        options += f", types = {{{pairs}}}"
    row = con.execute(
        f"SELECT Delimiter, Quote, Escape, NewLineDelimiter, Comment, SkipRows, HasHeader, Columns,"
        f" DateFormat, TimestampFormat FROM sniff_csv({_sql_string(str(path))}, {options})"
    ).fetchone()
    delim, quote, escape, new_line, comment, skip, header, columns, date_format, ts_format = row

    def text(value):
        return "''" if value in (None, _SNIFFED_NOTHING) else _sql_string(value)

    columns = [(c["name"], c["type"]) for c in columns]
    schema = ", ".join(f"{_sql_string(name)}: {_sql_string(kind)}" for name, kind in columns)
    layout = {
        "auto_detect": "false",
        "delim": text(delim),
        "quote": text(quote),
        "escape": text(escape),
        "new_line": text(new_line),
        "comment": text(comment),
        "skip": str(int(skip)),
        "header": "true" if header else "false",
        "columns": f"{{{schema}}}",
    }
    if date_format and date_format not in _ISO_FORMATS:
        layout["dateformat"] = _sql_string(date_format)
    if ts_format and ts_format not in _ISO_FORMATS:
        layout["timestampformat"] = _sql_string(ts_format)
    # sniff_csv spells the line ending as an escape: "\\n", "\\r\\n" or "\\r".
    newline = b"\r" if new_line == "\\r" else b"\n"
    return _Layout(options=layout, columns=columns, newline=newline)


def _csv_source(path: Path, layout: _Layout, errors: str, scans: str, *, whole_file=True) -> str:
    """read_csv of `path` with `layout`, lenient; `whole_file` false for lines cut out of it
    (no lines to skip, no header)."""
    options = dict(layout.options)
    if not whole_file:
        options.update(skip="0", header="false")
    options.update(
        store_rejects="true",
        rejects_table=_sql_string(errors),
        rejects_scan=_sql_string(scans),
        rejects_limit=str(REJECTS_LIMIT),
    )
    listed = ", ".join(f"{name} = {value}" for name, value in options.items())
    return f"read_csv({_sql_string(str(path))}, {listed})"


_FRIENDLY_NEW_TYPE = {"DOUBLE": "decimal numbers", "VARCHAR": "text"}
_CAST_MESSAGE = re.compile(r'Could not convert string "(.*)" to \'?([A-Z_ ]+)\'?', re.S)


def _csv_retype(con, errors: str, types: dict[str, str]) -> dict[str, tuple[str, str, int, str]]:
    """Columns whose sniffed type a later value contradicts, with the type to read them as.

    The sniffer looks at the first rows only; an integer column with "1.5" or "n/a" further down
    should be read as numbers or text, not lose those rows. Returns {column: (old type, new type,
    first line, first value)}.
    """
    rows = con.execute(
        f"""SELECT column_name, min(line), arg_min(error_message, line), list(error_message)
            FROM {errors} WHERE error_type = 'CAST' AND column_name IS NOT NULL
            GROUP BY column_name"""
    ).fetchall()
    retyped = {}
    for name, line, first_message, messages in rows:
        if types.get(name) == "VARCHAR":
            continue
        first = _CAST_MESSAGE.search(first_message or "")
        old = first.group(2).strip() if first else "the detected type"
        values = [m.group(1) for m in map(_CAST_MESSAGE.search, messages) if m]
        numeric = old in _INTEGER_TYPES and values and all(_is_number(v) for v in values)
        new = "DOUBLE" if numeric and types.get(name) != "DOUBLE" else "VARCHAR"
        retyped[name] = (old, new, line, first.group(1) if first else "")
    return retyped


def _first_csv_reject(con, errors: str, path: Path, *, fatal: bool) -> str:
    """The first rejected line, explained; `fatal` when it explains why nothing was analysed."""
    line, line_start, error_type, message, messages = con.execute(
        f"""SELECT line, min(line_byte_position), arg_min(error_type, byte_position),
                   arg_min(error_message, byte_position), list(error_message)
            FROM {errors}
            WHERE line = (SELECT min(line) FROM {errors})
            GROUP BY line"""
    ).fetchone()
    if error_type in ("TOO MANY COLUMNS", "MISSING COLUMNS"):
        counts = [re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", m) for m in messages]
        counts = [(int(m.group(1)), int(m.group(2))) for m in counts if m]
        if counts:
            expected = counts[0][0]
            found = (max if error_type == "TOO MANY COLUMNS" else min)(f for _, f in counts)
            noun = "field" if found == 1 else "fields"
            return f"Line {line:,} has {found} {noun}, expected {expected}."
    if error_type in ("INVALID ENCODING", "INVALID UNICODE"):
        if fatal:
            return _utf8_reason(path, start=line_start or 0, line=line)
        offset = _first_invalid_utf8(path, line_start or 0)
        near = f" (near byte {offset:,})" if offset is not None else ""
        return f"Line {line:,} is not valid UTF-8{near}."
    if error_type == "CAST":
        cast = _CAST_MESSAGE.search(message or "")
        if cast:
            value, expected = _shorten(cast.group(1), 40), cast.group(2)
            return f'Line {line:,} has "{value}" where {expected} was expected.'
    return f"Line {line:,}: {_first_sentence(message)}"


def _load_jsonl(con, path: Path, report: _Reporter, workdir: Path) -> _Loaded:
    path_sql = _sql_string(str(path))
    attempts = [
        f"read_json({path_sql}, format = 'newline_delimited')",
        # A type contradicted after the sampled lines: let DuckDB look at every line.
        f"read_json({path_sql}, format = 'newline_delimited', sample_size = -1)",
    ]
    first_error = ""
    for attempt, source in enumerate(attempts):
        try:
            _run_tracked(
                con, f"CREATE OR REPLACE TEMP TABLE data AS SELECT * FROM {source}",
                report, 0.0, 0.5, "reading",
            )
            break
        except duckdb.OutOfMemoryException:
            raise
        except duckdb.Error as exc:
            first_error = first_error or str(exc)
            if attempt == 0 and "JSON transform error" in str(exc):
                continue
            return _load_jsonl_leniently(con, path, report, first_error)
    # The sample reads the first lines with the schema already found, without sniffing again.
    schema = ", ".join(
        f"{_sql_string(name)}: {_sql_string(duckdb_type)}"
        for name, duckdb_type, *_ in con.execute("DESCRIBE data").fetchall()
    )
    sample_source = f"read_json({path_sql}, format = 'newline_delimited', columns = {{{schema}}})"
    return _Loaded(
        scan=_scan_table(con, "data", report),
        sample_sql=f"SELECT * FROM {sample_source} LIMIT {SAMPLE_ROWS}",
    )


def _load_jsonl_leniently(con, path: Path, report: _Reporter, error: str) -> _Loaded:
    # With ignore_errors DuckDB turns a line it cannot parse into a row of NULLs: those rows are
    # the rejected ones (an object with every field null is indistinguishable, and says nothing).
    source = (
        f"read_json({_sql_string(str(path))}, format = 'newline_delimited', ignore_errors = true)"
    )
    try:
        _run_tracked(
            con, f"CREATE OR REPLACE TEMP TABLE raw AS SELECT * FROM {source}",
            report, 0.0, 0.5, "reading",
        )
    except duckdb.Error as exc:
        raise AnalysisFailed(_clean_error(error, path)) from exc
    names = [row[0] for row in con.execute("DESCRIBE raw").fetchall()]
    any_value = " OR ".join(f"{_ident(n)} IS NOT NULL" for n in names) or "false"
    con.execute(f"CREATE OR REPLACE TEMP TABLE data AS SELECT * FROM raw WHERE {any_value}")
    total = con.execute("SELECT count(*) FROM raw").fetchone()[0]
    con.execute("DROP TABLE raw")
    good = con.execute("SELECT count(*) FROM data").fetchone()[0]
    rejected = total - good
    if good == 0 or rejected > good:
        raise AnalysisFailed(_clean_error(error, path))
    reason = _clean_error(error, path, fatal=False)
    noun = "row" if rejected == 1 else "rows"
    return _Loaded(
        scan=_scan_table(con, "data", report),
        sample_sql=f"SELECT * FROM {source} WHERE {any_value} LIMIT {SAMPLE_ROWS}",
        rejected_rows=rejected,
        warnings=[
            f"analysed with {rejected:,} rejected {noun}: {reason}" if rejected
            else f"Some values could not be read and were left empty: {reason}"
        ],
    )


def _scan_table(con, table: str, report: _Reporter) -> _Scan:
    """The scan of a file already loaded into `table` (JSON Lines)."""
    report(0.5, "computing statistics")
    return _scan_relation(con, table, report, start=0.5, end=0.9, message="computing statistics")


def _scan_relation(con, relation: str, report: _Reporter, **progress) -> _Scan:
    """Scan a table or view, and sample it whole or with DuckDB's reservoir sampling."""
    _make_head(con, f"SELECT * FROM {relation}")
    rows = con.execute(f"SELECT count(*) FROM {relation}").fetchone()[0]
    scan = _scan(con, relation, rows=rows, report=report, **progress)
    budget = _sample_budget(len(scan.fields))
    if rows <= budget:
        _take_sample(con, scan, [(relation, "false")], exact=True)
    else:
        sampled = f"(SELECT * FROM {relation} USING SAMPLE reservoir({budget} ROWS) REPEATABLE (1))"
        _take_sample(con, scan, [(sampled, "random() < 0.5")], exact=False)
    return scan


def _load_parquet(con, path: Path, report: _Reporter, workdir: Path) -> _Loaded:
    # Parquet is columnar and compressed already: query it in place instead of copying it.
    source = f"read_parquet({_sql_string(str(path))})"
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW data AS SELECT * FROM {source}")
        con.execute("SELECT count(*) FROM data").fetchone()  # from the metadata: is it Parquet?
    except duckdb.Error as exc:
        raise AnalysisFailed(_clean_error(str(exc), path)) from exc
    scan = _scan_relation(con, "data", report, start=0.0, end=0.5, message="reading")
    report(0.5, "computing statistics")
    return _Loaded(scan=scan, sample_sql=f"SELECT * FROM {source} LIMIT {SAMPLE_ROWS}")


# --- statistics --------------------------------------------------------------------------------


def _kind(duckdb_type: str) -> str:
    if duckdb_type in _INTEGER_TYPES:
        return "integer"
    if duckdb_type in _FLOAT_TYPES:
        return "float"
    if duckdb_type.startswith("DECIMAL"):
        return "decimal"
    if duckdb_type == "BOOLEAN":
        return "boolean"
    if duckdb_type == "DATE":
        return "date"
    if duckdb_type in _TIMESTAMP_TYPES:
        return "timestamp"
    if duckdb_type in _STRING_TYPES or duckdb_type.startswith("ENUM") or duckdb_type == "JSON":
        return "string"
    return "other"


@dataclass
class _Slot:
    """One column in the scan: where its figures are in the scan's row, what the sample holds."""

    col: ColumnStats
    index: int  # the column's position; the sample names its values k<index>, h<index>, t<index>
    figures: dict[str, int] = field(default_factory=dict)  # figure -> position in the scan's row
    in_sample: bool = False  # numbers and dates: k<i>; text: h<i> (hash) and t<i> (cut text)
    exact_distinct: bool = False  # counted with count(DISTINCT) in the scan
    top_values: bool = False  # text that is not nearly unique
    hash_share: float = 1.0  # share of the hashes counted for an estimated distinct count
    counts_null_hash: bool = False  # whether NULL's hash is among them
    # Filled from the scan: exact counts of non-null and of finite values, range
    non_null: int = 0
    finite: int = 0
    low: Any = None
    high: Any = None


@dataclass
class _Scan:
    row_count: int
    columns: list[ColumnStats]
    slots: list[_Slot]
    # The sample's columns as (name, expression over the file's columns); see _take_sample
    fields: list[tuple[str, str]] = field(default_factory=list)
    sample_rows: int = 0  # rows in the temporary table `sample`
    exact: bool = True  # the sample holds every row: figures counted on it are exact


def _scan(
    con, source: str, *, rows: int, report: _Reporter, start: float, end: float, message: str,
) -> _Scan:
    """One pass over `source` for every exact figure (and the estimated distinct counts).

    The temporary table `head` holds the first rows of `source` (same schema) and plans the pass;
    `rows` is about how many rows `source` has. One ungrouped aggregate: an aggregate that
    collects rows (list, histogram) would make DuckDB group instead, at twice the cost.
    """
    columns = [
        ColumnStats(
            name=name, type=_kind(duckdb_type), duckdb_type=duckdb_type,
            null_count=0, distinct_count=0,
        )
        for name, duckdb_type, *_ in con.execute("DESCRIBE head").fetchall()
    ]
    first_rows = _profile_first_rows(con, "head", columns)
    few = {name for name, (_, distinct) in first_rows.items() if distinct <= FEW_DISTINCT}
    head_rows = con.execute("SELECT count(*) FROM head").fetchone()[0]
    null_hash = con.execute("SELECT hash(NULL)").fetchone()[0]
    # The inner query derives each value once under a name of our own (c<i> the value, k<i> the
    # finite number a range and a histogram are taken of, b<i> its hash), so that no aggregate
    # needs a FILTER of its own.
    derived = []
    select = ["count(*)"]
    fields = []
    slots = []
    for i, col in enumerate(columns):
        slot = _Slot(col=col, index=i)
        slots.append(slot)
        c, v, k = _ident(col.name), f"c{i}", f"k{i}"
        derived.append(f"{c} AS {v}")

        def figure(name: str, sql: str, slot=slot) -> None:
            slot.figures[name] = len(select)
            select.append(sql)

        figure("non_null", f"count({v})")
        if col.type == "boolean":
            figure("trues", f"count_if({v})")
            continue
        if col.name in few:
            slot.exact_distinct = True
            figure("distinct", f"count(DISTINCT {v})")
        else:
            # Distinct hashes under a threshold (see DISTINCT_HASHES_KEPT). NULL has a hash too,
            # counted if under it (cheaper to subtract afterwards than to test every value).
            slot.hash_share = _hash_share(first_rows.get(col.name), head_rows, rows)
            threshold = min(2**64 - 1, math.floor(slot.hash_share * 2**64))
            slot.counts_null_hash = null_hash < threshold
            derived.append(f"hash({c}) AS b{i}")
            figure("hashes", f"count(DISTINCT CASE WHEN b{i} < {threshold}::UBIGINT THEN b{i} END)"
                   if slot.hash_share < 1 else f"count(DISTINCT b{i})")
        if col.type in ("integer", "decimal"):
            figure("low", f"min({v})")
            figure("high", f"max({v})")
            figure("mean", f"avg({v})")
            fields.append((k, c))
        elif col.type in ("float", "date", "timestamp"):
            # NaN and infinities have no place in a range, a mean or a histogram.
            number = c if col.type == "float" else _temporal_number(c, col.type)
            finite = f"CASE WHEN isfinite({c}) THEN {number} END"
            derived.append(f"{finite} AS {k}")
            figure("finite", f"count({k})")
            figure("low", f"min({k})")
            figure("high", f"max({k})")
            if col.type == "float":
                figure("mean", f"avg({k})")
            fields.append((k, finite))
        elif col.type == "string" and not _nearly_unique(*first_rows.get(col.name, (0, 0))):
            slot.top_values = True
            # Grouped on the hash of the whole value; the text is kept only as long as it is shown.
            fields.append((f"h{i}", f"CASE WHEN {c} IS NOT NULL THEN hash({c}::VARCHAR) END"))
            fields.append((f"t{i}", f"left({c}::VARCHAR, {MAX_TOP_VALUE_TEXT + 1})"))
        slot.in_sample = col.type not in ("string", "other") or slot.top_values

    values = _run_tracked(
        con,
        f"""SELECT {', '.join(select)} FROM (SELECT {', '.join(derived)} FROM {source})""",
        report, start, end, message,
    )[0]
    row_count = values[0]
    for slot in slots:
        col, got = slot.col, {name: values[n] for name, n in slot.figures.items()}
        slot.non_null = got["non_null"]
        slot.finite = got.get("finite", slot.non_null)
        col.null_count = row_count - slot.non_null
        if col.type == "boolean":
            trues, falses = got["trues"], slot.non_null - got["trues"]
            col.distinct_count = (trues > 0) + (falses > 0)
            col.top_values = [
                {"value": v, "count": n}
                for v, n in sorted([(True, trues), (False, falses)], key=lambda p: -p[1])
                if n
            ]
            continue
        if "hashes" in got:
            hashes = got["hashes"] or 0
            if col.null_count and slot.counts_null_hash and hashes:
                hashes -= 1
            distinct = round(hashes / slot.hash_share)
        else:
            distinct = got["distinct"] or 0
        col.distinct_count = min(int(distinct), slot.non_null)
        low, high = got.get("low"), got.get("high")
        if low is not None and high is not None:
            slot.low, slot.high = low, high
            _set_range(col, low, high)
            col.mean = _finite(got.get("mean"))
    return _Scan(row_count=row_count, columns=columns, slots=slots, fields=fields)


def _take_sample(con, scan: _Scan, parts: list[tuple[str, str]], *, exact: bool) -> None:
    """The temporary table `sample`: the scan's sample columns over each (source, half) part.

    `exact` when the parts hold every row of the file. Otherwise `half` (an SQL boolean) splits
    the sample in two: top values are ranked on one half and counted on the other, else the
    luckiest of many equally frequent values would be overcounted.
    """
    select = [f"{sql} AS {name}" for name, sql in scan.fields] or ["NULL AS none"]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE sample AS "
        + " UNION ALL ".join(
            f"SELECT {', '.join(select)}, {half} AS half FROM {source}" for source, half in parts
        )
    )
    scan.exact = exact
    scan.sample_rows = (
        scan.row_count if exact else con.execute("SELECT count(*) FROM sample").fetchone()[0]
    )


def _sample_budget(columns: int) -> int:
    """Rows a sample may hold: STATS_SAMPLE_CELLS values."""
    return max(1, STATS_SAMPLE_CELLS // max(columns, 1))


def _hash_share(profile: tuple[int, int] | None, head_rows: int, rows: int) -> float:
    """The share of hashes to keep for a column whose first rows have `profile` (non-null,
    distinct values; None if not profiled): enough for about DISTINCT_HASHES_KEPT of its distinct
    values, all of them in a small file.

    Distinct values are extrapolated from the first rows as if new ones kept coming at the rate
    they came there: too many rather than too few, which only costs a larger error.
    """
    if profile is None or not head_rows:
        expected = rows
    else:
        expected = max(profile[1], 1) * max(rows / head_rows, 1)
    return min(1.0, DISTINCT_HASHES_KEPT / max(expected, 1))


def _finish(con, scan: _Scan) -> None:
    """Histograms and top values, counted on the sample; exact distinct counts when it is whole."""
    if scan.exact:
        _exact_distinct_counts(con, [s for s in scan.slots if s.in_sample and not s.exact_distinct])
    _histograms(con, scan)
    _top_values(con, scan)


def _profile_first_rows(con, relation: str, columns: list[ColumnStats]) -> dict[str, tuple]:
    """{column name: (non-null values, distinct values)} over the rows of `relation`."""
    eligible = [c for c in columns if c.type not in ("boolean", "other")]
    if not eligible:
        return {}
    select = ", ".join(
        f"count({_ident(c.name)}), count(DISTINCT {_ident(c.name)})" for c in eligible
    )
    row = con.execute(f"SELECT {select} FROM {relation}").fetchone()
    return {c.name: (row[2 * i], row[2 * i + 1]) for i, c in enumerate(eligible)}


def _exact_distinct_counts(con, slots: list[_Slot]) -> None:
    """Distinct counts of a sample that is the whole file are exact: replace the estimates."""
    if not slots:
        return
    keys = [f"h{s.index}" if s.col.type == "string" else f"k{s.index}" for s in slots]
    row = con.execute(
        f"SELECT {', '.join(f'count(DISTINCT {k})' for k in keys)} FROM sample"
    ).fetchone()
    for slot, distinct in zip(slots, row):
        if slot.col.type in ("float", "date", "timestamp") and slot.finite < slot.non_null:
            continue  # NaN and infinities are not in the sample: keep the scan's count
        slot.col.distinct_count = distinct


def _set_range(col: ColumnStats, low, high) -> None:
    if col.type in ("date", "timestamp"):
        col.min, col.max = _temporal_iso(low, col), _temporal_iso(high, col)
    else:
        col.min, col.max = _number(low, col.type), _number(high, col.type)


def _temporal_number(c: str, kind: str) -> str:
    return f"({c} - DATE '1970-01-01')" if kind == "date" else f"epoch_us({c})"


def _float_binned(col: ColumnStats) -> bool:
    return col.type in ("float", "decimal") or col.duckdb_type in _WIDE_INTEGER_TYPES


def _bins(col: ColumnStats, low, high) -> list[tuple]:
    """Equal-width bins over low..high, as (start, end) pairs; a value belongs to the first bin
    whose end it does not exceed (what DuckDB's histogram(x, boundaries) counts)."""
    if _float_binned(col):
        low, high = float(low), float(high)
        return _float_bins(low, high) if math.isfinite(low) and math.isfinite(high) else []
    if col.type == "timestamp":  # microseconds are near-continuous: bins share edges, like floats
        return _edge_bins(int(low), int(high))
    return _integer_bins(int(low), int(high))


def _histograms(con, scan: _Scan) -> None:
    """Each histogram counted on the sample: a value belongs to the first bin whose end it does
    not exceed (a CASE and a GROUP BY: ten times faster than DuckDB's histogram(x, boundaries)).

    Bins span the exact range from the scan. Counted on a partial sample, the counts are scaled to
    the column's exact number of finite values, and the bins holding the minimum and the maximum
    are never shown empty.
    """
    for slot in scan.slots:
        col = slot.col
        if slot.low is None or slot.high is None or not slot.in_sample:
            continue
        bins = _bins(col, slot.low, slot.high)
        if len(bins) <= 1:  # no range, or a single value: no counting needed
            col.histogram = [_bin(col, b, slot.finite) for b in bins]
            continue
        value, bound_type = f"k{slot.index}", "BIGINT"
        if _float_binned(col):
            value, bound_type = f"k{slot.index}::DOUBLE", "DOUBLE"
        case = " ".join(
            f"WHEN {value} <= ?::{bound_type} THEN {n}" for n, _ in enumerate(bins[:-1])
        )
        found = dict(con.execute(
            f"""SELECT CASE {case} ELSE {len(bins) - 1} END AS bin, count(*) FROM sample
                WHERE {value} IS NOT NULL GROUP BY bin""",
            [end for _, end in bins[:-1]],
        ).fetchall())
        counts = [found.get(n, 0) for n in range(len(bins))]
        if not scan.exact:
            col.sampled = True
            counts = _scaled_counts(counts, slot.finite)
            if counts is None:  # the sample holds none of its values: nothing to show
                continue
        col.histogram = [_bin(col, b, count) for b, count in zip(bins, counts)]


def _scaled_counts(counts: list[int], total: int) -> list[int] | None:
    """Sample counts scaled to sum to `total` (largest remainders), first and last never empty.

    The first and last bins hold the column's minimum and maximum, which exist whatever the sample
    says; other bins the sample left empty stay empty. None when the sample counted nothing.
    """
    sampled = sum(counts)
    if sampled == 0:
        return None
    exact = [n * total / sampled for n in counts]
    scaled = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(counts)), key=lambda i: scaled[i] - exact[i])
    for i in by_remainder[: total - sum(scaled)]:
        scaled[i] += 1
    for edge in (0, len(scaled) - 1):
        donor = max(range(len(scaled)), key=lambda i: scaled[i])
        if scaled[edge] == 0 and scaled[donor] > 1:
            scaled[donor] -= 1
            scaled[edge] += 1
    return scaled


def _integer_bins(low: int, high: int) -> list[tuple[int, int]]:
    """Up to HISTOGRAM_BINS inclusive integer ranges [start, end] covering low..high."""
    span = high - low + 1
    width = -(-span // min(HISTOGRAM_BINS, span))
    bins, start = [], low
    while start <= high:
        end = min(start + width - 1, high)
        bins.append((start, end))
        start = end + 1
    return bins


def _edge_bins(low: int, high: int) -> list[tuple[int, int]]:
    """Up to HISTOGRAM_BINS integer ranges sharing edges; a value on an edge counts below it."""
    edges = sorted({low + (high - low) * k // HISTOGRAM_BINS for k in range(HISTOGRAM_BINS + 1)})
    return list(zip(edges[:-1], edges[1:])) or [(low, high)]


def _float_bins(low: float, high: float) -> list[tuple[float, float]]:
    if low == high:
        return [(low, high)]
    width = (high - low) / HISTOGRAM_BINS
    edges = [low + width * k for k in range(HISTOGRAM_BINS)] + [high]
    return list(zip(edges[:-1], edges[1:]))


def _bin(col: ColumnStats, bounds: tuple, count: int) -> dict:
    start, end = bounds
    if col.type in ("date", "timestamp"):
        start, end = _temporal_iso(start, col), _temporal_iso(end, col)
    elif _float_binned(col):
        start, end = _finite(start), _finite(end)
    return {"start": start, "end": end, "count": int(count)}


def _nearly_unique(non_null: int, distinct: int) -> bool:
    return distinct >= NEARLY_UNIQUE * non_null


def _top_values(con, scan: _Scan) -> None:
    """Most frequent values of text columns.

    A sample that is the whole file counts them exactly. A partial one ranks values on one half
    and estimates their counts from the other, scaled to the column's exact number of values.
    """
    slots = [s for s in scan.slots if s.top_values]
    if not slots:
        return
    if scan.exact:
        for slot, found in zip(slots, _exact_top_values(con, slots)):
            slot.col.top_values = [
                {"value": _shorten(value, MAX_TOP_VALUE_TEXT), "count": n} for value, n in found
            ]
        return
    in_half = con.execute(
        "SELECT " + ", ".join(f"count(t{s.index}) FILTER (WHERE half)" for s in slots)
        + " FROM sample"
    ).fetchone()
    for slot, counted in zip(slots, in_half):
        h, t = f"h{slot.index}", f"t{slot.index}"
        rows = con.execute(
            f"""SELECT min({t}) AS value, count(*) FILTER (WHERE half) AS n
                FROM sample WHERE {h} IS NOT NULL GROUP BY {h}
                ORDER BY count(*) FILTER (WHERE NOT half) DESC, value LIMIT {TOP_VALUES}"""
        ).fetchall()
        # Chosen on one half only: choosing on the half that counts would favour its luckiest.
        scale = slot.non_null / counted if counted else 0.0
        top = sorted(
            ((value, round(n * scale)) for value, n in rows if n >= MIN_SAMPLED_TOP_COUNT),
            key=lambda p: (-p[1], p[0]),
        )
        slot.col.top_values = [
            {"value": _shorten(value, MAX_TOP_VALUE_TEXT), "count": n} for value, n in top
        ]
        slot.col.sampled = slot.col.sampled or bool(top)


def _exact_top_values(con, slots: list[_Slot]) -> list[list[tuple[str, int]]]:
    """Each column's most frequent values and their counts in the sample (the whole file).

    Up to EXACT_TOP_VALUES_MAX_DISTINCT distinct values a GROUP BY counts them; beyond,
    approx_top_k finds candidates and one more pass counts them exactly.
    """
    found: dict[int, list] = {}
    wide = []
    for slot in slots:
        if slot.col.distinct_count > EXACT_TOP_VALUES_MAX_DISTINCT:
            wide.append(slot)
            continue
        h, t = f"h{slot.index}", f"t{slot.index}"
        found[slot.index] = con.execute(
            f"""SELECT min({t}) AS value, count(*) AS n FROM sample WHERE {h} IS NOT NULL
                GROUP BY {h} ORDER BY n DESC, value LIMIT {TOP_VALUES}"""
        ).fetchall()
    if wide:
        candidates = con.execute(
            "SELECT "
            + ", ".join(f"approx_top_k(h{s.index}, {TOP_VALUES})" for s in wide)
            + " FROM sample"
        ).fetchone()
        select, params, owners = [], [], []
        for slot, hashes in zip(wide, candidates):
            for value_hash in hashes or []:
                if value_hash is not None:
                    select.append(f"min(t{slot.index}) FILTER (WHERE h{slot.index} = ?)")
                    select.append(f"count(*) FILTER (WHERE h{slot.index} = ?)")
                    params += [value_hash, value_hash]
                    owners.append(slot.index)
        counts = (
            con.execute(f"SELECT {', '.join(select)} FROM sample", params).fetchone()
            if select else []
        )
        for n, index in enumerate(owners):
            found.setdefault(index, []).append((counts[2 * n], counts[2 * n + 1]))
    return [
        sorted(found.get(slot.index, []), key=lambda p: (-p[1], p[0]))[:TOP_VALUES]
        for slot in slots
    ]


def _sample(con, sample_sql: str, columns: list[ColumnStats]) -> list[dict]:
    con.execute("SET preserve_insertion_order = true")
    # Zoned times come back as text: their Python conversion needs pytz, and text is what we keep.
    zoned = [
        f"{_ident(c.name)}::VARCHAR AS {_ident(c.name)}"
        for c in columns
        if c.duckdb_type in ("TIMESTAMP WITH TIME ZONE", "TIME WITH TIME ZONE")
    ]
    if zoned:
        sample_sql = f"SELECT * REPLACE ({', '.join(zoned)}) FROM ({sample_sql})"
    try:
        cursor = con.execute(sample_sql)
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    except (duckdb.ConversionException, duckdb.InvalidInputException, ValueError, OverflowError):
        # A value Python cannot represent (a year beyond 9999, say): show every value as text.
        cursor = con.execute(f"SELECT COLUMNS(*)::VARCHAR FROM ({sample_sql})")
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    return [{n: _json_value(v) for n, v in zip(names, row)} for row in rows]


# --- values ------------------------------------------------------------------------------------


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _number(value, kind: str):
    if value is None:
        return None
    if kind == "integer":
        return int(value)
    if kind == "decimal":
        return str(value)  # exact: a float would round it
    return _finite(value)


def _temporal_iso(value, col: ColumnStats) -> str | None:
    """Days (dates) or microseconds (timestamps) since the epoch as an ISO 8601 string."""
    if value is None:
        return None
    try:
        if col.type == "date":
            return (_EPOCH_DATE + dt.timedelta(days=int(value))).isoformat()
        moment = _EPOCH + dt.timedelta(microseconds=int(value))
    except OverflowError:
        return None
    if col.duckdb_type == "TIMESTAMP WITH TIME ZONE":
        return moment.replace(tzinfo=dt.timezone.utc).isoformat()
    return moment.isoformat()


def _json_value(value):
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _shorten(value, MAX_SAMPLE_TEXT)
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return data.hex() if len(data) <= 32 else f"<binary, {len(data):,} bytes>"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return _shorten(str(value), MAX_SAMPLE_TEXT)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _article(word: str) -> str:
    return "an" if word[:1].upper() in "AEIOU" else "a"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- errors ------------------------------------------------------------------------------------


def _utf8_reason(path: Path, *, start: int = 0, line: int | None = None) -> str:
    """Where the first byte that is not UTF-8 is, at or after byte `start` of the file."""
    offset = _first_invalid_utf8(path, start)
    where = f" near byte {offset:,}" if offset is not None else ""
    on_line = f" (line {line:,})" if line else ""
    return f"The file is not valid UTF-8{where}{on_line}; save it as UTF-8 and upload it again."


def _first_invalid_utf8(path: Path, start: int, chunk: int = 1 << 20) -> int | None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    position = start
    try:
        with open(path, "rb") as f:
            f.seek(start)
            while data := f.read(chunk):
                try:
                    decoder.decode(data)
                except UnicodeDecodeError as exc:
                    # Bytes the decoder held back from the previous chunk come first in its buffer.
                    return position - len(exc.object) + len(data) + exc.start
                position += len(data)
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:  # the file ends inside a multi-byte sequence
                return position - len(exc.object) + exc.start
    except OSError:
        return None
    return None


def _line_at(path: Path, offset: int, chunk: int = 1 << 20) -> int:
    """The 1-based line number of byte `offset`."""
    newlines, position = 0, 0
    with open(path, "rb") as f:
        while position < offset and (data := f.read(min(chunk, offset - position))):
            newlines += data.count(b"\n")
            position += len(data)
    return newlines + 1


def _malformed_json_line(path: Path, reported: int) -> int:
    """The line DuckDB's JSON reader could not parse: it reports the one after (DuckDB 1.x)."""
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if number >= reported - 1 and raw.strip():
                    try:
                        json.loads(raw)
                    except ValueError:  # UnicodeDecodeError included
                        return number
                if number >= reported:
                    break
    except OSError:
        pass
    return reported


_NOISE = re.compile(r"^(Invalid Input|Conversion|IO|Binder|Parser|Catalog|Out of Memory|"
                    r"Invalid|Not implemented|Internal) Error: ")


def _first_sentence(message: str | None) -> str:
    lines = (message or "").strip().splitlines()
    text = _NOISE.sub("", lines[0]).strip() if lines else ""
    return _shorten(text, 300) or "it could not be parsed."


def _clean_error(message: str, path: Path, *, fatal: bool = True) -> str:
    """A DuckDB error message as a sentence for the publisher: no SQL, paths or hints.

    `fatal` when it explains why nothing was analysed, else it explains one skipped line.
    """
    message = message.replace(str(path), "the file")
    lines = [line.strip() for line in message.splitlines()]
    if "not utf-8 encoded" in message or "invalid UTF-8" in message or "Invalid unicode" in message:
        # Where exactly, from the file itself: DuckDB's JSON reader reports lines one late.
        offset = _first_invalid_utf8(path, 0)
        line = _line_at(path, offset) if offset is not None else None
        if fatal or line is None:
            return _utf8_reason(path, line=line)
        return f"Line {line:,} is not valid UTF-8 (near byte {offset:,})."
    if "not possible to automatically detect the CSV" in message or "sniff" in message.lower():
        return "The file does not look like CSV: no consistent delimiter and columns were found."
    if re.search(r"no magic bytes|not a parquet file|too small to be a parquet", message, re.I):
        return "The file is not a valid Parquet file."
    csv_line = re.search(r"CSV Error on Line: (\d+)", message)
    if csv_line:
        # "CSV Error on Line: N" / "Original Line: ..." / the reason.
        reason = next(
            (text for text in lines[1:] if text and not text.startswith("Original Line")),
            "it could not be parsed.",
        )
        columns = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", reason)
        if columns:
            expected, found = columns.groups()
            more = "more than " if int(found) > int(expected) else ""
            return f"Line {int(csv_line.group(1)):,} has {more}{found} fields, expected {expected}."
        return f"Line {int(csv_line.group(1)):,}: {_first_sentence(reason)}"
    malformed = re.search(r"Malformed JSON in file .*?, at byte \d+ in line (\d+): (.*)", message)
    if malformed:
        line, what = malformed.groups()
        line = _malformed_json_line(path, int(line))
        return f"Line {line:,} is not valid JSON: {what.strip().rstrip('.')}."
    transform = re.search(r"JSON transform error in file .*?, in line (\d+): ([^\n]*)", message)
    if transform:
        line, what = transform.groups()
        return f"Line {int(line):,}: {what.strip()}"
    return _first_sentence(lines[0] if lines else message)

"""Loading a CSV file: sniffed once, read leniently, re-typed where deeper rows disagree, sampled
in blocks of whole lines when it is large."""

from __future__ import annotations

import csv as pycsv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from . import pyscan
from .caps import check_columns, check_csv_header
from .connection import _Reporter, _run_tracked
from .errors import _clean_error, _first_invalid_utf8, _first_sentence, _utf8_reason
from .results import AnalysisFailed
from .stats import _Loaded, _make_head, _sample_budget, SAMPLE_ROWS, _Scan, _scan, _take_sample
from .values import _article, _INTEGER_TYPES, _is_number, _shorten, _sql_string

# A CSV file of at most STATS_SAMPLE_BYTES (and stats.STATS_SAMPLE_CELLS values) is its own
# sample; a larger one is sampled in blocks of at least SAMPLE_BLOCK_BYTES (whole lines), about
# STATS_SAMPLE_BLOCK_BYTES in all.
STATS_SAMPLE_BYTES = 256 * 1024 * 1024
SAMPLE_BLOCK_BYTES = 64 * 1024
STATS_SAMPLE_BLOCK_BYTES = 32 * 1024 * 1024

# Error records DuckDB keeps for a lenient CSV read (a ragged line can produce several).
REJECTS_LIMIT = 200_000

# Attempts at re-typing CSV columns whose sniffed type is contradicted deeper in the file.
CSV_RETYPE_ATTEMPTS = 3


def _estimate_lines(path: Path, size: int, newline: bytes, chunk: int = 4 << 20) -> int:
    """The number of lines of a text file, extrapolated from its first few MB."""
    with open(path, "rb") as f:
        head = f.read(chunk)
    lines = head.count(newline) + (0 if head.endswith(newline) else 1)
    return max(1, math.ceil(lines * size / max(len(head), 1)))


def _load_csv(con, path: Path, report: _Reporter, workdir: Path) -> _Loaded:
    size = path.stat().st_size
    check_csv_header(path)
    types: dict[str, str] = {}
    retype_notes: dict[str, str] = {}
    # A file small enough to be its own sample, whose lines tell whether pyscan may read it.
    small = path.read_bytes() if size <= _sample_budget(1) else None
    for attempt in range(CSV_RETYPE_ATTEMPTS + 1):
        errors, scans = f"csv_errors_{attempt}", f"csv_scans_{attempt}"
        try:
            layout = _sniff_csv(con, path, types)
            check_columns(len(layout.columns))
            source = _csv_source(path, layout, errors, scans)
            scan = None
            if small is not None and pyscan.qualifies(layout.columns,
                                                      small.count(layout.newline) - 1):
                # At most PYSCAN_MAX_ROWS lines of plain types: read straight into Python and
                # scanned there (no table: making one cost as much as reading the file).
                whole = True
                try:
                    scan = pyscan.scan_rows(con.execute(f"SELECT * FROM {source}").fetchall(),
                                            layout.columns)
                    rows = scan.row_count
                except (pyscan.NotPlain, TypeError, AttributeError, ValueError, OverflowError):
                    # A value only the SQL scan handles: loaded as any other, its rejects
                    # recorded afresh.
                    errors, scans = f"csv_errors_{attempt}_sql", f"csv_scans_{attempt}_sql"
                    source = _csv_source(path, layout, errors, scans)
            if scan is None:
                scan, rows, whole = _scan_csv(con, path, layout, source, size, attempt, report)
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
    if scan.values is not None:
        pass  # the Python scan holds its sample's values
    elif whole:
        _take_sample(con, scan, [("data", "false")], exact=True)
    else:
        _take_csv_blocks(con, scan, path, size, rows, layout, workdir)
    return _Loaded(
        scan=scan,
        sample_sql=f"SELECT * FROM head LIMIT {SAMPLE_ROWS}",
        rejected_rows=rejected,
        warnings=warnings,
    )


def _scan_csv(con, path: Path, layout: _Layout, source: str, size: int, attempt: int,
              report: _Reporter) -> tuple[_Scan, int, bool]:
    """The SQL scan of a CSV file read through `source`: (scan, rows, whether it holds every row,
    as the temporary table `data`)."""
    width = len(layout.columns)
    load = f"CREATE OR REPLACE TEMP TABLE data AS SELECT * FROM {source}"
    if size <= _sample_budget(1):
        # A file holds no more values than bytes: this one is its own sample. Loaded once, and
        # every row is its first rows.
        _run_tracked(con, load, report, 0.0, 0.5, "reading")
        con.execute("CREATE OR REPLACE TEMP VIEW head AS SELECT * FROM data")
        rows = con.execute("SELECT count(*) FROM data").fetchone()[0]
        scan = _scan(con, "data", rows=rows, report=report, start=0.5, end=0.5,
                     message="reading", head_is_whole=True)
        return scan, rows, True
    # The first rows' own rejects go to throwaway tables.
    head_source = _csv_source(path, layout, f"head_errors_{attempt}", f"head_scans_{attempt}")
    head_rows, limit = _make_head(con, f"SELECT * FROM {head_source}", width=width)
    # The first rows were the whole file, or else its size tells roughly how many there are.
    rows = head_rows if head_rows < limit else _estimate_lines(path, size, layout.newline)
    if rows <= _sample_budget(width) and size <= STATS_SAMPLE_BYTES:
        # Small enough to load: every figure is then counted exactly on the table.
        _run_tracked(con, load, report, 0.0, 0.5, "reading")
        scan = _scan(con, "data", rows=rows, report=report, start=0.5, end=0.5,
                     message="reading", head_is_whole=False)
        return scan, rows, True
    # Scanned in place, once; histograms and top values come from blocks of lines.
    scan = _scan(con, source, rows=rows, report=report, start=0.0, end=0.5, message="reading")
    return scan, rows, False


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


# The types the dialect is sniffed with (see _sniff_csv).
_DIALECT_TYPES = "['BOOLEAN', 'BIGINT', 'DOUBLE', 'VARCHAR']"
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

    def text(value):
        return "''" if value in (None, _SNIFFED_NOTHING) else _sql_string(value)

    source = _sql_string(str(path))
    fields = ("Delimiter, Quote, Escape, NewLineDelimiter, Comment, SkipRows, HasHeader, Columns,"
              " DateFormat, TimestampFormat")
    # The dialect first, without date and time types: DuckDB tries every date format for each of
    # the 72 dialects it considers (50 ms for a small file with a date column, 6 ms once the
    # dialect is known). Text columns may hold dates or times: then they are sniffed again, with
    # the dialect given. A plain file's dialect is guessed in Python first (see _guess_dialect):
    # given it, one pass with every type costs what the second pass alone did (the dialect pass
    # cost 19 ms at 1,000 rows x 20 columns).
    row, every_type = None, False
    guess = _guess_dialect(path)
    if guess is not None:
        delim, quote, escape, width = guess
        given = (f"delim = {_sql_string(delim)}, quote = {_sql_string(quote)}, "
                 f"escape = {_sql_string(escape)}")
        row = con.execute(
            f"SELECT {fields} FROM sniff_csv({source}, {options}, {given})").fetchone()
        every_type = True
        if len(row[7]) != width or row[5] or not row[6]:
            # DuckDB reads it otherwise (lines to skip, no header): let it sniff all
            row, every_type = None, False
    if row is None:
        row = con.execute(
            f"SELECT {fields} FROM sniff_csv({source}, {options}, "
            f"auto_type_candidates = {_DIALECT_TYPES})"
        ).fetchone()
    if not every_type and any(c["type"] == "VARCHAR" for c in row[7]):
        delim, quote, escape = row[:3]
        options += f", delim = {text(delim)}, quote = {text(quote)}, escape = {text(escape)}"
        row = con.execute(f"SELECT {fields} FROM sniff_csv({source}, {options})").fetchone()
    delim, quote, escape, new_line, comment, skip, header, columns, date_format, ts_format = row

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


# _guess_dialect reads this much of a file, and at most GUESS_LINES lines of it.
GUESS_BYTES = 64 * 1024
GUESS_LINES = 200
_GUESS_DELIMITERS = (",", "\t", ";", "|")


def _guess_dialect(path: Path) -> tuple[str, str, str, int] | None:
    """(delimiter, quote, escape, fields) of a plain CSV file, from its first lines; None unless
    the guess is safe, and DuckDB's sniffer then decides.

    Safe means: UTF-8 text with a header line, exactly one candidate delimiter that gives every
    line the same number of fields (at least two) and no other that gives nearly every line one
    (DuckDB's sniffer may read a ragged line past it), no field that opens with a single quote
    (DuckDB may take ' for the quote), and double quotes, if any, only as RFC 4180 has them (a
    double quote opens a field and is doubled inside it; nothing backslash-escaped). The caller
    checks that DuckDB, given the guess, finds as many columns, a header and no lines to skip.
    """
    with open(path, "rb") as f:
        head = f.read(GUESS_BYTES)
    if len(head) == GUESS_BYTES:  # whole lines only
        head = head[: head.rfind(b"\n") + 1]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.splitlines(keepends=True)[:GUESS_LINES]
    if len(lines) < 2 or "\\" in text or "\x00" in text:
        return None
    quoted = '"' in text
    found, nearly = [], []
    for delim in _GUESS_DELIMITERS:
        if delim not in lines[0]:
            continue  # the header has one field on it: no candidate
        try:
            rows = [row for row in pycsv.reader(lines, delimiter=delim, quotechar='"',
                                                doublequote=True, strict=True) if row]
        except pycsv.Error:
            continue
        widths = [len(row) for row in rows]
        most = max(set(widths), key=widths.count)
        if most > 1 and widths.count(most) == len(widths):
            found.append((delim, most, rows))
        elif most > 1 and widths.count(most) >= 0.9 * len(widths):
            nearly.append(delim)
    if len(found) != 1 or nearly:
        return None
    delim, width, rows = found[0]
    if "'" in text and any(field.startswith("'") for row in rows for field in row):
        return None
    if quoted and not _quotes_are_rfc4180(lines, delim):
        return None
    # RFC 4180's quote and escape even when the first lines quote nothing: a later line may.
    return delim, '"', '"', width


def _quotes_are_rfc4180(lines: list[str], delim: str) -> bool:
    """Whether every double quote in `lines` opens or closes a field, or is doubled inside one."""
    text = "".join(lines)
    inside = False
    i, n = 0, len(text)
    at_start = True  # at the start of a field
    while i < n:
        c = text[i]
        if inside:
            if c == '"':
                if i + 1 < n and text[i + 1] == '"':
                    i += 2
                    continue
                inside = False
                following = text[i + 1] if i + 1 < n else "\n"
                if following not in (delim, "\n", "\r"):
                    return False
        elif c == '"':
            if not at_start:
                return False
            inside = True
        at_start = not inside and c in (delim, "\n", "\r")
        i += 1
    return not inside


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

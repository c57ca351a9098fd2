"""Loading a JSON Lines file, leniently when some lines cannot be parsed. A file of at most
LOAD_MAX_BYTES is loaded into a table (parsed once); a larger one is read in place, streaming,
once for each pass (its memory stays bounded whatever its size)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from .caps import MAX_JSON_DEPTH, check_columns, check_json_depth
from .connection import _Reporter, _run_tracked
from .errors import _clean_error
from .results import AnalysisFailed
from .stats import _Loaded, SAMPLE_ROWS, _scan_table
from .values import _ident, _sql_string

LOAD_MAX_BYTES = 64 * 1024 * 1024


def _read_json(path: Path, options: str = "") -> str:
    # Types are detected at most one level deeper than the cap: a deeper value becomes JSON there.
    return (f"read_json({_sql_string(str(path))}, format = 'newline_delimited', "
            f"maximum_depth = {MAX_JSON_DEPTH + 1}{options})")


def _define(con, name: str, source: str, path: Path, report: _Reporter) -> None:
    """`name` as a table holding `source`, or a view of it for a large file (then read once, every
    value parsed, so that a line DuckDB cannot read fails here as it would loading a table). Too
    many columns or too deep a nesting fails the analysis."""
    if path.stat().st_size <= LOAD_MAX_BYTES:
        _run_tracked(con, f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {source}",
                     report, 0.0, 0.5, "reading")
        _check_shape(con, name)
        return
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {source}")
    _check_shape(con, name)
    _run_tracked(con, f"SELECT count(COLUMNS(*)) FROM {name}", report, 0.0, 0.5, "reading")


def _check_shape(con, relation: str) -> None:
    types = con.sql(f"SELECT * FROM {relation}").types
    check_columns(len(types))
    check_json_depth(types)


def _load_jsonl(con, path: Path, report: _Reporter, workdir: Path) -> _Loaded:
    attempts = [
        _read_json(path),
        # A type contradicted after the sampled lines: let DuckDB look at every line.
        _read_json(path, ", sample_size = -1"),
    ]
    first_error = ""
    for attempt, source in enumerate(attempts):
        try:
            _define(con, "data", source, path, report)
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
    sample_source = _read_json(path, f", columns = {{{schema}}}")
    return _Loaded(
        scan=_scan_table(con, "data", report),
        sample_sql=f"SELECT * FROM {sample_source} LIMIT {SAMPLE_ROWS}",
    )


def _load_jsonl_leniently(con, path: Path, report: _Reporter, error: str) -> _Loaded:
    # With ignore_errors DuckDB turns a line it cannot parse into a row of NULLs: those rows are
    # the rejected ones (an object with every field null is indistinguishable, and says nothing).
    source = _read_json(path, ", ignore_errors = true")
    try:
        _define(con, "raw", source, path, report)
    except duckdb.Error as exc:
        raise AnalysisFailed(_clean_error(error, path)) from exc
    names = [row[0] for row in con.execute("DESCRIBE raw").fetchall()]
    any_value = " OR ".join(f"{_ident(n)} IS NOT NULL" for n in names) or "false"
    if path.stat().st_size <= LOAD_MAX_BYTES:
        con.execute(f"CREATE OR REPLACE TEMP TABLE data AS SELECT * FROM raw WHERE {any_value}")
        total = con.execute("SELECT count(*) FROM raw").fetchone()[0]
        con.execute("DROP TABLE raw")
    else:
        con.execute(f"CREATE OR REPLACE TEMP VIEW data AS SELECT * FROM raw WHERE {any_value}")
        total = con.execute("SELECT count(*) FROM raw").fetchone()[0]
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

"""Loading a JSON Lines file into a table, leniently when some lines cannot be parsed."""

from __future__ import annotations

from pathlib import Path

import duckdb

from .connection import _Reporter, _run_tracked
from .errors import _clean_error
from .results import AnalysisFailed
from .stats import _Loaded, SAMPLE_ROWS, _scan_table
from .values import _ident, _sql_string

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

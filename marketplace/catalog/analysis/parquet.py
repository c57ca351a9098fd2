"""Loading a Parquet file: queried in place."""

from __future__ import annotations

from pathlib import Path

import duckdb

from .caps import MAX_EXPANSION, check_columns, too_expanded
from .connection import _Reporter
from .errors import _clean_error
from .results import AnalysisFailed
from .stats import _Loaded, SAMPLE_ROWS, _scan_relation
from .values import _sql_string


def _load_parquet(con, path: Path, report: _Reporter, workdir: Path) -> _Loaded:
    # Parquet is columnar and compressed already: query it in place instead of copying it.
    source = f"read_parquet({_sql_string(str(path))})"
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW data AS SELECT * FROM {source}")
        con.execute("SELECT count(*) FROM data").fetchone()  # from the metadata: is it Parquet?
        uncompressed = con.execute(
            f"SELECT sum(total_uncompressed_size) FROM parquet_metadata({_sql_string(str(path))})"
        ).fetchone()[0] or 0
    except duckdb.Error as exc:
        raise AnalysisFailed(_clean_error(str(exc), path)) from exc
    if uncompressed > MAX_EXPANSION * path.stat().st_size:
        raise AnalysisFailed(too_expanded())
    check_columns(len(con.execute("DESCRIBE data").fetchall()))
    scan = _scan_relation(con, "data", report, start=0.0, end=0.5, message="reading")
    report(0.5, "computing statistics")
    return _Loaded(scan=scan, sample_sql=f"SELECT * FROM {source} LIMIT {SAMPLE_ROWS}")

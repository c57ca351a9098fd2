"""The scan of a small CSV file in Python: every figure _scan computes in SQL, from its rows read
straight out of read_csv (csv.py), with no table.

A query over a few hundred columns costs DuckDB milliseconds of planning however few its rows
(a 100-row, 300-column CSV file spent 54 ms in the scan's and the sample's queries); counting a
few thousand values here costs less. Only plain types qualify (see PLAIN_TYPES): anything else,
or a value Python cannot hold (an infinite date, say), goes through the SQL scan. The figures are
the SQL scan's: counts of non-null values, exact distinct counts (each NaN apart, as DuckDB's
list_unique counts them), min, max and mean of numbers, ranges of finite floats, dates and
timestamps; and the scan's sample values (k<i>, h<i>, t<i>) for the histograms and top values,
kept in `_Scan.values`.
"""

from __future__ import annotations

import datetime as dt
import math

from .results import ColumnStats
from .stats import SAMPLE_ROWS, _nearly_unique, _Scan, _set_range, _Slot
from .values import MAX_TOP_VALUE_TEXT, _finite, _kind

# Tables of at most this many rows and values (rows x columns) are scanned here: the SQL scan
# costs about 0.35 ms a column, this one about 0.35 us a value, so here is cheaper up to about
# 1,000 rows (100 x 300: 69 ms against 126 for the whole analysis; 3,000 x 20: 59 against 54).
PYSCAN_MAX_ROWS = 1_000
PYSCAN_MAX_VALUES = 300_000
# DuckDB types whose Python values are read as they are (DECIMAL(p,s) too).
PLAIN_TYPES = {"BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "FLOAT", "DOUBLE", "DATE",
               "TIMESTAMP", "VARCHAR"}

_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_MAX_DAYS = dt.date.max.toordinal() - _EPOCH_ORDINAL
_MIN_DAYS = dt.date.min.toordinal() - _EPOCH_ORDINAL
_EPOCH = dt.datetime(1970, 1, 1)
_MICROSECOND = dt.timedelta(microseconds=1)


class NotPlain(Exception):
    """The table holds a type or a value that only the SQL scan handles."""


def qualifies(columns: list[tuple[str, str]], rows: int) -> bool:
    """Whether a table of `columns` (name, DuckDB type) and `rows` rows is scanned here."""
    return rows <= PYSCAN_MAX_ROWS and rows * max(len(columns), 1) <= PYSCAN_MAX_VALUES and all(
        kind in PLAIN_TYPES or kind.startswith("DECIMAL(") for _, kind in columns)


def scan_rows(rows: list[tuple], described: list[tuple[str, str]]) -> _Scan:
    """The scan of `rows`, whose columns are `described` as (name, DuckDB type); raises
    NotPlain."""
    row_count = len(rows)
    columns, slots, values = [], [], {}
    for i, (name, duckdb_type) in enumerate(described):
        col = ColumnStats(name=name, type=_kind(duckdb_type), duckdb_type=duckdb_type,
                          null_count=0, distinct_count=0)
        slot = _Slot(col=col, index=i, exact_distinct=True)
        columns.append(col)
        slots.append(slot)
        present = [row[i] for row in rows if row[i] is not None]
        slot.non_null = slot.finite = len(present)
        col.null_count = row_count - len(present)
        if col.type == "boolean":
            trues = sum(1 for v in present if v)
            falses = len(present) - trues
            col.distinct_count = (trues > 0) + (falses > 0)
            ranked = sorted([(True, trues), (False, falses)], key=lambda p: -p[1])
            col.top_values = [{"value": v, "count": n} for v, n in ranked if n]
            continue
        # As DuckDB's list_unique counts them: each NaN apart (each NaN float is its own here).
        col.distinct_count = len(set(present))
        if col.type in ("integer", "decimal", "float", "date", "timestamp"):
            values[f"k{i}"] = derived = _column(rows, i, col.type)
            numbers = [v for v in derived if v is not None]
            slot.finite = len(numbers)
            if numbers:
                slot.low, slot.high = min(numbers), max(numbers)
                _set_range(col, slot.low, slot.high)
                if col.type in ("integer", "decimal", "float"):
                    col.mean = _finite(sum(numbers) / len(numbers))
            slot.in_sample = True
        elif col.type == "string" and not _nearly_unique(slot.non_null, col.distinct_count):
            slot.top_values = slot.in_sample = True
            values[f"h{i}"] = [row[i] for row in rows]
            values[f"t{i}"] = [None if row[i] is None else row[i][:MAX_TOP_VALUE_TEXT + 1]
                               for row in rows]
    scan = _Scan(row_count=row_count, columns=columns, slots=slots)
    scan.values = values
    scan.first_rows = rows[:SAMPLE_ROWS]
    scan.sample_rows = row_count
    scan.exact = True
    return scan


def _column(rows, i: int, kind: str) -> list:
    """Column i's sample values as the SQL scan derives them (k<i>): finite numbers, days since
    the epoch for dates, microseconds for timestamps; None for the rest."""
    if kind == "float":
        return [v if v is not None and math.isfinite(v) else None for v in (row[i] for row in rows)]
    if kind == "date":
        if any(row[i] is not None and type(row[i]) is not dt.date for row in rows):
            raise NotPlain()  # a date Python cannot hold (year 0, or after 9999) comes as text
        days = [None if row[i] is None else row[i].toordinal() - _EPOCH_ORDINAL for row in rows]
        present = [d for d in days if d is not None]
        if present and (max(present) >= _MAX_DAYS or min(present) <= _MIN_DAYS):
            raise NotPlain()  # how an infinite DuckDB date may come back
        return days
    if kind == "timestamp":
        return [None if row[i] is None else _microseconds(row[i]) for row in rows]
    return [row[i] for row in rows]


def _microseconds(value: dt.datetime) -> int:
    if (type(value) is not dt.datetime or value in (dt.datetime.max, dt.datetime.min)
            or value.tzinfo):
        raise NotPlain()  # text for a time Python cannot hold, or an infinite or zoned one
    return (value - _EPOCH) // _MICROSECOND

"""DuckDB types and values as the analysis stores them: JSON-safe, text cut to length, SQL
quoting."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid

import duckdb

from .results import ColumnStats

# Long text is cut in the sample (a nested value's JSON text included: at most 1 KB a cell) and in
# top values: the analysis is stored in a JSON column.
MAX_SAMPLE_TEXT = 1_000
MAX_TOP_VALUE_TEXT = 200

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


def _sample(con, sample_sql: str, columns: list[ColumnStats]) -> list[dict]:
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
    return _sample_of(names, rows)


def _sample_of(names: list[str], rows: list[tuple]) -> list[dict]:
    """Rows as the sample keeps them: JSON-safe values by column name (integers, booleans, nulls
    and short text as they are, without a call for each)."""
    return [
        {n: v if type(v) in _AS_THEY_ARE or (type(v) is str and len(v) <= MAX_SAMPLE_TEXT)
         else _json_value(v) for n, v in zip(names, row)}
        for row in rows
    ]


_AS_THEY_ARE = {int, bool, type(None)}


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
    if isinstance(value, (dict, list, tuple)):
        # A struct, list or map stays one when its JSON text fits in a cell; else it is that
        # text, cut like any other.
        nested = (
            {str(k): _json_value(v) for k, v in value.items()} if isinstance(value, dict)
            else [_json_value(v) for v in value]
        )
        text = json.dumps(nested, ensure_ascii=False)
        return nested if len(text) <= MAX_SAMPLE_TEXT else _shorten(text, MAX_SAMPLE_TEXT)
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

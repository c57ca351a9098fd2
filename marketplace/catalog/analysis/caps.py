"""Caps on what a file may expand to, checked before DuckDB does the work: decompressed bytes,
columns, JSON nesting. Over a cap the analysis fails with the reason."""

from __future__ import annotations

import gzip
import shutil
import zlib
from pathlib import Path

from .results import AnalysisFailed

# Decompressed (a gzip CSV or JSON Lines file) or uncompressed (Parquet's pages, from its
# metadata) bytes may be at most MAX_EXPANSION times the file's size.
MAX_EXPANSION = 20
MAX_COLUMNS = 10_000
MAX_JSON_DEPTH = 32  # objects and arrays inside one another, the line's own object included
GZIP_MAGIC = b"\x1f\x8b"
_COPY_CHUNK = 1 << 20
# A decompression stops while the disk has less than this left, checked every _DISK_CHECK_BYTES.
MIN_FREE_DISK = 1 << 30
_DISK_CHECK_BYTES = 64 << 20
# The delimiters a CSV header is split on to count its columns before DuckDB sniffs it.
_LIKELY_DELIMITERS = b",\t;|"
_HEADER_BYTES = 16 * 1024 * 1024


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def gunzip_capped(source: Path, target: Path, *, max_bytes: int) -> int:
    """Decompress `source` into `target`, stopping at MAX_EXPANSION times its size and at
    `max_bytes` (the analysis's disk budget), and while the disk it is written to has less than
    MIN_FREE_DISK left. Returns the bytes written."""
    cap = min(MAX_EXPANSION * source.stat().st_size, max_bytes)
    written = 0
    try:
        with gzip.open(source, "rb") as f, open(target, "wb") as out:
            while chunk := f.read(_COPY_CHUNK):
                written += len(chunk)
                if written > cap:
                    raise AnalysisFailed(too_expanded() if cap < max_bytes else (
                        f"The file decompresses to more than {max_bytes // 2**20:,} MB, more disk than one "
                        "analysis may use; upload it uncompressed."))
                if written % _DISK_CHECK_BYTES < len(chunk) and shutil.disk_usage(target.parent).free < MIN_FREE_DISK:
                    raise AnalysisFailed("The server was short of disk space to decompress the file.")
                out.write(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise AnalysisFailed("The file is not a valid gzip file.") from exc
    return written


def too_expanded() -> str:
    return (f"The file expands to more than {MAX_EXPANSION} times its size when decompressed; "
            "upload it uncompressed.")


def check_columns(count: int) -> None:
    if count > MAX_COLUMNS:
        raise AnalysisFailed(
            f"The file has {count:,} columns; at most {MAX_COLUMNS:,} can be analysed.")


def check_csv_header(path: Path) -> None:
    """Count the first line's fields on the likeliest delimiter, so that a file of a million
    columns fails before DuckDB sniffs it (the sniffed count is checked again afterwards)."""
    with open(path, "rb") as f:
        head = f.read(_HEADER_BYTES)
    first = head.split(b"\n", 1)[0].split(b"\r", 1)[0]
    check_columns(max(first.count(bytes([d])) for d in _LIKELY_DELIMITERS) + 1)


def nesting(duckdb_type) -> int:
    """How many STRUCT, LIST, ARRAY, MAP or UNION types nest in a DuckDB type, itself included;
    a JSON value DuckDB left undetected counts as one more level."""
    if str(duckdb_type) == "JSON":
        return 1
    if duckdb_type.id in ("struct", "list", "array", "map", "union"):
        # An ARRAY's children are its element type and its size (a number).
        children = [c for _, c in duckdb_type.children if not isinstance(c, int)]
        return 1 + max((nesting(child) for child in children), default=0)
    return 0


def check_json_depth(types) -> None:
    """Column types of a JSON Lines file read with maximum_depth = MAX_JSON_DEPTH + 1: a value
    nested deeper became JSON at that depth, so the line's object (one level) and its columns'
    nesting must stay within MAX_JSON_DEPTH."""
    depth = 1 + max((nesting(t) for t in types), default=0)
    if depth > MAX_JSON_DEPTH:
        raise AnalysisFailed(
            f"The file nests objects or arrays more than {MAX_JSON_DEPTH} levels deep.")

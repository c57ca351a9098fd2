"""The scan: one pass over the file for every exact figure, planned from its first rows, and the
sample that histograms and top values are counted on."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .connection import _Reporter, _run_tracked
from .results import ColumnStats
from .values import _finite, _ident, _kind, MAX_TOP_VALUE_TEXT, _number, _temporal_iso

SAMPLE_ROWS = 20  # the first rows shown on the page

# The first FIRST_ROWS rows (fewer when the file is wide: at most FIRST_CELLS values) plan the
# scan. A column with at most FEW_DISTINCT distinct values there gets an exact distinct count
# (cheap for such a column); the others an estimate (see DISTINCT_HASHES_KEPT). Text whose distinct
# values are at least NEARLY_UNIQUE of its values there (ids, free text) has nothing frequent to
# show: no top values are computed for it.
FIRST_ROWS = 100_000
FIRST_CELLS = 4_000_000
FEW_DISTINCT = 5_000
NEARLY_UNIQUE = 0.9

# A file of at most about STATS_SAMPLE_CELLS values (and, a CSV file, csv.STATS_SAMPLE_BYTES) is its
# own sample: its statistics are exact. A larger one is sampled, at most STATS_SAMPLE_CELLS values.
STATS_SAMPLE_CELLS = 4_000_000

# Distinct counts that are not exact are estimated from the values' hashes: the distinct hashes
# under a threshold, a known share of all hashes, are counted exactly and scaled by that share
# (hash-threshold sampling, as in a bottom-k sketch). The share is chosen from the first rows to
# keep about DISTINCT_HASHES_KEPT hashes, for an error of about 1/sqrt(kept): within 0.5 % on the
# bench's 10M-row file but for the 100,000-value column (2 %), where DuckDB's approx_count_distinct
# (HyperLogLog) was 4-22 % off, at the same cost; a bitmap (linear counting) was slower.
DISTINCT_HASHES_KEPT = 2**18
# Columns whose figures one query computes (see _chunks): each distinct count holds a hash table.
COLUMNS_PER_QUERY = 100


@dataclass
class _Loaded:
    scan: _Scan  # what the scan of the whole file found
    sample_sql: str  # the first rows, in file order
    rejected_rows: int = 0
    warnings: list[str] = field(default_factory=list)


def _make_head(con, select_sql: str, *, width: int | None = None) -> tuple[int, int]:
    """The first rows of `select_sql` (`width` columns, if known), in order, as the temporary
    table `head`.

    At most FIRST_ROWS rows and FIRST_CELLS values, so that a very wide file keeps it small.
    Returns (rows read, the limit): fewer rows than the limit were the whole file.
    """
    if width is None:
        width = len(con.execute(f"DESCRIBE {select_sql}").fetchall())
    limit = max(SAMPLE_ROWS, min(FIRST_ROWS, FIRST_CELLS // max(width, 1)))
    con.execute(f"CREATE OR REPLACE TEMP TABLE head AS {select_sql} LIMIT {limit}")
    rows = con.execute("SELECT count(*) FROM head").fetchone()[0]
    return rows, limit


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


@dataclass
class _Slot:
    """One column in the scan: where its figures are in the scan's row, what the sample holds."""

    col: ColumnStats
    index: int  # the column's position; the sample names its values k<index>, h<index>, t<index>
    derived: list[str] = field(default_factory=list)  # its values as the scan derives them
    aggregates: list[str] = field(default_factory=list)  # its figures in the scan
    figures: dict[str, int] = field(default_factory=dict)  # figure -> position in `aggregates`
    in_sample: bool = False  # numbers and dates: k<i>; text: h<i> (hash) and t<i> (cut text)
    sample_table: str = ""  # the temporary table that holds them
    exact_distinct: bool = False  # its distinct values counted in the scan (or known before)
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
    # The sample's columns by name (k<i>, h<i>, t<i>) when the scan ran in Python (pyscan): then
    # there are no sample tables, and the histograms and top values read these.
    values: dict[str, list] | None = None
    first_rows: list[tuple] | None = None  # the Python scan's first SAMPLE_ROWS rows, in order


def _sample_columns(con, scan: _Scan, slots: list[_Slot], names: list[str]) -> list[list]:
    """The sample's values of each of `names` (columns of the slots' sample table, or of
    scan.values)."""
    if scan.values is not None:
        return [scan.values[name] for name in names]
    rows = con.execute(f"SELECT {', '.join(names)} FROM {slots[0].sample_table}").fetchall()
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in names]


def _scan(
    con, source: str, *, rows: int, report: _Reporter, start: float, end: float, message: str,
    head_is_whole: bool = False,
) -> _Scan:
    """One pass over `source` for every exact figure (and the estimated distinct counts); one
    for each COLUMNS_PER_QUERY columns of a wide file.

    The temporary table `head` holds the first rows of `source` (same schema) and plans the pass;
    `rows` is about how many rows `source` has. When `head_is_whole` (it holds every row of a
    small file) there is nothing to plan: every distinct count is exact, counted in the pass, and
    text is chosen for top values after it. One ungrouped aggregate: an aggregate that
    collects rows (list, histogram) would make DuckDB group instead, at twice the cost.
    """
    columns = [
        ColumnStats(
            name=name, type=_kind(duckdb_type), duckdb_type=duckdb_type,
            null_count=0, distinct_count=0,
        )
        for name, duckdb_type, *_ in con.execute("DESCRIBE head").fetchall()
    ]
    first_rows = {} if head_is_whole else _profile_first_rows(con, "head", columns)
    few = {name for name, (_, distinct) in first_rows.items() if distinct <= FEW_DISTINCT}
    head_rows = rows if head_is_whole else con.execute("SELECT count(*) FROM head").fetchone()[0]
    null_hash = _null_hash(con)
    small = rows <= _sample_budget(len(columns))  # its values fit in memory: see _distinct
    # The inner query derives each value once under a name of our own (c<i> the value, k<i> the
    # finite number a range and a histogram are taken of, b<i> its hash), so that no aggregate
    # needs a FILTER of its own.
    fields = []
    slots = []
    for i, col in enumerate(columns):
        slot = _Slot(col=col, index=i)
        slots.append(slot)
        c, v, k = _ident(col.name), f"c{i}", f"k{i}"
        derived = slot.derived
        derived.append(f"{c} AS {v}")

        def figure(name: str, sql: str, slot=slot) -> None:
            slot.figures[name] = len(slot.aggregates)
            slot.aggregates.append(sql)

        figure("non_null", f"count({v})")
        if col.type == "boolean":
            figure("trues", f"count_if({v})")
            continue
        if col.name in few or head_is_whole:
            slot.exact_distinct = True
            figure("distinct", _distinct(v, small=small))
        else:
            # Distinct hashes under a threshold (see DISTINCT_HASHES_KEPT). NULL has a hash too,
            # counted if under it (cheaper to subtract afterwards than to test every value).
            slot.hash_share = _hash_share(first_rows.get(col.name), head_rows, rows)
            threshold = min(2**64 - 1, math.floor(slot.hash_share * 2**64))
            slot.counts_null_hash = null_hash < threshold
            derived.append(f"hash({c}) AS b{i}")
            kept = f"CASE WHEN b{i} < {threshold}::UBIGINT THEN b{i} END"
            figure("hashes", _distinct(kept if slot.hash_share < 1 else f"b{i}", small=small))
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
        elif col.type == "string" and not head_is_whole:
            _plan_top_values(slot, fields, *first_rows.get(col.name, (0, 0)))
        slot.in_sample = col.type not in ("string", "other") or slot.top_values

    got_by_slot = {}
    chunks = _chunks(slots)
    for n, chunk in enumerate(chunks):
        select = ["count(*)"] + [sql for slot in chunk for sql in slot.aggregates]
        derived = [sql for slot in chunk for sql in slot.derived]
        step = (end - start) / len(chunks)
        values = _run_tracked(
            con, f"""SELECT {', '.join(select)} FROM (SELECT {', '.join(derived)} FROM {source})""",
            report, start + step * n, start + step * (n + 1), message,
        )[0]
        row_count, offset = values[0], 1
        for slot in chunk:
            got_by_slot[slot.index] = {
                name: values[offset + position] for name, position in slot.figures.items()
            }
            offset += len(slot.aggregates)
    if not slots:
        row_count = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
    for slot in slots:
        col, got = slot.col, got_by_slot[slot.index]
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
        if col.type == "string" and head_is_whole:
            _plan_top_values(slot, fields, slot.non_null, col.distinct_count)
            slot.in_sample = slot.top_values
    return _Scan(row_count=row_count, columns=columns, slots=slots, fields=fields)


def _plan_top_values(slot: _Slot, fields: list, non_null: int, distinct: int) -> None:
    """Text that is not nearly unique gets top values: the sample holds its hash and its start."""
    if _nearly_unique(non_null, distinct):
        return
    slot.top_values = True
    c, i = _ident(slot.col.name), slot.index
    # Grouped on the hash of the whole value; the text is kept only as long as it is shown.
    fields.append((f"h{i}", f"CASE WHEN {c} IS NOT NULL THEN hash({c}::VARCHAR) END"))
    fields.append((f"t{i}", f"left({c}::VARCHAR, {MAX_TOP_VALUE_TEXT + 1})"))


_NULL_HASH: list[int] = []


def _null_hash(con) -> int:
    """DuckDB's hash of NULL (the same in every connection of this process)."""
    if not _NULL_HASH:
        _NULL_HASH.append(con.execute("SELECT hash(NULL)").fetchone()[0])
    return _NULL_HASH[0]


def _take_sample(con, scan: _Scan, parts: list[tuple[str, str]], *, exact: bool) -> None:
    """The temporary tables `sample_<n>`: the scan's sample columns over each (source, half)
    part, in runs of COLUMNS_PER_QUERY columns (each slot knows its table).

    `exact` when the parts hold every row of the file. Otherwise `half` (an SQL boolean) splits
    the sample in two: top values are ranked on one half and counted on the other, else the
    luckiest of many equally frequent values would be overcounted.
    """
    by_slot: dict[int, list[tuple[str, str]]] = {}
    for name, sql in scan.fields:  # named k<i>, h<i> or t<i> for the slot at position i
        by_slot.setdefault(int(name[1:]), []).append((name, sql))
    # One table per COLUMNS_PER_QUERY columns: DuckDB plans a projection of thousands of
    # expressions in time that grows faster than their number.
    for n, group in enumerate(_chunks(list(by_slot.items())) or [[]]):
        table = f"sample_{n}"
        select = [f"{sql} AS {name}" for _, fields in group for name, sql in fields]
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS "
            + " UNION ALL ".join(
                f"SELECT {', '.join(select or ['NULL AS none'])}, {half} AS half FROM {source}"
                for source, half in parts
            )
        )
        for index, _ in group:
            scan.slots[index].sample_table = table
    scan.exact = exact
    scan.sample_rows = (
        scan.row_count if exact else con.execute("SELECT count(*) FROM sample_0").fetchone()[0]
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


def _profile_first_rows(con, relation: str, columns: list[ColumnStats]) -> dict[str, tuple]:
    """{column name: (non-null values, distinct values)} over the rows of `relation`."""
    eligible = [c for c in columns if c.type not in ("boolean", "other")]
    found = {}
    for chunk in _chunks(eligible):
        select = ", ".join(
            f"count({_ident(c.name)}), {_distinct(_ident(c.name), small=True)}" for c in chunk
        )
        row = con.execute(f"SELECT {select} FROM {relation}").fetchone()
        found.update({c.name: (row[2 * i], row[2 * i + 1]) for i, c in enumerate(chunk)})
    return found


def _by_sample_table(slots: list[_Slot]) -> list[list[_Slot]]:
    """`slots` grouped by the sample table that holds their values, in order."""
    groups: dict[str, list[_Slot]] = {}
    for slot in slots:
        groups.setdefault(slot.sample_table, []).append(slot)
    return list(groups.values())


def _distinct(sql: str, *, small: bool) -> str:
    """The number of distinct non-null values of `sql`. count(DISTINCT) costs milliseconds per
    column however few the rows (a hash table per thread); on rows held in memory anyway (a small
    file, the first rows, the sample) listing the values and counting the unique ones is 20 times
    faster."""
    return f"coalesce(list_unique(list({sql})), 0)" if small else f"count(DISTINCT {sql})"


def _chunks(items: list) -> list[list]:
    """`items` in runs of COLUMNS_PER_QUERY: a wide file's figures take one query per run, so that
    memory grows with the rows times a run of columns, never with every column at once."""
    return [items[i:i + COLUMNS_PER_QUERY] for i in range(0, len(items), COLUMNS_PER_QUERY)]


def _exact_distinct_counts(con, slots: list[_Slot]) -> None:
    """Distinct counts of a sample that is the whole file are exact: replace the estimates."""
    for chunk in _by_sample_table(slots):
        keys = [f"h{s.index}" if s.col.type == "string" else f"k{s.index}" for s in chunk]
        row = con.execute(
            f"SELECT {', '.join(_distinct(k, small=True) for k in keys)} "
            f"FROM {chunk[0].sample_table}"
        ).fetchone()
        for slot, distinct in zip(chunk, row):
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


def _nearly_unique(non_null: int, distinct: int) -> bool:
    return distinct >= NEARLY_UNIQUE * non_null

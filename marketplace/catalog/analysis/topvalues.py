"""The most frequent values of text columns, counted on the sample."""

from __future__ import annotations

from .stats import _by_sample_table, _sample_columns, _Scan, _Slot
from .values import MAX_TOP_VALUE_TEXT, _shorten

TOP_VALUES = 10  # shown per text column

# Top values of a sampled file are ranked on one half of the sample and counted on the other (the
# most frequent of many equally frequent values would otherwise be overcounted); a value counted
# fewer than MIN_SAMPLED_TOP_COUNT times there is not shown: nothing about it is frequent.
MIN_SAMPLED_TOP_COUNT = 10

# Above this many distinct values a text column's top values come from approx_top_k candidates
# (then counted exactly) rather than a GROUP BY holding every value.
EXACT_TOP_VALUES_MAX_DISTINCT = 100_000

# A whole-file sample of at most this many rows is counted in Python from one read of each sample
# table: a GROUP BY per column costs about 0.3 ms however few the rows (24 ms of a 100-row,
# 300-column file), counting here about 0.25 us a value (the two meet near 1,000 rows).
COUNT_IN_PYTHON_MAX_ROWS = 1_000


def _top_values(con, scan: _Scan) -> None:
    """Most frequent values of text columns.

    A sample that is the whole file counts them exactly. A partial one ranks values on one half
    and estimates their counts from the other, scaled to the column's exact number of values.
    """
    slots = [s for s in scan.slots if s.top_values]
    if not slots:
        return
    if scan.exact:
        for slot, found in zip(slots, _exact_top_values(con, scan, slots)):
            slot.col.top_values = [
                {"value": _shorten(value, MAX_TOP_VALUE_TEXT), "count": n} for value, n in found
            ]
        return
    in_half = []
    for group in _by_sample_table(slots):
        in_half += con.execute(
            "SELECT " + ", ".join(f"count(t{s.index}) FILTER (WHERE half)" for s in group)
            + f" FROM {group[0].sample_table}"
        ).fetchone()
    for slot, counted in zip(slots, in_half):
        h, t = f"h{slot.index}", f"t{slot.index}"
        rows = con.execute(
            f"""SELECT min({t}) AS value, count(*) FILTER (WHERE half) AS n
                FROM {slot.sample_table} WHERE {h} IS NOT NULL GROUP BY {h}
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


def _exact_top_values(con, scan: _Scan, slots: list[_Slot]) -> list[list[tuple[str, int]]]:
    """Each column's most frequent values and their counts in the sample (the whole file).

    Up to EXACT_TOP_VALUES_MAX_DISTINCT distinct values a GROUP BY counts them; beyond,
    approx_top_k finds candidates and one more pass counts them exactly.
    """
    found: dict[int, list] = {}
    wide = []
    if scan.values is not None or scan.sample_rows <= COUNT_IN_PYTHON_MAX_ROWS:
        return _counted_in_python(con, scan, slots)
    for slot in slots:
        if slot.col.distinct_count > EXACT_TOP_VALUES_MAX_DISTINCT:
            wide.append(slot)
            continue
        h, t = f"h{slot.index}", f"t{slot.index}"
        found[slot.index] = con.execute(
            f"""SELECT min({t}) AS value, count(*) AS n FROM {slot.sample_table}
                WHERE {h} IS NOT NULL
                GROUP BY {h} ORDER BY n DESC, value LIMIT {TOP_VALUES}"""
        ).fetchall()
    for group in _by_sample_table(wide):
        table = group[0].sample_table
        candidates = con.execute(
            "SELECT " + ", ".join(f"approx_top_k(h{s.index}, {TOP_VALUES})" for s in group)
            + f" FROM {table}"
        ).fetchone()
        select, owners = [], []
        for slot, hashes in zip(group, candidates):
            for value_hash in hashes or []:
                if value_hash is not None:
                    match = f"h{slot.index} = {int(value_hash)}::UBIGINT"
                    select.append(f"min(t{slot.index}) FILTER (WHERE {match})")
                    select.append(f"count(*) FILTER (WHERE {match})")
                    owners.append(slot.index)
        counts = (
            con.execute(f"SELECT {', '.join(select)} FROM {table}").fetchone() if select else []
        )
        for n, index in enumerate(owners):
            found.setdefault(index, []).append((counts[2 * n], counts[2 * n + 1]))
    return [
        sorted(found.get(slot.index, []), key=lambda p: (-p[1], p[0]))[:TOP_VALUES]
        for slot in slots
    ]


def _counted_in_python(con, scan: _Scan, slots: list[_Slot]) -> list[list[tuple[str, int]]]:
    """_exact_top_values for a small sample: grouped on the hash as the SQL does, each group shown
    by its least text, ties broken by that text (DuckDB compares text by its UTF-8 bytes, which
    orders as Python's code points do)."""
    found: dict[int, list] = {}
    for group in _by_sample_table(slots):
        names = [name for s in group for name in (f"h{s.index}", f"t{s.index}")]
        columns = _sample_columns(con, scan, group, names)
        for position, slot in enumerate(group):
            counts: dict[int, list] = {}  # hash -> [least text, count]
            for value_hash, text in zip(columns[2 * position], columns[2 * position + 1]):
                if value_hash is None:
                    continue
                entry = counts.get(value_hash)
                if entry is None:
                    counts[value_hash] = [text, 1]
                else:
                    entry[1] += 1
                    entry[0] = min(entry[0], text)
            ranked = sorted(map(tuple, counts.values()), key=lambda p: (-p[1], p[0]))
            found[slot.index] = ranked[:TOP_VALUES]
    return [found.get(slot.index, []) for slot in slots]

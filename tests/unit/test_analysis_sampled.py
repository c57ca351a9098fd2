"""marketplace.catalog.analysis on files too large to be their own sample (forced here by a small
sample budget): exact figures stay exact, distinct counts, histograms and top values are close
estimates and say so, and the bad-file states read as they do for a small file."""
import json
import math
import random
from pathlib import Path

import duckdb
import pytest

from marketplace.catalog.analysis import csv as csv_loader, histograms, stats
from marketplace.catalog.analysis import analyse, to_json

ROWS = 60_000
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon"]
# Clearly different frequencies: 40 %, 25 %, 15 %, 12 %, 8 %.
WEIGHTS = [40, 25, 15, 12, 8]


@pytest.fixture
def sampled(monkeypatch):
    """A budget of 20,000 values (4,000 rows of 5 columns) and 4 kB blocks: files of a few MB
    are sampled as a 1 GB file is with the real budget."""
    monkeypatch.setattr(stats, "STATS_SAMPLE_CELLS", 20_000)
    monkeypatch.setattr(csv_loader, "SAMPLE_BLOCK_BYTES", 4 * 1024)
    monkeypatch.setattr(csv_loader, "STATS_SAMPLE_BLOCK_BYTES", 1024 * 1024)


def rows(n=ROWS, seed=7):
    """(id, word, amount or None, day, code): id unique, word skewed, amount with 10 % empty."""
    rng = random.Random(seed)
    words = rng.choices(WORDS, weights=WEIGHTS, k=n)
    out = []
    for i in range(n):
        amount = None if i % 10 == 3 else round(rng.uniform(-500, 1500), 2)
        day = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}"
        out.append((i, words[i], amount, day, f"c{rng.randrange(20_000)}"))
    return out


def write_csv(path: Path, data, header="id,word,amount,day,code") -> Path:
    lines = [header] + [
        f"{i},{w},{'' if a is None else a},{d},{c}" for i, w, a, d, c in data
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def column(result, name):
    return next(c for c in result.columns if c.name == name)


def test_a_large_csv_is_sampled_and_its_exact_figures_stay_exact(tmp_path, sampled):
    data = rows()
    result = analyse(write_csv(tmp_path / "big.csv", data), "csv")

    assert result.row_count == ROWS and result.rejected_rows == 0
    assert 0 < result.stats_sample_rows < ROWS
    amounts = [a for _, _, a, _, _ in data if a is not None]
    amount = column(result, "amount")
    assert amount.null_count == ROWS - len(amounts)
    assert (amount.min, amount.max) == (min(amounts), max(amounts))
    assert amount.mean == pytest.approx(sum(amounts) / len(amounts))
    ids = column(result, "id")
    assert (ids.min, ids.max, ids.null_count) == (0, ROWS - 1, 0)
    assert ids.mean == pytest.approx((ROWS - 1) / 2)
    day = column(result, "day")
    assert (day.type, day.min, day.max) == ("date", "2024-01-01", "2024-12-28")
    # The first rows are still the first rows, in order.
    assert [row["id"] for row in result.sample] == list(range(stats.SAMPLE_ROWS))
    json.dumps(to_json(result), allow_nan=False)


def test_sampled_histograms_sum_to_the_exact_count_and_stay_close(tmp_path, sampled):
    data = rows()
    result = analyse(write_csv(tmp_path / "big.csv", data), "csv")

    amount = column(result, "amount")
    assert amount.sampled
    values = sorted(a for _, _, a, _, _ in data if a is not None)
    assert sum(b["count"] for b in amount.histogram) == len(values)
    assert amount.histogram[0]["start"] == amount.min
    assert amount.histogram[-1]["end"] == amount.max
    assert all(b["count"] > 0 for b in (amount.histogram[0], amount.histogram[-1]))
    lower = amount.min
    for b in amount.histogram:  # each bin within 15 % of the truth (about 6,000 values a bin)
        true = sum(1 for v in values if lower < v <= b["end"] or v == lower == b["start"])
        assert b["count"] == pytest.approx(true, rel=0.15)
        lower = b["end"]
    ids = column(result, "id")
    assert sum(b["count"] for b in ids.histogram) == ROWS


def test_sampled_top_values_rank_clear_favourites_and_estimate_their_counts(tmp_path, sampled):
    data = rows()
    result = analyse(write_csv(tmp_path / "big.csv", data), "csv")

    word = column(result, "word")
    assert word.sampled
    assert [t["value"] for t in word.top_values] == WORDS  # 40 %, 25 %, 15 %, 12 %, 8 %
    for top in word.top_values:
        true = sum(1 for _, w, _, _, _ in data if w == top["value"])
        assert top["count"] == pytest.approx(true, rel=0.2)
    # Five values in the first rows: counted exactly by the scan.
    assert word.distinct_count == 5


def test_values_seen_too_rarely_in_the_sample_are_not_shown_as_top_values(tmp_path, sampled):
    result = analyse(write_csv(tmp_path / "big.csv", rows()), "csv")

    code = column(result, "code")  # 20,000 values equally likely: nothing is frequent
    assert code.top_values == []


def test_estimated_distinct_counts_stay_close(tmp_path, sampled, monkeypatch):
    # Every column estimated, and from a share of the hashes only.
    monkeypatch.setattr(stats, "FEW_DISTINCT", 0)
    monkeypatch.setattr(stats, "DISTINCT_HASHES_KEPT", 4_000)
    data = rows()
    result = analyse(write_csv(tmp_path / "big.csv", data), "csv")

    exact = {
        "id": ROWS,
        "code": len({c for *_, c in data}),
        "amount": len({a for _, _, a, _, _ in data if a is not None}),
    }
    for name, true in exact.items():
        # The hashes kept are about 4,000 (an error of about 1.6 %): 8 % is five of those.
        assert column(result, name).distinct_count == pytest.approx(true, rel=0.08), name


def test_a_whole_small_file_keeps_exact_distinct_counts_when_estimating(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "FEW_DISTINCT", 0)
    data = rows(n=3_000)
    result = analyse(write_csv(tmp_path / "small.csv", data), "csv")

    assert result.stats_sample_rows == result.row_count == 3_000
    assert column(result, "code").distinct_count == len({c for *_, c in data})
    assert not any(c.sampled for c in result.columns)


def test_sampled_and_whole_analyses_agree_on_the_exact_figures(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "big.csv", rows(n=20_000))
    whole = analyse(path, "csv")
    monkeypatch.setattr(stats, "STATS_SAMPLE_CELLS", 5_000)
    monkeypatch.setattr(csv_loader, "SAMPLE_BLOCK_BYTES", 4 * 1024)
    part = analyse(path, "csv")

    assert part.stats_sample_rows < whole.stats_sample_rows == whole.row_count == part.row_count
    for a, b in zip(whole.columns, part.columns, strict=True):
        assert (a.name, a.type, a.null_count, a.min, a.max) == (b.name, b.type, b.null_count, b.min,
                                                                b.max)
        assert a.mean == pytest.approx(b.mean)
    assert whole.sample == part.sample


def test_rejected_rows_deep_in_a_sampled_file_are_still_explained(tmp_path, sampled):
    lines = ["a,b,c"] + [f"{i},{i * 2},x{i % 5}" for i in range(60_000)]
    lines[45_001] = "1,2,3,4,5,6,7"
    content = ("\n".join(lines) + "\n").encode()
    content += "50000,1,Montréal\n".encode("latin-1")
    path = tmp_path / "ragged.csv"
    path.write_bytes(content)

    result = analyse(path, "csv")

    assert result.stats_sample_rows < result.row_count == 60_000 - 1
    assert result.rejected_rows == 2
    assert result.warnings == [
        "analysed with 2 rejected rows: Line 45,002 has 7 fields, expected 3."
    ]


def test_a_type_contradicted_deep_in_a_sampled_file_is_widened(tmp_path, sampled):
    lines = ["id,v"] + [f"{i},{i % 100}" for i in range(60_000)] + ["60000,1e30"]
    path = tmp_path / "late.csv"
    path.write_text("\n".join(lines) + "\n")

    result = analyse(path, "csv")

    v = column(result, "v")
    assert (v.type, v.max, result.row_count, result.rejected_rows) == ("float", 1e30, 60_001, 0)
    assert result.warnings == [
        'Column "v" was read as decimal numbers: line 60,002 has "1e30", which is not a BIGINT.'
    ]
    assert sum(b["count"] for b in v.histogram) == 60_001


def test_quoted_fields_spanning_lines_do_not_break_a_sampled_file(tmp_path, sampled):
    # A block may start inside a quoted field: the sample loses a few odd rows, nothing else.
    lines = ["id,text,v"] + [f'{i},"first {i}\nsecond, ""quoted""",{i % 7}' for i in range(40_000)]
    path = tmp_path / "quoted.csv"
    path.write_text("\n".join(lines) + "\n")

    result = analyse(path, "csv")

    assert (result.row_count, result.rejected_rows, result.warnings) == (40_000, 0, [])
    v = column(result, "v")
    assert (v.min, v.max, v.distinct_count) == (0, 6, 7)
    assert sum(b["count"] for b in v.histogram) == 40_000
    assert result.sample[1]["text"] == 'first 1\nsecond, "quoted"'


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_other_line_endings_in_a_sampled_file(tmp_path, sampled, newline):
    path = tmp_path / "lines.csv"
    path.write_bytes(newline.join(["id,word"] + [f"{i},{WORDS[i % 5]}" for i in range(60_000)])
                     .encode() + newline.encode())

    result = analyse(path, "csv")

    assert result.row_count == 60_000
    word = column(result, "word")
    assert sorted(t["value"] for t in word.top_values) == sorted(WORDS)
    assert all(t["count"] == pytest.approx(12_000, rel=0.2) for t in word.top_values)


def test_a_date_format_other_than_iso_is_still_read_as_dates(tmp_path):
    lines = ["id,day"] + [f"{i},{1 + i % 28:02d}/{1 + i % 12:02d}/2024" for i in range(3_000)]
    path = tmp_path / "days.csv"
    path.write_text("\n".join(lines) + "\n")

    result = analyse(path, "csv")

    day = column(result, "day")
    assert (day.type, day.min, day.max) == ("date", "2024-01-01", "2024-12-28")


def test_a_large_parquet_file_is_sampled_with_the_same_guarantees(tmp_path, sampled):
    path = tmp_path / "big.parquet"
    duckdb.execute(f"""COPY (
        SELECT i AS id, ['x', 'y', 'y', 'z'][1 + i % 4] AS kind,
               CASE WHEN i % 5 = 0 THEN NULL ELSE i * 0.5 END::DOUBLE AS half
        FROM range(50000) t(i)
    ) TO '{path}' (FORMAT parquet)""")

    result = analyse(path, "parquet")

    assert result.row_count == 50_000 and result.stats_sample_rows < 50_000
    half = column(result, "half")
    assert (half.null_count, half.min, half.max) == (10_000, 0.5, 24_999.5)
    assert sum(b["count"] for b in half.histogram) == 40_000
    kind = column(result, "kind")
    assert [t["value"] for t in kind.top_values][:1] == ["y"]
    assert kind.top_values[0]["count"] == pytest.approx(25_000, rel=0.15)


def test_a_large_json_lines_file_is_sampled_too(tmp_path, sampled):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(
        json.dumps({"id": i, "word": WORDS[i % 5], "v": i % 1000}) + "\n" for i in range(30_000)
    ))

    result = analyse(path, "jsonl")

    assert result.row_count == 30_000 and result.stats_sample_rows < 30_000
    v = column(result, "v")
    assert (v.min, v.max, v.distinct_count) == (0, 999, 1000)
    assert sum(b["count"] for b in v.histogram) == 30_000


# --- the pieces ---------------------------------------------------------------------------------


def test_scaled_counts_sum_to_the_total_and_keep_the_ends():
    scaled = histograms._scaled_counts([0, 5, 3, 0, 2, 0], 1_000)
    assert sum(scaled) == 1_000
    assert scaled[0] >= 1 and scaled[-1] >= 1
    assert scaled[3] == 0
    assert histograms._scaled_counts([0, 0, 0], 10) is None


def test_hash_share_keeps_about_the_wanted_number_of_hashes():
    kept = stats.DISTINCT_HASHES_KEPT
    assert stats._hash_share((1_000, 900), 1_000, 1_000) == 1.0  # a small file: every hash
    # 90 % new values in the first 100,000 rows of 10M: about 9M expected.
    share = stats._hash_share((100_000, 90_000), 100_000, 10_000_000)
    assert share * 9_000_000 == pytest.approx(kept)
    assert stats._hash_share(None, 100_000, 10_000_000) == pytest.approx(kept / 10_000_000)
    assert math.isclose(stats._hash_share((0, 0), 0, 0), 1.0)

"""marketplace.catalog.analysis on real files read by a real DuckDB: what a dataset page shows
(schema, row count, sample, column statistics) and the states a badly parsing file ends in."""
import dataclasses
import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest

from marketplace.catalog.analysis import histograms, stats, topvalues
from marketplace.catalog.analysis import AnalysisFailed, Limits, analyse, to_json

CITIES = ["Paris", "Lyon", "Nice", "Lille"]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def people_csv(tmp_path: Path, rows: int = 1000) -> Path:
    """id 0..rows-1; score i/4 with every 10th empty; city cycling over CITIES; active on evens."""
    lines = ["id,score,city,active"]
    for i in range(rows):
        score = "" if i % 10 == 0 else str(i / 4)
        lines.append(f"{i},{score},{CITIES[i % len(CITIES)]},{'true' if i % 2 == 0 else 'false'}")
    return write(tmp_path, "people.csv", "\n".join(lines) + "\n")


def column(result, name):
    return next(c for c in result.columns if c.name == name)


def histogram_total(col) -> int:
    return sum(b["count"] for b in col.histogram)


# --- CSV, happy path ------------------------------------------------------------------------


def test_csv_schema_and_row_count(tmp_path):
    result = analyse(people_csv(tmp_path), "csv")

    assert result.format == "csv"
    assert result.row_count == 1000
    assert [(c.name, c.type) for c in result.columns] == [
        ("id", "integer"), ("score", "float"), ("city", "string"), ("active", "boolean"),
    ]
    assert column(result, "id").duckdb_type == "BIGINT"
    assert result.rejected_rows == 0
    assert result.warnings == []


def test_csv_null_and_distinct_counts(tmp_path):
    result = analyse(people_csv(tmp_path), "csv")

    assert column(result, "score").null_count == 100
    assert column(result, "id").null_count == 0
    assert column(result, "city").distinct_count == 4
    assert column(result, "active").distinct_count == 2
    assert 950 <= column(result, "id").distinct_count <= 1000  # approximate is allowed


def test_csv_min_max_mean_of_numbers(tmp_path):
    result = analyse(people_csv(tmp_path), "csv")

    ids = column(result, "id")
    assert (ids.min, ids.max) == (0, 999)
    assert ids.mean == pytest.approx(499.5)
    scores = column(result, "score")
    non_empty = [i / 4 for i in range(1000) if i % 10]
    assert (scores.min, scores.max) == (min(non_empty), max(non_empty))
    assert scores.mean == pytest.approx(sum(non_empty) / len(non_empty))
    assert column(result, "city").min is None and column(result, "city").mean is None


def test_csv_histogram_counts_sum_to_the_non_null_count(tmp_path):
    result = analyse(people_csv(tmp_path), "csv")

    for name in ("id", "score"):
        col = column(result, name)
        assert 2 <= len(col.histogram) <= histograms.HISTOGRAM_BINS
        assert histogram_total(col) == result.row_count - col.null_count
        assert col.histogram[0]["start"] == col.min and col.histogram[-1]["end"] == col.max
    # Integer bins are inclusive ranges that tile the column's range.
    ids = column(result, "id").histogram
    assert ids[0] == {"start": 0, "end": 99, "count": 100}
    assert all(b["start"] == a["end"] + 1 for a, b in zip(ids, ids[1:]))


def test_csv_top_values_of_a_text_column_and_a_boolean(tmp_path):
    lines = ["word,flag"] + [f"{w},{f}" for w, f, n in [
        ("apple", "true", 50), ("pear", "false", 30), ("fig", "true", 20),
    ] for _ in range(n)]
    result = analyse(write(tmp_path, "words.csv", "\n".join(lines) + "\n"), "csv")

    assert column(result, "word").top_values == [
        {"value": "apple", "count": 50},
        {"value": "pear", "count": 30},
        {"value": "fig", "count": 20},
    ]
    assert column(result, "flag").top_values == [
        {"value": True, "count": 70}, {"value": False, "count": 30},
    ]


def test_csv_sample_is_the_first_rows_in_file_order(tmp_path):
    # Large enough for DuckDB to read the file in parallel chunks.
    path = people_csv(tmp_path, rows=300_000)

    result = analyse(path, "csv")

    assert len(result.sample) == stats.SAMPLE_ROWS
    assert [row["id"] for row in result.sample] == list(range(stats.SAMPLE_ROWS))
    assert result.sample[1] == {"id": 1, "score": 0.25, "city": "Lyon", "active": False}
    assert result.sample[0]["score"] is None


def test_csv_dates_and_timestamps(tmp_path):
    start = dt.date(2024, 1, 1)
    lines = ["day,at"] + [
        f"{start + dt.timedelta(days=i % 30)},{dt.datetime(2024, 1, 1) + dt.timedelta(hours=i)}"
        for i in range(300)
    ] + [","]
    result = analyse(write(tmp_path, "dates.csv", "\n".join(lines) + "\n"), "csv")

    day, at = column(result, "day"), column(result, "at")
    assert (day.type, at.type) == ("date", "timestamp")
    assert (day.min, day.max) == ("2024-01-01", "2024-01-30")
    assert (at.min, at.max) == ("2024-01-01T00:00:00", "2024-01-13T11:00:00")
    assert day.mean is None and day.null_count == 1
    assert day.histogram[0] == {"start": "2024-01-01", "end": "2024-01-03", "count": 30}
    assert histogram_total(day) == histogram_total(at) == 300
    assert result.sample[0] == {"day": "2024-01-01", "at": "2024-01-01T00:00:00"}


def test_csv_with_only_a_header(tmp_path):
    result = analyse(write(tmp_path, "header.csv", "a,b,c\n"), "csv")

    assert result.row_count == 0
    assert [c.name for c in result.columns] == ["a", "b", "c"]
    assert result.sample == []
    assert result.warnings == ["The file has no data rows."]


def test_empty_file_fails(tmp_path):
    with pytest.raises(AnalysisFailed) as failed:
        analyse(write(tmp_path, "empty.csv", b""), "csv")
    assert failed.value.reason == "The file is empty."


def test_integer_column_with_a_huge_number_deep_in_the_file_is_read_as_numbers(tmp_path):
    lines = ["id,v"] + [f"{i},{i}" for i in range(30_000)] + ["30000,1e30"]
    result = analyse(write(tmp_path, "late.csv", "\n".join(lines) + "\n"), "csv")

    v = column(result, "v")
    assert (v.type, v.max, result.row_count, result.rejected_rows) == ("float", 1e30, 30001, 0)
    assert result.warnings == [
        'Column "v" was read as decimal numbers: line 30,002 has "1e30", which is not a BIGINT.'
    ]


def test_integer_column_with_text_deep_in_the_file_is_read_as_text(tmp_path):
    lines = ["id,v"] + [f"{i},{i % 7}" for i in range(30_000)] + ["30000,n/a"]
    result = analyse(write(tmp_path, "late.csv", "\n".join(lines) + "\n"), "csv")

    assert column(result, "v").type == "string"
    assert {"value": "n/a", "count": 1} not in column(result, "v").top_values[:7]
    assert result.row_count == 30_001 and result.rejected_rows == 0
    assert "read as text" in result.warnings[0]


# --- CSV that parses badly --------------------------------------------------------------------


def test_ragged_rows_deep_in_the_file_are_rejected_with_the_reason(tmp_path):
    lines = ["a,b,c"] + [f"{i},{i * 2},x{i % 5}" for i in range(30_000)]
    lines[25_001] = "1,2,3,4,5,6,7"
    lines[28_000] = "1,2"
    result = analyse(write(tmp_path, "ragged.csv", "\n".join(lines) + "\n"), "csv")

    assert result.row_count == 29_998
    assert result.rejected_rows == 2
    assert result.warnings == [
        "analysed with 2 rejected rows: Line 25,002 has 7 fields, expected 3."
    ]
    assert [c.name for c in result.columns] == ["a", "b", "c"]


def test_ragged_rows_within_the_first_rows_do_not_fool_the_sniffer(tmp_path):
    lines = ["a,b,c"] + [f"{i},{i * 2},x{i}" for i in range(1000)]
    lines[10] = "1,2"
    result = analyse(write(tmp_path, "ragged.csv", "\n".join(lines) + "\n"), "csv")

    assert [c.name for c in result.columns] == ["a", "b", "c"]
    assert (result.row_count, result.rejected_rows) == (999, 1)
    assert result.warnings == ["analysed with 1 rejected row: Line 11 has 2 fields, expected 3."]


def test_a_file_whose_rows_all_disagree_with_its_header_fails(tmp_path):
    path = write(tmp_path, "bad.csv", "a,b,c\n1,2\n1,2,3,4\n5\n1,2,3,4,5\n")

    with pytest.raises(AnalysisFailed) as failed:
        analyse(path, "csv")
    assert failed.value.reason == "Line 2 has 2 fields, expected 3."


def test_a_latin1_file_fails_with_where_it_is_not_utf8(tmp_path):
    text = "name,city\n" + "".join(f"José {i},Köln\n" for i in range(100))
    path = write(tmp_path, "latin1.csv", text.encode("latin-1"))

    with pytest.raises(AnalysisFailed) as failed:
        analyse(path, "csv")
    # "name,city\n" is 10 bytes, "Jos" 3 more: the é is byte 13.
    assert failed.value.reason == (
        "The file is not valid UTF-8 near byte 13 (line 2); save it as UTF-8 and upload it again."
    )


def test_a_few_latin1_lines_in_a_utf8_file_are_rejected_rows(tmp_path):
    good = "".join(f"José {i},Köln,{i}\n" for i in range(30_000)).encode()
    content = b"name,city,n\n" + good + "François,Montréal,1\n".encode("latin-1") + b"Ana,Rio,2\n"
    result = analyse(write(tmp_path, "mixed.csv", content), "csv")

    assert (result.row_count, result.rejected_rows) == (30_001, 1)
    bad_byte = len(b"name,city,n\n" + good) + len("Fran")
    assert result.warnings == [
        f"analysed with 1 rejected row: Line 30,002 is not valid UTF-8 (near byte {bad_byte:,})."
    ]
    assert column(result, "city").top_values[0] == {"value": "Köln", "count": 30_000}


def test_binary_junk_fails_cleanly(tmp_path):
    junk = bytes(range(256)) * 200

    with pytest.raises(AnalysisFailed) as failed:
        analyse(write(tmp_path, "junk.csv", junk), "csv")
    assert "Error" not in failed.value.reason and "\n" not in failed.value.reason


# --- JSON Lines and Parquet -------------------------------------------------------------------


def test_json_lines(tmp_path):
    lines = [json.dumps({"id": i, "name": CITIES[i % 4], "v": i * 1.5, "tags": ["a"] * (i % 3)})
             for i in range(500)]
    result = analyse(write(tmp_path, "rows.jsonl", "\n".join(lines) + "\n"), "jsonl")

    assert result.format == "jsonl" and result.row_count == 500
    assert [(c.name, c.type) for c in result.columns] == [
        ("id", "integer"), ("name", "string"), ("v", "float"), ("tags", "other"),
    ]
    assert column(result, "v").max == 748.5
    # Equally frequent values are listed alphabetically.
    assert column(result, "name").top_values == [
        {"value": city, "count": 125} for city in sorted(CITIES)
    ]
    assert result.sample[2] == {"id": 2, "name": "Nice", "v": 3.0, "tags": ["a", "a"]}


def test_malformed_json_lines_are_rejected_with_the_reason(tmp_path):
    lines = [json.dumps({"id": i, "name": f"n{i % 9}"}) for i in range(1000)]
    lines[700] = "not json at all"
    result = analyse(write(tmp_path, "rows.jsonl", "\n".join(lines) + "\n"), "jsonl")

    assert (result.row_count, result.rejected_rows) == (999, 1)
    assert result.warnings == [
        "analysed with 1 rejected row: Line 701 is not valid JSON: invalid literal."
    ]


def test_a_file_that_is_not_json_lines_fails(tmp_path):
    with pytest.raises(AnalysisFailed) as failed:
        analyse(write(tmp_path, "rows.jsonl", "hello\nworld\n"), "jsonl")
    assert failed.value.reason == "Line 1 is not valid JSON: unexpected character."


def test_parquet(tmp_path):
    path = tmp_path / "rows.parquet"
    duckdb.execute(f"""COPY (
        SELECT i AS id, (i * 1.25)::DECIMAL(10, 2) AS price, ['x', 'y'][1 + i % 2] AS kind,
               DATE '2024-03-01' + (i % 10)::INTEGER AS day,
               CASE WHEN i % 4 = 0 THEN 'nan'::DOUBLE ELSE i / 2 END AS ratio
        FROM range(200) t(i)
    ) TO '{path}' (FORMAT parquet)""")

    result = analyse(path, "parquet")

    assert result.format == "parquet" and result.row_count == 200
    price = column(result, "price")
    assert (price.type, price.min, price.max) == ("decimal", "0.00", "248.75")
    assert column(result, "kind").top_values == [
        {"value": "x", "count": 100}, {"value": "y", "count": 100},
    ]
    assert column(result, "day").max == "2024-03-10"
    assert result.sample[0] == {
        "id": 0, "price": "0.00", "kind": "x", "day": "2024-03-01", "ratio": None,
    }
    json.dumps(to_json(result), allow_nan=False)  # NaN is never written out


def test_a_file_that_is_not_parquet_fails(tmp_path):
    with pytest.raises(AnalysisFailed) as failed:
        analyse(write(tmp_path, "rows.parquet", "a,b\n1,2\n"), "parquet")
    assert failed.value.reason == "The file is not a valid Parquet file."


# --- the two ways of counting agree -----------------------------------------------------------


def test_exact_value_counts_and_the_general_passes_give_the_same_statistics(tmp_path, monkeypatch):
    path = people_csv(tmp_path, rows=5000)
    few = analyse(path, "csv")  # every column has few distinct values in its first rows but id
    monkeypatch.setattr(stats, "FEW_DISTINCT", 0)  # now every column takes the general passes
    general = analyse(path, "csv")

    for name in ("score", "city"):
        a, b = column(few, name), column(general, name)
        assert (a.null_count, a.min, a.max, a.histogram, a.top_values) == (
            b.null_count, b.min, b.max, b.histogram, b.top_values
        )
        assert a.mean == pytest.approx(b.mean)


def test_top_values_counted_in_python_and_in_sql_agree(tmp_path, monkeypatch):
    """A small file's top values are counted in Python; the SQL they replace gives the same,
    ties (broken by the text, as DuckDB orders UTF-8), nulls and text past the shown length too."""
    long = "x" * 300
    values = ["b", "a", "é", "Z", "", long, long + "y", "ß"] * 3 + ["a", "é", None, None]
    lines = ["n,word,flag"] + [f"{i},{'' if v is None else v},{'t' if i % 3 else 'u'}" for i, v in enumerate(values)]
    path = write(tmp_path, "words.csv", "\n".join(lines) + "\n")
    in_python = analyse(path, "csv")
    monkeypatch.setattr(topvalues, "COUNT_IN_PYTHON_MAX_ROWS", 0)
    in_sql = analyse(path, "csv")
    for name in ("word", "flag"):
        assert column(in_python, name).top_values == column(in_sql, name).top_values
    assert column(in_python, "word").top_values[:2] == [{"value": "a", "count": 4}, {"value": "é", "count": 4}]


def test_histograms_binned_in_python_and_in_duckdb_agree(tmp_path, monkeypatch):
    """A small sample is binned in Python, a larger one by DuckDB: the same bins and counts for
    integers, decimals, dates, timestamps and integers too wide for BIGINT, values on bin edges
    included."""
    lines = ["n,x,day,at,big"] + [
        f"{i},{i * 0.37:.2f},{dt.date(2020, 1, 1) + dt.timedelta(days=i % 97)},"
        f"2021-03-04 {i % 24:02d}:{i % 60:02d}:00,{2**70 + i * 10**18}"
        for i in range(500)
    ]
    path = write(tmp_path, "bins.csv", "\n".join(lines) + "\n")
    in_python = analyse(path, "csv")
    monkeypatch.setattr(histograms, "BINNED_IN_PYTHON_MAX_ROWS", 0)
    in_duckdb = analyse(path, "csv")
    for name in ("n", "x", "day", "at", "big"):
        assert column(in_python, name).histogram, name
        assert column(in_python, name).histogram == column(in_duckdb, name).histogram, name


def test_a_small_table_scanned_in_python_has_the_sql_scans_figures(tmp_path, monkeypatch):
    """pyscan computes every figure of a small table from one read of its rows; the SQL scan it
    replaces gives the same for each type, with NaN, infinities, empty cells, ties and decimals."""
    from marketplace.catalog.analysis import pyscan

    lines = ["n,x,price,day,at,word,flag,blank"] + [
        f"{i},{['nan', 'inf', '-inf', '', '1.5', '-0.0'][i % 6] if i % 5 == 0 else i * 0.25},"
        f"{i}.{i % 100:02d},{dt.date(2020, 1, 1) + dt.timedelta(days=i % 40)},"
        f"2021-03-04 {i % 24:02d}:{i % 60:02d}:05,{['é', 'b', 'a', ''][i % 4]},{'true' if i % 3 else 'false'},"
        for i in range(300)
    ]
    path = write(tmp_path, "mixed.csv", "\n".join(lines) + "\n")
    scans = []
    original = pyscan.scan_rows
    monkeypatch.setattr(pyscan, "scan_rows", lambda *a: scans.append(1) or original(*a))
    in_python = to_json(analyse(path, "csv"))
    assert scans, "the table was scanned in Python"
    monkeypatch.setattr(pyscan, "PYSCAN_MAX_ROWS", 0)
    in_sql = to_json(analyse(path, "csv"))
    for a, b in zip(in_python["columns"], in_sql["columns"]):
        mean_a, mean_b = a.pop("mean"), b.pop("mean")
        assert mean_a == (None if mean_b is None else pytest.approx(mean_b, rel=1e-12)), a["name"]
        assert a == b, a["name"]
    assert in_python["sample"] == in_sql["sample"] and in_python["row_count"] == in_sql["row_count"] == 300
    x = column(analyse(path, "csv"), "x")
    assert x.type == "float" and x.histogram and x.distinct_count == in_sql["columns"][1]["distinct_count"]


@pytest.mark.parametrize("value", ["10000-01-01", "0000-01-01", "10000-01-01 00:00:00"])
def test_a_date_python_cannot_hold_is_analysed_by_the_sql_scan(tmp_path, value):
    result = analyse(write(tmp_path, "far.csv", f"a,b\n{value},1\n2000-01-01,2\n"), "csv")
    a = column(result, "a")
    assert result.row_count == 2 and a.type in ("date", "timestamp")
    assert "2000-01-01" in (a.min or "") + (a.max or "")  # the year Python holds is in the range


def test_a_table_python_cannot_hold_goes_through_the_sql_scan(tmp_path):
    from marketplace.catalog.analysis import pyscan

    con = duckdb.connect()
    rows = con.execute("SELECT 'infinity'::DATE UNION ALL SELECT DATE '2020-01-01'").fetchall()
    with pytest.raises(pyscan.NotPlain):
        pyscan.scan_rows(rows, [("d", "DATE")])
    result = analyse(write(tmp_path, "inf.csv", "d\ninfinity\n2020-01-01\n"), "csv")
    assert result.row_count == 2


def test_top_values_of_a_text_column_with_very_many_distinct_values(tmp_path, monkeypatch):
    # Past EXACT_TOP_VALUES_MAX_DISTINCT, candidates come from approx_top_k and are counted exactly.
    monkeypatch.setattr(topvalues, "EXACT_TOP_VALUES_MAX_DISTINCT", 100)
    monkeypatch.setattr(stats, "FEW_DISTINCT", 10)
    lines = ["code"] + ["popular"] * 300 + ["common"] * 200 + [f"u{i}" for i in range(2000)]
    result = analyse(write(tmp_path, "codes.csv", "\n".join(lines) + "\n"), "csv")

    top = column(result, "code").top_values
    assert top[:2] == [{"value": "popular", "count": 300}, {"value": "common", "count": 200}]


def test_nearly_unique_text_has_no_top_values(tmp_path):
    lines = ["code"] + [f"u{i}" for i in range(2000)]
    result = analyse(write(tmp_path, "codes.csv", "\n".join(lines) + "\n"), "csv")

    assert column(result, "code").top_values == []
    assert column(result, "code").distinct_count == 2000


# --- progress and output ------------------------------------------------------------------------


def test_progress_is_reported_from_reading_to_done(tmp_path):
    calls = []

    analyse(people_csv(tmp_path), "csv", progress=lambda *call: calls.append(call))

    assert calls[0] == (0.0, "reading")
    assert (0.5, "computing statistics") in calls
    assert calls[-1] == (1.0, "done")
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions)


def test_to_json_is_plain_json(tmp_path):
    result = analyse(people_csv(tmp_path), "csv", limits=Limits(threads=1, memory_mb=512))

    data = json.loads(json.dumps(to_json(result), allow_nan=False))
    assert to_json(result) == dataclasses.asdict(result)  # the same shape, without deep copies
    assert data["row_count"] == 1000
    assert data["columns"][0]["name"] == "id"
    assert data["sample"][0] == {"id": 0, "score": None, "city": "Paris", "active": True}


def test_unknown_format_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError):
        analyse(people_csv(tmp_path), "xlsx")


@pytest.mark.parametrize("content, expected", [
    ("a;b;c\n1;2;3\n4;5;6\n", (";", '"', '"', 3)),
    ("a\tb\n1\t2\n", ("\t", '"', '"', 2)),
    ('name,note\n"Smith, J","said ""hi"""\nLee,plain\n', (",", '"', '"', 2)),
    ("a,b;c\n1,2;3\n", None),  # two delimiters fit every line: DuckDB decides
    ('a,b\n1,"x\\"y"\n', None),  # backslash escapes
    ('a,b\n1,5" screen\n', None),  # a quote inside an unquoted field
    ("only\none\n", None),  # one column
    ("id,price\n'1','9.5'\n'2','3.5'\n", None),  # single quotes: DuckDB may quote with them
    ("name,n\nO'Brien,1\nD'Arcy,2\n", (",", '"', '"', 2)),  # an apostrophe inside a field
    ("a;b,c;d\n" + "1;2,5;3\n" * 50 + "1;2,5;3;4\n", None),  # ";" fits all lines but one
    (b"a,b\n\xe9,1\n", None),  # not UTF-8
])
def test_a_plain_csv_dialect_is_guessed_only_when_safe(tmp_path, content, expected):
    from marketplace.catalog.analysis.csv import _guess_dialect

    assert _guess_dialect(write(tmp_path, "f.csv", content)) == expected


def test_a_quoted_delimiter_after_the_guessed_lines_is_read_as_one_field(tmp_path):
    """The guess sees only the first 64 KB, where nothing is quoted; a quoted field further on
    still reads as one field, as DuckDB's own sniffer would have it."""
    lines = ["id,label"] + [f"{i},plain {i}" for i in range(8000)] + ['8000,"Smith, J"']
    result = analyse(write(tmp_path, "late.csv", "\n".join(lines) + "\n"), "csv")
    assert result.row_count == 8001 and result.rejected_rows == 0
    assert [c.name for c in result.columns] == ["id", "label"]


@pytest.mark.parametrize("message", [
    "", "  \n", "std::bad_alloc", "Out of Memory Error: failed to allocate data of size 4.0 MiB",
])
def test_an_allocation_refused_within_the_limit_reads_as_the_memory_reason(tmp_path, message):
    """Out of address space, DuckDB may raise an error whose message is empty (building it
    needed memory too) or names the allocation: the publisher reads the memory reason, not
    "it could not be parsed"."""
    from marketplace.catalog.analysis.errors import _clean_error
    from marketplace.catalog.analysis.results import NEEDS_MORE_MEMORY

    assert _clean_error(message, tmp_path / "data.csv") == NEEDS_MORE_MEMORY

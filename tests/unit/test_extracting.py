"""Extractors: what a job keeps of a page, the same on every node (canonical results)."""

import pytest

from marketplace.rewards.extracting import (
    ExtractError,
    canonical,
    commitment,
    extract,
    rows_hash,
    validate,
)

PAGE = b"""<html><body><table><tr><th>Product</th><th>Unit price</th></tr>
<tr><td> Rye&nbsp;bread </td><td>2.10</td></tr>
<tr><td>Eggs <b>(10)</b></td><td>3.05</td></tr></table>
<table><tr><td>other</td></tr></table></body></html>"""


def test_a_table_becomes_rows_named_by_its_header():
    assert extract({"kind": "table", "table": 0}, PAGE) == [
        {"product": "Rye bread", "unit_price": "2.10"},
        {"product": "Eggs (10)", "unit_price": "3.05"},
    ]


def test_named_columns_skip_a_matching_header_row():
    assert extract({"kind": "table", "table": 0, "columns": ["product", "unit_price"]}, PAGE)[
        0
    ] == {"product": "Rye bread", "unit_price": "2.10"}


def test_json_pointers_take_fields_of_each_item():
    body = b'{"data": {"items": [{"id": 1, "v": {"t": 2.5}}, {"id": 2, "v": {}}]}}'
    rows = extract(
        {"kind": "json", "rows": "/data/items", "fields": {"id": "/id", "t": "/v/t"}}, body
    )
    assert rows == [{"id": 1, "t": "2.5"}, {"id": 2, "t": None}]


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "css", "selector": "td"},
        {"kind": "json", "rows": "x", "fields": {"a": "/a"}},
        {"kind": "json", "fields": {"Bad Name": "/a"}},
        {"kind": "table", "table": -1},
        {"kind": "table", "code": "print(1)"},
        [],
        {"kind": "json", "fields": {}},
    ],
)
def test_anything_but_a_known_extractor_is_refused(spec):
    with pytest.raises(ExtractError):
        validate(spec)


def test_results_compare_by_canonical_json_and_commitments_bind_job_device_and_salt():
    a, b = [{"x": "1", "y": 2}], [{"y": 2, "x": "1"}]
    assert canonical(a) == canonical(b) and rows_hash(a) == rows_hash(b)
    base = commitment(job_id=1, device="0xAbC", rows=a, salt="s")
    assert base == commitment(job_id=1, device="0xabc", rows=b, salt="s")
    assert base != commitment(job_id=2, device="0xabc", rows=a, salt="s")
    assert base != commitment(job_id=1, device="0xabd", rows=a, salt="s")
    assert base != commitment(job_id=1, device="0xabc", rows=a, salt="t")

"""What a fetch job keeps of a page: rows (flat JSON objects) taken out of a JSON document by JSON
pointers, or out of an HTML table. Nothing else is run on a page (no selectors language, no
regular expressions, no scripts), so an extractor is data the admin edits and a node can check.

Every node and the server's own checks run this same code, and results are compared as their
canonical JSON (`canonical`), so equal pages give byte-equal results.

    {"kind": "json", "rows": "/stations", "fields": {"station": "/id", "temp_c": "/temp"}}
    {"kind": "table", "table": 0, "columns": ["product", "price"]}

Pure logic and the standard library: no Django import, shared by the server and the node program.
"""

from __future__ import annotations

from html.parser import HTMLParser
import hashlib
import json
import re

__all__ = ["ExtractError", "canonical", "extract", "rows_hash", "validate"]

MAX_ROWS = 1000
MAX_FIELDS = 32
MAX_CELL = 1000  # characters of one value; longer ones are cut
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class ExtractError(ValueError):
    """An extractor that is not valid, or a page it cannot be applied to."""


def validate(spec) -> dict:
    """The extractor `spec` if it is one this module runs; ExtractError saying why otherwise."""
    if not isinstance(spec, dict):
        raise ExtractError("an extractor is a JSON object")
    kind = spec.get("kind")
    if kind == "json":
        if set(spec) - {"kind", "rows", "fields"}:
            raise ExtractError("a json extractor has only kind, rows and fields")
        _pointer(spec.get("rows", ""))
        fields = spec.get("fields")
        if not isinstance(fields, dict) or not 0 < len(fields) <= MAX_FIELDS:
            raise ExtractError(f"fields maps 1 to {MAX_FIELDS} names to JSON pointers")
        for name, pointer in fields.items():
            if not NAME.match(name):
                raise ExtractError(f"field name {name!r}: lowercase letters, digits and _")
            _pointer(pointer)
    elif kind == "table":
        if set(spec) - {"kind", "table", "columns"}:
            raise ExtractError("a table extractor has only kind, table and columns")
        table = spec.get("table", 0)
        if not isinstance(table, int) or isinstance(table, bool) or not 0 <= table < 100:
            raise ExtractError("table is the table's index on the page, 0 to 99")
        columns = spec.get("columns")
        if columns is not None:
            if not isinstance(columns, list) or not 0 < len(columns) <= MAX_FIELDS:
                raise ExtractError(f"columns lists 1 to {MAX_FIELDS} names")
            for name in columns:
                if not isinstance(name, str) or not NAME.match(name):
                    raise ExtractError(f"column name {name!r}: lowercase letters, digits and _")
    else:
        raise ExtractError('kind is "json" or "table"')
    return spec


def _pointer(pointer) -> list[str]:
    """RFC 6901: "" is the whole document, "/a/0/b~1c" its parts."""
    if (
        not isinstance(pointer, str)
        or (pointer and not pointer.startswith("/"))
        or len(pointer) > 200
    ):
        raise ExtractError(f"{pointer!r} is not a JSON pointer (\"\" or starting with /)")
    if not pointer:
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _resolve(document, pointer: str):
    value = document
    for part in _pointer(pointer):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _cell(value):
    """A value of a row: a string (cut, spaces collapsed), an integer, a boolean, null, or a
    number as its shortest text. Nested values become their canonical JSON text."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return repr(value)  # numbers with a fraction compare as text: no float formatting drift
    if not isinstance(value, str):
        value = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return " ".join(value.split())[:MAX_CELL]


def extract(spec: dict, body: bytes, content_type: str = "") -> list[dict]:
    """The rows `spec` takes out of `body`, in page order, at most MAX_ROWS."""
    validate(spec)
    text = body.decode("utf-8", errors="replace")
    if spec["kind"] == "json":
        try:
            document = json.loads(text)
        except ValueError:
            raise ExtractError("the page is not JSON") from None
        items = _resolve(document, spec.get("rows", ""))
        if not isinstance(items, list):
            items = [items] if items is not None else []
        rows = [
            {name: _cell(_resolve(item, pointer)) for name, pointer in spec["fields"].items()}
            for item in items[:MAX_ROWS]
        ]
        return rows
    parser = _Tables()
    parser.feed(text)
    parser.close()
    index = spec.get("table", 0)
    if index >= len(parser.tables):
        raise ExtractError(f"the page has no table {index}")
    table = [row for row in parser.tables[index] if row]
    columns = spec.get("columns")
    if columns is None:
        if not table:
            return []
        columns = [_column_name(h, i) for i, h in enumerate(table[0])]
        table = table[1:]
    elif table and all(
        " ".join(c.split()).lower() == n.replace("_", " ") for c, n in zip(table[0], columns)
    ):
        table = table[1:]  # the header row, named as the columns are
    return [
        {name: _cell(row[i]) if i < len(row) else None for i, name in enumerate(columns)}
        for row in table[:MAX_ROWS]
    ]


def _column_name(header: str, index: int) -> str:
    name = re.sub(r"[^a-z0-9]+", "_", header.lower()).strip("_")[:40]
    return name if name and name[0].isalpha() else f"column_{index}"


class _Tables(HTMLParser):
    """Every <table>'s rows of cell texts (th and td alike); nested tables are their own."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.open: list[int] = []  # indexes into tables of the tables being read
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
            self.open.append(len(self.tables) - 1)
        elif tag == "tr" and self.open:
            self.tables[self.open[-1]].append([])
        elif tag in ("td", "th") and self.open and self.tables[self.open[-1]]:
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None and self.open:
            self.tables[self.open[-1]][-1].append("".join(self.cell))
            self.cell = None
        elif tag == "table" and self.open:
            self.open.pop()

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def canonical(rows: list[dict]) -> bytes:
    """The one byte form of a result: what commits hash and what agreement compares."""
    return json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rows_hash(rows: list[dict]) -> str:
    return "0x" + hashlib.sha256(canonical(rows)).hexdigest()


def row_hash(row: dict) -> str:
    """A row's content hash: a community dataset keeps one row per hash."""
    return "0x" + hashlib.sha256(canonical([row])).hexdigest()


def commitment(*, job_id: int, device: str, rows: list[dict], salt: str) -> str:
    """What a node commits to before it reveals: sha256(job id | device | canonical rows | salt).
    The device's address is lowercased so the commitment does not depend on its spelling."""
    data = b"|".join(
        [str(job_id).encode(), device.lower().encode(), canonical(rows), salt.encode()]
    )
    return "0x" + hashlib.sha256(data).hexdigest()

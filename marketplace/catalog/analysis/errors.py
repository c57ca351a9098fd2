"""DuckDB's errors as sentences for the publisher: where the file is wrong, never SQL or paths."""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path

from .results import NEEDS_MORE_MEMORY
from .values import _shorten

_ALLOCATION_FAILED = re.compile(
    r"bad_alloc|Out of Memory|failed to allocate|could not allocate", re.I)

def _utf8_reason(path: Path, *, start: int = 0, line: int | None = None) -> str:
    """Where the first byte that is not UTF-8 is, at or after byte `start` of the file."""
    offset = _first_invalid_utf8(path, start)
    where = f" near byte {offset:,}" if offset is not None else ""
    on_line = f" (line {line:,})" if line else ""
    return f"The file is not valid UTF-8{where}{on_line}; save it as UTF-8 and upload it again."


def _first_invalid_utf8(path: Path, start: int, chunk: int = 1 << 20) -> int | None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    position = start
    try:
        with open(path, "rb") as f:
            f.seek(start)
            while data := f.read(chunk):
                try:
                    decoder.decode(data)
                except UnicodeDecodeError as exc:
                    # Bytes the decoder held back from the previous chunk come first in its buffer.
                    return position - len(exc.object) + len(data) + exc.start
                position += len(data)
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:  # the file ends inside a multi-byte sequence
                return position - len(exc.object) + exc.start
    except OSError:
        return None
    return None


def _line_at(path: Path, offset: int, chunk: int = 1 << 20) -> int:
    """The 1-based line number of byte `offset`."""
    newlines, position = 0, 0
    with open(path, "rb") as f:
        while position < offset and (data := f.read(min(chunk, offset - position))):
            newlines += data.count(b"\n")
            position += len(data)
    return newlines + 1


def _malformed_json_line(path: Path, reported: int) -> int:
    """The line DuckDB's JSON reader could not parse: it reports the one after (DuckDB 1.x)."""
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if number >= reported - 1 and raw.strip():
                    try:
                        json.loads(raw)
                    except ValueError:  # UnicodeDecodeError included
                        return number
                if number >= reported:
                    break
    except OSError:
        pass
    return reported


_NOISE = re.compile(r"^(Invalid Input|Conversion|IO|Binder|Parser|Catalog|Out of Memory|"
                    r"Invalid|Not implemented|Internal) Error: ")


def _first_sentence(message: str | None) -> str:
    lines = (message or "").strip().splitlines()
    text = _NOISE.sub("", lines[0]).strip() if lines else ""
    return _shorten(text, 300) or "it could not be parsed."


def _clean_error(message: str, path: Path, *, fatal: bool = True) -> str:
    """A DuckDB error message as a sentence for the publisher: no SQL, paths or hints.

    `fatal` when it explains why nothing was analysed, else it explains one skipped line.
    """
    message = message.replace(str(path), "the file")
    lines = [line.strip() for line in message.splitlines()]
    if _ALLOCATION_FAILED.search(message) or not message.strip():
        # An allocation refused within the child's address space; its message may be lost too,
        # when building it needed memory.
        return NEEDS_MORE_MEMORY
    if "not utf-8 encoded" in message or "invalid UTF-8" in message or "Invalid unicode" in message:
        # Where exactly, from the file itself: DuckDB's JSON reader reports lines one late.
        offset = _first_invalid_utf8(path, 0)
        line = _line_at(path, offset) if offset is not None else None
        if fatal or line is None:
            return _utf8_reason(path, line=line)
        return f"Line {line:,} is not valid UTF-8 (near byte {offset:,})."
    if "not possible to automatically detect the CSV" in message or "sniff" in message.lower():
        return "The file does not look like CSV: no consistent delimiter and columns were found."
    if re.search(r"no magic bytes|not a parquet file|too small to be a parquet", message, re.I):
        return "The file is not a valid Parquet file."
    csv_line = re.search(r"CSV Error on Line: (\d+)", message)
    if csv_line:
        # "CSV Error on Line: N" / "Original Line: ..." / the reason.
        reason = next(
            (text for text in lines[1:] if text and not text.startswith("Original Line")),
            "it could not be parsed.",
        )
        columns = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", reason)
        if columns:
            expected, found = columns.groups()
            more = "more than " if int(found) > int(expected) else ""
            return f"Line {int(csv_line.group(1)):,} has {more}{found} fields, expected {expected}."
        return f"Line {int(csv_line.group(1)):,}: {_first_sentence(reason)}"
    malformed = re.search(r"Malformed JSON in file .*?, at byte \d+ in line (\d+): (.*)", message)
    if malformed:
        line, what = malformed.groups()
        line = _malformed_json_line(path, int(line))
        return f"Line {line:,} is not valid JSON: {what.strip().rstrip('.')}."
    transform = re.search(r"JSON transform error in file .*?, in line (\d+): ([^\n]*)", message)
    if transform:
        line, what = transform.groups()
        return f"Line {int(line):,}: {what.strip()}"
    return _first_sentence(lines[0] if lines else message)

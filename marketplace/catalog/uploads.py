"""Receiving a dataset file: streamed to disk in chunks (memory stays flat whatever the size),
hashed with sha256 on the way, size-limited, and sniffed from its first bytes so an empty file
or one whose content contradicts its extension is refused at once. Nothing half-written stays
behind: a refused or aborted upload removes its temporary file."""
from dataclasses import dataclass
import hashlib
import os
from pathlib import Path
import re
import tempfile

from django.conf import settings

CHUNK = 1024 * 1024
SNIFF_BYTES = 64 * 1024

TABULAR = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
# Opaque formats we can still recognise, so a lying extension is caught.
MAGIC = {
    ".zip": (b"PK\x03\x04", b"PK\x05\x06"),
    ".gz": (b"\x1f\x8b",),
    ".pdf": (b"%PDF",),
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".parquet": (b"PAR1",),
}
BINARY_MAGIC = tuple(m for magics in MAGIC.values() for m in magics)


class UploadRejected(Exception):
    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class ReceivedFile:
    path: Path
    original_name: str
    format: str
    size: int
    content_hash: str  # 0x + sha256 hex

    def discard(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# What a file name may be, as the API's schema states it: one path segment without control
# characters, and an extension of 1 to 11 ASCII letters or digits that says the format.
FILENAME = r"^[^\x00-\x1f\x7f/\\]+\.[A-Za-z0-9]{1,11}$"
UNSAFE_IN_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def check_filename(filename: str) -> str:
    """The file name to keep (raises UploadRejected): never a path, never a control character
    (a NUL would reach the file system and PostgreSQL), never longer than 255 characters."""
    if not filename:
        raise UploadRejected("missing_filename", "Say the file's name (with its extension).")
    if UNSAFE_IN_NAME.search(filename) or len(filename) > 255:
        raise UploadRejected("invalid_filename", "Give the file's name alone (at most 255 characters), without "
                             "slashes or control characters.")
    file_format(filename)
    return filename


def file_format(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix in TABULAR:
        return TABULAR[suffix]
    if not re.fullmatch(r"\.[a-z0-9]{1,11}", suffix):
        raise UploadRejected("unknown_format", f"Give the file an extension that says its format (not {filename!r}).")
    return suffix[1:]


def check_content(filename: str, head: bytes) -> None:
    """Refuse a file whose first bytes contradict its extension."""
    suffix = Path(filename).suffix.lower()
    if suffix in MAGIC:
        if not head.startswith(MAGIC[suffix]):
            raise UploadRejected(
                "content_mismatch", f"This file does not look like a {suffix} file: its first bytes say otherwise.", 415
            )
        return
    if suffix in (".csv", ".jsonl", ".ndjson"):
        if head.startswith(BINARY_MAGIC) or b"\x00" in head:
            raise UploadRejected(
                "content_mismatch", f"This file is binary, not the text a {suffix} file holds.", 415
            )
        if suffix != ".csv":
            first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
            if first != b"{":
                raise UploadRejected(
                    "content_mismatch", "A JSON Lines file holds one JSON object per line; this one does not start with '{'.", 415
                )


def receive(stream, *, filename: str, declared_size: int | None = None) -> ReceivedFile:
    """Read `stream` (anything with .read(n)) to a temporary file under UPLOAD_TMP_DIR."""
    name = check_filename(filename or "")
    fmt = file_format(name)
    limit = settings.MAX_UPLOAD_SIZE
    if declared_size is not None and declared_size > limit:
        raise UploadRejected("too_large", f"The file is {declared_size:,} bytes; the limit is {limit:,}.", 413)
    tmp_dir = Path(settings.UPLOAD_TMP_DIR)
    tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # files in it are private too
    digest = hashlib.sha256()
    size = 0
    handle = tempfile.NamedTemporaryFile(dir=tmp_dir, prefix="upload-", delete=False)
    try:
        with handle:
            head = b""
            while len(head) < SNIFF_BYTES:  # a stream may return less than asked
                chunk = stream.read(SNIFF_BYTES - len(head))
                if not chunk:
                    break
                head += chunk
            if not head:
                raise UploadRejected("empty_file", "The file is empty.")
            check_content(name, head)
            chunk = head
            while chunk:
                size += len(chunk)
                if size > limit:
                    raise UploadRejected("too_large", f"The file is larger than the limit of {limit:,} bytes.", 413)
                digest.update(chunk)
                handle.write(chunk)
                chunk = stream.read(CHUNK)
        if declared_size is not None and size != declared_size:
            raise UploadRejected("incomplete", f"The upload ended after {size:,} of {declared_size:,} bytes.")
    except BaseException:
        os.unlink(handle.name)
        raise
    return ReceivedFile(Path(handle.name), name, fmt, size, "0x" + digest.hexdigest())

"""Sending a bought file: download tokens, HTTP Range as RFC 9110 says, constant memory.

- `grant`: after the caller checked who the buyer is (session or signed request), checks that the
  chain (as indexed) says they paid for the version and issues a token for DOWNLOAD_TOKEN_SECONDS.
- `serve`: `GET /downloads/<token>` checks the token and the order again, then answers 200 with the
  whole file or 206 with one range of it (`bytes=a-b`, `bytes=a-`, `bytes=-n`); a range past the end
  is 416 with `Content-Range: bytes */size`; several ranges, a malformed header or an `If-Range`
  that is not the file's ETag get the whole file (RFC 9110 lets a server ignore Range). The ETag is
  the content hash (the sha256 listed on-chain). With DOWNLOAD_ACCEL_REDIRECT set, the web server
  in front (nginx) sends the file, and the Range with it. Every request is logged (`Download`),
  with the bytes actually sent.
- A stream checks the order again every RECHECK_SECONDS and ends early once it no longer gives
  access (refunded in full meanwhile) or its dataset was removed for legal reasons; a file sent by
  nginx cannot be cut that way.
- A dataset removed for legal reasons (`Dataset.removed_at`, catalog.removal) is refused to
  everyone, buyers included, at every step: no link (451 `removed_for_legal_reasons`), no file
  for a link given before (451).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
import hashlib
import logging
import re
import secrets
import time
from urllib.parse import quote

from django.conf import settings
from django.core.files.storage import storages
from django.db import DatabaseError, transaction
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone

from marketplace.accounts.bans import BUY, REFUSALS, active_ban
from marketplace.catalog.models import Dataset, DatasetVersion

from .models import Download, DownloadGrant
from .selectors import paid_orders

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
#: How often a running stream asks whether its order still gives access (one indexed query): a
#: buyer refunded in full while downloading loses the rest of the file within this time of the
#: indexer reading the refund. Checked by the clock, not per chunk, so a fast download pays nothing.
RECHECK_SECONDS = 2.0
_RANGE = re.compile(r"\s*bytes\s*=\s*([0-9]{0,18})\s*-\s*([0-9]{0,18})\s*")


class DeliveryError(Exception):
    """A refusal with a stable code, a message for people and an HTTP status."""

    def __init__(self, code, message, status=403):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


REMOVED = ("This dataset was removed for legal reasons: its files are not available to anyone, buyers "
           "included. A buyer whose order is still in escrow can open a dispute before its release.")


def refuse_removed(version: DatasetVersion) -> None:
    if version.dataset.removed_at is not None:
        raise DeliveryError("removed_for_legal_reasons", REMOVED, status=451)


def paid_listing(buyer: str, version: DatasetVersion):
    """The (chain id, listing id) of the buyer's order of `version` that gives access, or None."""
    for chain_id, listing_id in version.listings.values_list("chain_id", "listing_id"):
        if paid_orders(buyer, chain_id, [listing_id]).exists():
            return chain_id, listing_id
    return None


@dataclass
class Grant:
    token: str
    grant: DownloadGrant


def entitled(buyer: str, version: DatasetVersion) -> tuple[int, int]:
    """The (chain id, listing id) of `buyer`'s (checksummed) order of `version` that gives access
    now: paid, not refunded in full, the dataset not removed, and, for a wallet banned from
    buying, bought before the ban. Raises DeliveryError (451 `removed_for_legal_reasons`, 403
    `not_bought`, 403 `banned`). Download links and the paid URL's sign-in-with-x ask it."""
    refuse_removed(version)
    paid = paid_listing(buyer, version)
    if paid is None:
        raise DeliveryError("not_bought", f"{buyer} holds no paid order of version {version.number} of this "
                            "dataset (a full refund ends access). Buy it first; an order shows here once its block "
                            "is indexed.")
    ban = active_ban(buyer, BUY)
    if ban is not None and not paid_orders(buyer, paid[0], [paid[1]]).filter(
            block_number__lte=ban.before_block if ban.before_block is not None else -1).exists():
        # Bought after the ban: no file (the order still settles: the buyer may dispute it).
        raise DeliveryError("banned", REFUSALS[BUY])
    return paid


def grant(buyer: str, version: DatasetVersion, *, via: str) -> Grant:
    """A download token for `buyer` (checksummed), who must hold an order of the version that
    gives access (`entitled`). Raises DeliveryError."""
    paid = entitled(buyer, version)
    token = secrets.token_urlsafe(32)
    row = DownloadGrant.objects.create(
        token_hash=hashlib.sha256(token.encode()).hexdigest(), buyer=buyer, version=version, chain_id=paid[0],
        listing_id=paid[1], via=via, expires_at=timezone.now() + timedelta(seconds=settings.DOWNLOAD_TOKEN_SECONDS))
    return Grant(token, row)


def parse_range(header: str | None, size: int, *, if_range: str | None = None, etag: str = ""):
    """What to send of a file of `size` bytes: None for all of it, (first, last) for one range
    (inclusive), or "unsatisfiable" (416)."""
    if not header or (if_range is not None and if_range.strip() != etag):
        return None
    if "," in header:
        return None  # several ranges: the whole file
    match = _RANGE.fullmatch(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last n bytes
        suffix = int(last)
        if suffix == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size - 1
    first = int(first)
    if last:
        if int(last) < first:
            return None  # bytes=5-2 is not a range: ignored
        last = min(int(last), size - 1)
    else:
        last = size - 1
    if first >= size:
        return "unsatisfiable"
    return first, last


def serve(request, token: str):
    """The response for GET /downloads/<token>. Raises DeliveryError."""
    now = timezone.now()
    grant_row = (DownloadGrant.objects.select_related("version__dataset").filter(
        token_hash=hashlib.sha256(token.encode()).hexdigest()).first())
    if grant_row is None or grant_row.expires_at <= now:
        raise DeliveryError("token_expired", "This download link has expired or never existed: ask for a new one "
                            "(it is valid for 10 minutes; a download in progress may resume with a new one).", status=410)
    refuse_removed(grant_row.version)
    access = paid_orders(grant_row.buyer, grant_row.chain_id, [grant_row.listing_id])
    if not access.exists():
        raise DeliveryError("not_bought", "The order behind this link no longer gives access (refunded in full).")
    return send_file(request, grant_row.version, buyer=grant_row.buyer, grant=grant_row, allowed=access.exists)


def send_file(request, version: DatasetVersion, *, buyer: str, allowed, grant: DownloadGrant | None = None):
    """The response that sends `version`'s file to `buyer`, whose right to it the caller checked:
    200, 206 or 416 as the request's Range asks (parse_range), logged as a `Download`. A stream
    asks `allowed()` again every RECHECK_SECONDS and ends when it answers False or the dataset was
    removed. Shared by download links (`serve`) and paid x402 downloads."""
    size = version.size
    etag = f'"{version.content_hash.removeprefix("0x")}"'
    wanted = parse_range(request.headers.get("Range"), size, if_range=request.headers.get("If-Range"), etag=etag)
    accel = bool(settings.DOWNLOAD_ACCEL_REDIRECT)
    status = 416 if wanted == "unsatisfiable" else 206 if wanted and not accel else 200
    log = Download.objects.create(grant=grant, buyer=buyer, version=version,
                                  range=(request.headers.get("Range") or "")[:200], status=status,
                                  ip=request.META.get("REMOTE_ADDR") or None,
                                  finished_at=timezone.now() if status == 416 or accel else None)
    if status == 416:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    first, last = wanted or (0, size - 1)
    length = last - first + 1
    filename = f"{version.dataset.slug}-v{version.number}.{version.format}"
    if accel:
        response = HttpResponse(status=200)  # the server in front sends the file, and the range
        # Percent-encoded (nginx decodes it): a stored name may hold spaces, "?", "#", "%" or
        # letters outside ASCII, which a header cannot carry as they are.
        internal = settings.DOWNLOAD_ACCEL_REDIRECT.rstrip("/") + "/" + quote(version.file)
        response["X-Accel-Redirect"] = internal
    else:
        response = StreamingHttpResponse(_stream(version.file, first, length, log.pk, allowed,
                                                 version.dataset_id),
                                         status=status)
        response["Content-Length"] = str(length)
        if wanted:
            response["Content-Range"] = f"bytes {first}-{last}/{size}"
        response["Accept-Ranges"] = "bytes"  # nginx says it itself for the files it sends
    response["Content-Type"] = "application/octet-stream"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["ETag"] = etag
    response["Cache-Control"] = "private, no-store"
    response["X-Content-SHA256"] = version.content_hash.removeprefix("0x")
    return response


def _stream(name: str, first: int, length: int, log_id: int, allowed, dataset_id: int):
    """The file's bytes [first, first + length), a chunk at a time, while `allowed()` (e.g. whether
    the buyer's orders still give access, asked again every RECHECK_SECONDS) is true: a buyer
    refunded in full meanwhile gets a short body (the client sees fewer bytes than Content-Length).
    The log row learns how many bytes were sent when the stream ends, is cut, or the client goes
    away (the server closes the generator)."""
    sent = 0
    finished = False
    try:
        with storages["private"].open(name, "rb") as f:
            f.seek(first)
            checked = time.monotonic()
            while sent < length:
                if time.monotonic() - checked >= RECHECK_SECONDS:
                    if not allowed():
                        logger.info("download %d stopped after %d bytes: its order no longer gives "
                                    "access", log_id, sent)
                        break
                    if Dataset.objects.filter(pk=dataset_id, removed_at__isnull=False).exists():
                        logger.info("download %d stopped after %d bytes: its dataset was removed",
                                    log_id, sent)
                        break
                    checked = time.monotonic()
                chunk = f.read(min(CHUNK, length - sent))
                if not chunk:
                    break
                sent += len(chunk)
                yield chunk
        finished = sent == length
    except (DatabaseError, OSError) as exc:
        # Ended here, not raised: the server would log the request line, which holds the token.
        # The client sees a short body and resumes with Range.
        logger.warning("download %d stopped after %d bytes: %s", log_id, sent, type(exc).__name__)
    finally:
        try:
            with transaction.atomic():
                Download.objects.filter(pk=log_id).update(
                    bytes_served=sent, finished_at=timezone.now() if finished else None)
        except DatabaseError:
            logger.warning("download %d: its log row could not be updated (%d bytes sent)", log_id, sent)

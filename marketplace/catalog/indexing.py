"""Keeping this host's search index true to PostgreSQL.

Triggers log every change to datasets, versions and listings in SearchChange with the writing
transaction's id. The one writer per host (`manage.py search_sync`) reads the log up to
pg_snapshot_xmin(pg_current_snapshot()): every transaction below that id has finished, so a
transaction that commits late is picked up by a later pass instead of being skipped. The
watermark lives beside the index; a rebuild takes it before reading the datasets.
"""
from contextlib import nullcontext
from datetime import timedelta
import json
import logging
import os
from pathlib import Path
import threading

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Exists, F, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from marketplace import prepared

from .models import Dataset, DatasetVersion, Listing, SearchChange
from .search import IndexSchemaMismatch, SearchDoc, open_current, rebuild

logger = logging.getLogger(__name__)
TOKEN_DECIMALS = 6  # the payment token's decimals (USDC-like); prices are indexed in whole units
KEEP_CHANGES = timedelta(days=2)


def index_dir() -> Path:
    return Path(settings.SEARCH_INDEX_DIR)


def current_xmin() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        return cursor.fetchone()[0]


def public_versions():
    """Versions the public may see: approved, with an approved listing (catalog.revisions)."""
    return DatasetVersion.objects.filter(review=DatasetVersion.Review.APPROVED).filter(
        Exists(Listing.objects.filter(version=OuterRef("pk"), approved=True)))


def with_current_price(datasets):
    """Annotate each dataset with its latest public version's format, token and price (the
    on-chain listing's price), without loading the versions."""
    latest = public_versions().filter(dataset=OuterRef("pk")).order_by("-number")
    listing_price = Listing.objects.filter(version=OuterRef("version_id")).order_by("-block_number").values("price")[:1]
    return datasets.annotate(
        version_id=Subquery(latest.values("pk")[:1]),
        version_format=Subquery(latest.values("format")[:1]),
        version_token=Subquery(latest.values("token")[:1]),
        version_price=Subquery(latest.values("price")[:1]),
    ).annotate(price=Coalesce(Subquery(listing_price), F("version_price")))


# What a search results page (and the agents' discovery list) shows of each hit: the same price
# rule as with_current_price, in plain SQL because it runs on every search (the ORM's four
# correlated subqueries and their compilation cost about 5 ms a page; this costs about 1 ms). `b`
# is the version's listing on this server's chain when it is on sale (active and approved, the
# dataset not removed): what an agent pays through the paid URL.
_HITS_SQL = """
SELECT d.id, d.slug, d.title, d.summary, d.tags, d.category, d.license, d.status, d.created_at,
       u.address, u.username, u.display_name, u.avatar_digest, COALESCE(l.price, v.price), v.token, v.format,
       v.row_count, v.number, v.size, v.content_hash, b.listing_id, b.price, b.token,
       GREATEST(d.updated_at, v.created_at, b.created_at, b.updated_at)
FROM catalog_dataset d
JOIN accounts_user u ON u.id = d.owner_id
LEFT JOIN LATERAL (
    SELECT id, price, token, format, row_count, number, size, content_hash, created_at FROM catalog_datasetversion cv
    WHERE dataset_id = d.id AND review = 'approved'
      AND EXISTS (SELECT 1 FROM catalog_listing al WHERE al.version_id = cv.id AND al.approved)
    ORDER BY number DESC LIMIT 1) v ON true
LEFT JOIN LATERAL (
    SELECT price FROM catalog_listing WHERE version_id = v.id ORDER BY block_number DESC LIMIT 1) l ON true
LEFT JOIN LATERAL (
    SELECT bl.listing_id, bl.price, bl.token, bl.created_at,
           (SELECT max(created_at) FROM catalog_listingupdate WHERE listing_id = bl.id) AS updated_at
    FROM catalog_listing bl
    WHERE bl.version_id = v.id AND bl.chain_id = %s AND bl.active AND bl.approved AND d.removed_at IS NULL) b ON true
WHERE d.id = ANY(%s) AND d.status = %s
"""
_HIT_FIELDS = ("id", "slug", "title", "summary", "tags", "category", "license", "status", "created_at",
               "owner_address", "owner_username", "owner_display_name", "owner_avatar_digest", "price", "token",
               "format", "row_count", "number", "size", "content_hash", "listing_id", "listing_price",
               "listing_token", "updated_at")


def listed_rows(ids) -> dict[int, dict]:
    """The listed datasets among `ids` as plain dicts keyed by id, in one query: the fields a
    result card shows (publisher's display name and avatar digest included), with the latest
    public version's price (its on-chain listing's), token, format, row count, number, size and
    content hash (a version waiting for review is not public), and, when that version is on sale
    on this chain (settings.CHAIN_ID), its `listing_id`, `listing_price` and `listing_token` (else
    None); `updated_at` is the latest change to the dataset, the version or its listing's terms."""
    if not ids:
        return {}
    # A server-side prepared statement: Django's cursors bind parameters on the client, so
    # PostgreSQL would parse and plan this query at every search (0.3-0.5 ms of its ~1 ms).
    with prepared.cursor() as cursor:
        cursor.execute(_HITS_SQL, [settings.CHAIN_ID, list(ids), Dataset.Status.LISTED.value], prepare=True)
        return {row[0]: dict(zip(_HIT_FIELDS, row)) for row in cursor.fetchall()}


def indexable_rows(ids=None):
    """The listed datasets as plain rows for the index, in one query: no model instances, so a
    rebuild of a million datasets streams quickly. Price is the latest public version's on-chain
    listing price."""
    rows = (
        with_current_price(Dataset.objects.filter(status=Dataset.Status.LISTED))
        .values_list("pk", "title", "summary", "description", "tags", "category", "license",
                     "version_format", "owner__address", "owner__username", "price", "created_at")
    )
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    return rows


def search_doc(row) -> SearchDoc:
    pk, title, summary, description, tags, category, license, fmt, address, username, price, created_at = row
    return SearchDoc(
        id=pk, title=title, summary=summary, description=description, tags=list(tags), category=category,
        license=license, format=fmt or "", publisher=address or username,
        price=int(price or 0) / 10**TOKEN_DECIMALS, created_at=created_at,
    )


class SearchSync:
    """The writer of this host's index."""

    def __init__(self, base_dir: Path | None = None):
        self.base_dir = Path(base_dir or index_dir())
        self.state_file = self.base_dir / "sync-state.json"
        self.index = None
        self._build = None

    def watermark(self) -> int | None:
        try:
            return json.loads(self.state_file.read_text())["watermark"]
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def _save_watermark(self, value: int) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"watermark": value}))
        tmp.replace(self.state_file)

    def rebuild(self) -> int:
        """Build a fresh index from PostgreSQL and swap it in; returns the documents indexed."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        xmin = current_xmin()  # before reading: anything later shows up in the log from here
        count = 0

        def docs():
            nonlocal count
            for row in indexable_rows().iterator(chunk_size=5000):
                count += 1
                yield search_doc(row)

        rebuild(self.base_dir, docs())
        self._save_watermark(xmin)
        self.index = open_current(self.base_dir)
        self._build = os.readlink(self.base_dir / "current")
        logger.info("search index rebuilt with %d datasets", count)
        return count

    def sync_once(self) -> int:
        """Apply the logged changes of every finished transaction; returns datasets touched."""
        watermark = self.watermark()
        current = self.base_dir / "current"
        if watermark is None or not current.exists():
            return self.rebuild()
        build = os.readlink(current)
        if self.index is None or build != self._build:  # first pass, or another process rebuilt
            try:
                self.index = open_current(self.base_dir)
            except IndexSchemaMismatch as exc:  # built by an older release
                logger.info("%s", exc)
                return self.rebuild()
            self._build = build
        xmin = current_xmin()
        ids = set(
            SearchChange.objects.filter(xid__gte=watermark, xid__lt=xmin).values_list("dataset_id", flat=True)
        )
        if ids:
            visible = {row[0]: row for row in indexable_rows(ids)}
            with self.index.writer() as writer:
                for dataset_id in ids:
                    if dataset_id in visible:
                        writer.upsert(search_doc(visible[dataset_id]))
                    else:
                        writer.delete(dataset_id)
        if xmin != watermark:
            self._save_watermark(xmin)
        return len(ids)

    def prune(self) -> int:
        deleted, _ = SearchChange.objects.filter(created_at__lt=timezone.now() - KEEP_CHANGES).delete()
        FacetStore().prune()
        return deleted


class FacetStore:
    """Facet counts shared by every process of the host (CatalogIndex's facet_store), in an
    UNLOGGED PostgreSQL table: each process otherwise counted the same facets again (about 10 ms
    for a broad search at 1M datasets). Keys are digests of the index build and the query."""

    def get(self, key: str):
        row = self._run("SELECT facets, EXTRACT(EPOCH FROM expires_at - now()) FROM catalog_searchfacets "
                        "WHERE key = %s AND expires_at > now()", [key], fetch=True)
        if row is None:
            return None
        facets = json.loads(row[0]) if isinstance(row[0], str) else row[0]
        return facets, float(row[1])

    def put(self, key: str, facets: dict, ttl: float) -> None:
        self._run("INSERT INTO catalog_searchfacets (key, facets, expires_at) "
                  "VALUES (%s, %s::jsonb, now() + make_interval(secs => %s)) "
                  "ON CONFLICT (key) DO UPDATE SET facets = EXCLUDED.facets, expires_at = EXCLUDED.expires_at",
                  [key, json.dumps(facets), ttl])

    @staticmethod
    def _run(sql, params, fetch=False):
        """A cache never fails a search: an error is logged and counts as a miss (in a savepoint
        when the request is inside a transaction, which the error would otherwise abort)."""
        try:
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
                    return cursor.fetchone() if fetch else None
        except DatabaseError:
            logger.warning("shared facet cache unavailable", exc_info=True)
            return None

    def prune(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM catalog_searchfacets WHERE expires_at < now()")
            return cursor.rowcount


_readers: dict[str, object] = {}
_reader_lock = threading.Lock()


def reader():
    """This process's read-only view of the host's index (None until the first build). It
    follows the `current` link when a rebuild swaps in a new build."""
    base = str(index_dir())
    with _reader_lock:
        if base not in _readers:
            if not (index_dir() / "current").exists():
                return None
            try:
                _readers[base] = open_current(index_dir(), facet_store=FacetStore())
            except IndexSchemaMismatch:  # an older release's build: search_sync is rebuilding it
                return None
        return _readers[base]

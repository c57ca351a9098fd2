"""The catalog's search engine: a Tantivy index derived from PostgreSQL.

PostgreSQL is the source of truth; this index only holds what search needs (text for BM25, raw
values for filters and facets, fast fields for sorts) and returns dataset ids in result order.
The caller loads the rows from PostgreSQL. The index can be rebuilt from PostgreSQL at any time.

Layout on disk (one per host)::

    <base_dir>/current -> index-20250101T120000123456     (symlink, swapped with os.replace)
    <base_dir>/index-20250101T120000123456/                (one Tantivy index)

Processes:

* one writer per host (the sync command, or :func:`rebuild`) holds ``CatalogIndex.writer()``;
  Tantivy's directory lock refuses a second writer on the same index directory;
* web processes call :func:`open_current` once and keep the :class:`CatalogIndex`. The writer's
  commits show up on their own within about a second (Tantivy's on-commit reload policy), and a
  rebuild's swap of ``current`` is followed by the next search a second later at most;
  :meth:`CatalogIndex.reload` does both at once.

Facet counts are cached per (text, filters) for a few seconds, shared by the host's processes
through a store (see :class:`CatalogIndex`). Browsing the whole catalog (no words, no filters)
reads its pages from the order of each sort, computed at a commit and kept for up to
``browse_max_age`` seconds (see :meth:`CatalogIndex._browse_order`).

Any query string is accepted: it goes through Tantivy's lenient parser (so ``title:x``, quotes,
``AND``/``OR``/``-``/``+``, parentheses, ranges work as in Tantivy's query language and anything
malformed is dropped rather than raised); if Tantivy still refuses the query, the words of the
query are searched instead, and failing that the result is empty. Queries are truncated to
:data:`MAX_QUERY_CHARS`.

Pagination is capped: ``offset`` at most :data:`MAX_OFFSET` (10,000) and ``limit`` at most
:data:`MAX_LIMIT`; beyond that :meth:`CatalogIndex.search` raises ``ValueError`` (the API layer
rejects such requests before they get here). Tantivy keeps a heap of ``offset + limit`` hits, so
pages stay fast up to the cap.

This module does not import Django.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tantivy

log = logging.getLogger(__name__)

__all__ = [
    "MAX_LIMIT",
    "MAX_OFFSET",
    "MAX_QUERY_CHARS",
    "SORTS",
    "CatalogIndex",
    "CatalogWriter",
    "IndexSchemaMismatch",
    "SearchDoc",
    "SearchQuery",
    "SearchResult",
    "build_index",
    "open_current",
    "rebuild",
]

#: Deepest offset :meth:`CatalogIndex.search` accepts (Tantivy collects ``offset + limit`` hits).
MAX_OFFSET = 10_000
#: Largest page :meth:`CatalogIndex.search` accepts.
MAX_LIMIT = 100
#: Longer query strings are cut to this many characters before parsing.
MAX_QUERY_CHARS = 512
#: Values returned per facet.
FACET_SIZE = 20
#: Facets computed by :meth:`CatalogIndex.search`, keyed by name, from these fast fields.
FACET_FIELDS = {"category": "category", "tags": "tag", "license": "license", "format": "format"}
#: Bump when the schema changes: an index built with another version is refused on open
#: (:class:`IndexSchemaMismatch`) and must be rebuilt.
SCHEMA_VERSION = 2

Sort = Literal["relevance", "newest", "price_asc", "price_desc", "most_bought"]
SORTS: tuple[str, ...] = ("relevance", "newest", "price_asc", "price_desc", "most_bought")

# Text fields searched by BM25, with their boosts.
TEXT_FIELDS = ["title", "summary", "description", "tags"]
FIELD_BOOSTS = {"title": 3.0, "tags": 2.0, "summary": 1.5, "description": 1.0}
# All the words of a query must appear (each in any text field); "OR" in the query still works.
CONJUNCTION_BY_DEFAULT = True
TEXT_TOKENIZER = "en_stem"  # lowercase, drop tokens over 40 bytes, English stemming
MATCH_FIELD = "words"
_PLAIN_WORDS = re.compile(r"[^\W_]+(?:\s+[^\W_]+){2,}")  # three or more words, nothing else
_OPERATORS = {"AND", "OR", "NOT", "IN", "TO"}

_SCHEMA_FILE = "catalog-schema.json"
_CURRENT = "current"
_BUILD_PREFIX = "index-"
_LOCK_FILE = ".rebuild.lock"
# most_bought sorts on purchases << 40 | created_at seconds: ties broken by newest first.
_SECONDS_BITS = 40
_MAX_PURCHASES = (1 << (64 - _SECONDS_BITS)) - 1
_WORDS = re.compile(r"\w+")


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class SearchDoc:
    """One listed dataset as the index sees it (one visible dataset = one document)."""

    id: int
    title: str
    summary: str
    description: str  # plain text (Markdown already stripped)
    tags: list[str]
    category: str
    license: str
    format: str
    publisher: str  # checksummed address; indexed and filtered case-insensitively
    price: float  # whole token units, e.g. 25.5 for 25.5 USDC
    created_at: dt.datetime  # tz-aware (a naive value is taken as UTC)
    purchases: int = 0


@dataclass
class SearchQuery:
    text: str = ""
    category: str | None = None
    tags: list[str] | tuple[str, ...] = ()  # every tag must be present (AND)
    license: str | None = None
    format: str | None = None
    publisher: str | None = None
    price_min: float | None = None  # inclusive
    price_max: float | None = None  # inclusive
    sort: Sort = "relevance"
    offset: int = 0
    limit: int = 20
    facets: bool = True


@dataclass
class SearchResult:
    ids: list[int]
    total: int
    # name -> [(value, count)], counts over all matches of text + filters, count desc, top 20
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


class IndexSchemaMismatch(Exception):
    """The directory holds an index built with another schema version: rebuild it."""


# ---------------------------------------------------------------------------------------------
# Schema and documents


def _build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    # The dataset id: indexed for delete-by-term, fast to read ids back without the doc store.
    sb.add_unsigned_field("id", indexed=True, fast=True)
    for name in TEXT_FIELDS:
        sb.add_text_field(name, tokenizer_name=TEXT_TOKENIZER, index_option="position")
    # Every text field's words again, in one field without frequencies or positions: several
    # words match by intersecting one posting list each (see _text_query).
    sb.add_text_field(MATCH_FIELD, tokenizer_name=TEXT_TOKENIZER, index_option="basic")
    # Raw (untokenized) values for exact filters and terms aggregations. `tag` is multi-valued.
    for name in ("category", "tag", "license", "format", "publisher"):
        sb.add_text_field(name, tokenizer_name="raw", fast=True, index_option="basic")
    sb.add_float_field("price", indexed=True, fast=True)
    sb.add_date_field("created_at", indexed=True, fast=True)
    sb.add_unsigned_field("purchases", fast=True)
    sb.add_unsigned_field("popularity", fast=True)
    return sb.build()


SCHEMA = _build_schema()


def _clean(value: str) -> str:
    """A str Rust accepts: lone surrogates (possible from JSON escapes) become U+FFFD."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")


def _norm_tag(tag: str) -> str:
    return _clean(str(tag)).strip().lower()


def _norm_publisher(publisher: str) -> str:
    return _clean(str(publisher)).strip().lower()


def _norm_value(value: str) -> str:
    return _clean(str(value)).strip()


_UTC = dt.timezone.utc


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is _UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _to_document(doc: SearchDoc) -> tantivy.Document:
    if doc.id < 0:
        raise ValueError(f"dataset id must be >= 0, got {doc.id}")
    price = float(doc.price)
    if not math.isfinite(price):
        raise ValueError(f"price of dataset {doc.id} is not finite: {doc.price!r}")
    created = _utc(doc.created_at)
    d = tantivy.Document()
    add_text = d.add_text
    d.add_unsigned("id", int(doc.id))
    title, summary = _clean(doc.title or ""), _clean(doc.summary or "")
    add_text("title", title)
    add_text("summary", summary)
    add_text(MATCH_FIELD, title)
    add_text(MATCH_FIELD, summary)
    if doc.description:
        description = _clean(doc.description)
        add_text("description", description)
        add_text(MATCH_FIELD, description)
    seen = set()
    for tag in doc.tags or ():
        t = _norm_tag(tag)
        if t and t not in seen:
            seen.add(t)
            add_text("tags", t)
            add_text("tag", t)
            add_text(MATCH_FIELD, t)
    if value := _norm_value(doc.category or ""):
        add_text("category", value)
    if value := _norm_value(doc.license or ""):
        add_text("license", value)
    if value := _norm_value(doc.format or ""):
        add_text("format", value)
    if value := _norm_publisher(doc.publisher or ""):
        add_text("publisher", value)
    d.add_float("price", price)
    d.add_date("created_at", created)
    purchases = max(0, int(doc.purchases or 0))
    d.add_unsigned("purchases", purchases)
    seconds = max(0, int(created.timestamp())) & ((1 << _SECONDS_BITS) - 1)
    d.add_unsigned("popularity", (min(purchases, _MAX_PURCHASES) << _SECONDS_BITS) | seconds)
    return d


# ---------------------------------------------------------------------------------------------
# Writer


def _id_query(id: int) -> tantivy.Query:
    # Not delete_documents_by_term("id", n): a Python int becomes a signed (i64) term there and
    # never matches the unsigned field. term_query converts the value with the schema.
    return tantivy.Query.term_query(SCHEMA, "id", int(id), index_option="basic")


class CatalogWriter:
    """The one writer of an index. Use as a context manager::

        with index.writer() as w:
            w.upsert(doc)
            w.delete(42)
            w.commit()          # optional: leaving the block commits what is pending

    Leaving the block normally commits; leaving it with an exception rolls back what was not
    committed. Either way the writer's lock is released. Changes are visible to searches after
    ``commit()`` (at once in this process's ``CatalogIndex``, within about a second or on
    ``reload()`` elsewhere).
    """

    def __init__(self, catalog: CatalogIndex, writer: tantivy.IndexWriter):
        self._catalog = catalog
        self._writer: tantivy.IndexWriter | None = writer
        self._pending = 0

    def _w(self) -> tantivy.IndexWriter:
        if self._writer is None:
            raise RuntimeError("this writer is closed")
        return self._writer

    def upsert(self, doc: SearchDoc) -> None:
        """Add or replace the document of ``doc.id`` (never two documents for one id)."""
        tdoc = _to_document(doc)  # validate before touching the index
        w = self._w()
        w.delete_documents_by_query(_id_query(doc.id))
        w.add_document(tdoc)
        self._pending += 1

    def upsert_many(self, docs: Iterable[SearchDoc]) -> int:
        n = 0
        for doc in docs:
            self.upsert(doc)
            n += 1
        return n

    def delete(self, id: int) -> None:
        """Remove the document of dataset ``id`` (no error if there is none)."""
        self._w().delete_documents_by_query(_id_query(id))
        self._pending += 1

    def delete_all(self) -> None:
        self._w().delete_all_documents()
        self._pending += 1

    def commit(self) -> int:
        """Persist and publish pending changes; returns Tantivy's commit opstamp."""
        opstamp = self._w().commit()
        self._pending = 0
        self._catalog._reload_index()
        return opstamp

    def rollback(self) -> None:
        self._w().rollback()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Operations since the last commit or rollback."""
        return self._pending

    def close(self) -> None:
        """Wait for background merges and release the index lock (uncommitted work is lost)."""
        w, self._writer = self._writer, None
        if w is not None:
            w.wait_merging_threads()

    def __enter__(self) -> CatalogWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._writer is not None:
                if exc_type is None:
                    if self._pending:
                        self.commit()
                else:
                    self.rollback()
        finally:
            self.close()


# ---------------------------------------------------------------------------------------------
# Index


class CatalogIndex:
    """One catalog index directory, opened for searching (and writing through ``writer()``).

    ``path`` may be an index directory or a ``current`` symlink (see :func:`open_current`). With
    the symlink, a swap to a rebuilt directory is followed by :meth:`reload` and, on their own,
    by searches at most ``follow_interval`` seconds after it (``None``: only by ``reload()``).

    Facet counts are cached per (text, filters) for ``facet_ttl`` seconds (0 disables), as the
    design asks, in this process and, given a ``facet_store`` (``get(key)`` returning the facets
    and the seconds they have left, or None; ``put(key, facets, ttl)``), for every process of
    the host: counting facets touches every match (about 120 ms for the whole 1M catalog),
    and the catalog's landing page asks for the same counts again and again. Broad searches (at
    least ``broad_matches`` matches, e.g. a common word: ~10 ms of counting at 1M datasets) keep
    theirs for ``broad_facet_ttl`` seconds: one change moves such counts by one in ten thousand,
    while recounting them set the tail latency of the whole search API. A reader's facets may
    therefore lag the writer by up to those times; ids and totals never do. This
    instance's own writer commits and directory swaps empty the cache.

    Safe for concurrent :meth:`search` calls from several threads: each call takes its own
    Tantivy searcher (a snapshot), and reopening after a swap happens under a lock. Note that
    tantivy-py holds the GIL while it searches, so threads of one process do not search in
    parallel: use several processes (gunicorn workers) for more than one core.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        facet_ttl: float = 5.0,
        broad_facet_ttl: float = 60.0,
        broad_matches: int = 10_000,
        facet_cache_size: int = 1024,
        follow_interval: float | None = 1.0,
        browse_max_age: float = 5.0,
        facet_store=None,
    ):
        path = Path(path)
        self._link: Path | None = path if path.is_symlink() else None
        self._lock = threading.Lock()
        target = path.resolve(strict=True)
        self.path: Path = target
        self._index: tantivy.Index = self._open(target)
        self._facet_cache = _TTLCache(facet_ttl, facet_cache_size)
        self._broad_facet_ttl = broad_facet_ttl if facet_ttl > 0 else 0
        self._facet_store = facet_store if facet_ttl > 0 else None
        self._broad_matches = broad_matches
        self._follow_interval = follow_interval
        self._followed_at = time.monotonic()
        # The commit this instance has reloaded to (see _sync_commit), and the whole catalog's
        # first MAX_OFFSET + MAX_LIMIT ids in each sort's order: each computed at a commit, and
        # kept across later commits for up to browse_max_age seconds.
        self._commit: tuple | None = None
        self._browse: dict[tuple, tuple[tuple, float, list[int]]] = {}
        self._browse_max_age = browse_max_age

    @staticmethod
    def _open(path: Path) -> tantivy.Index:
        meta = path / _SCHEMA_FILE
        try:
            version = json.loads(meta.read_text())["schema_version"]
        except FileNotFoundError:
            raise IndexSchemaMismatch(f"{path} has no {_SCHEMA_FILE}: not a catalog index")
        if version != SCHEMA_VERSION:
            raise IndexSchemaMismatch(
                f"{path} was built with schema version {version}, this code uses "
                f"{SCHEMA_VERSION}: rebuild the index"
            )
        return tantivy.Index.open(str(path))

    @classmethod
    def create(cls, path: Path | str, **kwargs) -> CatalogIndex:
        """Create a new empty index in ``path`` (created if missing; must not hold an index)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if tantivy.Index.exists(str(path)):
            raise FileExistsError(f"{path} already holds an index")
        tantivy.Index(SCHEMA, path=str(path), reuse=False)
        (path / _SCHEMA_FILE).write_text(json.dumps({"schema_version": SCHEMA_VERSION}))
        return cls(path, **kwargs)

    # -- writing --------------------------------------------------------------------------

    def writer(self, heap_size: int = 64_000_000, num_threads: int = 1) -> CatalogWriter:
        """The writer of this index (one per index directory; a second one raises ValueError).

        The defaults suit the long-running sync writer (small batches); :func:`build_index`
        uses a bigger heap and all cores.
        """
        return CatalogWriter(self, self._index.writer(heap_size=heap_size, num_threads=num_threads))

    # -- reading --------------------------------------------------------------------------

    def _reload_index(self) -> None:
        """After this instance's own commit: visible at once, facets recounted."""
        self._index.reload()
        self._facet_cache.clear()
        self._browse = {}

    def _sync_commit(self) -> None:
        """Make sure searches see at least the commit now on disk. Tantivy replaces meta.json at
        every commit (and merge), so its identity names the commit; a changed one reloads the
        reader at once rather than within Tantivy's own reload delay."""
        try:
            stat = os.stat(self.path / "meta.json")
        except FileNotFoundError:
            return
        commit = (self.path, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if commit != self._commit:
            with self._lock:
                if commit != self._commit:
                    self._index.reload()
                    self._commit = commit

    def _follow_link(self) -> bool:
        """Switch to the directory ``current`` points at now, if it moved. True if it did."""
        self._followed_at = time.monotonic()
        if self._link is None:
            return False
        target = self._link.resolve(strict=True)
        if target == self.path:
            return False
        with self._lock:
            if target != self.path:
                index = self._open(target)
                self._index, self.path = index, target
                self._facet_cache.clear()
                self._browse = {}
        return True

    def reload(self) -> None:
        """Pick up the writer's latest commit and, if opened through a ``current`` symlink that
        now points elsewhere (a rebuild), switch to the new directory. Commits also show up
        without it, within about a second (Tantivy's on-commit reload policy)."""
        if not self._follow_link():
            self._index.reload()

    def _store_key(self, facet_key: tuple) -> str:
        return hashlib.sha256(repr((self.path.name, facet_key)).encode()).hexdigest()

    def _cached_facets(self, facet_key: tuple):
        facets = self._facet_cache.get(facet_key)
        if facets is None and self._facet_store is not None:
            shared = self._facet_store.get(self._store_key(facet_key))
            if shared is not None:
                facets, seconds_left = shared
                facets = {name: [tuple(pair) for pair in pairs] for name, pairs in facets.items()}
                self._facet_cache.put(facet_key, facets, ttl=seconds_left)
        return facets

    def _keep_facets(self, facet_key: tuple, facets: dict, matches: int) -> None:
        ttl = self._broad_facet_ttl if matches >= self._broad_matches else self._facet_cache.ttl
        self._facet_cache.put(facet_key, facets, ttl=ttl)
        if self._facet_store is not None and ttl > 0:
            self._facet_store.put(self._store_key(facet_key), facets, ttl)

    def _browse_order(self, searcher, commit, order_by, order) -> list[int]:
        """The whole catalog's first MAX_OFFSET + MAX_LIMIT ids in a sort's order. Scanning every
        document costs about 30 ms at 1M datasets, the same for every page, so each page is a
        slice of one scan; on a live catalog (a commit a second) every process would rescan every
        sort at every commit, so an order is kept across commits for up to browse_max_age
        seconds. Browsing may therefore show an order up to that old (rows come from
        PostgreSQL: a dataset delisted meanwhile is left out, an edit shows at once); totals,
        facets and searches with words or filters follow each commit."""
        key = (order_by, order)
        kept = self._browse.get(key)
        now = time.monotonic()
        if kept is not None and (kept[0] == commit or now - kept[1] < self._browse_max_age):
            return kept[2]
        res = searcher.search(tantivy.Query.all_query(), limit=MAX_OFFSET + MAX_LIMIT,
                              order_by_field=order_by, order=order, count=False)
        ids = [int(i) for i in searcher.fast_field_values("id", [addr for _, addr in res.hits])]
        self._browse[key] = (commit, now, ids)
        return ids

    def doc_count(self) -> int:
        return self._index.searcher().num_docs

    def search(self, q: SearchQuery) -> SearchResult:
        """Run ``q``. Raises ValueError only for a bad sort, offset or limit; any text is fine."""
        if q.sort not in SORTS:
            raise ValueError(f"unknown sort {q.sort!r}; expected one of {', '.join(SORTS)}")
        offset, limit = int(q.offset), int(q.limit)
        if not 0 <= offset <= MAX_OFFSET:
            raise ValueError(f"offset must be between 0 and {MAX_OFFSET}, got {offset}")
        if not 0 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 0 and {MAX_LIMIT}, got {limit}")
        if (
            self._link is not None
            and self._follow_interval is not None
            and time.monotonic() - self._followed_at >= self._follow_interval
        ):
            self._follow_link()

        self._sync_commit()
        index, commit = self._index, self._commit  # one snapshot of the attributes for the whole call
        searcher = index.searcher()
        filters = _filter_queries(q)
        text = _clean(q.text or "")[:MAX_QUERY_CHARS]
        has_text = bool(text.strip())
        facet_key = _facet_key(text if has_text else "", q) if q.facets else None
        facets = self._cached_facets(facet_key) if q.facets else {}

        order_by, order = _sort_field(q.sort, has_text)
        if not has_text and not filters:
            ids = self._browse_order(searcher, commit, order_by, order)
            if facets is None:
                facets = _facets(searcher, tantivy.Query.all_query())
                self._keep_facets(facet_key, facets, searcher.num_docs)
            return SearchResult(ids=ids[offset:offset + limit], total=searcher.num_docs,
                                facets={name: list(values) for name, values in facets.items()})
        # Plan B for a query Tantivy refuses at search time (e.g. `title:*` on a field that is not
        # fast): its bare words, lowercased so that AND/OR/NOT are words, not operators.
        attempts = [text, " ".join(_WORDS.findall(text.lower()))] if has_text else [None]
        for attempt in attempts:
            try:
                query = _combine(index, attempt, filters)
                res = searcher.search(
                    query,
                    limit=max(limit, 1),  # Tantivy refuses a limit of 0
                    offset=offset,
                    count=True,
                    **({"order_by_field": order_by, "order": order} if order_by else {}),
                )
                if facets is None:
                    # Nothing matched: nothing to count (counting would run the query again).
                    facets = _facets(searcher, query) if res.count else {name: [] for name in FACET_FIELDS}
                    self._keep_facets(facet_key, facets, res.count or 0)
                break
            except (ValueError, RuntimeError, OverflowError) as e:
                log.info("search failed for %.200r (%s); trying its plain words", attempt, e)
        else:
            return SearchResult(ids=[], total=0, facets={})

        hits = res.hits[:limit]
        ids = searcher.fast_field_values("id", [addr for _, addr in hits]) if hits else []
        return SearchResult(
            ids=[int(i) for i in ids],
            total=int(res.count or 0),
            facets={name: list(values) for name, values in facets.items()},
        )


def _facet_key(text: str, q: SearchQuery) -> tuple:
    return (
        text,
        None if q.category is None else _norm_value(q.category),
        tuple(sorted({_norm_tag(t) for t in q.tags or ()})),
        None if q.license is None else _norm_value(q.license),
        None if q.format is None else _norm_value(q.format),
        None if q.publisher is None else _norm_publisher(q.publisher),
        _finite(q.price_min),
        _finite(q.price_max),
    )


class _TTLCache:
    """A small thread-safe LRU whose entries expire ``ttl`` seconds after they were stored."""

    def __init__(self, ttl: float, size: int):
        self.ttl, self.size = ttl, size
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        if self.ttl <= 0:
            return None
        now = time.monotonic()
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if entry[0] <= now:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return entry[1]

    def put(self, key, value, ttl: float | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds (default: the cache's)."""
        ttl = self.ttl if ttl is None else ttl
        if ttl <= 0:
            return
        with self._lock:
            self._data[key] = (time.monotonic() + ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def _sort_field(sort: str, has_text: bool) -> tuple[str | None, tantivy.Order]:
    if sort == "relevance":
        return (None, tantivy.Order.Desc) if has_text else ("created_at", tantivy.Order.Desc)
    return {
        "newest": ("created_at", tantivy.Order.Desc),
        "price_asc": ("price", tantivy.Order.Asc),
        "price_desc": ("price", tantivy.Order.Desc),
        "most_bought": ("popularity", tantivy.Order.Desc),
    }[sort]


def _term(name: str, value: str) -> tantivy.Query:
    return tantivy.Query.term_query(SCHEMA, name, value, index_option="basic")


def _finite(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _filter_queries(q: SearchQuery) -> list[tantivy.Query]:
    filters: list[tantivy.Query] = []
    if q.category is not None:
        filters.append(_term("category", _norm_value(q.category)))
    for tag in q.tags or ():
        filters.append(_term("tag", _norm_tag(tag)))
    if q.license is not None:
        filters.append(_term("license", _norm_value(q.license)))
    if q.format is not None:
        filters.append(_term("format", _norm_value(q.format)))
    if q.publisher is not None:
        filters.append(_term("publisher", _norm_publisher(q.publisher)))
    lo, hi = _finite(q.price_min), _finite(q.price_max)
    if lo is not None or hi is not None:
        filters.append(
            tantivy.Query.range_query(
                SCHEMA,
                "price",
                tantivy.FieldType.Float,
                lower_bound=lo,  # None: unbounded
                upper_bound=hi,
            )
        )
    # Filters must match but must not change BM25 scores.
    return [tantivy.Query.const_score_query(f, 0.0) for f in filters]


def _text_query(index: tantivy.Index, text: str) -> tantivy.Query:
    """The query for `text`: every word in some text field, scored by BM25 with field boosts.

    Three or more plain words (no operators, quotes or fields) match through MATCH_FIELD: with
    four fields, each word is otherwise a union of four posting lists, and intersecting those
    unions for common words cost most of a search (three common words: 8.3 ms at 1M datasets,
    3.6 ms this way). The intersection of one list per word finds the same documents; the
    boosted query, optional beside it, is then scored on those documents only, so the ranking is
    unchanged. (Two common words often share thousands of documents, and scoring each of them
    by seeking into the boosted query costs more than it saves: 6.9 ms against 5.3 ms.)"""
    if not _WORDS.search(text) and "*" not in text:
        return tantivy.Query.empty_query()
    query, _errors = index.parse_query_lenient(
        text,
        default_field_names=TEXT_FIELDS,
        field_boosts=FIELD_BOOSTS,
        conjunction_by_default=CONJUNCTION_BY_DEFAULT,
    )
    plain = text.strip()
    if _PLAIN_WORDS.fullmatch(plain) and not _OPERATORS.intersection(plain.split()):
        match, _errors = index.parse_query_lenient(plain, default_field_names=[MATCH_FIELD],
                                                   conjunction_by_default=True)
        return tantivy.Query.boolean_query([
            (tantivy.Occur.Must, tantivy.Query.const_score_query(match, 0.0)),
            (tantivy.Occur.Should, query),
        ])
    return query


def _combine(
    index: tantivy.Index, text: str | None, filters: list[tantivy.Query]
) -> tantivy.Query:
    if text is None:
        if not filters:
            return tantivy.Query.all_query()
        main = None
    elif not text.strip():
        return tantivy.Query.empty_query()
    else:
        main = _text_query(index, text)
    clauses = [(tantivy.Occur.Must, main)] if main is not None else []
    clauses += [(tantivy.Occur.Must, f) for f in filters]
    if len(clauses) == 1:
        return clauses[0][1]
    return tantivy.Query.boolean_query(clauses)


def _facets(searcher: tantivy.Searcher, query: tantivy.Query) -> dict[str, list[tuple[str, int]]]:
    spec = {
        name: {
            "terms": {
                "field": fast_field,
                "size": FACET_SIZE,
                # per-segment candidates: keeps top-20 counts exact unless a field has more
                # than this many distinct values in one segment
                "segment_size": 1000,
            }
        }
        for name, fast_field in FACET_FIELDS.items()
    }
    raw = searcher.aggregate(query, spec)
    out: dict[str, list[tuple[str, int]]] = {}
    for name in FACET_FIELDS:
        buckets = (raw.get(name) or {}).get("buckets") or []
        pairs = [(str(b["key"]), int(b["doc_count"])) for b in buckets if b["doc_count"] > 0]
        pairs.sort(key=lambda kv: (-kv[1], kv[0]))
        out[name] = pairs[:FACET_SIZE]
    return out


# ---------------------------------------------------------------------------------------------
# Builds and the `current` pointer


def build_index(
    path: Path | str,
    docs: Iterable[SearchDoc],
    *,
    batch: int = 250_000,
    heap_size: int = 512_000_000,
    num_threads: int = 0,
) -> CatalogIndex:
    """Build a complete index of ``docs`` into the NEW directory ``path`` and return it opened.

    ``batch`` documents go in per commit. Use :func:`rebuild` to build and swap ``current``.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} is not empty; build_index needs a new directory")
    index = CatalogIndex.create(path)
    with index.writer(heap_size=heap_size, num_threads=num_threads) as w:
        tw = w._w()
        n = 0
        for doc in docs:
            # A fresh index holds no earlier version, so no delete before the add (upsert's);
            # duplicate ids in `docs` are the caller's bug (PostgreSQL's primary key rules it out).
            tw.add_document(_to_document(doc))
            n += 1
            if n % batch == 0:
                w.commit()
        w.commit()
    index.reload()
    return index


def _timestamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")


def rebuild(base_dir: Path | str, docs: Iterable[SearchDoc], **build_kwargs) -> Path:
    """Build ``docs`` into ``base_dir/index-<timestamp>``, point ``base_dir/current`` at it
    atomically, and delete the older builds. Returns the new directory.

    Readers that opened the old build keep searching it (its files stay mapped) until they
    follow the link (``reload()``, or their next search after ``follow_interval``). Concurrent
    rebuilds of one ``base_dir`` are serialised by a lock file. A writer still open on the old
    build (the sync command) would commit into a retired directory: the sync command should run
    the rebuild itself (close its writer, rebuild, reopen ``current``) and resume its change log
    from a position taken before ``docs`` was read, so nothing committed meanwhile is missed.
    """
    base = Path(base_dir)
    base.mkdir(parents=True, exist_ok=True)
    with open(base / _LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        name = _BUILD_PREFIX + _timestamp()
        while (base / name).exists() or (base / (name + ".tmp")).exists():
            time.sleep(0.001)
            name = _BUILD_PREFIX + _timestamp()
        tmp = base / (name + ".tmp")
        final = base / name
        try:
            build_index(tmp, docs, **build_kwargs)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(base)
        link_tmp = base / f".{_CURRENT}.{os.getpid()}.{threading.get_ident()}"
        if link_tmp.is_symlink() or link_tmp.exists():
            link_tmp.unlink()
        os.symlink(name, link_tmp)  # relative: the base directory can move
        os.replace(link_tmp, base / _CURRENT)
        _fsync_dir(base)
        for old in base.iterdir():
            if old.name.startswith(_BUILD_PREFIX) and old.name != name and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_current(base_dir: Path | str, **kwargs) -> CatalogIndex:
    """Open the build ``base_dir/current`` points at, following later swaps (see
    :class:`CatalogIndex` for ``kwargs``). Raises FileNotFoundError if nothing was built yet.
    """
    link = Path(base_dir) / _CURRENT
    if not link.is_symlink():
        raise FileNotFoundError(f"no search index at {link}: run a rebuild first")
    return CatalogIndex(link, **kwargs)


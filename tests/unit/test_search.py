"""marketplace.catalog.search against a real Tantivy index in tmp_path: ranking, filters, sorts,
facets, pagination, upserts and deletes, readers seeing a writer's commits, rebuild swaps, and
query strings that must never raise."""
from collections import Counter
import datetime as dt
import json
import os
import re
import threading
import time

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from marketplace.catalog.search import (
    MAX_LIMIT,
    MAX_OFFSET,
    SORTS,
    CatalogIndex,
    IndexSchemaMismatch,
    SearchDoc,
    SearchQuery,
    SearchResult,
    build_index,
    open_current,
    rebuild,
)

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
PUBLISHER_A = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
PUBLISHER_B = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
CATEGORIES = ["climate", "finance", "health"]
LICENSES = ["CC-BY-4.0", "MIT", "ODbL-1.0"]
FORMATS = ["csv", "parquet", "jsonl"]


def make_doc(i, **overrides):
    fields = dict(
        id=i,
        title=f"Dataset number {i}",
        summary="A table of numbers",
        description="Rows and columns collected over time.",
        tags=["sample", f"group{i % 4}"],
        category=CATEGORIES[i % 3],
        license=LICENSES[i % 3 if i % 2 else 0],
        format=FORMATS[i % 3],
        publisher=PUBLISHER_A if i % 2 else PUBLISHER_B,
        price=round(1.5 * (i % 7) + 0.25, 2),
        created_at=T0 + dt.timedelta(hours=i),
        purchases=i % 5,
    )
    fields.update(overrides)
    return SearchDoc(**fields)


CORPUS = [make_doc(i) for i in range(1, 61)]


@pytest.fixture
def index(tmp_path):
    return build_index(tmp_path / "idx", CORPUS)


def all_ids(idx, **query):
    """Every id of a query, paging through it."""
    ids, offset = [], 0
    while True:
        res = idx.search(SearchQuery(offset=offset, limit=MAX_LIMIT, facets=False, **query))
        ids += res.ids
        offset += MAX_LIMIT
        if offset >= res.total:
            return ids


def expected(pred):
    return {d.id for d in CORPUS if pred(d)}


# ---------------------------------------------------------------------------------------------
# Relevance


def test_title_match_beats_summary_and_description_matches(tmp_path):
    docs = [
        make_doc(1, title="Monthly rainfall", description="Contains the word glacier once."),
        make_doc(2, title="Glacier mass balance"),
        make_doc(3, title="City budgets", summary="Includes glacier melt costs"),
        make_doc(4, title="Unrelated"),
    ]
    idx = build_index(tmp_path / "idx", docs)
    res = idx.search(SearchQuery(text="glacier"))
    assert res.ids == [2, 3, 1]
    assert res.total == 3


def test_all_words_must_match_and_stemming_applies(tmp_path):
    docs = [
        make_doc(1, title="Ocean temperatures", summary="buoy readings"),
        make_doc(2, title="Ocean salinity"),
        make_doc(3, title="Air temperature"),
    ]
    idx = build_index(tmp_path / "idx", docs)
    assert idx.search(SearchQuery(text="ocean temperature")).ids == [1]
    assert set(idx.search(SearchQuery(text="ocean OR temperature")).ids) == {1, 2, 3}
    assert idx.search(SearchQuery(text="ocean -salinity")).ids == [1]
    assert idx.search(SearchQuery(text='"ocean salinity"')).ids == [2]


def test_tags_are_searched_as_text(tmp_path):
    idx = build_index(tmp_path / "idx", [make_doc(1, tags=["Time-Series"]), make_doc(2)])
    assert idx.search(SearchQuery(text="series")).ids == [1]


def test_empty_text_matches_everything_newest_first(index):
    res = index.search(SearchQuery(text="   ", limit=5))
    assert res.total == len(CORPUS)
    assert res.ids == [60, 59, 58, 57, 56]


# ---------------------------------------------------------------------------------------------
# Filters


@pytest.mark.parametrize(
    "query,pred",
    [
        ({"category": "finance"}, lambda d: d.category == "finance"),
        ({"tags": ["group1"]}, lambda d: "group1" in d.tags),
        ({"tags": ["GROUP1 "]}, lambda d: "group1" in d.tags),  # tags are normalised
        ({"tags": ["sample", "group2"]}, lambda d: "group2" in d.tags),  # every tag must match
        ({"tags": ["group1", "group2"]}, lambda d: False),
        ({"license": "MIT"}, lambda d: d.license == "MIT"),
        ({"format": "parquet"}, lambda d: d.format == "parquet"),
        ({"publisher": PUBLISHER_A}, lambda d: d.publisher == PUBLISHER_A),
        ({"publisher": PUBLISHER_A.lower()}, lambda d: d.publisher == PUBLISHER_A),
        ({"category": "nope"}, lambda d: False),
        ({"price_min": 4.75}, lambda d: d.price >= 4.75),
        ({"price_max": 4.75}, lambda d: d.price <= 4.75),
        ({"price_min": 1.75, "price_max": 4.75}, lambda d: 1.75 <= d.price <= 4.75),
        ({"price_min": 1.76, "price_max": 4.74}, lambda d: 1.76 <= d.price <= 4.74),
        ({"price_min": 5.0, "price_max": 2.0}, lambda d: False),
        ({"price_min": float("nan")}, lambda d: True),  # a non-finite bound is no bound
        (
            {"category": "climate", "license": "CC-BY-4.0", "format": "csv", "price_max": 6.0},
            lambda d: (d.category, d.license, d.format) == ("climate", "CC-BY-4.0", "csv")
            and d.price <= 6.0,
        ),
        (
            {"text": "number", "publisher": PUBLISHER_B, "tags": ["group2"], "price_min": 1.0},
            lambda d: d.publisher == PUBLISHER_B and "group2" in d.tags and d.price >= 1.0,
        ),
    ],
)
def test_filters(index, query, pred):
    ids = all_ids(index, **query)
    assert len(ids) == len(set(ids))
    assert set(ids) == expected(pred)
    assert index.search(SearchQuery(limit=0, **query)).total == len(ids)


def test_filters_do_not_change_relevance_order(tmp_path):
    docs = [
        make_doc(1, title="soil", summary="soil soil moisture", category="x"),
        make_doc(2, title="soil moisture", category="x"),
        make_doc(3, description="soil", category="x"),
        make_doc(4, title="soil moisture", category="y"),
    ]
    idx = build_index(tmp_path / "idx", docs)
    unfiltered = [i for i in idx.search(SearchQuery(text="soil moisture")).ids if i != 4]
    assert idx.search(SearchQuery(text="soil moisture", category="x")).ids == unfiltered


def test_price_filter_on_fractional_prices(tmp_path):
    prices = [0.0, 0.01, 0.5, 0.999999, 1.0, 1.000001, 25.5, 1e6]
    idx = build_index(tmp_path / "idx", [make_doc(i, price=p) for i, p in enumerate(prices, 1)])
    res = idx.search(SearchQuery(price_min=0.5, price_max=1.0, sort="price_asc"))
    assert res.ids == [3, 4, 5]
    assert idx.search(SearchQuery(price_min=1.0000005)).total == 3
    assert idx.search(SearchQuery(price_max=0.0)).ids == [1]


# ---------------------------------------------------------------------------------------------
# Sorts


def test_each_sort_order(index):
    by_id = {d.id: d for d in CORPUS}
    newest = all_ids(index, sort="newest")
    assert newest == sorted(by_id, key=lambda i: by_id[i].created_at, reverse=True)

    asc = [by_id[i].price for i in all_ids(index, sort="price_asc")]
    assert asc == sorted(d.price for d in CORPUS)
    desc = [by_id[i].price for i in all_ids(index, sort="price_desc")]
    assert desc == sorted((d.price for d in CORPUS), reverse=True)

    # most bought first; equal purchase counts newest first
    bought = all_ids(index, sort="most_bought")
    key = lambda i: (by_id[i].purchases, by_id[i].created_at)  # noqa: E731
    assert bought == sorted(by_id, key=key, reverse=True)

    # relevance without text falls back to newest
    assert all_ids(index, sort="relevance") == newest


@pytest.mark.parametrize("sort", SORTS)
def test_sorts_apply_with_text_and_filters(index, sort):
    ids = all_ids(index, text="dataset", category="health", sort=sort)
    assert set(ids) == expected(lambda d: d.category == "health")


def test_unknown_sort_is_refused(index):
    with pytest.raises(ValueError):
        index.search(SearchQuery(sort="cheapest"))


def test_timezones_are_normalised(tmp_path):
    plus2 = dt.timezone(dt.timedelta(hours=2))
    docs = [
        make_doc(1, created_at=dt.datetime(2025, 1, 1, 12, 0, tzinfo=plus2)),  # 10:00 UTC
        make_doc(2, created_at=dt.datetime(2025, 1, 1, 11, 0)),  # naive: taken as UTC
        make_doc(3, created_at=dt.datetime(2025, 1, 1, 10, 30, tzinfo=dt.timezone.utc)),
    ]
    idx = build_index(tmp_path / "idx", docs)
    assert idx.search(SearchQuery(sort="newest")).ids == [2, 3, 1]


# ---------------------------------------------------------------------------------------------
# Facets


def facet_counts(values):
    counts = Counter(values)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:20]


def test_facets_count_all_matches_not_just_the_page(index):
    res = index.search(SearchQuery(text="dataset", price_max=6.0, limit=3))
    matches = [d for d in CORPUS if d.price <= 6.0]
    assert len(res.ids) == 3 and res.total == len(matches)
    assert res.facets == {
        "category": facet_counts(d.category for d in matches),
        "tags": facet_counts(t for d in matches for t in d.tags),
        "license": facet_counts(d.license for d in matches),
        "format": facet_counts(d.format for d in matches),
    }


def test_facets_follow_filters_and_can_be_skipped(index):
    res = index.search(SearchQuery(category="finance", limit=1))
    assert res.facets["category"] == [("finance", 20)]
    assert sum(n for _, n in res.facets["format"]) == 20
    assert index.search(SearchQuery(category="finance", facets=False)).facets == {}
    assert index.search(SearchQuery(category="nope")).facets == {
        "category": [], "tags": [], "license": [], "format": []
    }


def test_facets_are_cached_for_a_few_seconds_in_readers(tmp_path):
    path = build_index(tmp_path / "idx", CORPUS[:6]).path
    cached, uncached = CatalogIndex(path), CatalogIndex(path, facet_ttl=0)
    before = cached.search(SearchQuery(limit=0)).facets
    with CatalogIndex(path).writer() as w:
        w.upsert(make_doc(500, category="astronomy"))
    cached.reload()
    uncached.reload()
    after = cached.search(SearchQuery(limit=0))
    assert after.total == 7  # ids and totals are fresh
    assert after.facets == before  # facets may lag by up to facet_ttl
    assert ("astronomy", 1) in uncached.search(SearchQuery(limit=0)).facets["category"]
    # another query, another cache entry
    assert cached.search(SearchQuery(category="astronomy")).facets["category"] == [("astronomy", 1)]


def test_broad_searches_keep_their_facets_longer(tmp_path):
    path = build_index(tmp_path / "idx", CORPUS[:6]).path
    reader = CatalogIndex(path, facet_ttl=0.05, broad_facet_ttl=60, broad_matches=5)
    broad, narrow = SearchQuery(limit=0), SearchQuery(category=CORPUS[0].category, limit=0)
    assert reader.search(broad).total >= 5 > reader.search(narrow).total
    before_broad, before_narrow = reader.search(broad).facets, reader.search(narrow).facets
    with CatalogIndex(path).writer() as w:
        w.upsert(make_doc(500, category=CORPUS[0].category))
    reader._index.reload()  # the writer's commit, without reload()'s emptying of the cache
    time.sleep(0.1)  # past facet_ttl
    assert reader.search(broad).facets == before_broad  # still cached (broad_facet_ttl)
    after_narrow = reader.search(narrow).facets  # counted again
    assert after_narrow != before_narrow
    assert (CORPUS[0].category, dict(before_narrow["category"])[CORPUS[0].category] + 1) in after_narrow["category"]


def test_a_writers_own_commit_refreshes_its_facets(index):
    assert ("astronomy", 1) not in index.search(SearchQuery(limit=0)).facets["category"]
    with index.writer() as w:
        w.upsert(make_doc(500, category="astronomy"))
    assert ("astronomy", 1) in index.search(SearchQuery(limit=0)).facets["category"]


def test_facets_keep_the_top_20(tmp_path):
    # tag t0 on 1 doc, t1 on 2 docs, ... t29 on 30 docs
    docs = [make_doc(i, tags=[f"t{k}" for k in range(30) if k + 1 >= 31 - i]) for i in range(1, 31)]
    idx = build_index(tmp_path / "idx", docs)
    tags = idx.search(SearchQuery()).facets["tags"]
    assert tags == [(f"t{k}", k + 1) for k in range(29, 9, -1)]


# ---------------------------------------------------------------------------------------------
# Pagination


@pytest.fixture
def segmented(tmp_path):
    """The corpus spread over several segments (one commit each), prices full of ties."""
    idx = CatalogIndex.create(tmp_path / "seg")
    with idx.writer() as w:
        for n, doc in enumerate(CORPUS, 1):
            w.upsert(doc)
            if n % 13 == 0:
                w.commit()
    return idx


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("text", ["", "dataset"])
def test_pages_are_stable_and_complete(segmented, sort, text):
    first = segmented.search(SearchQuery(text=text, sort=sort, limit=MAX_LIMIT))
    assert first.total == len(CORPUS)
    pages, offset = [], 0
    while offset < first.total:
        res = segmented.search(SearchQuery(text=text, sort=sort, offset=offset, limit=7))
        assert res.total == first.total
        assert len(res.ids) == min(7, first.total - offset)
        pages += res.ids
        offset += 7
    assert pages == first.ids  # the same order page by page as in one go, no id twice
    assert segmented.search(SearchQuery(text=text, sort=sort, offset=offset)).ids == []


@pytest.mark.parametrize("sort", SORTS)
def test_browsing_pages_match_the_engines_own_order(segmented, sort):
    """Browsing (no words, no filters) reads a per-commit order; a filter that keeps everything
    sends the same query through the engine: both give the same ids in the same order, ties
    included, on every page."""
    everything = dict(price_min=0.0)
    for offset, limit in [(0, 20), (0, 1), (7, 7), (13, 100), (59, 5), (60, 5)]:
        browsed = segmented.search(SearchQuery(sort=sort, offset=offset, limit=limit))
        engine = segmented.search(SearchQuery(sort=sort, offset=offset, limit=limit, **everything))
        assert browsed.ids == engine.ids
        assert browsed.total == engine.total == len(CORPUS)
        assert browsed.facets == engine.facets


def test_browsing_follows_each_commit_without_waiting_for_a_reload(tmp_path):
    path = tmp_path / "idx"
    build_index(path, CORPUS[:3])
    reader = CatalogIndex(path, browse_max_age=0)
    newest = SearchQuery(sort="newest", facets=False)
    assert reader.search(newest).ids == [3, 2, 1]
    with CatalogIndex(path).writer() as w:  # another process's writer
        w.upsert(make_doc(4))
        w.commit()
        assert reader.search(newest).ids == [4, 3, 2, 1]  # no reload(), no wait
        assert reader.search(newest).total == 4
        w.delete(3)
        w.upsert(make_doc(2, created_at=T0 + dt.timedelta(days=30)))
    assert reader.search(newest).ids == [2, 4, 1]
    assert reader.search(SearchQuery(sort="newest", offset=1, limit=1, facets=False)).ids == [4]


def test_a_browse_order_is_kept_across_commits_for_browse_max_age(tmp_path):
    path = tmp_path / "idx"
    build_index(path, CORPUS[:3])
    reader = CatalogIndex(path, browse_max_age=0.3)
    newest = SearchQuery(sort="newest", facets=False)
    assert reader.search(newest).ids == [3, 2, 1]
    with CatalogIndex(path).writer() as w:  # another process's writer
        w.upsert(make_doc(4))
    assert reader.search(newest).ids == [3, 2, 1]  # the order computed a moment ago
    assert reader.search(newest).total == 4  # totals follow the commit
    assert reader.search(SearchQuery(sort="newest", price_min=0.0, facets=False)).ids == [4, 3, 2, 1]  # filters too
    time.sleep(0.35)
    assert reader.search(newest).ids == [4, 3, 2, 1]
    with reader.writer() as w:  # this instance's own writer: visible at once
        w.delete(4)
    assert reader.search(newest).ids == [3, 2, 1]


def test_several_plain_words_match_and_rank_as_the_boosted_query_alone(tmp_path, monkeypatch):
    """Plain words match through the one-list-per-word field; the result must be exactly what
    the field-boosted query alone finds, in the same order (ties included) and with the same
    total, whatever field each word is in."""
    import random

    from marketplace.catalog import search

    rng = random.Random(4)
    vocabulary = ["soil", "moisture", "ocean", "salinity", "glacier", "melting", "rainfall", "budget", "city", "runs"]
    docs = [make_doc(i, title=" ".join(rng.sample(vocabulary, 2)), summary=" ".join(rng.sample(vocabulary, 3)),
                     description=" ".join(rng.choices(vocabulary, k=rng.randint(0, 6))),
                     tags=rng.sample(vocabulary, rng.randint(0, 2))) for i in range(1, 301)]
    idx = build_index(tmp_path / "idx", docs)
    queries = [" ".join(rng.sample(vocabulary, n)) for n in (2, 3, 3, 3, 4, 5) for _ in range(5)]
    queries += ["Soil  MOISTURE city", "melt glaciers soil", "soil moisture zzz", "run city budget"]
    found = {q: idx.search(SearchQuery(text=q, limit=100)) for q in queries}
    monkeypatch.setattr(search, "_PLAIN_WORDS", re.compile(r"(?!)"))  # never: the boosted query alone
    assert any(result.total for result in found.values())
    for q, result in found.items():
        alone = idx.search(SearchQuery(text=q, limit=100))
        assert (result.ids, result.total, result.facets) == (alone.ids, alone.total, alone.facets), q


def test_facets_are_shared_through_the_store_with_the_time_they_have_left(tmp_path):
    """A second process (another CatalogIndex on the same build) takes the facets the first one
    counted from the shared store instead of counting them again, and keeps them only for the
    seconds they have left there."""
    class Store(dict):
        def get(self, key):
            entry = super().get(key)
            return None if entry is None else (entry, 0.2)

        def put(self, key, facets, ttl):
            self[key] = json.loads(json.dumps(facets))  # as PostgreSQL's jsonb gives it back

    path = tmp_path / "idx"
    build_index(path, CORPUS)
    store = Store()
    first, second = CatalogIndex(path, facet_store=store), CatalogIndex(path, facet_store=store)
    query = SearchQuery(text="numbers", category=CATEGORIES[0])
    counted = first.search(query).facets
    assert len(store) == 1 and counted["category"] == [(CATEGORIES[0], 20)]
    key = next(iter(store))
    store[key]["category"] = [["from the store", 1]]
    assert second.search(query).facets["category"] == [("from the store", 1)]
    time.sleep(0.25)  # past what the store said was left: the store is asked again
    store[key]["category"] = [["refreshed", 2]]
    assert second.search(query).facets["category"] == [("refreshed", 2)]
    assert CatalogIndex(path, facet_store=store, facet_ttl=0).search(query).facets == counted  # no cache: counts


def test_page_limits(index):
    assert index.search(SearchQuery(offset=MAX_OFFSET, limit=MAX_LIMIT)).ids == []
    assert index.search(SearchQuery(limit=0)).ids == []
    assert index.search(SearchQuery(limit=0)).total == len(CORPUS)
    for bad in (
        SearchQuery(offset=MAX_OFFSET + 1),
        SearchQuery(offset=-1),
        SearchQuery(limit=MAX_LIMIT + 1),
        SearchQuery(limit=-1),
    ):
        with pytest.raises(ValueError):
            index.search(bad)


# ---------------------------------------------------------------------------------------------
# Writes


def test_upsert_replaces_and_never_duplicates(index):
    with index.writer() as w:
        w.upsert(make_doc(7, title="Penguin colonies"))
        w.upsert(make_doc(7, title="Penguin colonies, revised", tags=["birds"]))
    assert index.doc_count() == len(CORPUS)
    assert index.search(SearchQuery(text="penguin")).ids == [7]
    assert index.search(SearchQuery(text="number 7")).ids == []
    assert index.search(SearchQuery(tags=["birds"])).ids == [7]
    assert all_ids(index).count(7) == 1

    with index.writer() as w:  # and again in a later commit
        w.upsert(make_doc(7, title="Penguin colonies, final", price=99.0))
    assert index.search(SearchQuery(text="penguin")).ids == [7]
    assert index.search(SearchQuery(price_min=99.0)).ids == [7]
    assert index.doc_count() == len(CORPUS)


def test_delete_removes(index):
    with index.writer() as w:
        w.delete(5)
        w.delete(12345)  # not indexed: nothing happens
    assert index.doc_count() == len(CORPUS) - 1
    assert 5 not in all_ids(index)
    assert index.search(SearchQuery(text="number 5")).ids == []
    assert index.search(SearchQuery(limit=0)).facets["tags"][0] == ("sample", len(CORPUS) - 1)


def test_a_failed_block_rolls_back_and_releases_the_lock(index):
    with pytest.raises(RuntimeError):
        with index.writer() as w:
            w.upsert(make_doc(999, title="Phantom"))
            raise RuntimeError("boom")
    assert index.search(SearchQuery(text="phantom")).total == 0
    with index.writer() as w:  # the lock is free again
        w.upsert(make_doc(999, title="Phantom"))
    assert index.search(SearchQuery(text="phantom")).ids == [999]


def test_one_writer_at_a_time(index):
    with index.writer():
        with pytest.raises(ValueError):
            CatalogIndex(index.path).writer()


def test_bad_documents_are_refused_before_writing(index):
    with index.writer() as w:
        with pytest.raises(ValueError):
            w.upsert(make_doc(500, price=float("nan")))
        with pytest.raises(ValueError):
            w.upsert(make_doc(-1))
    assert index.doc_count() == len(CORPUS)


def test_reload_shows_a_writers_commit_to_another_reader(tmp_path):
    path = tmp_path / "idx"
    build_index(path, CORPUS[:3])
    reader = CatalogIndex(path)
    writer_side = CatalogIndex(path)
    with writer_side.writer() as w:
        w.upsert(make_doc(100, title="Volcano ash"))
        assert reader.search(SearchQuery(text="volcano")).total == 0  # not committed yet
        w.commit()
        assert writer_side.search(SearchQuery(text="volcano")).ids == [100]  # at once
        reader.reload()
        assert reader.search(SearchQuery(text="volcano")).ids == [100]
        w.delete(100)
    reader.reload()
    assert reader.search(SearchQuery(text="volcano")).ids == []
    assert reader.doc_count() == 3


def test_build_index_needs_a_new_directory(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(FileExistsError):
        build_index(tmp_path / "busy", CORPUS)
    with pytest.raises(FileExistsError):
        CatalogIndex.create(build_index(tmp_path / "idx", CORPUS).path)


def test_an_index_of_another_schema_version_is_refused(tmp_path):
    path = build_index(tmp_path / "idx", CORPUS).path
    (path / "catalog-schema.json").write_text('{"schema_version": 0}')
    with pytest.raises(IndexSchemaMismatch):
        CatalogIndex(path)
    with pytest.raises(IndexSchemaMismatch):
        CatalogIndex(tmp_path)  # not an index at all


# ---------------------------------------------------------------------------------------------
# Rebuild and the `current` pointer


def test_rebuild_swaps_current_atomically_and_drops_old_builds(tmp_path):
    base = tmp_path / "search"
    with pytest.raises(FileNotFoundError):
        open_current(base)

    first = rebuild(base, CORPUS[:10])
    assert os.readlink(base / "current") == first.name  # relative link
    reader = open_current(base)
    assert reader.doc_count() == 10

    second = rebuild(base, [make_doc(200, title="Fresh build")] + CORPUS[:4])
    assert second != first and second.name.startswith("index-")
    assert (base / "current").resolve() == second
    assert not first.exists()
    assert sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) == [
        "current", second.name
    ]

    # The reader keeps its (deleted) snapshot until it reloads, then follows the link.
    assert reader.doc_count() == 10
    assert reader.search(SearchQuery(text="fresh")).ids == []
    reader.reload()
    assert reader.path == second
    assert reader.doc_count() == 5
    assert reader.search(SearchQuery(text="fresh")).ids == [200]
    reader.reload()  # nothing changed: stays
    assert reader.path == second


def test_searches_follow_a_swap_on_their_own(tmp_path):
    base = tmp_path / "search"
    rebuild(base, CORPUS[:2])
    reader = open_current(base, follow_interval=0)
    lazy = open_current(base, follow_interval=None)
    assert reader.search(SearchQuery()).total == lazy.search(SearchQuery()).total == 2
    second = rebuild(base, CORPUS[:7])
    assert reader.search(SearchQuery()).total == 7  # no reload() needed
    assert reader.path == second
    assert lazy.search(SearchQuery()).total == 2  # only reload() moves it
    lazy.reload()
    assert lazy.search(SearchQuery()).total == 7


def test_a_failed_rebuild_keeps_the_current_index(tmp_path):
    base = tmp_path / "search"
    first = rebuild(base, CORPUS[:3])

    def broken():
        yield CORPUS[0]
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        rebuild(base, broken())
    assert (base / "current").resolve() == first
    assert [p.name for p in base.iterdir() if p.name.startswith("index-")] == [first.name]
    assert open_current(base).doc_count() == 3


# ---------------------------------------------------------------------------------------------
# Threads


def test_concurrent_searches_while_writing_and_reloading(tmp_path):
    path = tmp_path / "idx"
    build_index(path, CORPUS)
    reader = CatalogIndex(path)
    errors, stop = [], threading.Event()

    def search_loop(k):
        queries = [SearchQuery(text="dataset"), SearchQuery(category="finance", sort="price_asc")]
        try:
            while not stop.is_set():
                res = reader.search(queries[k % 2])
                assert res.total >= 20 and len(res.ids) == 20
                if k == 0:
                    reader.reload()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=search_loop, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    try:
        with CatalogIndex(path).writer() as w:
            for n in range(30):
                w.upsert(make_doc(1000 + n, category="finance"))
                w.commit()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    reader.reload()
    assert reader.doc_count() == len(CORPUS) + 30


# ---------------------------------------------------------------------------------------------
# Hostile query strings


NASTY = [
    "title:", "title:glacier", "nosuch:field", "price:abc", "price:[1 TO", "id:-5",
    "created_at:yesterday", "purchases:3", "title:*", "*", "*:*", '"unclosed', '"', "'", "(((",
    ")))", "[", "]", "{", "}", "AND", "OR", "NOT", "AND OR", "a AND", "OR b", "-", "--", "+",
    "+-+-",
    "-dataset", "\\", "\\\\", "dataset\\:", "~", "dataset~2", "^", "dataset^abc", "/re.*/",
    "title:/re/", "IN [a b]", ":", "::::", "a:b:c", "\x00", "\ud800", "\udfff x", "😀", "📊 data",
    "数据集", "Ωμέγα", "\u202e\u200b", "\t\n", "x" * 10_000, "number " * 2000,
    "(" * 3000, '"' * 1001, "title:(" * 500,
]


@pytest.mark.parametrize("text", NASTY, ids=range(len(NASTY)))
@pytest.mark.parametrize("sort", ["relevance", "price_desc"])
def test_nasty_query_strings_never_raise(index, text, sort):
    res = index.search(SearchQuery(text=text, sort=sort, category="health", limit=5))
    assert isinstance(res, SearchResult)
    assert len(res.ids) <= 5 and res.total >= len(res.ids)
    assert set(res.ids) <= expected(lambda d: d.category == "health")


QUERY_ALPHABET = st.sampled_from(
    list('"\'()[]{}:+-*~^\\/!?&|<>=,.; ')
    + ["AND", "OR", "NOT", "TO", "IN", "title:", "tags:", "price:", "dataset", "number", "7"]
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.lists(QUERY_ALPHABET, max_size=60).map("".join),
        st.lists(QUERY_ALPHABET, max_size=60).map(" ".join),
    ),
    filter_value=st.one_of(st.none(), st.text(max_size=50)),
    sort=st.sampled_from(SORTS),
)
def test_arbitrary_queries_never_raise(index, text, filter_value, sort):
    res = index.search(
        SearchQuery(
            text=text, category=filter_value, tags=[filter_value] if filter_value else [],
            publisher=filter_value, sort=sort,
        )
    )
    assert res.total >= len(res.ids)

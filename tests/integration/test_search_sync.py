"""The search index follows PostgreSQL through the trigger-filled change log: datasets listed,
edited, re-tagged, bulk-updated or deleted appear, change or disappear after a sync pass, and a
transaction that commits late is never skipped. The search API answers every query string."""
import time

from django.db import connection
import psycopg
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog import services
from marketplace.catalog import indexing
from marketplace.catalog.indexing import SearchSync, reader
from marketplace.catalog.models import Dataset, DatasetVersion, SearchChange
from tests.conftest import sync_until
from tests.factories import make_public

pytestmark = pytest.mark.django_db(transaction=True)
ADDRESS = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


@pytest.fixture
def index_dir(settings, tmp_path):
    settings.SEARCH_INDEX_DIR = tmp_path / "search"
    return settings.SEARCH_INDEX_DIR


@pytest.fixture
def publisher(db):
    return wallet_user(ADDRESS)


def listed(publisher, title, *, tags=(), category="economics", price=25_000_000, status="listed"):
    dataset = services.create_dataset(owner=publisher, title=title, summary=f"About {title}", license="CC0-1.0",
                                      tags=tags, category=category)
    version = DatasetVersion.objects.create(
        dataset=dataset, number=1, file=f"x/{dataset.pk}.csv", original_name="a.csv", format="csv", size=10,
        content_hash="0x" + "0" * 64, price=price, token="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    )
    Dataset.objects.filter(pk=dataset.pk).update(status=status)
    if status == "listed":
        make_public(version)
    return dataset


def titles(q="", **params):
    from marketplace.catalog.search import SearchQuery

    index = reader()
    index.reload()
    result = index.search(SearchQuery(text=q, **params))
    by_id = dict(Dataset.objects.filter(pk__in=result.ids).values_list("pk", "title"))
    # A dataset deleted since the index last synced still comes back until the sync: named so
    # (a wait_until keeps waiting), not a KeyError that ends the wait.
    return [by_id.get(i, f"<deleted dataset {i}>") for i in result.ids]


def test_triggers_log_every_kind_of_change(publisher):
    dataset = listed(publisher, "Wheat harvests")
    pk = dataset.pk
    SearchChange.objects.all().delete()
    Dataset.objects.filter(pk=pk).update(tags=["grain"])  # a bulk update, no save()
    assert list(SearchChange.objects.values_list("dataset_id", flat=True)) == [pk]
    DatasetVersion.objects.filter(dataset=dataset).update(price=1)
    assert SearchChange.objects.count() == 2
    dataset.delete()  # the dataset and, by cascade, its version and its listing
    assert set(SearchChange.objects.values_list("dataset_id", flat=True)) == {pk}
    assert SearchChange.objects.count() == 5


def test_listed_edited_retagged_and_deleted_datasets_follow(publisher, index_dir):
    sync = SearchSync()
    sync.rebuild()
    wheat = listed(publisher, "Wheat harvests", tags=["grain"])
    listed(publisher, "Draft barley", status="draft")
    assert sync_until(sync, lambda: titles("wheat") == ["Wheat harvests"])
    assert titles("barley") == []  # drafts are never searchable

    services.update_dataset(wheat, title="Rye harvests", summary="About rye", tags=["rye"])
    assert sync_until(sync, lambda: titles("rye") == ["Rye harvests"])
    assert titles("wheat") == [] and titles(tags=["rye"]) == ["Rye harvests"]

    Dataset.objects.filter(pk=wheat.pk).update(status="delisted")
    assert sync_until(sync, lambda: titles("rye") == [])

    Dataset.objects.filter(pk=wheat.pk).update(status="listed")
    assert sync_until(sync, lambda: titles("rye") == ["Rye harvests"])
    wheat.delete()
    assert sync_until(sync, lambda: titles("rye") == [])


def test_a_transaction_that_commits_late_is_not_skipped(publisher, index_dir):
    sync = SearchSync()
    sync.rebuild()
    early = listed(publisher, "Early oats")
    late = listed(publisher, "Late millet")
    sync.sync_once()

    settings = connection.settings_dict
    other = psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], password=settings["PASSWORD"] or None,
        host=settings["HOST"] or None, port=settings["PORT"] or None,
    )
    try:
        # A slow transaction renames "Late millet" first and commits last.
        other.execute("UPDATE catalog_dataset SET title = 'Slow sorghum' WHERE id = %s", [late.pk])
        services.update_dataset(early, title="Quick quinoa")  # began later, commits at once
        # The log is read only up to the oldest running transaction, so this pass may hold the
        # quick change back until the slow one ends; a reader by id would move past the slow
        # row here and never see it.
        sync.sync_once()
        assert titles("sorghum") == []
        other.commit()
    finally:
        other.close()
    assert sync_until(sync, lambda: titles("sorghum") == ["Slow sorghum"]), "the late commit must reach the index"
    assert titles("quinoa") == ["Quick quinoa"]


def test_an_index_built_by_an_older_release_is_rebuilt(client, publisher, index_dir):
    listed(publisher, "Wheat harvests")
    SearchSync().rebuild()
    (index_dir / "current" / "catalog-schema.json").write_text('{"schema_version": 1}')  # as release 1 left it
    indexing._readers.clear()  # a process started after the upgrade
    refused = client.get("/api/v1/search?q=wheat")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "index_building"
    assert SearchSync().sync_once() == 1  # the sync process rebuilds it
    assert client.get("/api/v1/search?q=wheat").json()["total"] == 1


def test_facets_are_shared_by_the_processes_of_the_host(client, publisher, index_dir):
    from django.db import connection, transaction

    listed(publisher, "Wheat harvests", tags=["grain"])
    SearchSync().rebuild()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM catalog_searchfacets")  # a cache table: no test flush empties it
    counted = client.get("/api/v1/search?q=wheat").json()["facets"]
    assert counted["tags"] == [{"value": "grain", "count": 1}]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), min(expires_at) > now() FROM catalog_searchfacets")
        assert cursor.fetchone() == (1, True)
        cursor.execute("""UPDATE catalog_searchfacets SET facets = jsonb_set(facets, '{tags,0,0}', '"barley"')""")
    indexing._readers.clear()  # another process of the host: it reads the shared counts
    assert client.get("/api/v1/search?q=wheat").json()["facets"]["tags"] == [{"value": "barley", "count": 1}]

    store = indexing.FacetStore()
    store.put("k", {"tags": [["oats", 3]]}, 0.01)
    time.sleep(0.05)
    assert store.get("k") is None  # expired
    assert store.prune() >= 1
    with transaction.atomic():  # inside a request's transaction, a failing cache is a miss
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE catalog_searchfacets RENAME TO catalog_searchfacets_away")
        assert store.get("k") is None
        store.put("k", {}, 1)
        assert Dataset.objects.count() == 1  # the transaction still works
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE catalog_searchfacets_away RENAME TO catalog_searchfacets")


def test_search_api_filters_sorts_and_facets(client, publisher, index_dir):
    listed(publisher, "Coffee prices", tags=["coffee", "commodities"], price=5_000_000)
    listed(publisher, "Cocoa prices", tags=["cocoa", "commodities"], price=50_000_000)
    listed(publisher, "Hospital beds", tags=["health"], category="health", price=20_000_000)
    SearchSync().rebuild()

    body = client.get("/api/v1/search?q=prices&sort=price_desc").json()
    assert [r["title"] for r in body["results"]] == ["Cocoa prices", "Coffee prices"]
    assert body["total"] == 2 and body["results"][1]["price"]["amount"] == "5000000"
    assert {"value": "commodities", "count": 2} in body["facets"]["tags"]
    assert body["results"][0]["owner"] == ADDRESS and body["results"][0]["owner_name"] == ""
    assert body["results"][0]["owner_avatar"].startswith(f"/avatars/{ADDRESS}?v=")
    publisher.display_name = "Commodity Desk"
    publisher.save()
    assert client.get("/api/v1/search?q=cocoa").json()["results"][0]["owner_name"] == "Commodity Desk"

    assert [r["title"] for r in client.get("/api/v1/search?category=health").json()["results"]] == ["Hospital beds"]
    cheap = client.get("/api/v1/search?price_max=10").json()["results"]
    assert [r["title"] for r in cheap] == ["Coffee prices"]
    both = client.get("/api/v1/search?tag=commodities&tag=cocoa").json()["results"]
    assert [r["title"] for r in both] == ["Cocoa prices"]


def test_the_format_filter_finds_each_format_in_the_api_and_the_page(client, publisher, index_dir):
    """`format` is the search's file-format filter, not DRF's renderer override (which answered
    every `format=csv` with an empty 404)."""
    listed(publisher, "Rainfall in CSV")
    parquet = listed(publisher, "Rainfall in Parquet")
    DatasetVersion.objects.filter(dataset=parquet).update(format="parquet")
    SearchSync().rebuild()

    response = client.get("/api/v1/search?format=csv")
    assert response.status_code == 200, response.content
    assert [r["title"] for r in response.json()["results"]] == ["Rainfall in CSV"]
    assert [r["title"] for r in client.get("/api/v1/search?q=rainfall&format=parquet").json()["results"]] == [
        "Rainfall in Parquet"]
    assert client.get("/api/v1/search?format=xlsx").json()["total"] == 0
    page = client.get("/?format=csv").content.decode()
    assert "Rainfall in CSV" in page and "Rainfall in Parquet" not in page


@pytest.mark.parametrize(
    "query, code",
    [("colour=blue", "unknown_parameter"), ("page_size=100000", "invalid"), ("page=100000", "invalid"),
     ("price_min=5&price_max=1", "invalid"), ("sort=random", "invalid"), ("category=nope", "invalid")],
)
def test_bad_search_parameters_get_a_4xx_with_a_message(client, db, index_dir, query, code):
    SearchSync().rebuild()
    response = client.get(f"/api/v1/search?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]


@pytest.mark.parametrize("q", ['"unclosed', "title:", "(((", "AND OR NOT", "-", "*", "\\", "price:[1 TO", "🙂" * 50, "x" * 600])
def test_any_query_string_answers(client, publisher, index_dir, q):
    listed(publisher, "Anything at all")
    SearchSync().rebuild()
    response = client.get("/api/v1/search", {"q": q[:512]})
    assert response.status_code == 200 and isinstance(response.json()["results"], list)


def test_the_results_query_is_prepared_and_works_with_prepared_statements_off(publisher, index_dir):
    """`listed_rows` runs on every search as a server-side prepared statement (planned once per
    connection); with DATABASE_PREPARED_STATEMENTS=0 (a pooler that cannot keep them) it runs
    unprepared and answers the same."""
    ids = [listed(publisher, f"Rainfall {n}").pk for n in range(3)]
    unlisted = listed(publisher, "Pending", status="draft").pk

    def prepared_runs():
        with connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(sum(generic_plans + custom_plans), 0) FROM pg_prepared_statements "
                           "WHERE statement LIKE %s", ["%FROM catalog_dataset d%"])
            return cursor.fetchone()[0]

    before = prepared_runs()
    rows = indexing.listed_rows(ids + [unlisted])
    assert sorted(rows) == ids and rows[ids[0]]["title"] == "Rainfall 0" and rows[ids[0]]["price"] == 25_000_000
    assert indexing.listed_rows(ids) == {i: rows[i] for i in ids}
    assert prepared_runs() == before + 2

    pg = connection.connection
    threshold, pg.prepare_threshold = pg.prepare_threshold, None  # what the setting gives
    try:
        assert indexing.listed_rows(ids + [unlisted]) == rows
        assert prepared_runs() == before + 2
    finally:
        pg.prepare_threshold = threshold


def test_the_prepared_statements_setting(monkeypatch):
    import subprocess
    import sys

    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.DATABASES['default']['OPTIONS']['prepare_threshold'])")
    for value, expected in (("1", str(2**31 - 1)), ("0", "None")):
        monkeypatch.setenv("DATABASE_PREPARED_STATEMENTS", value)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == expected, out.stderr


def test_search_parameters_are_checked_alone_request_after_request(client, db, index_dir):
    """Requests on one thread share the parameters' bound fields: nothing of one request's
    parameters or errors carries over to the next."""
    SearchSync().rebuild()
    bad = client.get("/api/v1/search?page_size=0&price_min=-1")
    assert bad.status_code == 400 and set(bad.json()["error"]["fields"]) == {"page_size", "price_min"}
    good = client.get("/api/v1/search?page_size=7")
    assert good.status_code == 200 and good.json()["page_size"] == 7
    assert client.get("/api/v1/search").json()["page_size"] == 20
    other = client.get("/api/v1/search?sort=random")
    assert other.status_code == 400 and set(other.json()["error"]["fields"]) == {"sort"}


def test_a_web_worker_loads_its_views_before_its_first_request():
    """gunicorn imports marketplace.wsgi in each worker: the URLs and the views' imports load
    then, not in the worker's first request (about a second)."""
    import subprocess
    import sys

    code = "import sys, marketplace.wsgi; print('marketplace.catalog.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr

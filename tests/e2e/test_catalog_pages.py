"""The catalog, dataset and publisher pages in a real browser: search and facets, a dataset's
schema, statistics and sample, and a publisher creating a dataset and uploading its file.

Set SCREENSHOTS=/some/dir to keep full-page screenshots at 1280 and 390 px wide."""
import os
from pathlib import Path
import re

from django.test import Client
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog import services
from marketplace.catalog.indexing import SearchSync
from marketplace.catalog.models import Dataset, DatasetVersion
from tests.conftest import dead_broker_url
from tests.factories import make_public

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
OWNER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CSV = b"city,year,population\nParis,2020,2148000\nLyon,2020,516000\nNice,2021,342000\n"
COLUMNS = [
    {"name": "city", "type": "string", "duckdb_type": "VARCHAR", "null_count": 0, "distinct_count": 3,
     "min": None, "max": None, "mean": None, "histogram": [],
     "top_values": [{"value": "Paris", "count": 9}, {"value": "Lyon", "count": 7}, {"value": "Nice", "count": 5}]},
    {"name": "population", "type": "integer", "duckdb_type": "BIGINT", "null_count": 1, "distinct_count": 3,
     "min": 342000, "max": 2148000, "mean": 1002000.0,
     "histogram": [{"start": 342000, "end": 945000, "count": 2}, {"start": 945000, "end": 1548000, "count": 0},
                   {"start": 1548000, "end": 2148000, "count": 1}],
     "top_values": []},
]
SAMPLE = [{"city": "Paris", "population": 2148000}, {"city": "Lyon", "population": 516000}, {"city": "Nice", "population": None}]


def shoot(page, name, reload=False):
    target = os.environ.get("SCREENSHOTS")
    if not target:
        return
    Path(target).mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    page.screenshot(path=f"{target}/{name}-1280.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    if reload:  # as a phone loads it (the catalog folds its filters on small screens)
        page.reload()
    page.wait_for_timeout(150)
    page.screenshot(path=f"{target}/{name}-390.png", full_page=True)
    page.set_viewport_size(size)
    if reload:
        page.reload()


@pytest.fixture
def index_dir(settings, tmp_path):
    settings.SEARCH_INDEX_DIR = tmp_path / "search"
    return settings.SEARCH_INDEX_DIR


@pytest.fixture
def owner(db):
    return wallet_user(OWNER)


def listed(owner, title, *, tags=(), category="economics", price=25_000_000, status="listed", **version):
    ds = services.create_dataset(owner=owner, title=title, summary=f"Yearly figures about {title.lower()}, cleaned and documented.",
                                 license="CC-BY-4.0", tags=tags, category=category,
                                 description=f"# {title}\n\nCollected from **public sources**.\n\n- one row per year\n- UTF-8 CSV")
    version.setdefault("show_sample", True)  # these datasets chose a full preview, as the demo's do
    version.setdefault("show_distributions", True)
    created = DatasetVersion.objects.create(
        dataset=ds, number=1, file=f"x/{ds.pk}.csv", original_name="data.csv", format="csv", size=48_213,
        content_hash="0x" + "3f" * 32, price=price, token=TOKEN, **version,
    )
    Dataset.objects.filter(pk=ds.pk).update(status=status)
    if status == "listed":
        make_public(created)
    return ds


def sign_in_as(page, live_url, user):
    """A signed-in browser without the wallet round trip: the test client's session cookie."""
    client = Client()
    client.force_login(user)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_url}])


def test_search_finds_a_dataset_and_a_facet_filters(page, live_server, owner, index_dir):
    listed(owner, "Wheat harvests in France", tags=["agriculture", "france"], category="economics", price=25_000_000)
    listed(owner, "Wheat prices on world markets", tags=["agriculture", "prices"], category="economics", price=1_500_000)
    listed(owner, "Hospital admissions", tags=["health", "france"], category="health", price=120_000_000)
    listed(owner, "A draft about wheat", status="draft")
    SearchSync().rebuild()

    page.goto(live_server.url + "/")
    page.fill("#search-q", "wheat")
    page.locator(".search-bar button[type=submit]").click()
    page.wait_for_url(re.compile(r"q=wheat"))
    cards = page.locator("[data-result]")
    assert cards.count() == 2
    assert "A draft about wheat" not in page.content()
    assert "1.5" in page.locator("[data-result]", has_text="world markets").locator(".price").inner_text()
    assert page.locator("[data-results-total]").get_attribute("data-results-total") == "2"
    shoot(page, "catalog", reload=True)

    page.locator('[data-facet="tag"][data-value="prices"]').click()
    page.wait_for_url(re.compile(r"tag=prices"))
    assert page.locator("[data-result]").count() == 1
    assert "world markets" in page.locator("[data-result]").inner_text()

    page.goto(live_server.url + "/")
    page.locator('[data-facet="category"][data-value="health"]').click()
    page.wait_for_url(re.compile(r"category=health"))
    assert [t.strip() for t in page.locator(".result-title").all_inner_texts()] == ["Hospital admissions"]

    page.select_option("#f-sort", "price_desc")  # a select applies itself
    page.wait_for_url(re.compile(r"sort=price_desc"))
    page.goto(live_server.url + "/?q=zzzz-nothing")
    page.locator("[data-empty]").wait_for()
    page.goto(live_server.url + "/?price_min=9&price_max=1")
    assert "Must not be below price_min" in page.locator("[data-search-errors]").inner_text()


def test_dataset_page_shows_schema_statistics_and_sample(page, live_server, owner):
    ds = listed(owner, "French cities", tags=["cities", "france", "population"], category="social",
                analysis_status="done", row_count=3, columns=COLUMNS, sample=SAMPLE)
    page.goto(f"{live_server.url}/datasets/{ds.slug}")
    assert page.locator(".dataset-title").inner_text() == "French cities"
    # The wallet buys (frontend/src/buy.js): the button is enabled.
    page.wait_for_function("() => !document.querySelector('.buy-card .buy-button').disabled")
    assert page.locator(".buy-card .buy-button").inner_text() == "Buy for 25 USDC"
    assert "25" in page.locator(".buy-card .buy-price").inner_text()
    rows = page.locator("[data-schema] tbody tr")
    assert rows.count() == 2
    population = page.locator('[data-column="population"]')
    assert "integer" in population.inner_text() and "2,148,000" in population.inner_text()
    assert population.locator(".histogram-bar").count() == 3
    assert page.locator('[data-column="city"] .top-values li').count() == 3
    assert page.locator("[data-sample] tbody tr").count() == 3
    assert "Paris" in page.locator("[data-sample]").inner_text()
    assert page.locator("[data-description] strong").inner_text() == "public sources"
    assert page.locator("[data-copy]").is_visible()
    shoot(page, "dataset")


def test_publisher_creates_a_dataset_and_uploads_a_csv(page, live_server, owner, chain, tmp_path, point_broker_at):
    # The analysis task stays in the outbox (no broker), so that a worker another test of this
    # session started cannot analyse the file before the page shows it waiting; the test runs
    # the task itself below.
    point_broker_at(dead_broker_url())
    base = live_server.url.replace("127.0.0.1", "localhost")
    page.goto(base + "/me/datasets")
    page.locator("[data-sign-in-prompt]").wait_for()
    shoot(page, "sign-in-prompt")

    sign_in_as(page, base, owner)
    page.goto(base + "/me/datasets")
    page.locator("a", has_text="Publish your first dataset").click()
    page.wait_for_url(re.compile(r"/me/datasets/new$"))
    page.fill("#d-title", "French cities")
    page.fill("#d-summary", "Population of French cities")
    page.fill("#d-description", "Counted by **INSEE**.")
    page.select_option("#d-category", "social")
    page.select_option("#d-license", "CC-BY-4.0")
    page.fill("#d-tags", "cities, France")
    shoot(page, "new-dataset")
    page.locator("[data-submit]").click()
    page.wait_for_url(re.compile(r"/me/datasets/french-cities/edit\?created=1"))

    page.fill("#u-price", "0")
    page.locator("[data-upload-form] [data-submit]").click()
    assert "Choose the file" in page.locator('[data-error-for="file"]').inner_text()
    assert "more than 0" in page.locator('[data-error-for="price"]').inner_text()

    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    page.set_input_files("#u-file", str(empty))
    page.fill("#u-price", "12.5")
    page.locator("[data-upload-form] [data-submit]").click()
    error = page.locator("[data-upload-form] [data-form-error]")
    error.wait_for(state="visible")
    assert "empty" in error.inner_text().lower()  # the API's error.message, in words

    page.set_input_files("#u-file", files=[{"name": "cities.csv", "mimeType": "text/csv", "buffer": CSV}])
    page.check('[data-upload-form] [data-field="show_sample"]')  # the preview is chosen at upload
    page.locator("[data-upload-form] [data-submit]").click()
    page.wait_for_function("() => location.search.includes('uploaded=1') || "
                           "!document.querySelector('[data-upload-form] [data-form-error]').hidden")
    if "uploaded=1" not in page.url:
        message = page.locator("[data-upload-form] [data-form-error]").inner_text()
        shoot(page, "edit-dataset-upload-error")
        pytest.fail(f"upload refused: {message}")
    page.wait_for_url(re.compile(r"uploaded=1"))
    page.locator("[data-upload-done]").wait_for()
    version_row = page.locator('[data-version="1"]')
    assert "Waiting for analysis" in version_row.inner_text()
    assert "12.5 USDC" in version_row.inner_text()
    version = DatasetVersion.objects.get(dataset__slug="french-cities")
    assert version.price == 12_500_000 and version.size == len(CSV)
    shoot(page, "edit-dataset")

    # The dataset page polls the API while the analysis waits, then shows what it found.
    page.goto(base + "/datasets/french-cities")
    page.locator("[data-analysis][data-poll-url]").wait_for()
    services.analyse_version(version.pk)  # what the worker's task runs
    page.locator("[data-schema]").wait_for(timeout=15_000)
    assert page.locator('[data-column="population"]').is_visible()
    assert "Paris" in page.locator("[data-sample]").inner_text()

    # What buyers see: hiding a column takes it off the page (schema and sample alike) at once.
    page.goto(base + "/me/datasets/french-cities/edit")
    preview = page.locator('[data-preview-version="1"]')
    assert preview.locator('[data-sample-column="population"]').first.is_visible()
    preview.locator('[data-column="population"]').uncheck()
    assert not preview.locator('[data-sample-column="population"]').first.is_visible(), "previewed before saving"
    shoot(page, "edit-dataset-preview")
    preview.locator("[data-submit]").click()
    page.wait_for_url(re.compile(r"previewed=1"))
    page.goto(base + "/datasets/french-cities")
    page.locator("[data-schema]").wait_for()
    assert page.locator('[data-column="population"]').count() == 0
    assert "population" not in page.locator("[data-sample]").inner_text()
    assert "Paris" in page.locator("[data-sample]").inner_text()

    page.goto(base + "/me/datasets")
    assert "Analysed" in page.locator('[data-my-dataset="french-cities"]').inner_text()
    shoot(page, "my-datasets")


def test_dataset_page_follows_the_analysis_until_it_is_done(page, live_server, owner):
    ds = listed(owner, "Cities in progress", analysis_status="running", analysis_progress=0.3,
                analysis_message="reading the file")
    page.goto(f"{live_server.url}/datasets/{ds.slug}")
    progress = page.locator("[data-analysis-progress]")
    assert progress.get_attribute("value") == "30"  # a native <progress>
    assert "Analysing the file" in page.locator("[data-analysis-message]").inner_text()  # the outcome, not the file's words
    shoot(page, "dataset-analysing")
    DatasetVersion.objects.filter(dataset=ds).update(analysis_progress=0.6, analysis_message="computing statistics")
    page.wait_for_function("() => document.querySelector('[data-analysis-progress]').value === 60")
    DatasetVersion.objects.filter(dataset=ds).update(
        analysis_status="done", analysis_progress=1.0, analysis_message="", row_count=3, columns=COLUMNS, sample=SAMPLE)
    page.locator("[data-schema]").wait_for(timeout=10_000)  # the page reloaded itself once done
    assert page.locator("[data-sample] tbody tr").count() == 3


def test_failed_and_rejected_analyses_say_why(page, live_server, owner):
    failed = listed(owner, "Broken file", analysis_status="failed",
                    analysis_message="Row 3 has 4 fields where the header has 3.")
    page.goto(f"{live_server.url}/datasets/{failed.slug}")
    failed_text = page.locator("[data-analysis-failed]").inner_text()
    assert "could not be analysed" in failed_text and "Row 3" not in failed_text  # the owner's edit page says why
    rejects = listed(owner, "Mostly fine file", analysis_status="done_with_rejects", rejected_rows=7, row_count=3,
                     analysis_message="Analysed with 7 rejected rows: line 12 is not UTF-8", columns=COLUMNS, sample=SAMPLE)
    page.goto(f"{live_server.url}/datasets/{rejects.slug}")
    assert "Analysed with 7 rejected rows" in page.locator("[data-analysis-rejects]").inner_text()
    shoot(page, "dataset-rejects")


def test_my_datasets_lists_statuses_and_the_edit_page_its_versions(page, live_server, owner):
    listed(owner, "Wheat harvests", analysis_status="done", row_count=1200)
    draft = listed(owner, "Hospital admissions", status="draft", analysis_status="running", price=4_990_000)
    listed(owner, "Broken export", status="draft", analysis_status="failed", analysis_message="The file is empty.")
    base = live_server.url.replace("127.0.0.1", "localhost")
    sign_in_as(page, base, owner)
    page.goto(base + "/me/datasets")
    rows = page.locator("[data-my-dataset]")
    assert rows.count() == 3
    assert "Draft" in page.locator(f'[data-my-dataset="{draft.slug}"]').inner_text()
    assert "Analysis failed" in page.locator('[data-my-dataset="broken-export"]').inner_text()
    shoot(page, "my-datasets")
    page.locator(f'[data-my-dataset="{draft.slug}"] a', has_text="Edit").click()
    page.wait_for_url(re.compile(rf"/me/datasets/{draft.slug}/edit$"))
    assert page.input_value("#u-price") == "4.99"
    assert "Analysing" in page.locator('[data-version="1"]').inner_text()
    page.fill("#d-title", "")
    page.locator("[data-dataset-form] [data-submit]").click()
    assert "title" in page.locator('[data-error-for="title"]').inner_text().lower()
    page.fill("#d-title", "Hospital admissions 2024")
    page.locator("[data-dataset-form] [data-submit]").click()
    page.wait_for_url(re.compile(r"saved=1"))
    assert Dataset.objects.get(pk=draft.pk).title == "Hospital admissions 2024"
    shoot(page, "edit-dataset")


@pytest.mark.chain
def test_publisher_lists_a_version_on_chain_from_the_wallet(page, live_server, owner, chain):
    from marketplace.catalog.models import Listing
    from tests.e2e.conftest import install_wallet

    dataset = listed(owner, "Tide gauges", status="draft")
    DatasetVersion.objects.filter(dataset=dataset).update(token=chain.token.address, content_hash="0x" + "5a" * 32)
    install_wallet(page, rpc=chain.url, account=OWNER)  # anvil dev account 3, unlocked
    sign_in_as(page, live_server.url, owner)
    page.goto(f"{live_server.url}/me/datasets/{dataset.slug}/edit")
    page.locator("[data-list-version]").click()
    page.locator("[data-listing-state]").wait_for(timeout=30_000)
    assert "awaiting approval" in page.locator("[data-listing-state]").inner_text()

    listing = Listing.objects.get(version__dataset=dataset)
    on_chain = chain.market.get_listing(int(listing.listing_id))
    assert on_chain["owner"] == OWNER and "0x" + on_chain["content_hash"].hex() == "0x" + "5a" * 32
    assert on_chain["approved"] is False  # a moderator still has to approve it
    assert Dataset.objects.get(pk=dataset.pk).status == "pending_review"

    # The owner changes the price from the wallet; the page shows what the chain now says.
    row = page.locator('[data-version="1"]')
    row.locator("[data-price-change] summary").click()
    row.locator("[data-price-form] [data-field=price]").fill("0")
    row.locator("[data-price-form] [data-submit]").click()
    assert "more than 0" in row.locator('[data-price-form] [data-error-for="price"]').inner_text()
    shoot(page, "edit-dataset-price-form")
    row.locator("[data-price-form] [data-field=price]").fill("31.5")
    row.locator("[data-price-form] [data-submit]").click()
    page.locator("[data-repriced]").wait_for(timeout=30_000)
    assert "31.5 USDC" in page.locator("[data-repriced]").inner_text()
    assert "31.5 USDC" in page.locator('[data-version="1"]').inner_text()
    listing.refresh_from_db()
    assert listing.price == 31_500_000 and chain.market.get_listing(int(listing.listing_id))["price"] == 31_500_000
    shoot(page, "edit-dataset-repriced")

def test_the_listing_page_waits_for_the_confirmations_the_server_needs(page, live_server, owner,
                                                                        chain, settings):
    """The server counts a listing once its block has CHAIN_CONFIRMATIONS blocks on top: until then
    the page says how many it has and keeps asking."""
    from marketplace.catalog.models import Listing
    from tests.e2e.conftest import install_wallet

    settings.CHAIN_CONFIRMATIONS = 1
    dataset = listed(owner, "Tide gauges", status="draft")
    DatasetVersion.objects.filter(dataset=dataset).update(token=chain.token.address,
                                                          content_hash="0x" + "5a" * 32)
    install_wallet(page, rpc=chain.url, account=OWNER)
    sign_in_as(page, live_server.url, owner)
    page.goto(f"{live_server.url}/me/datasets/{dataset.slug}/edit")
    page.locator("[data-list-version]").click()
    waiting = page.locator("[data-list-status]", has_text="Waiting for confirmations (1 of 2)")
    waiting.wait_for(timeout=30_000)
    assert not Listing.objects.exists()

    chain.rpc("evm_mine")
    page.locator("[data-listing-state]").wait_for(timeout=30_000)
    assert "awaiting approval" in page.locator("[data-listing-state]").inner_text()
    assert Listing.objects.get(version__dataset=dataset).approved is False

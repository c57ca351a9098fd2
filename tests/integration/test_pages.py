"""Server-rendered catalog, dataset and publisher pages, through Django's test client."""
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog import services
from marketplace.catalog.indexing import SearchSync
from marketplace.catalog.models import Dataset, DatasetVersion
from marketplace.web.views import format_usdc
from tests.factories import make_public

pytestmark = pytest.mark.django_db(transaction=True)
OWNER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
OTHER = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def make_user(address):
    return wallet_user(address)


@pytest.fixture
def owner(db):
    return make_user(OWNER)


@pytest.fixture
def index_dir(settings, tmp_path):
    settings.SEARCH_INDEX_DIR = tmp_path / "search"
    return settings.SEARCH_INDEX_DIR


def dataset(owner, title, *, status="listed", price=25_000_000, description="", tags=("weather",), **version):
    ds = services.create_dataset(owner=owner, title=title, summary=f"About {title}", license="CC-BY-4.0",
                                 tags=tags, category="environment", description=description)
    version.setdefault("show_sample", True)  # these datasets chose a full preview, as the demo's do
    version.setdefault("show_distributions", True)
    created = DatasetVersion.objects.create(
        dataset=ds, number=1, file=f"x/{ds.pk}.csv", original_name="a.csv", format="csv", size=2048,
        content_hash="0x" + "ab" * 32, price=price, token=TOKEN, **version,
    )
    Dataset.objects.filter(pk=ds.pk).update(status=status)
    if status == "listed":
        make_public(created)
    return ds


def test_usdc_formatting():
    assert format_usdc(25_000_000) == "25"
    assert format_usdc(1_500_000) == "1.5"
    assert format_usdc(1) == "0.000001"
    assert format_usdc(1_234_567_890_000) == "1,234,567.89"


def test_catalog_lists_search_results_with_facets(client, owner, index_dir):
    dataset(owner, "Rainfall in Lyon", tags=["weather", "rain"])
    dataset(owner, "Secret draft rainfall", status="draft")
    SearchSync().rebuild()
    response = client.get("/?q=rainfall")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Rainfall in Lyon" in html and "Secret draft" not in html
    assert "25</span> <span class=\"price-unit\">USDC" in html
    assert 'data-facet="tag" data-value="rain"' in html
    assert "csrftoken" in response.cookies
    assert 'data-health-url="/healthz"' in html  # the compact status element stays on /


def test_catalog_shows_a_friendly_state_before_the_index_exists(client, db, index_dir):
    response = client.get("/")
    assert response.status_code == 200
    assert "data-index-building" in response.content.decode()


@pytest.mark.parametrize("query, field", [
    ("?price_min=5&price_max=1", "price_max"), ("?category=nope", "category"), ("?page=9999", "page"),
    ("?price_min=abc", "price_min"),
])
def test_search_errors_are_shown_inline(client, db, index_dir, query, field):
    response = client.get("/" + query)
    assert response.status_code == 200
    html = response.content.decode()
    assert "data-search-errors" in html and f'id="err-{field}"' in html


def test_dataset_page_shows_listed_and_hides_others_drafts(client, owner):
    listed = dataset(owner, "Rainfall in Lyon", row_count=3, analysis_status="done",
                     columns=[{"name": "mm", "type": "float", "duckdb_type": "DOUBLE", "null_count": 0,
                               "distinct_count": 3, "min": 1.5, "max": 9.0, "mean": 4.0,
                               "histogram": [{"start": 1.5, "end": 5, "count": 2}, {"start": 5, "end": 9, "count": 1}],
                               "top_values": []}],
                     sample=[{"mm": 1.5}, {"mm": 9.0}])
    draft = dataset(owner, "Private draft", status="draft")
    page = client.get(f"/datasets/{listed.slug}").content.decode()
    assert "Rainfall in Lyon" in page and "histogram-bar" in page and "data-sample" in page
    assert "0x" + "ab" * 32 in page
    assert client.get(f"/datasets/{draft.slug}").status_code == 404
    client.force_login(make_user(OTHER))
    assert client.get(f"/datasets/{draft.slug}").status_code == 404
    client.force_login(owner)
    assert client.get(f"/datasets/{draft.slug}").status_code == 200


def test_sampled_statistics_are_marked_as_estimates(client, owner):
    exact = {"name": "mm", "type": "float", "duckdb_type": "DOUBLE", "null_count": 0, "distinct_count": 3,
             "min": 1.5, "max": 9.0, "mean": 4.0, "top_values": [],
             "histogram": [{"start": 1.5, "end": 5, "count": 7}, {"start": 5, "end": 9, "count": 5}]}
    city = {"name": "city", "type": "string", "duckdb_type": "VARCHAR", "null_count": 0, "distinct_count": 2000,
            "sampled": True, "histogram": [], "top_values": [{"value": "city_7", "count": 5120}]}
    ds = dataset(owner, "Big file", row_count=10_000_000, analysis_status="done", columns=[exact, city])
    html = client.get(f"/datasets/{ds.slug}").content.decode()
    assert html.count("data-sampled") == 1  # the sampled column only
    assert '<span class="top-count">≈5,120</span>' in html
    assert ": 7</title>" in html  # the exact column's histogram label has no "≈"


def test_description_script_is_never_rendered_raw(client, owner):
    ds = dataset(owner, "Tricky", description="Hello <script>alert('x')</script> **bold**")
    html = client.get(f"/datasets/{ds.slug}").content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html and "<strong>bold</strong>" in html


def test_analysis_states_are_shown(client, owner):
    running = dataset(owner, "Running", analysis_status="running", analysis_progress=0.4, analysis_message="reading")
    failed = dataset(owner, "Failed", analysis_status="failed", analysis_message="Row 3 has 4 fields, expected 3.")
    rejects = dataset(owner, "Rejects", analysis_status="done_with_rejects", rejected_rows=12,
                      analysis_message="Analysed with 12 rejected rows: bad bytes", row_count=5)
    html = client.get(f"/datasets/{running.slug}").content.decode()
    assert 'data-poll-url="/api/v1/datasets/' in html and 'max="100" value="40"' in html
    # The analysis's own words quote the file (columns, values): the public reads the outcome only.
    public_failed = client.get(f"/datasets/{failed.slug}").content.decode()
    assert "The file could not be analysed" in public_failed and "Row 3" not in public_failed
    public_rejects = client.get(f"/datasets/{rejects.slug}").content.decode()
    assert "Analysed with 12 rejected rows" in public_rejects and "bad bytes" not in public_rejects
    assert "Analysing the file" in html
    client.force_login(owner)
    assert "Row 3 has 4 fields" in client.get(f"/me/datasets/{failed.slug}/edit").content.decode()
    assert "bad bytes" in client.get(f"/me/datasets/{rejects.slug}/edit").content.decode()


def test_publisher_pages_prompt_when_signed_out(client, owner):
    ds = dataset(owner, "Mine")
    for url in ("/me/datasets", "/me/datasets/new", f"/me/datasets/{ds.slug}/edit"):
        response = client.get(url)
        assert response.status_code == 200
        assert "data-sign-in-prompt" in response.content.decode()


def test_publisher_pages_for_the_owner(client, owner):
    ds = dataset(owner, "Mine", status="draft")
    client.force_login(owner)
    html = client.get("/me/datasets").content.decode()
    assert "Mine" in html and 'data-status="draft"' in html
    assert client.get("/me/datasets/new").status_code == 200
    edit = client.get(f"/me/datasets/{ds.slug}/edit").content.decode()
    assert "data-upload-form" in edit and 'value="25"' in edit
    client.force_login(make_user(OTHER))
    assert client.get(f"/me/datasets/{ds.slug}/edit").status_code == 404


def test_about_keeps_the_marketing_page(client, db):
    html = client.get("/about").content.decode()
    assert "How a purchase settles" in html and 'data-health-url="/healthz"' in html


def _no_inline_code(html):
    import re

    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline <script>"
    assert not re.search(r"<style[\s>]", html), "an inline <style>"
    assert not re.search(r"\sstyle=", html), "a style attribute"
    assert not re.search(r"\son[a-z]+=", html), "an event-handler attribute"


def test_every_page_has_the_content_security_policy_and_no_inline_code(client, owner, settings, index_dir):
    SearchSync().rebuild()
    ds = dataset(owner, "Rainfall", analysis_status="done", analysis_progress=1.0, row_count=2,
                 columns=[{"name": "mm", "type": "number", "histogram": [{"start": 0, "end": 1, "count": 3}],
                           "top_values": []},
                          {"name": "city", "type": "text", "top_values": [{"value": "Lyon", "count": 2}]}])
    analysing = dataset(owner, "Analysing", analysis_status="running", analysis_progress=0.4)
    client.force_login(owner)
    for path in ("/", "/about", f"/datasets/{ds.slug}", f"/datasets/{analysing.slug}", "/me/datasets",
                 "/me/datasets/new", f"/me/datasets/{ds.slug}/edit", "/me/profile", "/me/library",
                 "/me/sales", "/api/v1/docs", "/no-such-page"):
        response = client.get(path)
        assert response.status_code in (200, 404), path
        assert response["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY, path
        assert "default-src 'self'" in response["Content-Security-Policy"]
        assert "unsafe-inline" not in response["Content-Security-Policy"]
        _no_inline_code(response.content.decode())
    for path in ("/healthz", "/api/v1/search", "/admin/login/"):
        assert client.get(path)["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY, path
    # The API docs' start-up script is a file of this site, not inline.
    docs = client.get("/api/v1/docs").content.decode()
    assert '<script src="/api/v1/docs?script="></script>' in docs
    script = client.get("/api/v1/docs?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()
    # Avatars keep their stricter policy.
    assert client.get(f"/avatars/{OWNER}")["Content-Security-Policy"].startswith("default-src 'none'")


def test_the_header_comes_with_the_signed_in_state(client, owner):
    """No request to /api/v1/auth/me is needed to draw it: a signed-out visit makes none."""
    signed_out = client.get("/about").content.decode()
    assert "data-signed-in" not in signed_out and "<span>Connect wallet</span>" in signed_out
    owner.display_name = "Ada <b>"
    owner.save()
    client.force_login(owner)
    html = client.get("/about").content.decode()
    assert 'data-signed-in="true"' in html and "<span>Sign out</span>" in html
    assert '<span data-wallet-name>Ada &lt;b&gt;</span>' in html
    assert f'title="{OWNER}"' in html and f'src="/avatars/{OWNER}?v=identicon"' in html
    owner.display_name = ""
    owner.save()
    assert f"<span data-wallet-name>{OWNER[:6]}…{OWNER[-4:]}</span>" in client.get("/about").content.decode()


# Buying, the library and the sales --------------------------------------------------------------

BUYER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
MARKET = "0x" + "4d" * 20


def order_of(version, buyer, *, status="open", order_id=1, **fields):
    """An order row of the version's listing, as the indexer writes it from OrderCreated (the
    market recorded as the chain's deployed one)."""
    from datetime import timedelta

    from django.utils import timezone

    from marketplace.chain.models import Deployment
    from marketplace.orders.models import Order

    Deployment.objects.get_or_create(chain_id=31337, contract="DataMarket", defaults=dict(
        address=MARKET, tx_hash="0x" + "00" * 32, block_number=1, block_hash="0x" + "00" * 32))
    listing = version.listings.get()
    return Order.objects.create(
        chain_id=31337, market=MARKET, order_id=order_id, listing_id=listing.listing_id,
        buyer=buyer, token=TOKEN, amount=listing.price, fee_bps=250,
        release_at=timezone.now() + timedelta(days=3), status=status,
        tx_hash="0x" + f"{order_id:064x}", log_index=0, block_number=10 + order_id, **fields)


def test_the_buy_card_says_what_a_visitor_can_do(client, owner):
    ds = dataset(owner, "Rainfall", analysis_status="done")
    version = ds.versions.get()
    signed_out = client.get(f"/datasets/{ds.slug}").content.decode()
    assert 'data-state="buyable"' in signed_out and "Buy for 25 USDC" in signed_out
    assert f'data-price="{version.price}"' in signed_out and "signs you in first" in signed_out
    client.force_login(owner)
    mine = client.get(f"/datasets/{ds.slug}").content.decode()
    assert 'data-state="owner"' in mine and "data-buy-button" not in mine
    assert "You publish this dataset" in mine
    version.listings.update(active=False)
    client.force_login(make_user(BUYER))
    paused = client.get(f"/datasets/{ds.slug}").content.decode()
    assert 'data-state="not_for_sale"' in paused and "paused sales" in paused


def test_a_buyer_with_a_live_order_sees_the_download_instead_of_buy(client, owner):
    ds = dataset(owner, "Rainfall", analysis_status="done")
    order = order_of(ds.versions.get(), BUYER)
    client.force_login(make_user(BUYER))
    html = client.get(f"/datasets/{ds.slug}").content.decode()
    assert 'data-state="bought"' in html and "data-buy-button" not in html
    assert "data-download" in html
    assert f"Order #{order.order_id}" in html and "You own version 1" in html
    order.status = "refunded"
    order.save()
    html = client.get(f"/datasets/{ds.slug}").content.decode()  # a full refund: may buy again
    assert 'data-state="buyable"' in html and "data-buy-button" in html


def test_library_and_sales_prompt_when_signed_out_and_are_linked_when_signed_in(client, owner):
    for path, audience in (("/me/library", "buyers"), ("/me/sales", "publishers")):
        html = client.get(path).content.decode()
        assert "data-sign-in-prompt" in html and f"signed-in {audience}" in html
    signed_out = client.get("/about").content.decode()
    assert 'data-account-link hidden><a class="nav-link" href="/me/library"' in signed_out
    client.force_login(owner)
    html = client.get("/about").content.decode()
    assert 'data-account-link><a class="nav-link" href="/me/library"' in html
    assert 'data-account-link><a class="nav-link" href="/me/sales"' in html


def test_library_shows_each_order_with_what_may_be_done(client, owner, settings):
    from marketplace.orders.models import DisputeStatement

    settings.EXPLORER_URL = "https://explorer.example"
    first = dataset(owner, "Rainfall", analysis_status="done")
    second = dataset(owner, "Tides", analysis_status="done", price=1_500_000)
    order_of(first.versions.get(), BUYER, order_id=1)
    disputed = order_of(second.versions.get(), BUYER, order_id=2, status="disputed",
                        settled_tx_hash="0x" + "ee" * 32)
    DisputeStatement.objects.create(chain_id=31337, market=MARKET, order_id=2, role="buyer",
                                    order_tx_hash=disputed.tx_hash, author=BUYER,
                                    text="Wrong <b>file</b>")
    client.force_login(make_user(BUYER))
    html = client.get("/me/library").content.decode()
    assert html.index('data-order="2"') < html.index('data-order="1"')  # newest first
    open_card = html[html.index('data-order="1"'):]
    assert "data-order-confirm" in open_card and "data-dispute-form" in open_card
    assert "25 USDC" in open_card
    disputed_card = html[html.index('data-order="2"'):html.index('data-order="1"')]
    assert "1.5 USDC" in disputed_card and "data-order-confirm" not in disputed_card
    assert "Wrong &lt;b&gt;file&lt;/b&gt;" in disputed_card  # escaped
    assert "has not answered yet" in disputed_card
    assert f'href="https://explorer.example/tx/{disputed.settled_tx_hash}"' in disputed_card
    assert "data-disputes-notice" in html
    client.force_login(make_user(OTHER))
    assert "Nothing bought yet" in client.get("/me/library").content.decode()


def test_sales_show_earnings_disputes_and_payouts(client, owner):
    ds = dataset(owner, "Rainfall", analysis_status="done")
    other = dataset(owner, "Tides", analysis_status="done")
    third = dataset(owner, "Winds", analysis_status="done")
    order_of(ds.versions.get(), BUYER, order_id=1)  # 25 in escrow: 24.375 after the fee
    order_of(other.versions.get(), BUYER, order_id=2, status="released", owner_amount=24_375_000,
             fee=625_000, settled_tx_hash="0x" + "aa" * 32)
    order_of(third.versions.get(), OTHER, order_id=3, status="disputed")
    client.force_login(owner)
    html = client.get("/me/sales").content.decode()
    assert 'data-summary="pending"' in html
    pending = html[html.index('data-summary="pending"'):html.index('data-summary="paid"')]
    paid = html[html.index('data-summary="paid"'):html.index('data-summary="refunded"')]
    assert "48.75" in pending and "24.375" in paid  # open + disputed, after the fee; released
    assert "data-dispute-notice" in html and "#dispute-3" in html
    assert 'data-statement-form data-order="3"' in html
    assert 'data-payout="2"' in html and "0xaaaa" in html
    client.force_login(make_user(BUYER))
    assert "No sales yet" in client.get("/me/sales").content.decode()

"""Discovery for agents: GET /discovery/resources lists the versions on sale in the shape of the x402
v2 specification's discovery list, each with the same `accepts` entry its paid URL's 402 gives
(checked against the chain for a listing the indexer read from anvil), and the dataset API and the
search results carry each version's price, asset, network and paid URL. Searching, filters, paging
and bad parameters."""
from urllib.parse import urlsplit

from django.utils import timezone
import pytest
from x402.schemas import PaymentRequirements

from marketplace.accounts.services import wallet_user
from marketplace.catalog import services
from marketplace.catalog.indexing import SearchSync
from marketplace.catalog.models import Dataset, DatasetVersion, Listing
from marketplace.chain import indexer
from marketplace.payments.verify import requirement_for
from tests.factories import make_public
from tests.integration.test_listing import PUBLISHER, PRICE, link, make_version, send_prepared

pytestmark = [pytest.mark.chain, pytest.mark.django_db]
URL = "/discovery/resources"


@pytest.fixture
def index_dir(settings, tmp_path):
    settings.SEARCH_INDEX_DIR = tmp_path / "search"
    return settings.SEARCH_INDEX_DIR


@pytest.fixture
def publisher(db):
    return wallet_user(PUBLISHER)


@pytest.fixture
def on_sale(chain, client, publisher, index_dir):
    """A version listed from the publisher's wallet on anvil, approved on-chain, both read by the
    indexer, the version approved and its dataset listed, the search index built: (version,
    listing id)."""
    version = make_version(publisher, chain)
    Dataset.objects.filter(pk=version.dataset_id).update(summary="Population of every city", category="social",
                                                         tags=["cities", "census"])
    client.force_login(publisher)
    assert link(client, version, send_prepared(chain, client, version)).status_code == 201
    client.logout()
    listing_id = int(version.listings.get().listing_id)
    chain.send(chain.market.contract.functions.setApproval([listing_id], True), chain.operator.address)
    indexer.index_chain(chain.w3)
    assert version.listings.get().approved, "the indexer read the approval"
    DatasetVersion.objects.filter(pk=version.pk).update(review="approved")
    Dataset.objects.filter(pk=version.dataset_id).update(status="listed", published_at=timezone.now())
    SearchSync().rebuild()
    return version, listing_id


def listed(publisher, chain, title, *, category="economics", tags=(), price=PRICE):
    """A dataset whose version is public and on sale, as the review and the indexer leave it
    (tests.factories.make_public: its listing row is made, not read from the chain)."""
    dataset = services.create_dataset(owner=publisher, title=title, summary=f"About {title}", license="CC0-1.0",
                                      tags=list(tags), category=category)
    version = DatasetVersion.objects.create(
        dataset=dataset, number=1, file=f"x/{dataset.pk}.csv", original_name="a.csv", format="csv", size=10,
        content_hash="0x" + f"{dataset.pk:064x}", price=price, token=chain.token.address)
    return make_public(version)


def discover(client, **params):
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return response.json()


def test_a_listing_read_from_anvil_is_listed_with_what_its_402_asks(client, chain, on_sale):
    version, listing_id = on_sale
    page = discover(client)
    assert page["x402Version"] == 2 and page["pagination"] == {"limit": 20, "offset": 0, "total": 1}
    (item,) = page["items"]
    resource = f"http://testserver/pay/{listing_id}"
    assert item["resource"] == resource and item["type"] == "http" and item["x402Version"] == 2
    # The entry the paid URL's 402 gives, read from the chain, is what the indexed rows gave.
    from_chain = requirement_for(listing_id, resource=resource, description="Cities 1, version 1",
                                 mime_type="text/csv")
    assert item["accepts"] == [from_chain.accepts()]
    (accepts,) = item["accepts"]
    assert accepts["amount"] == str(PRICE) and accepts["asset"] == chain.token.address
    assert accepts["payTo"] == chain.market.address and accepts["network"] == f"eip155:{chain.w3.eth.chain_id}"
    assert PaymentRequirements.model_validate(accepts).amount == str(PRICE)  # the x402 package reads it
    assert isinstance(item["lastUpdated"], int) and abs(item["lastUpdated"] - timezone.now().timestamp()) < 600
    metadata = item["metadata"]
    assert metadata["sha256"] == version.content_hash and metadata["size"] == version.size
    assert metadata["category"] == "social" and metadata["provider"] == PUBLISHER
    assert metadata["dataset"] == version.dataset.slug and metadata["version"] == 1
    assert metadata["datasetUrl"] == f"http://testserver/api/v1/datasets/{version.dataset.slug}"
    assert item["extensions"]["bazaar"]["info"]["input"] == {"type": "http", "method": "GET"}


def test_the_dataset_api_and_the_search_results_name_the_paid_url(client, chain, on_sale):
    version, listing_id = on_sale
    terms = {"price": str(PRICE), "asset": chain.token.address, "network": f"eip155:{chain.w3.eth.chain_id}",
             "resource": f"http://testserver/pay/{listing_id}"}
    detail = client.get(f"/api/v1/datasets/{version.dataset.slug}").json()
    assert detail["versions"][0]["payment"] == terms
    assert detail["versions"][0]["listing"]["listing_id"] == str(listing_id)  # the existing fields stay
    (hit,) = client.get("/api/v1/search", {"q": "cities"}).json()["results"]
    assert hit["payment"] == terms and hit["price"]["amount"] == str(PRICE)


def test_a_repriced_listing_is_listed_at_its_new_price(client, chain, on_sale, publisher):
    version, listing_id = on_sale
    chain.send(chain.market.contract.functions.updateListing(listing_id, 2 * PRICE, PUBLISHER), PUBLISHER)
    indexer.index_chain(chain.w3)
    (item,) = discover(client)["items"]
    assert item["accepts"][0]["amount"] == str(2 * PRICE)
    resource = item["resource"]
    assert item["accepts"] == [requirement_for(listing_id, resource=resource).accepts()]


@pytest.mark.parametrize("change", ["inactive", "unapproved", "removed", "other chain"])
def test_a_version_not_on_sale_here_is_left_out(client, chain, on_sale, change):
    version, _ = on_sale
    listing = Listing.objects.filter(version=version)
    if change == "inactive":
        listing.update(active=False)
    elif change == "unapproved":  # another version keeps the dataset listed; this one is not sold
        listing.update(approved=False)
    elif change == "removed":
        Dataset.objects.filter(pk=version.dataset_id).update(removed_at=timezone.now())
    else:
        listing.update(chain_id=1)
    page = discover(client)
    assert page["items"] == [] and page["pagination"]["total"] == 1
    client.force_login(version.dataset.owner)  # the owner sees every version, none of them payable
    assert client.get(f"/api/v1/datasets/{version.dataset.slug}").json()["versions"][0]["payment"] is None


def test_words_and_filters_search_the_catalog(client, chain, publisher, index_dir):
    listed(publisher, chain, "Wheat harvests", category="environment", tags=["grain"])
    listed(publisher, chain, "Wheat prices", category="economics")
    listed(publisher, chain, "Rainfall", category="science")
    SearchSync().rebuild()

    def titles(**params):
        return sorted(i["metadata"]["title"] for i in discover(client, **params)["items"])

    assert titles(q="wheat") == ["Wheat harvests", "Wheat prices"]
    assert titles(q="wheat", category="environment") == ["Wheat harvests"]
    assert titles(tag="grain") == ["Wheat harvests"]
    assert titles(q="nothing-matches-this") == []
    assert discover(client, q="wheat")["pagination"]["total"] == 2


def test_pages_are_stable_and_cover_everything_once(client, chain, publisher, index_dir):
    for n in range(5):
        listed(publisher, chain, f"Series {n}")
    SearchSync().rebuild()
    whole = [i["resource"] for i in discover(client, limit=5)["items"]]
    pages = [discover(client, limit=2, offset=offset) for offset in (0, 2, 4)]
    assert [i["resource"] for page in pages for i in page["items"]] == whole
    assert len(set(whole)) == 5 and all(urlsplit(r).path.startswith("/pay/") for r in whole)
    assert [page["pagination"] for page in pages] == [{"limit": 2, "offset": o, "total": 5} for o in (0, 2, 4)]
    assert discover(client, limit=2, offset=2)["items"] == pages[1]["items"]  # asked again: the same page
    assert discover(client, offset=5)["items"] == []


def test_the_x402_filters_match_this_market_or_nothing(client, chain, on_sale):
    assert len(discover(client, type="http", scheme="exact", network=f"eip155:{chain.w3.eth.chain_id}",
                        payTo=chain.market.address.lower(), extensions="bazaar")["items"]) == 1
    for params in ({"type": "mcp"}, {"scheme": "upto"}, {"network": "eip155:8453"},
                   {"payTo": chain.token.address}, {"extensions": "payment-identifier"}):
        assert discover(client, **params)["items"] == [], params


@pytest.mark.parametrize("params, field", [
    ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": "ten"}, "limit"), ({"offset": -1}, "offset"),
    ({"offset": 10_001}, "offset"), ({"sort": "cheapest"}, "sort"), ({"category": "nonsense"}, "category"),
    ({"price_min": 5, "price_max": 1}, "price_max"), ({"q": "x" * 513}, "q"),
])
def test_bad_parameters_are_refused_with_a_message(client, chain, index_dir, params, field):
    response = client.get(URL, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"] and error["message"].startswith(f"{field}:")


def test_an_unknown_parameter_is_named(client, chain, index_dir):
    response = client.get(URL, {"page": 2})
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_parameter"
    assert "page" in response.json()["error"]["message"]


def test_no_session_no_csrf_and_cacheable(client, chain, on_sale):
    response = client.get(URL)
    assert response.status_code == 200 and "public" in response["Cache-Control"]
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies
    assert "Cookie" not in response.get("Vary", "")
    assert client.post(URL).status_code == 405


def test_the_index_not_built_yet_is_a_clear_error(client, chain, index_dir):
    response = client.get(URL)
    assert response.status_code == 503 and response.json()["error"]["code"] == "index_building"

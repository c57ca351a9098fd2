"""Gated downloads against anvil with the real contracts: a buyer whose order the indexer has read
gets a link from the signed-in session or from a request signed by the wallet (EIP-712, single-use
nonce), then the file with HTTP Range as RFC 9110 says and every request logged; a non-buyer, a
refunded buyer, an expired link, a replayed, expired or forged request are refused."""
import hashlib
import random
import secrets
import time

from django.core.files.base import ContentFile
from django.core.files.storage import storages
from eth_account import Account
from eth_account.messages import encode_typed_data
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog.models import Dataset, DatasetVersion
from marketplace.chain import indexer
from marketplace.orders import signed
from marketplace.orders.models import Download, DownloadGrant
from tests.conftest import DEV_KEYS
from tests.integration.test_listing import PRICE, link, send_prepared

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

CONTENT = random.Random(18).randbytes(3 * 1024 * 1024 + 17)  # a few chunks and a ragged end
SHA = hashlib.sha256(CONTENT).hexdigest()
PUBLISHER_KEY, BUYER_KEY, STRANGER_KEY = DEV_KEYS[1], DEV_KEYS[2], DEV_KEYS[3]


def list_and_buy(chain, client, content: bytes, slug: str = "rainfall"):
    """A version of `content` listed and approved on-chain, bought by the buyer, the order
    indexed: (version, buyer, listing id)."""
    version, listing_id = list_version(chain, client, content, slug)
    buyer = Account.from_key(BUYER_KEY)
    chain.token.mint(buyer.address, PRICE)
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), buyer.address)
    chain.send(chain.market.contract.functions.purchase(listing_id, PRICE), buyer.address)
    indexer.index_chain(chain.w3)
    return version, buyer, listing_id


def list_version(chain, client, content: bytes, slug: str = "rainfall"):
    """A version of `content` listed, linked and approved on-chain, as a moderator's approval
    leaves it: (version, listing id)."""
    publisher = wallet_user(Account.from_key(PUBLISHER_KEY).address)
    client.force_login(publisher)
    dataset = Dataset.objects.create(owner=publisher, slug=slug, title=slug.title(),
                                     license="CC-BY-4.0", payout_address=publisher.address)
    name = storages["private"].save(f"datasets/test-{secrets.token_hex(4)}/{slug}.csv",
                                    ContentFile(content))
    version = DatasetVersion.objects.create(
        dataset=dataset, number=1, file=name, original_name=f"{slug}.csv", format="csv",
        size=len(content), content_hash="0x" + hashlib.sha256(content).hexdigest(), price=PRICE,
        token=chain.token.address, analysis_status="done")
    assert link(client, version, send_prepared(chain, client, version)).status_code == 201
    listing_id = int(version.listings.get().listing_id)
    chain.send(chain.market.contract.functions.setApproval([listing_id], True), chain.operator.address)
    version.listings.update(approved=True)  # what the moderator's approval records
    DatasetVersion.objects.filter(pk=version.pk).update(review="approved")
    Dataset.objects.filter(pk=dataset.pk).update(status="listed")
    client.logout()
    return version, listing_id


@pytest.fixture
def bought(chain, client):
    """A version listed and approved on-chain, bought by the buyer, the order indexed."""
    version, buyer, listing_id = list_and_buy(chain, client, CONTENT)
    yield version, buyer, listing_id
    storages["private"].delete(version.file)


def url(version):
    return f"/api/v1/datasets/{version.dataset.slug}/versions/{version.number}/download"


def as_wallet(client, key):
    client.force_login(wallet_user(Account.from_key(key).address))
    return client


def link_for(client, version):
    response = client.post(url(version), content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def body(response):
    return b"".join(response.streaming_content)


def test_a_buyer_downloads_the_whole_file_and_the_download_is_logged(client, bought):
    version, buyer, _ = bought
    granted = link_for(as_wallet(client, BUYER_KEY), version)
    assert granted["size"] == len(CONTENT) and granted["sha256"] == SHA and granted["url"].startswith("/downloads/")
    client.logout()  # the link itself is the credential, for 10 minutes
    response = client.get(granted["url"])
    assert response.status_code == 200 and body(response) == CONTENT
    assert response["ETag"] == f'"{SHA}"' and response["Accept-Ranges"] == "bytes"
    assert response["Content-Length"] == str(len(CONTENT))
    assert response["Content-Disposition"] == 'attachment; filename="rainfall-v1.csv"'
    (log,) = Download.objects.all()
    assert log.buyer == buyer.address and log.bytes_served == len(CONTENT) and log.finished_at and log.status == 200
    assert DownloadGrant.objects.get().token_hash != granted["url"].rsplit("/", 1)[1]  # only its hash is kept


def test_ranges_as_rfc_9110_says_and_a_download_resumed(client, bought):
    version, _, _ = bought
    link = link_for(as_wallet(client, BUYER_KEY), version)["url"]
    size = len(CONTENT)

    part = client.get(link, HTTP_RANGE="bytes=100-199")
    assert part.status_code == 206 and body(part) == CONTENT[100:200]
    assert part["Content-Range"] == f"bytes 100-199/{size}" and part["Content-Length"] == "100"
    assert body(client.get(link, HTTP_RANGE="bytes=-10")) == CONTENT[-10:]
    assert client.get(link, HTTP_RANGE=f"bytes={size - 5}-{size + 1000}")["Content-Range"] == \
        f"bytes {size - 5}-{size - 1}/{size}"
    past = client.get(link, HTTP_RANGE=f"bytes={size}-")
    assert past.status_code == 416 and past["Content-Range"] == f"bytes */{size}"
    assert client.get(link, HTTP_RANGE="bytes=-0").status_code == 416
    # Ignored, as RFC 9110 allows: several ranges, a malformed one, an If-Range for another file.
    for headers in ({"HTTP_RANGE": "bytes=0-1,5-6"}, {"HTTP_RANGE": "bytes=9-3"}, {"HTTP_RANGE": "lines=1-2"},
                    {"HTTP_RANGE": "bytes=0-9", "HTTP_IF_RANGE": '"another"'}):
        whole = client.get(link, **headers)
        assert whole.status_code == 200 and len(body(whole)) == size, headers
    assert client.get(link, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=f'"{SHA}"').status_code == 206

    # A download cut after a megabyte, resumed from there.
    first = client.get(link)
    received = next(iter(first.streaming_content))
    first.close()  # the client went away
    rest = client.get(link, HTTP_RANGE=f"bytes={len(received)}-")
    assert hashlib.sha256(received + body(rest)).hexdigest() == SHA
    cut = Download.objects.filter(range="").order_by("-started_at").first()
    assert cut.finished_at is None and 0 < cut.bytes_served < size  # what it really got


def test_no_link_for_a_stranger_anonymously_or_after_a_full_refund(client, bought, chain):
    version, buyer, listing_id = bought
    as_wallet(client, STRANGER_KEY)
    stranger = client.post(url(version), content_type="application/json")
    assert stranger.status_code == 403 and stranger.json()["error"]["code"] == "not_bought"
    client.logout()
    anonymous = client.post(url(version), content_type="application/json")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "not_signed_in"

    link = link_for(as_wallet(client, BUYER_KEY), version)["url"]
    order_id = chain.market.order_of(listing_id, buyer.address)
    chain.send(chain.market.contract.functions.dispute(order_id), buyer.address)
    chain.send(chain.market.contract.functions.resolve(order_id, 10_000), chain.operator.address)
    indexer.index_chain(chain.w3)
    refused = client.get(link)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_bought"
    assert client.post(url(version), content_type="application/json").status_code == 403


def test_an_expired_link_is_gone(client, bought):
    version, _, _ = bought
    link = link_for(as_wallet(client, BUYER_KEY), version)["url"]
    DownloadGrant.objects.update(expires_at="2000-01-01T00:00:00Z")
    gone = client.get(link)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "token_expired"
    assert client.get("/downloads/not-a-token").status_code == 410


def signed_request(chain, version, key, *, expiry=None, nonce=None, buyer=None):
    account = Account.from_key(key)
    fields = dict(market=chain.market.address, buyer=buyer or account.address, content_hash=version.content_hash,
                  expiry=expiry or int(time.time()) + 300, nonce=nonce or "0x" + secrets.token_hex(32))
    signature = account.sign_message(encode_typed_data(full_message=signed.typed_data(**fields))).signature
    return {"buyer": fields["buyer"], "expiry": fields["expiry"], "nonce": fields["nonce"],
            "signature": "0x" + bytes(signature).hex()}


def test_a_script_signs_a_request_once(client, bought, chain):
    version, buyer, _ = bought
    request = signed_request(chain, version, BUYER_KEY)
    granted = client.post(url(version), request, content_type="application/json")
    assert granted.status_code == 201, granted.content
    assert body(client.get(granted.json()["url"], HTTP_RANGE="bytes=0-99")) == CONTENT[:100]
    assert DownloadGrant.objects.get().via == "signature"

    replayed = client.post(url(version), request, content_type="application/json")
    assert replayed.status_code == 409 and replayed.json()["error"]["code"] == "nonce_used"
    expired = client.post(url(version), signed_request(chain, version, BUYER_KEY, expiry=int(time.time()) - 1),
                          content_type="application/json")
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "request_expired"
    too_far = client.post(url(version), signed_request(chain, version, BUYER_KEY, expiry=int(time.time()) + 3600),
                          content_type="application/json")
    assert too_far.status_code == 400 and too_far.json()["error"]["code"] == "expiry_too_far"
    forged = client.post(url(version), signed_request(chain, version, STRANGER_KEY, buyer=buyer.address),
                         content_type="application/json")
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "bad_signature"
    stranger = client.post(url(version), signed_request(chain, version, STRANGER_KEY), content_type="application/json")
    assert stranger.status_code == 403 and stranger.json()["error"]["code"] == "not_bought"
    partial = client.post(url(version), {"buyer": buyer.address}, content_type="application/json")
    assert partial.status_code == 400 and set(partial.json()["error"]["fields"]) == {"expiry", "nonce", "signature"}


def test_links_are_rate_limited_per_wallet(client, bought, settings):
    version, _, _ = bought
    settings.LIMITS = {**settings.LIMITS, "download": {"ip": "off", "wallet": "2/hour"}}
    as_wallet(client, BUYER_KEY)
    assert [client.post(url(version), content_type="application/json").status_code for _ in range(3)] == [201, 201, 429]


def test_the_buyer_s_library_and_the_publisher_s_sales(client, bought, chain):
    version, buyer, listing_id = bought
    (order,) = as_wallet(client, BUYER_KEY).get("/api/v1/me/orders").json()
    assert order["dataset"] == "rainfall" and order["version"] == 1 and order["status"] == "open"
    assert order["amount"] == str(PRICE) and order["buyer"] == buyer.address and order["can_download"]
    assert order["listing_id"] == str(listing_id)
    assert as_wallet(client, STRANGER_KEY).get("/api/v1/me/orders").json() == []
    assert client.get("/api/v1/me/sales").json() == []
    (sale,) = as_wallet(client, PUBLISHER_KEY).get("/api/v1/me/sales").json()
    assert sale["order_id"] == order["order_id"] and sale["buyer"] == buyer.address
    client.logout()
    refused = client.get("/api/v1/me/orders")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_signed_in"


def test_an_older_market_s_order_of_the_same_listing_id_is_nobody_s_sale(client, bought, chain):
    """Listing ids start over with a new market. An order an older market made for the same
    listing id is not the publisher's sale, is linked to no version and has no seller."""
    from marketplace.orders import selectors
    from marketplace.orders.models import Order

    version, buyer, listing_id = bought
    (current,) = Order.objects.all()
    old = Order.objects.create(**{
        **{f.name: getattr(current, f.name) for f in Order._meta.fields if f.name != "id"},
        "market": Account.create().address, "order_id": 77, "tx_hash": "0x" + "77" * 32})
    sales = as_wallet(client, PUBLISHER_KEY).get("/api/v1/me/sales").json()
    assert [s["order_id"] for s in sales] == [str(current.order_id)]
    assert selectors.with_versions([old, current]) == [(old, None), (current, version)]
    publisher = Account.from_key(PUBLISHER_KEY).address
    assert selectors.party(publisher, old) is None and selectors.party(publisher, current) == "seller"


def test_a_forgotten_chain_ends_its_links_and_no_token_reaches_the_log(client, bought, chain, caplog):
    from marketplace.chain.services import forget_chain

    version, _, _ = bought
    link = link_for(as_wallet(client, BUYER_KEY), version)["url"]
    forget_chain(chain.w3.eth.chain_id)
    with caplog.at_level("INFO"):
        gone = client.get(link)
    assert gone.status_code == 410 and not DownloadGrant.objects.exists()
    assert link.rsplit("/", 1)[1] not in caplog.text  # a token, even a dead one, is not logged


def test_a_version_the_public_cannot_see_is_not_found_for_a_stranger(client, bought):
    version, _, _ = bought
    Dataset.objects.filter(pk=version.dataset_id).update(status="draft")
    as_wallet(client, STRANGER_KEY)
    hidden = client.post(url(version), content_type="application/json")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    # The buyer still gets it: bought files stay downloadable when a dataset leaves the catalog.
    assert link_for(as_wallet(client, BUYER_KEY), version)["size"] == len(CONTENT)


def test_a_database_lost_mid_download_ends_the_body_short_without_an_error(client, bought, monkeypatch, caplog):
    """The stream ends instead of raising: a raised error would have the server log the request
    line, which holds the token. The client sees a short body and resumes with Range."""
    import psycopg
    from django.db import connection

    from marketplace.orders import delivery
    from tests.conftest import database_url

    version, _, _ = bought
    link = link_for(as_wallet(client, BUYER_KEY), version)["url"]
    response = client.get(link)
    chunks = iter(response.streaming_content)
    first = next(chunks)
    monkeypatch.setattr(delivery, "RECHECK_SECONDS", 0)  # the next chunk asks the database again
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
    with caplog.at_level("INFO"):
        rest = b"".join(chunks)
    connection.close()  # the test's own connection was the one cut
    assert 0 < len(first + rest) < len(CONTENT)
    assert "stopped after" in caplog.text and link.rsplit("/", 1)[1] not in caplog.text


def test_a_bought_version_is_never_deleted_and_stays_downloadable_when_delisted(client, bought, chain):
    from django.contrib.auth import get_user_model
    from django.db.models import ProtectedError
    from django.test import Client

    version, _, listing_id = bought
    with pytest.raises(ProtectedError, match="was bought"):
        version.dataset.delete()
    assert DatasetVersion.objects.filter(pk=version.pk).exists() and version.listings.exists()
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password-1")
    staff = Client()
    staff.force_login(admin)
    assert staff.get(f"/admin/catalog/dataset/{version.dataset_id}/delete/").status_code == 403
    bulk = staff.post("/admin/catalog/dataset/", {"action": "delete_selected", "_selected_action": [
        str(version.dataset_id)], "post": "yes"})
    assert bulk.status_code == 403 and Dataset.objects.filter(pk=version.dataset_id).exists()

    # The owner stops selling it and a moderator delists it: the buyer still downloads it.
    functions = chain.market.contract.functions
    chain.send(functions.setListingActive(listing_id, False), Account.from_key(PUBLISHER_KEY).address)
    chain.send(functions.setApproval([listing_id], False), chain.operator.address)
    indexer.index_chain(chain.w3)
    Dataset.objects.filter(pk=version.dataset_id).update(status="delisted")
    granted = link_for(as_wallet(client, BUYER_KEY), version)
    assert body(client.get(granted["url"])) == CONTENT

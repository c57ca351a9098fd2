"""Changing a listing's price from the wallet: the server prepares `updateListing` for the owner,
the wallet sends it and the page posts its hash; the chain indexer reads through its block and its
handler sets the new price and payout from `ListingUpdated` (once per event, keyed by tx hash and
log index). The chain is the source of truth: pages, the API and the search index show the price
the indexer read."""
from eth_account import Account
import pytest

from marketplace.accounts.models import User
from marketplace.accounts.services import wallet_user
from marketplace.catalog.indexing import SearchSync, reader
from marketplace.catalog.models import Dataset, Listing, ListingUpdate, SearchChange
from marketplace.catalog.search import SearchQuery
from marketplace.chain import indexer, sender
from marketplace.chain.constants import max_price
from marketplace.chain.contracts import DataMarket
from marketplace.chain.services import deploy_contract
from tests.conftest import DEV_KEYS, sync_until
from tests.factories import decide_every_open_revision
from tests.integration.test_listing import (  # noqa: F401  (fixtures)
    PRICE, PUBLISHER, STRANGER, create_listing, listed_version, make_version, publisher, publisher_client,
)

MAX_PRICE = max_price()  # DataMarket.MAX_PRICE, from the contract's artifact

pytestmark = pytest.mark.chain

NEW_PRICE = 30 * 10**6
OTHER_PAYOUT = Account.from_key(DEV_KEYS[3]).address


def update_url(version, suffix=""):
    return f"/api/v1/datasets/{version.dataset.slug}/versions/{version.number}/listing/update{suffix}"


def prepare(client, version, **body):
    return client.post(update_url(version, "/prepare"), body, content_type="application/json")


def mirror(client, version, tx_hash):
    return client.post(update_url(version), {"tx_hash": tx_hash}, content_type="application/json")


def send(chain, tx, sender=PUBLISHER, **extra):
    """What the wallet does with a prepared transaction; returns the hash (mined, maybe reverted)."""
    tx_hash = chain.w3.eth.send_transaction({"from": sender, "to": tx["to"], "data": tx["data"], **extra})
    chain.w3.eth.wait_for_transaction_receipt(tx_hash)
    return "0x" + bytes(tx_hash).hex()


def update_on_chain(chain, listing_id, price, payout=PUBLISHER, sender=PUBLISHER, market=None, **tx):
    call = (market or chain.market).contract.functions.updateListing(listing_id, price, payout)
    tx_hash = call.transact({"from": sender, **tx})
    chain.w3.eth.wait_for_transaction_receipt(tx_hash)
    return "0x" + bytes(tx_hash).hex()


def change_price(chain, client, version, price):
    prepared = prepare(client, version, price=str(price))
    assert prepared.status_code == 200, prepared.json()
    return send(chain, prepared.json()["transaction"])


def test_prepare_then_the_new_price_is_read_by_the_indexer(chain, publisher_client):
    version = listed_version(chain, publisher_client)
    listing = Listing.objects.get()
    prepared = prepare(publisher_client, version, price=str(NEW_PRICE))
    assert prepared.status_code == 200, prepared.json()
    plan = prepared.json()
    assert plan["listing_id"] == str(listing.listing_id) and plan["market"] == chain.market.address
    assert plan["price"] == str(NEW_PRICE) and plan["payout"] == PUBLISHER  # the payout stays
    assert plan["current"] == {"price": str(PRICE), "payout": PUBLISHER}
    assert plan["abi"][0]["name"] == "updateListing" and plan["transaction"]["from"] == PUBLISHER
    SearchChange.objects.all().delete()

    tx_hash = send(chain, plan["transaction"])
    first = mirror(publisher_client, version, tx_hash)

    assert first.status_code == 201, first.json()
    body = first.json()
    assert body["listing"]["price"] == str(NEW_PRICE) and body["listing"]["payout"] == PUBLISHER
    (update,) = body["updates"]
    assert update["tx_hash"] == tx_hash and update["price"] == str(NEW_PRICE) and update["block_number"] > 0
    listing.refresh_from_db()
    assert listing.price == NEW_PRICE and chain.market.get_listing(int(listing.listing_id))["price"] == NEW_PRICE
    assert ListingUpdate.objects.get().listing == listing
    # The listing row's update is in the search change log, so the index sees the new price.
    assert list(SearchChange.objects.values_list("dataset_id", flat=True)) == [version.dataset_id]
    # The pages and the API show the chain's price, not the intended one of the upload.
    page = publisher_client.get(f"/datasets/{version.dataset.slug}").content.decode()
    assert "30</span>" in page and "25</span>" not in page
    detail = publisher_client.get(f"/api/v1/datasets/{version.dataset.slug}").json()
    assert detail["versions"][0]["listing"]["price"] == str(NEW_PRICE)


def test_posting_the_same_hash_again_changes_nothing(chain, publisher_client):
    version = listed_version(chain, publisher_client)
    tx_hash = change_price(chain, publisher_client, version, NEW_PRICE)
    assert mirror(publisher_client, version, tx_hash).status_code == 201
    SearchChange.objects.all().delete()

    again = mirror(publisher_client, version, tx_hash.upper().replace("0X", "0x"))

    assert again.status_code == 200, again.json()
    assert again.json()["listing"]["price"] == str(NEW_PRICE)
    assert ListingUpdate.objects.count() == 1
    assert not SearchChange.objects.exists()  # nothing was written


def test_an_older_receipt_posted_late_never_rolls_the_price_back(chain, publisher_client):
    version = listed_version(chain, publisher_client)
    older = change_price(chain, publisher_client, version, NEW_PRICE)
    newer = change_price(chain, publisher_client, version, 40 * 10**6)
    assert mirror(publisher_client, version, newer).status_code == 201  # both read, in order
    late = mirror(publisher_client, version, older)
    assert late.status_code == 200, late.json()
    assert [u["price"] for u in late.json()["updates"]] == [str(NEW_PRICE)]
    assert late.json()["listing"]["price"] == str(40 * 10**6)
    assert Listing.objects.get().price == 40 * 10**6
    assert ListingUpdate.objects.count() == 2


def test_the_payout_address_alone_can_change(chain, publisher_client):
    version = listed_version(chain, publisher_client)
    prepared = prepare(publisher_client, version, payout=OTHER_PAYOUT.lower())
    assert prepared.status_code == 200, prepared.json()
    assert prepared.json()["payout"] == OTHER_PAYOUT and prepared.json()["price"] == str(PRICE)
    response = mirror(publisher_client, version, send(chain, prepared.json()["transaction"]))
    assert response.status_code == 201, response.json()
    listing = Listing.objects.get()
    assert listing.payout == OTHER_PAYOUT and listing.price == PRICE
    assert chain.market.get_listing(int(listing.listing_id))["payout"] == OTHER_PAYOUT


@pytest.mark.parametrize("body, field, words", [
    ({"price": "0"}, "price", "whole digits, from 1 to"),
    ({"price": 0}, "price", "whole digits, from 1 to"),
    ({"price": 25000000}, "price", "whole digits"),  # a JSON number: the schema says a string
    ({"price": "-5"}, "price", "whole digits"),
    ({"price": "25.5"}, "price", "whole digits"),
    ({"price": "1.9"}, "price", "whole digits"),
    ({"price": "1e999999999"}, "price", "whole digits"),
    ({"price": "lots"}, "price", "whole digits"),
    ({"price": "025000000"}, "price", "whole digits"),
    ({"price": str(MAX_PRICE + 1)}, "price", f"from 1 to {MAX_PRICE}"),
    ({"payout": "0x1234"}, "payout", "Not an Ethereum address"),
    ({"payout": "0x" + "00" * 20}, "payout", "zero address"),
    ({}, "price", "Give a new price"),
])
def test_prepare_refuses_bad_terms_with_field_errors(chain, publisher_client, body, field, words):
    version = listed_version(chain, publisher_client)
    response = prepare(publisher_client, version, **body)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid" and words in " ".join(error["fields"][field])


def test_a_price_that_json_reads_as_infinity_is_a_400(chain, publisher_client):
    version = listed_version(chain, publisher_client)
    response = publisher_client.post(f"/api/v1/datasets/{version.dataset.slug}/versions/{version.number}"
                                     "/listing/update/prepare", '{"price": 1e999999999}',
                                     content_type="application/json")
    assert response.status_code == 400 and "price" in response.json()["error"]["fields"]


def test_prepare_refuses_terms_that_change_nothing(chain, publisher_client):
    version = listed_version(chain, publisher_client)
    response = prepare(publisher_client, version, price=str(PRICE), payout=PUBLISHER)
    assert response.status_code == 400 and response.json()["error"]["code"] == "no_change"


def test_only_the_owner_prepares_or_mirrors(chain, client, publisher_client):
    version = listed_version(chain, publisher_client)
    tx_hash = change_price(chain, publisher_client, version, NEW_PRICE)
    Dataset.objects.update(status=Dataset.Status.LISTED)  # visible to everyone, still not theirs
    client.force_login(User.objects.create(username=STRANGER, address=STRANGER))
    for response in (prepare(client, version, price="1"), mirror(client, version, tx_hash)):
        assert response.status_code == 403 and response.json()["error"]["code"] == "not_owner"
    client.logout()
    assert prepare(client, version, price="1").json()["error"]["code"] == "not_signed_in"
    assert not ListingUpdate.objects.exists() and Listing.objects.get().price == PRICE


def test_a_strangers_update_reverts_on_chain_and_mirrors_nothing(chain, publisher_client):
    version = listed_version(chain, publisher_client)
    listing_id = int(Listing.objects.get().listing_id)
    tx_hash = update_on_chain(chain, listing_id, 1, payout=STRANGER, sender=STRANGER, gas=200_000)
    assert chain.w3.eth.get_transaction_receipt(tx_hash)["status"] == 0  # DataMarketNotListingOwner
    response = mirror(publisher_client, version, tx_hash)
    assert response.status_code == 400 and response.json()["error"]["code"] == "transaction_failed"
    assert Listing.objects.get().price == PRICE and not ListingUpdate.objects.exists()


def test_a_reverted_update_mirrors_nothing(chain, publisher_client):
    version = listed_version(chain, publisher_client)
    listing_id = int(Listing.objects.get().listing_id)
    tx_hash = update_on_chain(chain, listing_id, 0, gas=200_000)  # DataMarketZeroPrice
    assert chain.w3.eth.get_transaction_receipt(tx_hash)["status"] == 0
    response = mirror(publisher_client, version, tx_hash)
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == "transaction_failed" and response.json()["error"]["message"]
    assert Listing.objects.get().price == PRICE and not ListingUpdate.objects.exists()


def test_a_version_that_is_not_listed_has_no_listing_to_update(chain, publisher_client):
    version = make_version(User.objects.get(address=PUBLISHER), chain)
    listed = listed_version(chain, publisher_client, 2)
    tx_hash = change_price(chain, publisher_client, listed, NEW_PRICE)
    for response in (prepare(publisher_client, version, price="1"), mirror(publisher_client, version, tx_hash)):
        assert response.status_code == 409, response.json()
        assert response.json()["error"]["code"] == "not_listed"
    missing = f"/api/v1/datasets/{version.dataset.slug}/versions/9/listing/update/prepare"
    assert publisher_client.post(missing, {"price": "1"}, content_type="application/json").status_code == 404


def test_a_listing_the_chain_forgot_cannot_be_updated(chain, publisher_client):
    snapshot = chain.rpc("evm_snapshot")
    version = listed_version(chain, publisher_client)
    chain.rpc("evm_revert", [snapshot])  # the chain lost the listing; the database still has it
    response = prepare(publisher_client, version, price=str(NEW_PRICE))
    assert response.status_code == 409 and response.json()["error"]["code"] == "unknown_listing"


def test_a_change_of_another_listing_is_refused(chain, publisher_client):
    first = listed_version(chain, publisher_client, 1)
    second = listed_version(chain, publisher_client, 2)
    tx_hash = change_price(chain, publisher_client, second, NEW_PRICE)
    response = mirror(publisher_client, first, tx_hash)
    assert response.status_code == 400 and response.json()["error"]["code"] == "listing_mismatch"
    # The indexer read the transaction: the listing it changed has its new price, the other not.
    assert Listing.objects.get(version=first).price == PRICE
    assert Listing.objects.get(version=second).price == NEW_PRICE


def test_a_transaction_without_an_update_is_refused(chain, publisher_client):
    version = listed_version(chain, publisher_client)
    tx_hash = create_listing(chain, PUBLISHER, "0x" + "77" * 32)  # a ListingCreated, no ListingUpdated
    response = mirror(publisher_client, version, tx_hash)
    assert response.status_code == 400 and response.json()["error"]["code"] == "no_listing_update"


def test_a_look_alike_update_from_another_contract_is_refused(chain, publisher_client):
    """Another DataMarket (anyone can deploy one) emits the very same event for the same listing id."""
    version = listed_version(chain, publisher_client)
    listing_id = int(Listing.objects.get().listing_id)
    operator = chain.operator.address
    fake = DataMarket(chain.w3, deploy_contract(chain.w3, "DataMarket", [operator, operator, 250]).address)
    fake.set_token_allowed(chain.token.address, True, True)
    create_listing_on = fake.contract.functions.createListing(chain.token.address, PRICE, PUBLISHER,
                                                              version.content_hash, 24 * 3600)
    chain.send(create_listing_on, PUBLISHER)
    assert fake.contract.functions.listingCount().call() == listing_id  # the same id as ours
    tx_hash = update_on_chain(chain, listing_id, 1, market=fake)
    response = mirror(publisher_client, version, tx_hash)
    assert response.status_code == 400 and response.json()["error"]["code"] == "no_listing_update"
    assert Listing.objects.get().price == PRICE


@pytest.mark.parametrize("tx_hash, status, code", [("0x" + "ab" * 32, 409, "not_mined"), ("0x12", 400, "invalid")])
def test_an_unknown_or_malformed_hash_is_refused(chain, publisher_client, tx_hash, status, code):
    version = listed_version(chain, publisher_client)
    response = mirror(publisher_client, version, tx_hash)
    assert response.status_code == status and response.json()["error"]["code"] == code


@pytest.mark.django_db(transaction=True)
def test_search_sees_the_mirrored_price_after_a_sync_pass(chain, publisher_client, settings, tmp_path, no_worker):
    settings.SEARCH_INDEX_DIR = tmp_path / "search"
    version = listed_version(chain, publisher_client)
    moderator = wallet_user("0x" + "aa" * 20)
    decide_every_open_revision(version.dataset, decision="approve", moderator=moderator)
    sender.send_operator_actions()
    indexer.index_chain(chain.w3)
    assert Dataset.objects.get().status == Dataset.Status.LISTED
    sync = SearchSync()
    sync.rebuild()

    def priced(low, high):
        index = reader()
        index.reload()
        return index.search(SearchQuery(price_min=low, price_max=high)).ids

    assert priced(25, 25) == [version.dataset_id]
    assert mirror(publisher_client, version, change_price(chain, publisher_client, version, NEW_PRICE)).status_code == 201
    # A pass reads the change log up to the server's oldest running transaction (sync_until).
    assert sync_until(sync, lambda: priced(30, 30) == [version.dataset_id])
    assert priced(25, 25) == []

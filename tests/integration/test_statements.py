"""Dispute statements (`/api/v1/orders/<id>/statements`) on a real order of the market on anvil:
the buyer states, the listing's owner answers, nobody else reads or writes them; once each, while
the order is disputed; bad input is a 400 that says why; posting is rate-limited; a statement
outlives its order's row (a reorganisation or a forgotten chain never takes what users wrote)."""
from django.test import Client
from eth_account import Account
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog.models import Dataset, DatasetVersion, Listing
from marketplace.chain import indexer
from marketplace.chain.services import forget_chain
from marketplace.orders.models import DisputeStatement, Order
from tests.conftest import DEV_KEYS
from tests.integration.test_indexer import (  # noqa: F401  (fixtures)
    PRICE, buyer, create_listing, purchase, seller,
)
from tests.integration.test_limits import limit

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]


def linked(chain, seller, listing_id):
    """The catalog's version the listing sells, owned by the seller (as the receipt links it)."""
    owner = wallet_user(seller.address)
    dataset = Dataset.objects.create(owner=owner, slug=f"rain-{listing_id}", title="Rainfall",
                                     license="other", payout_address=seller.address)
    version = DatasetVersion.objects.create(
        dataset=dataset, number=1, file="x/rain.csv", original_name="rain.csv", format="csv",
        size=10, content_hash="0x" + "ab" * 32, price=PRICE, token=chain.token.address)
    Listing.objects.create(
        chain_id=chain.w3.eth.chain_id, listing_id=listing_id, version=version,
        owner=seller.address, token=chain.token.address, price=PRICE, payout=seller.address,
        dispute_window=3 * 86400, approved=True, tx_hash="0x" + f"{listing_id:064x}", log_index=0,
        block_number=1)
    return version


def signed_in(account):
    client = Client()
    client.force_login(wallet_user(account.address))
    return client


@pytest.fixture
def disputed(chain, seller, buyer):
    """A bought and disputed order of the seller's linked listing, as indexed: its id."""
    listing_id = create_listing(chain, seller)
    linked(chain, seller, listing_id)
    purchase(chain, buyer, listing_id)
    indexer.index_chain(chain.w3)
    order = Order.objects.get(listing_id=listing_id, buyer=buyer.address)
    chain.send(chain.market.contract.functions.dispute(int(order.order_id)), buyer.address)
    indexer.index_chain(chain.w3)
    order.refresh_from_db()
    assert order.status == "disputed"
    return int(order.order_id)


def url(order_id):
    return f"/api/v1/orders/{order_id}/statements"


def post(client, order_id, body):
    return client.post(url(order_id), body, content_type="application/json")


def test_the_buyer_states_and_the_owner_answers_and_both_read_both(disputed, buyer, seller):
    as_buyer, as_seller = signed_in(buyer), signed_in(seller)
    stated = post(as_buyer, disputed, {"text": "  The file has 3 rows, not 3,000.\nSee row 2.  "})
    assert stated.status_code == 201, stated.json()
    assert stated.json()["role"] == "buyer" and stated.json()["author"] == buyer.address
    assert stated.json()["text"] == "The file has 3 rows, not 3,000.\nSee row 2."
    assert [s["role"] for s in as_seller.get(url(disputed)).json()] == ["buyer"]
    answered = post(as_seller, disputed, {"text": "The listing says 3 rows."})
    assert answered.status_code == 201 and answered.json()["role"] == "seller"
    for client in (as_buyer, as_seller):
        read = client.get(url(disputed))
        assert read.status_code == 200
        assert [(s["role"], s["text"]) for s in read.json()] == [
            ("buyer", "The file has 3 rows, not 3,000.\nSee row 2."),
            ("seller", "The listing says 3 rows.")]


def test_nobody_else_reads_or_writes_them(disputed, buyer):
    post(signed_in(buyer), disputed, {"text": "Broken file."})
    stranger = signed_in(Account.from_key(DEV_KEYS[3]))
    for answer in (stranger.get(url(disputed)), post(stranger, disputed, {"text": "Me too."})):
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "not_a_party"
        assert "buyer" in answer.json()["error"]["message"]
    anonymous = Client()
    assert anonymous.get(url(disputed)).json()["error"]["code"] == "not_signed_in"
    assert post(anonymous, disputed, {"text": "x"}).status_code in (401, 403)
    assert DisputeStatement.objects.count() == 1


def test_once_each_and_only_while_disputed(chain, disputed, buyer, seller):
    as_buyer = signed_in(buyer)
    assert post(as_buyer, disputed, {"text": "First."}).status_code == 201
    again = post(as_buyer, disputed, {"text": "Second thoughts."})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_stated"
    assert DisputeStatement.objects.get().text == "First."

    listing_id = create_listing(chain, seller)
    linked(chain, seller, listing_id)
    purchase(chain, buyer, listing_id)
    indexer.index_chain(chain.w3)
    open_order = int(Order.objects.get(listing_id=listing_id).order_id)
    early = post(as_buyer, open_order, {"text": "Not disputed yet."})
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_disputed"
    assert "not disputed" in early.json()["error"]["message"]


@pytest.mark.parametrize("body, field", [
    ({}, "text"),
    ({"text": ""}, "text"),
    ({"text": "   \n "}, "text"),
    ({"text": 12}, "text"),
    ({"text": "a\x00b"}, "text"),
    ({"text": "x" * 4001}, "text"),
])
def test_bad_input_is_a_400_that_says_why(disputed, buyer, body, field):
    answer = post(signed_in(buyer), disputed, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"] and error["fields"][field][0]
    assert not DisputeStatement.objects.exists()


def test_an_unknown_order_is_a_404(disputed, buyer):
    answer = signed_in(buyer).get(url(disputed + 1000))
    assert answer.status_code == 404 and "indexed" in answer.json()["error"]["message"]


def test_posting_is_rate_limited_per_wallet(disputed, buyer, settings):
    limit(settings, "statement", wallet="2/hour", ip="100/hour")
    as_buyer = signed_in(buyer)
    assert post(as_buyer, disputed, {"text": "One."}).status_code == 201
    assert post(as_buyer, disputed, {"text": "Two."}).status_code == 409  # counted, then refused
    third = post(as_buyer, disputed, {"text": "Three."})
    assert third.status_code == 429 and third.json()["error"]["code"] == "throttled"
    assert int(third["Retry-After"]) > 0
    assert "dispute statements" in third.json()["error"]["message"]
    # Invalid input is refused before it is counted: a 400, not a 429.
    assert post(as_buyer, disputed, {"text": ""}).status_code == 400


def test_statements_outlive_their_order_row(chain, seller, buyer):
    listing_id = create_listing(chain, seller)
    linked(chain, seller, listing_id)
    indexer.index_chain(chain.w3)
    snapshot = chain.rpc("evm_snapshot")
    purchase(chain, buyer, listing_id)
    indexer.index_chain(chain.w3)
    order = Order.objects.get(listing_id=listing_id)
    chain.send(chain.market.contract.functions.dispute(int(order.order_id)), buyer.address)
    indexer.index_chain(chain.w3)
    assert post(signed_in(buyer), int(order.order_id), {"text": "Wrong file."}).status_code == 201

    chain.rpc("evm_revert", [snapshot])
    chain.rpc("evm_mine")
    chain.rpc("evm_mine")
    chain.rpc("evm_mine")
    assert indexer.index_chain(chain.w3).reorgs == 1
    assert not Order.objects.exists()
    assert DisputeStatement.objects.get().text == "Wrong file."
    forget_chain(chain.w3.eth.chain_id)
    assert DisputeStatement.objects.count() == 1


def test_a_reorg_that_gives_the_order_id_to_another_buyer_leaves_the_old_statements_behind(
        chain, seller, buyer):
    """A reorganisation deeper than the confirmations: the disputed order vanishes and another
    buyer's order takes its id. The new order starts with no statements, its buyer can state, and
    the old statement stays stored under the order it was written on."""
    listing_id = create_listing(chain, seller)
    linked(chain, seller, listing_id)
    indexer.index_chain(chain.w3)
    snapshot = chain.rpc("evm_snapshot")
    purchase(chain, buyer, listing_id)
    indexer.index_chain(chain.w3)
    first = Order.objects.get(listing_id=listing_id)
    chain.send(chain.market.contract.functions.dispute(int(first.order_id)), buyer.address)
    indexer.index_chain(chain.w3)
    assert post(signed_in(buyer), int(first.order_id), {"text": "Wrong file."}).status_code == 201

    chain.rpc("evm_revert", [snapshot])
    other = Account.from_key(DEV_KEYS[3])
    chain.token.mint(other.address, PRICE)
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), other.address)
    purchase(chain, other, listing_id)
    indexer.index_chain(chain.w3)
    second = Order.objects.get(listing_id=listing_id)
    second_id = int(second.order_id)
    assert second_id == int(first.order_id) and second.buyer == other.address
    assert second.tx_hash != first.tx_hash
    chain.send(chain.market.contract.functions.dispute(second_id), other.address)
    indexer.index_chain(chain.w3)

    as_other, as_seller = signed_in(other), signed_in(seller)
    assert as_seller.get(url(second_id)).json() == []
    assert as_other.get(url(second_id)).json() == []
    stated = post(as_other, second_id, {"text": "Empty columns."})
    assert stated.status_code == 201, stated.json()
    assert [s["text"] for s in as_seller.get(url(second_id)).json()] == ["Empty columns."]
    assert sorted(DisputeStatement.objects.values_list("order_tx_hash", "text")) == sorted(
        [(first.tx_hash, "Wrong file."), (second.tx_hash, "Empty columns.")])
    # The first buyer is no party to the new order.
    assert signed_in(buyer).get(url(second_id)).status_code == 403

"""What the pages that send transactions from the wallet get from the server: GET /api/v1/chain
names the chain and gives the selectors and the error table the page encodes and decodes with
(checked against web3's own encoding and a real revert of anvil), and POST /api/v1/purchases
reads through a confirmation's or a dispute's block and returns the order it moved."""
from eth_account import Account
import pytest

from marketplace.chain import indexer
from tests.conftest import DEV_KEYS
from tests.integration.test_indexer import (  # noqa: F401  (fixtures)
    PRICE, buyer, create_listing, purchase, seller,
)

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]


def test_the_chain_description_has_the_contracts_selectors_and_errors(client, chain, seller,
                                                                      settings):
    settings.EXPLORER_URL = "https://explorer.example"
    info = client.get("/api/v1/chain").json()
    assert info["chain_id"] == 31337 and info["market"] == chain.market.address
    assert "Anvil" in info["chain_name"] and info["explorer_url"] == "https://explorer.example"
    calls = info["abi"]["calls"]
    market, token = chain.market.contract.functions, chain.token.contract.functions
    for signature, call in [("purchase(uint256,uint256)", market.purchase(7, PRICE)),
                            ("confirm(uint256)", market.confirm(7)),
                            ("dispute(uint256)", market.dispute(7)),
                            ("withdraw(address,address)",
                             market.withdraw(chain.token.address, seller.address)),
                            ("approve(address,uint256)", token.approve(seller.address, 1))]:
        assert call._encode_transaction_data()[:10] == calls[signature], signature

    # A real revert (a price raised above what the buyer agreed to) is named by the table.
    listing_id = create_listing(chain, seller)
    response = chain.w3.provider.make_request("eth_call", [{
        "from": Account.from_key(DEV_KEYS[2]).address, "to": chain.market.address,
        "data": market.purchase(listing_id, PRICE - 1)._encode_transaction_data()}, "latest"])
    data = response["error"]["data"]
    assert info["abi"]["errors"][data[:10]] == {"name": "DataMarketPriceAboveMax",
                                                "types": ["uint256", "uint256"]}
    assert int(data[10:74], 16) == PRICE and int(data[74:138], 16) == PRICE - 1
    names = {entry["name"] for entry in info["abi"]["errors"].values()}
    assert {"DataMarketAlreadyPurchased", "DataMarketNotBuyable", "ERC20InsufficientBalance",
            "ERC2612InvalidSigner", "DataMarketDisputeWindowClosed", "Error"} <= names


def nudge(client, receipt):
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
    answer = client.post("/api/v1/purchases", {"tx_hash": tx_hash}, content_type="application/json")
    return tx_hash, answer


def test_a_confirmation_or_a_dispute_posted_by_the_library_returns_the_order_it_moved(
        client, chain, seller, buyer):
    market = chain.market.contract.functions
    first, second = create_listing(chain, seller), create_listing(chain, seller)
    purchase(chain, buyer, first)
    purchase(chain, buyer, second)
    indexer.index_chain(chain.w3)

    first_order, second_order = (chain.market.order_of(i, buyer.address) for i in (first, second))
    disputed = chain.send(market.dispute(first_order), buyer.address)
    tx_hash, answer = nudge(client, disputed)
    (order,) = answer.json()
    assert order["listing_id"] == str(first) and order["status"] == "disputed"
    assert order["settled_tx_hash"] == tx_hash
    confirmed = chain.send(market.confirm(second_order), buyer.address)
    tx_hash, answer = nudge(client, confirmed)
    (order,) = answer.json()
    assert order["listing_id"] == str(second) and order["status"] == "released"
    assert order["settled_tx_hash"] == tx_hash

    transfer = chain.token.contract.functions.transfer(seller.address, 1)
    _, nothing = nudge(client, chain.send(transfer, buyer.address))
    assert nothing.status_code == 404 and nothing.json()["error"]["code"] == "no_order"

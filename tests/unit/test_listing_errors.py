"""A node that fails while a listing or its token is read: the client gets a generic 503, never
the error's text, which quotes CHAIN_RPC_URL (a provider's key may be in it)."""
from types import SimpleNamespace

import requests

from marketplace.catalog.listing import ListingError, _read_listing, _token_allowed


class DownNode:
    @property
    def block_number(self):
        raise requests.ConnectionError("HTTPSConnectionPool(host='rpc.example', port=443): Max retries exceeded "
                                       "with url: /v2/SECRET-PROVIDER-KEY")


def test_a_failing_node_is_a_503_without_the_rpc_url():
    market = SimpleNamespace(w3=SimpleNamespace(eth=DownNode()))
    try:
        _read_listing(market, 7)
    except ListingError as exc:
        assert exc.code == "chain_unavailable" and exc.status == 503
        assert "SECRET-PROVIDER-KEY" not in exc.message and "rpc.example" not in exc.message
    else:
        raise AssertionError("no ListingError")


class DownMarket:
    def token_config(self, token):
        raise requests.ConnectionError("HTTPSConnectionPool(host='rpc.example', port=443): Read timed out "
                                       "(/v2/SECRET-PROVIDER-KEY)")


def test_a_failing_node_while_the_token_is_checked_is_a_503_without_the_rpc_url():
    try:
        _token_allowed(DownMarket(), "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    except ListingError as exc:
        assert exc.code == "chain_unavailable" and exc.status == 503
        assert "SECRET-PROVIDER-KEY" not in exc.message and "rpc.example" not in exc.message
    else:
        raise AssertionError("no ListingError")

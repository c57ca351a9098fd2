"""A node that fails while a posted transaction or a listing is read: the client gets a generic
503, never the error's text, which quotes CHAIN_RPC_URL (a provider's key may be in it)."""
from types import SimpleNamespace

import requests

from marketplace.catalog.listing import ListingError, _chain_unavailable, _mined

FAILURE = ("HTTPSConnectionPool(host='rpc.example', port=443): Max retries exceeded with url: "
           "/v2/SECRET-PROVIDER-KEY")


class DownNode:
    def get_transaction_receipt(self, tx_hash):
        raise requests.ConnectionError(FAILURE)

    @property
    def block_number(self):
        raise requests.ConnectionError(FAILURE)


def assert_generic_503(error: ListingError):
    assert error.code == "chain_unavailable" and error.status == 503
    assert "SECRET-PROVIDER-KEY" not in error.message and "rpc.example" not in error.message


def test_a_failing_node_while_a_posted_transaction_is_read_is_a_503_without_the_rpc_url():
    try:
        _mined("0x" + "ab" * 32, w3=SimpleNamespace(eth=DownNode()))
    except ListingError as exc:
        assert_generic_503(exc)
    else:
        raise AssertionError("no ListingError")


def test_a_failing_node_while_a_listing_is_read_is_a_503_without_the_rpc_url():
    """prepare_listing_update reads getListing: its failure goes through the same refusal."""
    assert_generic_503(_chain_unavailable(requests.ConnectionError(FAILURE)))


def test_a_malformed_hash_is_refused_before_the_node_is_asked():
    try:
        _mined("0x1234", w3=SimpleNamespace(eth=DownNode()))
    except ListingError as exc:
        assert exc.code == "invalid_tx_hash" and exc.status == 400
    else:
        raise AssertionError("no ListingError")

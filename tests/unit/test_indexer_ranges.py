"""The indexer's range splitting, around a stand-in for the node (the real node's answers are
covered in tests/integration/test_indexer.py; anvil refuses no range)."""
import pytest
import requests
from web3.exceptions import Web3RPCError

from marketplace.chain.indexer import get_logs


class Node:
    """Answers eth_getLogs as a JSON-RPC node does, refusing any range wider than `widest` blocks
    (an error in the answer, as providers do) or not answering at all (`down`); records what it
    was asked."""

    def __init__(self, widest, down=False):
        self.widest, self.down, self.asked = widest, down, []
        self.provider = self

    def make_request(self, method, params):
        assert method == "eth_getLogs"
        first, last = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
        self.asked.append((first, last))
        if self.down:
            raise requests.ConnectionError("connection refused")
        if last - first + 1 > self.widest:
            return {"jsonrpc": "2.0", "id": 1, "error": {"code": -32005, "message": "query returned more than 10000 results"}}
        return {"jsonrpc": "2.0", "id": 1, "result": [{"blockNumber": hex(n)} for n in range(first, last + 1)]}


def test_a_refused_range_is_read_in_halves_in_order():
    node = Node(widest=3)
    logs = get_logs(node, {"address": []}, 10, 25)
    assert [int(log["blockNumber"], 16) for log in logs] == list(range(10, 26))
    answered = [(first, last) for first, last in node.asked if last - first + 1 <= 3]
    assert node.asked[0] == (10, 25) and answered == sorted(answered)  # halves, read in chain order
    assert sum(last - first + 1 for first, last in answered) == 16  # each block read once


def test_a_single_refused_block_and_no_answer_are_raised():
    with pytest.raises(Web3RPCError, match="more than 10000 results"):
        get_logs(Node(widest=0), {}, 5, 5)
    down = Node(widest=100, down=True)
    with pytest.raises(requests.ConnectionError):
        get_logs(down, {}, 1, 8)
    assert down.asked == [(1, 8)]  # no answer is not a refusal: no splitting


def test_only_a_range_the_node_finds_too_big_is_split():
    class Refusing(Node):
        def __init__(self, message):
            super().__init__(widest=0)
            self.message = message

        def make_request(self, method, params):
            first, last = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
            self.asked.append((first, last))
            return {"jsonrpc": "2.0", "id": 1, "error": {"code": -32005, "message": self.message}}

    for message in ("rate limit exceeded, retry in 1s", "invalid params: topics", "daily request count 429"):
        node = Refusing(message)
        with pytest.raises(Web3RPCError):
            get_logs(node, {}, 1, 1000)
        assert node.asked == [(1, 1000)], message  # raised at once: the run backs off, nothing is split
    for message in ("query returned more than 10000 results", "block range is too wide",
                    "eth_getLogs is limited to a 2000 block range", "Log response size exceeded"):
        node = Refusing(message)
        with pytest.raises(Web3RPCError):
            get_logs(node, {}, 1, 4)
        assert len(node.asked) > 1, message  # split down to single blocks before giving up

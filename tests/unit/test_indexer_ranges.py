"""The indexer's range splitting, around a stand-in for the node (the real node's answers are
covered in tests/integration/test_indexer.py; anvil refuses no range)."""
import pytest
import requests
from web3.exceptions import Web3RPCError

from marketplace.chain.indexer import get_logs


class Node:
    """Refuses any range wider than `widest` blocks, as providers do; records what it was asked."""

    def __init__(self, widest, error=Web3RPCError):
        self.widest, self.error, self.asked = widest, error, []
        self.eth = self

    def get_logs(self, params):
        first, last = params["fromBlock"], params["toBlock"]
        self.asked.append((first, last))
        if last - first + 1 > self.widest:
            raise self.error("query returned more than 10000 results")
        return [{"blockNumber": n} for n in range(first, last + 1)]


def test_a_refused_range_is_read_in_halves_in_order():
    node = Node(widest=3)
    logs = get_logs(node, {"address": []}, 10, 25)
    assert [log["blockNumber"] for log in logs] == list(range(10, 26))
    answered = [(first, last) for first, last in node.asked if last - first + 1 <= 3]
    assert node.asked[0] == (10, 25) and answered == sorted(answered)  # halves, read in chain order
    assert sum(last - first + 1 for first, last in answered) == 16  # each block read once


def test_a_single_refused_block_and_no_answer_are_raised():
    with pytest.raises(Web3RPCError):
        get_logs(Node(widest=0), {}, 5, 5)
    down = Node(widest=100, error=requests.ConnectionError)
    down.widest = 0
    with pytest.raises(requests.ConnectionError):
        get_logs(down, {}, 1, 8)
    assert down.asked == [(1, 8)]  # no answer is not a refusal: no splitting

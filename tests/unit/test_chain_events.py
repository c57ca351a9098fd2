"""Event decoding by slicing 32-byte words gives what eth_abi gives, for every event of the real
contracts, and refuses words that no honest contract emits."""
import random

from eth_abi import encode
from eth_utils import to_checksum_address
import pytest

from marketplace.chain.events import _STATIC, event_types


def random_value(kind, rng):
    if kind == "address":
        return to_checksum_address("0x" + rng.randbytes(20).hex())
    if kind == "bool":
        return rng.random() < 0.5
    if kind.startswith("bytes") and kind != "bytes":
        return rng.randbytes(int(kind[5:]))
    if kind.startswith("uint"):
        return rng.getrandbits(int(kind[4:] or 256))
    if kind.startswith("int"):
        bits = int(kind[3:] or 256)
        return rng.getrandbits(bits) - 2 ** (bits - 1)
    if kind == "string":
        return "héllo" * rng.randint(0, 3)
    if kind == "bytes":
        return rng.randbytes(rng.randint(0, 70))
    raise AssertionError(kind)


def plain(value, kind):
    if kind == "address" or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


@pytest.mark.parametrize("contract", ["DataMarket", "RewardDistributor", "TestUSDC", "ERC20"])
def test_every_event_decodes_as_eth_abi_encodes_it(contract, settings):
    rng = random.Random(contract)
    types = event_types(contract)
    assert types
    for event in types.values():
        for _ in range(20):
            indexed = {name: random_value(kind, rng) for name, kind in event.indexed}
            data = {name: random_value(kind, rng) for name, kind in event.data}
            topics = [event.topic0] + [encode([kind], [indexed[name]]) for name, kind in event.indexed]
            blob = encode([kind for _, kind in event.data], [data[name] for name, _ in event.data])
            decoded = event.decode(topics, blob)
            expected = {name: plain(v, kind) for (name, kind), v in
                        zip(event.indexed + event.data, [*indexed.values(), *data.values()])}
            assert decoded == expected, event.name


def test_words_no_contract_emits_are_refused():
    (transfer,) = [e for e in event_types("ERC20").values() if e.name == "Transfer"]
    one = (1).to_bytes(32, "big")
    address = bytes(12) + bytes(range(20))
    assert transfer.decode([transfer.topic0, address, address], one)["value"] == "1"
    with pytest.raises(ValueError, match="96 bytes of data, expected 32"):
        transfer.decode([transfer.topic0, address, address], one * 3)
    with pytest.raises(ValueError, match="high bytes"):
        transfer.decode([transfer.topic0, b"\x01" + address[1:], address], one)
    with pytest.raises(ValueError, match="indexed topics"):
        transfer.decode([transfer.topic0, address], one)
    (approval,) = [e for e in event_types("DataMarket").values() if e.name == "ListingApprovalSet"]
    with pytest.raises(ValueError, match="neither 0 nor 1"):
        approval.decode([approval.topic0, one], (2).to_bytes(32, "big"))
    assert _STATIC.fullmatch("uint256") and not _STATIC.fullmatch("bytes") and not _STATIC.fullmatch("uint256[]")

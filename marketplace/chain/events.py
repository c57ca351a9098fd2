"""Decoding raw logs into named events with plain JSON-ready arguments.

An event's arguments are stored as JSON: integers as decimal strings (uint256 does not fit a JSON
number), addresses checksummed, bytes as 0x-hex, booleans as booleans. Handlers turn them back
with `int(...)`. Decoding goes straight through eth_abi (web3's event decoding costs several
times more per log, and the indexer decodes every log it stores).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
import re

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from .artifacts import load_artifact

#: The ERC-20 event the indexer reads from the market's tokens (into or out of the market).
TRANSFER_ABI = {
    "type": "event", "name": "Transfer", "anonymous": False,
    "inputs": [
        {"name": "from", "type": "address", "indexed": True},
        {"name": "to", "type": "address", "indexed": True},
        {"name": "value", "type": "uint256", "indexed": False},
    ],
}
#: The EIP-3009 event a token emits when it spends an authorization: the indexer reads it only in
#: the transactions of transfers into the market that no order explains (a pushed authorization).
AUTHORIZATION_USED_ABI = {
    "type": "event", "name": "AuthorizationUsed", "anonymous": False,
    "inputs": [
        {"name": "authorizer", "type": "address", "indexed": True},
        {"name": "nonce", "type": "bytes32", "indexed": True},
    ],
}


def _type_string(param: dict) -> str:
    """eth_abi's type string for an ABI parameter (tuples spelled out from their components)."""
    kind = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_type_string(c) for c in param["components"]) + ")" + kind[len("tuple"):]
    return kind


@lru_cache(maxsize=65536)
def checksum(address: str) -> str:
    """to_checksum_address, remembered: a range's logs name the same few addresses again and again,
    and each checksum is a keccak in Python."""
    return to_checksum_address(address)


_STATIC = re.compile(r"(u?int)(\d*)|address|bool|bytes([1-9]|[12]\d|3[0-2])")


def _word(kind: str, word: bytes):
    """One 32-byte ABI word of a static elementary type, as stored in JSON (None: not one)."""
    match = _STATIC.fullmatch(kind)
    if match is None:
        return None
    if kind == "address":
        if any(word[:12]):
            raise ValueError("an address word with high bytes set")
        return checksum("0x" + word[12:].hex())
    if kind == "bool":
        if any(word[:31]) or word[31] > 1:
            raise ValueError("a bool word that is neither 0 nor 1")
        return bool(word[31])
    if match.group(3):  # bytesN
        size = int(match.group(3))
        if any(word[size:]):
            raise ValueError(f"a {kind} word with bytes past {size}")
        return "0x" + word[:size].hex()
    bits = int(match.group(2) or 256)
    value = int.from_bytes(word, "big", signed=match.group(1) == "int")
    if (value.bit_length() if value >= 0 else (-value - 1).bit_length()) > bits - (match.group(1) == "int"):
        raise ValueError(f"a {kind} word out of range")
    return str(value)


def _plain(value, kind: str):
    """A decoded ABI value as stored in JSON."""
    if isinstance(value, (list, tuple)):
        inner = kind[:kind.rindex("[")] if kind.endswith("]") else None
        return [_plain(v, inner or "") for v in value]
    if kind == "address":
        return checksum(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


@dataclass(frozen=True)
class EventType:
    name: str
    topic0: bytes
    indexed: tuple[tuple[str, str], ...]  # (name, type) in topic order
    data: tuple[tuple[str, str], ...]  # (name, type) in data order
    static_data: bool  # every data field is one 32-byte word of an elementary type: decoded by slicing

    @classmethod
    def from_abi(cls, entry: dict) -> EventType:
        types = [_type_string(p) for p in entry["inputs"]]
        signature = f"{entry['name']}({','.join(types)})"
        indexed = tuple((p["name"], t) for p, t in zip(entry["inputs"], types) if p.get("indexed"))
        data = tuple((p["name"], t) for p, t in zip(entry["inputs"], types) if not p.get("indexed"))
        return cls(entry["name"], keccak(text=signature), indexed, data,
                   all(_STATIC.fullmatch(kind) for _, kind in data))

    def decode(self, topics: list[bytes], data: bytes) -> dict:
        """The arguments of one log of this event; raises ValueError for a log that does not fit
        (a contract may emit anything under a known topic)."""
        if len(topics) != 1 + len(self.indexed):
            raise ValueError(f"{self.name}: {len(topics) - 1} indexed topics, expected {len(self.indexed)}")
        args = {}
        for (name, kind), topic in zip(self.indexed, topics[1:]):
            value = _word(kind, topic) if len(topic) == 32 else None
            if value is None:
                if _STATIC.fullmatch(kind):
                    raise ValueError(f"{self.name}: topic {name} is not 32 bytes")
                value = "0x" + bytes(topic).hex()  # an indexed dynamic value is its hash
            args[name] = value
        if self.static_data:
            if len(data) != 32 * len(self.data):
                raise ValueError(f"{self.name}: {len(data)} bytes of data, expected {32 * len(self.data)}")
            for i, (name, kind) in enumerate(self.data):
                args[name] = _word(kind, data[32 * i:32 * i + 32])
            return args
        try:
            values = abi_decode([kind for _, kind in self.data], bytes(data))
        except Exception as exc:  # eth_abi raises several types for malformed data
            raise ValueError(f"{self.name}: data does not decode ({exc})") from None
        for (name, kind), value in zip(self.data, values):
            args[name] = _plain(value, kind)
        return args


@lru_cache(maxsize=None)
def event_types(contract: str) -> dict[bytes, EventType]:
    """topic0 -> EventType for every event in a contract's ABI ("ERC20": Transfer, "EIP3009":
    AuthorizationUsed, for any token)."""
    abi = {"ERC20": [TRANSFER_ABI], "EIP3009": [AUTHORIZATION_USED_ABI]}.get(contract) or load_artifact(contract).abi
    types = (EventType.from_abi(entry) for entry in abi if entry.get("type") == "event" and not entry.get("anonymous"))
    return {t.topic0: t for t in types}


TRANSFER_TOPIC = EventType.from_abi(TRANSFER_ABI).topic0
AUTHORIZATION_USED_TOPIC = EventType.from_abi(AUTHORIZATION_USED_ABI).topic0

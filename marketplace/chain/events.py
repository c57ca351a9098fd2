"""Decoding raw logs into named events with plain JSON-ready arguments.

An event's arguments are stored as JSON: integers as decimal strings (uint256 does not fit a JSON
number), addresses checksummed, bytes as 0x-hex, booleans as booleans. Handlers turn them back
with `int(...)`. Decoding goes straight through eth_abi (web3's event decoding costs several
times more per log, and the indexer decodes every log it stores).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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


def _type_string(param: dict) -> str:
    """eth_abi's type string for an ABI parameter (tuples spelled out from their components)."""
    kind = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_type_string(c) for c in param["components"]) + ")" + kind[len("tuple"):]
    return kind


def _plain(value, kind: str):
    """A decoded ABI value as stored in JSON."""
    if isinstance(value, (list, tuple)):
        inner = kind[:kind.rindex("[")] if kind.endswith("]") else None
        return [_plain(v, inner or "") for v in value]
    if kind == "address":
        return to_checksum_address(value)
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

    @classmethod
    def from_abi(cls, entry: dict) -> EventType:
        types = [_type_string(p) for p in entry["inputs"]]
        signature = f"{entry['name']}({','.join(types)})"
        indexed = tuple((p["name"], t) for p, t in zip(entry["inputs"], types) if p.get("indexed"))
        data = tuple((p["name"], t) for p, t in zip(entry["inputs"], types) if not p.get("indexed"))
        return cls(entry["name"], keccak(text=signature), indexed, data)

    def decode(self, topics: list[bytes], data: bytes) -> dict:
        """The arguments of one log of this event; raises ValueError for a log that does not fit
        (a contract may emit anything under a known topic)."""
        if len(topics) != 1 + len(self.indexed):
            raise ValueError(f"{self.name}: {len(topics) - 1} indexed topics, expected {len(self.indexed)}")
        args = {}
        for (name, kind), topic in zip(self.indexed, topics[1:]):
            if kind in ("string", "bytes") or kind.endswith("]") or kind.startswith("("):
                args[name] = "0x" + bytes(topic).hex()  # an indexed dynamic value is its hash
            else:
                args[name] = _plain(abi_decode([kind], bytes(topic))[0], kind)
        try:
            values = abi_decode([kind for _, kind in self.data], bytes(data))
        except Exception as exc:  # eth_abi raises several types for malformed data
            raise ValueError(f"{self.name}: data does not decode ({exc})") from None
        for (name, kind), value in zip(self.data, values):
            args[name] = _plain(value, kind)
        return args


@lru_cache(maxsize=None)
def event_types(contract: str) -> dict[bytes, EventType]:
    """topic0 -> EventType for every event in a contract's ABI ("Transfer" for any ERC-20)."""
    abi = [TRANSFER_ABI] if contract == "ERC20" else load_artifact(contract).abi
    types = (EventType.from_abi(entry) for entry in abi if entry.get("type") == "event" and not entry.get("anonymous"))
    return {t.topic0: t for t in types}


TRANSFER_TOPIC = EventType.from_abi(TRANSFER_ABI).topic0

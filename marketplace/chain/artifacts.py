"""Compiled contract artifacts (ABI and bytecode) as written by `forge build`.

Contracts are compiled once by scripts/dev; Python only reads the JSON, never runs a compiler.
"""
from dataclasses import dataclass
from functools import lru_cache
import hashlib
import json

from django.conf import settings


class ArtifactMissing(Exception):
    """The contracts have not been compiled (run scripts/dev setup)."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list
    bytecode: str
    deployed_bytecode: str = ""  # the runtime code (constants.py evaluates public constants in it)

    @property
    def code_hash(self) -> str:
        """sha256 of what the contract is: its ABI and its creation bytecode without the trailing
        metadata (the compiler's hash of the sources, which a comment alone changes). Recorded with
        each deployment; the deployed code itself cannot be compared, as it embeds immutables."""
        code = bytes.fromhex(self.bytecode.removeprefix("0x"))
        if len(code) >= 2:
            metadata = int.from_bytes(code[-2:], "big") + 2  # CBOR length, then its own 2 bytes
            if metadata <= len(code):
                code = code[:-metadata]
        abi = json.dumps(self.abi, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(abi + b"\0" + code).hexdigest()


@lru_cache(maxsize=None)
def load_artifact(name):
    path = settings.CONTRACTS_OUT_DIR / f"{name}.sol" / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactMissing(
            f"contract artifact {path} not found: compile the contracts with 'scripts/dev setup'"
        ) from None
    return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"]["object"],
                    deployed_bytecode=data.get("deployedBytecode", {}).get("object", ""))

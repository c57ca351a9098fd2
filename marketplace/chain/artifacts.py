"""Compiled contract artifacts (ABI and bytecode) as written by `forge build`.

Contracts are compiled once by scripts/dev; Python only reads the JSON, never runs a compiler.
"""
from dataclasses import dataclass
from functools import lru_cache
import json

from django.conf import settings


class ArtifactMissing(Exception):
    """The contracts have not been compiled (run scripts/dev setup)."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list
    bytecode: str


@lru_cache(maxsize=None)
def load_artifact(name):
    path = settings.CONTRACTS_OUT_DIR / f"{name}.sol" / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactMissing(
            f"contract artifact {path} not found: compile the contracts with 'scripts/dev setup'"
        ) from None
    return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"]["object"])

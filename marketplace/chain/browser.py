"""What a page that talks to the chain through the visitor's wallet needs from the server: the
selectors of the calls it makes and reads, every custom error the market, the token and the reward
distributor can revert
with (name and argument types, so that a revert is decoded into words), without a keccak of its
own, computed from the compiled artifacts once per process; and the chain's name."""
from functools import lru_cache

from eth_utils import abi_to_signature, function_abi_to_4byte_selector
from web3 import Web3

from .artifacts import load_artifact

#: The calls the pages make, by contract.
CALLS = {
    "DataMarket": ("purchase", "purchaseWithPermit", "confirm", "dispute", "withdraw", "getListing",
                   "orderOf", "getOrder", "creditOf"),
    "TestUSDC": ("balanceOf", "allowance", "approve", "nonces", "eip712Domain"),
    "RewardDistributor": ("claim", "claimed"),
}
#: Reverts that are not custom errors of the artifacts: require messages and panics.
BUILTIN_ERRORS = ({"name": "Error", "inputs": [{"type": "string"}]},
                  {"name": "Panic", "inputs": [{"type": "uint256"}]})


def _types(inputs) -> list[str]:
    return [item["type"] for item in inputs]


@lru_cache(maxsize=1)
def wallet_abi() -> dict:
    """{"calls": {signature: selector}, "errors": {selector: {"name", "types"}}}; selectors as
    0x-hex. Enum arguments are uint8 in the ABI."""
    calls, errors = {}, {}
    for contract, names in CALLS.items():
        for entry in load_artifact(contract).abi:
            if entry.get("type") == "function" and entry["name"] in names:
                calls[abi_to_signature(entry)] = "0x" + function_abi_to_4byte_selector(entry).hex()
    for contract in CALLS:
        for entry in [*load_artifact(contract).abi, *BUILTIN_ERRORS]:
            if entry.get("type", "error") != "error":
                continue
            signature = f"{entry['name']}({','.join(_types(entry['inputs']))})"
            selector = "0x" + Web3.keccak(text=signature)[:4].hex()
            errors[selector] = {"name": entry["name"], "types": _types(entry["inputs"])}
    return {"calls": calls, "errors": errors}


#: Names wallets show for common chains (wallet_switchEthereumChain takes only the id).
CHAIN_NAMES = {1: "Ethereum", 10: "OP Mainnet", 137: "Polygon", 8453: "Base", 42161: "Arbitrum One",
               84532: "Base Sepolia", 11155111: "Sepolia",
               31337: "the local development chain (Anvil)"}


def chain_name(chain_id: int) -> str:
    return CHAIN_NAMES.get(chain_id, f"chain {chain_id}")

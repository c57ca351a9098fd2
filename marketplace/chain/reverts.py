"""Why a call reverted, in words: a contract's custom error decoded from its ABI
(`DataMarketNotDisputed(orderId=4, status=2)`) rather than web3's bare selector and hex."""
from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector


def _signature(item: dict) -> str:
    return f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"


def custom_errors(abi: list) -> dict[bytes, dict]:
    """4-byte selector -> the ABI entry of each custom error."""
    return {function_signature_to_4byte_selector(_signature(item)): item
            for item in abi if item.get("type") == "error"}


def revert_data(exc: Exception) -> bytes | None:
    """The revert data web3 attached to `exc` (ContractCustomError, ContractLogicError), if any."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, bytes):
        return data
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


def describe(exc: Exception, abi: list) -> str:
    """`exc` (a failed call or gas estimate) as a sentence naming the custom error and its
    arguments when the ABI knows it, else web3's message."""
    data = revert_data(exc)
    if data and len(data) >= 4:
        item = custom_errors(abi).get(data[:4])
        if item is not None:
            try:
                values = abi_decode([i["type"] for i in item["inputs"]], data[4:])
            except Exception:
                return item["name"]
            args = ", ".join(f"{i['name']}={_plain(v)}" for i, v in zip(item["inputs"], values))
            return f"{item['name']}({args})"
    message = getattr(exc, "message", None) or str(exc)
    return str(message)


def error_name(exc: Exception, abi: list) -> str | None:
    """Only the custom error's name (None when it is not one of the ABI's)."""
    data = revert_data(exc)
    if data and len(data) >= 4:
        item = custom_errors(abi).get(data[:4])
        return item["name"] if item else None
    return None


def _plain(value):
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value

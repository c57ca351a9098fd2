"""The contracts' public constants (`DataMarket.MAX_PRICE`, `MAX_FEE_BPS`, ...), read from the
compiled artifact itself rather than copied by hand, so that Python can never disagree with the
contract it checks input for.

A public constant's getter is a few dozen instructions of the deployed code: the selector
dispatch, a push of the value and a return. `contract_constant` runs exactly that path of the
artifact's `deployedBytecode` in a tiny interpreter (no storage, no calls, no node), once per
process. Anything outside that small instruction set (a getter that reads storage, say) raises
instead of guessing.
"""
from functools import lru_cache

from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector

from .artifacts import load_artifact


class ConstantUnavailable(Exception):
    """The getter does more than return a constant; read it from the chain instead."""


WORD = 2**256
MAX_STEPS = 10_000


def _jump_destinations(code: bytes) -> set[int]:
    destinations, pc = set(), 0
    while pc < len(code):
        op = code[pc]
        if op == 0x5B:
            destinations.add(pc)
        pc += 1 + (op - 0x5F if 0x60 <= op <= 0x7F else 0)  # skip PUSHn's data
    return destinations


def run_view(code: bytes, calldata: bytes) -> bytes:
    """The return data of a call to `code` with `calldata`, no value, no state: enough for the
    getter of a constant (dispatch, push, return). Raises ConstantUnavailable on a revert or on
    any instruction that would need state, the environment or other contracts."""
    destinations = _jump_destinations(code)
    stack: list[int] = []
    memory = bytearray()
    pc = 0

    def touch(offset, size):
        if offset + size > 1 << 20:
            raise ConstantUnavailable("the getter uses too much memory")
        if len(memory) < offset + size:
            memory.extend(bytes(offset + size - len(memory)))

    def jump(target):
        if target not in destinations:
            raise ConstantUnavailable(f"bad jump to {target}")
        return target

    binary = {
        0x01: lambda a, b: (a + b) % WORD,
        0x02: lambda a, b: (a * b) % WORD,
        0x03: lambda a, b: (a - b) % WORD,
        0x04: lambda a, b: a // b if b else 0,
        0x10: lambda a, b: int(a < b),
        0x11: lambda a, b: int(a > b),
        0x14: lambda a, b: int(a == b),
        0x16: lambda a, b: a & b,
        0x17: lambda a, b: a | b,
        0x18: lambda a, b: a ^ b,
        0x1B: lambda shift, value: (value << shift) % WORD if shift < 256 else 0,  # SHL
        0x1C: lambda shift, value: value >> shift if shift < 256 else 0,  # SHR
    }
    for _ in range(MAX_STEPS):
        op = code[pc] if pc < len(code) else 0x00
        pc += 1
        if op == 0x5F:  # PUSH0
            stack.append(0)
        elif 0x60 <= op <= 0x7F:  # PUSH1..PUSH32
            size = op - 0x5F
            stack.append(int.from_bytes(code[pc:pc + size].ljust(size, b"\0"), "big"))
            pc += size
        elif 0x80 <= op <= 0x8F:  # DUP1..DUP16
            stack.append(stack[-(op - 0x7F)])
        elif 0x90 <= op <= 0x9F:  # SWAP1..SWAP16
            depth = op - 0x8E
            stack[-1], stack[-depth] = stack[-depth], stack[-1]
        elif op in binary:
            a = stack.pop()
            b = stack.pop()
            stack.append(binary[op](a, b))
        elif op == 0x15:  # ISZERO
            stack.append(int(stack.pop() == 0))
        elif op == 0x19:  # NOT
            stack.append(WORD - 1 - stack.pop())
        elif op == 0x50:  # POP
            stack.pop()
        elif op == 0x34:  # CALLVALUE: none
            stack.append(0)
        elif op == 0x36:  # CALLDATASIZE
            stack.append(len(calldata))
        elif op == 0x35:  # CALLDATALOAD
            offset = stack.pop()
            stack.append(int.from_bytes(calldata[offset:offset + 32].ljust(32, b"\0"), "big"))
        elif op == 0x51:  # MLOAD
            offset = stack.pop()
            touch(offset, 32)
            stack.append(int.from_bytes(memory[offset:offset + 32], "big"))
        elif op == 0x52:  # MSTORE
            offset, value = stack.pop(), stack.pop()
            touch(offset, 32)
            memory[offset:offset + 32] = value.to_bytes(32, "big")
        elif op == 0x5B:  # JUMPDEST
            pass
        elif op == 0x56:  # JUMP
            pc = jump(stack.pop())
        elif op == 0x57:  # JUMPI
            target, condition = stack.pop(), stack.pop()
            if condition:
                pc = jump(target)
        elif op == 0xF3:  # RETURN
            offset, size = stack.pop(), stack.pop()
            touch(offset, size)
            return bytes(memory[offset:offset + size])
        elif op in (0xFD, 0xFE, 0x00):  # REVERT, INVALID, STOP
            raise ConstantUnavailable("the getter returned nothing")
        else:
            raise ConstantUnavailable(f"instruction 0x{op:02x} at {pc - 1} needs more than a constant")
    raise ConstantUnavailable("the getter ran too long")


@lru_cache(maxsize=None)
def contract_constant(contract: str, name: str):
    """The value of `contract`'s public constant `name`, evaluated from its compiled artifact."""
    artifact = load_artifact(contract)
    getter = next((item for item in artifact.abi if item.get("type") == "function" and item.get("name") == name
                   and not item.get("inputs") and item.get("stateMutability") in ("view", "pure")), None)
    if getter is None or len(getter.get("outputs", [])) != 1:
        raise ConstantUnavailable(f"{contract} has no public constant {name}")
    selector = function_signature_to_4byte_selector(f"{name}()")
    code = bytes.fromhex(artifact.deployed_bytecode.removeprefix("0x"))
    if not code:
        raise ConstantUnavailable(f"the {contract} artifact has no deployed bytecode")
    (value,) = abi_decode([getter["outputs"][0]["type"]], run_view(code, selector))
    return value


def max_price() -> int:
    """The highest price a DataMarket listing may have, in token base units (2^88 - 1: prices
    are stored as uint88 on-chain)."""
    return contract_constant("DataMarket", "MAX_PRICE")

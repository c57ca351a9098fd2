"""What a node signs with its device key, and how the server recovers the signer fast.

Every message is EIP-191 `personal_sign` text (version 0x45), so any Ethereum tool can make and
check one. The server recovers the signer with coincurve (libsecp256k1): about 50 µs, a third of
eth_account's time, which matters on the heartbeat path.

- A heartbeat (`heartbeat_message`) names the chain, the device, its sequence number, the server
  nonce the last acknowledgement gave it, the time the node sent it and its self-reported figures
  (shown to its owner, never scored) and the answer to the last probe.
- A binding (`binding_typed_data`) is EIP-712 typed data, `Bind` or `Unbind(address device,
  address wallet, bytes32 nonce, uint256 issuedAt)` in the domain "DataMarket Node" version 1 of
  the chain: a wallet signs it on the website with eth_signTypedData_v4, and the device key signs
  the same Bind.
- Any other request of a node (`request_message`) names the method, the path, the node's clock
  and the sha256 of the body; the server takes it once (its signature is remembered until the
  allowed clock skew has passed).

Pure logic: no Django import, shared by the server and the node program.
"""
from __future__ import annotations

from functools import lru_cache
import hashlib

import coincurve
from Crypto.Hash import keccak as _keccak
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils import to_checksum_address

__all__ = ["BadSignature", "binding_typed_data", "heartbeat_message", "recover", "request_message", "sign",
           "sign_binding"]


class BadSignature(ValueError):
    """Not a 65-byte secp256k1 signature that recovers to an address."""


def heartbeat_message(*, chain_id: int, device: str, seq: int, nonce: str, sent_at: int,
                      probe: str = "", bytes_up: int = 0, bytes_down: int = 0, latency_ms: int = 0) -> str:
    return (f"datamarket heartbeat\nchain: {chain_id}\ndevice: {checksum(device)}\nseq: {seq}\n"
            f"nonce: {nonce}\nsent: {sent_at}\nprobe: {probe}\nbytes up: {bytes_up}\n"
            f"bytes down: {bytes_down}\nlatency ms: {latency_ms}")


def request_message(*, chain_id: int, device: str, method: str, path: str, timestamp: int, body: bytes) -> str:
    return (f"datamarket node request\nchain: {chain_id}\ndevice: {to_checksum_address(device)}\n"
            f"{method.upper()} {path}\ntime: {timestamp}\nbody sha256: {hashlib.sha256(body).hexdigest()}")


BINDING_DOMAIN = "DataMarket Node"
_BINDING_FIELDS = [{"name": "device", "type": "address"}, {"name": "wallet", "type": "address"},
                   {"name": "nonce", "type": "bytes32"}, {"name": "issuedAt", "type": "uint256"}]
_BINDING_DOMAIN_FIELDS = [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                          {"name": "chainId", "type": "uint256"}]


def binding_typed_data(kind: str, *, chain_id: int, device: str, wallet: str, nonce: str, issued_at: int) -> dict:
    """The EIP-712 data of a Bind or Unbind (eth_signTypedData_v4's argument)."""
    if kind not in ("Bind", "Unbind"):
        raise ValueError(kind)
    return {
        # One primary type per message: eth_account derives it from the types given.
        "types": {"EIP712Domain": _BINDING_DOMAIN_FIELDS, kind: _BINDING_FIELDS}, "primaryType": kind,
        "domain": {"name": BINDING_DOMAIN, "version": "1", "chainId": chain_id},
        "message": {"device": to_checksum_address(device), "wallet": to_checksum_address(wallet),
                    "nonce": nonce, "issuedAt": issued_at},
    }


def sign_binding(private_key, kind: str, **fields) -> str:
    """A key's 0x-hex signature of a Bind or Unbind (the device key, or a wallet key)."""
    key = getattr(private_key, "key", private_key)
    signable = encode_typed_data(full_message=binding_typed_data(kind, **fields))
    return "0x" + bytes(Account.sign_message(signable, key).signature).hex()


def sign(private_key, text: str) -> str:
    """The 0x-hex signature of `text` by `private_key` (bytes, hex or an eth_account LocalAccount)."""
    key = getattr(private_key, "key", private_key)
    return "0x" + bytes(Account.sign_message(encode_defunct(text=text), key).signature).hex()


def recover(text: str, signature: str) -> str:
    """The checksummed address that signed `text` (EIP-191); BadSignature when it cannot be one."""
    try:
        raw = bytes.fromhex(signature.removeprefix("0x"))
    except (ValueError, AttributeError):
        raise BadSignature("the signature is not hex") from None
    if len(raw) != 65:
        raise BadSignature("a signature is 65 bytes")
    v = raw[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1):
        raise BadSignature("the signature's recovery id is neither 0 nor 1")
    # Low-s only (EIP-2): the other s of a signature is the same signature made anew, and a
    # replay check keyed on the signature's bytes must not be passed by flipping it.
    if int.from_bytes(raw[32:64], "big") > SECP256K1_HALF_N:
        raise BadSignature("the signature's s is in the upper half (not canonical)")
    message = text.encode()
    digest = _keccak256(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode() + message)
    try:
        public = coincurve.PublicKey.from_signature_and_message(raw[:64] + bytes([v]), digest, hasher=None)
    except Exception:  # noqa: BLE001 - libsecp256k1 refuses an invalid signature with a generic error
        raise BadSignature("the signature does not recover to a public key") from None
    return checksum("0x" + _keccak256(public.format(compressed=False)[1:])[-20:].hex())


def _keccak256(data: bytes) -> bytes:
    # pycryptodome directly: eth_utils' keccak adds its own checks around the same call.
    return _keccak.new(digest_bits=256, data=data).digest()


@lru_cache(maxsize=65536)
def checksum(address: str) -> str:
    """to_checksum_address, remembered: a server sees the same device addresses again and again
    (eth_utils spends about 25 µs validating and hashing each time)."""
    return to_checksum_address(address)


SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def canonical(signature: str) -> str:
    """One spelling of a signature `recover` accepted: lower-case 0x-hex with v as 27 or 28. A
    replay check keyed on it cannot be passed by writing the same signature another way (without
    0x, in upper case, with v as 0 or 1)."""
    raw = bytearray(bytes.fromhex(signature.removeprefix("0x").removeprefix("0X")))
    if raw[64] < 27:
        raw[64] += 27
    return "0x" + raw.hex()


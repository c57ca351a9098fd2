"""The x402 headers of a paid download: the 402 answer (the v2 `PAYMENT-REQUIRED` header and the
v1 body), a client's payment (`PAYMENT-SIGNATURE` in v2, `X-PAYMENT` in v1) read into a `Payment`,
and the settlement answer (`PAYMENT-RESPONSE` / `X-PAYMENT-RESPONSE`).

Only the `exact` scheme with an EIP-3009 `TransferWithAuthorization` is accepted: the market's
`purchaseWithAuthorization` takes exactly that. Amounts are ints in base units here and decimal
strings in the JSON, as the specification says."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
import json
import re

from django.conf import settings
from eth_utils import is_checksum_address, to_checksum_address

from marketplace.api import Refused

SCHEME = "exact"
MAX_HEADER = 16 * 1024  # characters of a payment header read at most
MAX_SIGNATURE = 4096  # bytes of a signature (a contract wallet's may be longer than 65)
UINT256_MAX = 2**256 - 1
SIGN_IN_SECONDS = 300  # how long the sign-in-with-x challenge of a 402 lasts
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
NONCE = re.compile(r"0x[0-9a-fA-F]{64}")
HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})+")
DIGITS = re.compile(r"[0-9]{1,78}")
PAYMENT_IDENTIFIER = "payment-identifier"  # the extension's key
PAYMENT_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")  # what the extension allows as an id


class PaymentRefused(Refused):
    """A payment header that cannot be read (400) or a payment that is not accepted (402)."""

    default_status = 402


class PaymentInFlight(PaymentRefused):
    """The payer's settlements not yet resolved already take what its balance covers, or one of
    them buys the same listing: sent together, one would revert at the relayer's cost. 409, to be
    sent again in a few seconds (Retry-After)."""

    default_status = 409
    retry_after = 3


@dataclass(frozen=True)
class Requirement:
    """What one listing asks of a payment: `amount` of `asset` to `pay_to` (the market) on
    `network` (CAIP-2), signed against the token's EIP-712 `token_name` and `token_version`."""

    listing_id: int
    amount: int
    asset: str
    pay_to: str
    network: str
    resource: str
    token_name: str
    token_version: str
    description: str = ""
    mime_type: str = "application/octet-stream"

    def accepts(self) -> dict:
        """The v2 `PaymentRequirements` entry."""
        return {
            "scheme": SCHEME, "network": self.network, "amount": str(self.amount), "asset": self.asset,
            "payTo": self.pay_to, "maxTimeoutSeconds": settings.X402_TIMEOUT_SECONDS,
            "extra": {"name": self.token_name, "version": self.token_version, "assetTransferMethod": "eip3009"},
        }

    def accepts_v1(self) -> dict:
        """The v1 entry: the amount is `maxAmountRequired` (paid exactly all the same) and each
        entry names its resource and a v1 network name."""
        return {
            "scheme": SCHEME, "network": settings.X402_V1_NETWORK, "maxAmountRequired": str(self.amount),
            "resource": self.resource, "description": self.description, "mimeType": self.mime_type,
            "payTo": self.pay_to, "maxTimeoutSeconds": settings.X402_TIMEOUT_SECONDS, "asset": self.asset,
            "extra": {"name": self.token_name, "version": self.token_version},
        }


@dataclass(frozen=True)
class Payment:
    """A client's payment as read from its header. `network` is CAIP-2 for both versions (a v1
    name is mapped); `amount`, `asset` and `pay_to` are what a v2 client says it accepted (None in
    v1, which does not repeat them). The authorization's fields follow EIP-3009."""

    version: int
    scheme: str
    network: str
    amount: int | None
    asset: str | None
    pay_to: str | None
    payer: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str  # 0x and 64 hex digits, lower case
    signature: bytes
    header: str  # the header value as received
    payment_id: str = ""  # the payment-identifier extension's id (v2 only), "" when none was sent


def caip2_network() -> str:
    return f"eip155:{settings.CHAIN_ID}"


def _b64(document: dict) -> str:
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def _iso(moment: datetime) -> str:
    return moment.astimezone(dt_timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign_in_extension(*, nonce: str, domain: str, uri: str, now: datetime | None = None) -> dict:
    """The `sign-in-with-x` declaration: a payer who owns the version already signs this
    challenge (CAIP-122, EIP-191 or EIP-1271) instead of paying again. The nonce is the server's,
    good once."""
    now = now or datetime.now(dt_timezone.utc)
    text = {"type": "string"}
    when = {"type": "string", "format": "date-time"}
    fields = {"domain": text, "address": text, "statement": text, "uri": {"type": "string", "format": "uri"},
              "version": text, "chainId": text, "type": text, "nonce": text, "issuedAt": when,
              "expirationTime": when, "notBefore": when, "requestId": text,
              "resources": {"type": "array", "items": {"type": "string", "format": "uri"}}, "signature": text}
    return {
        "info": {
            "domain": domain, "uri": uri, "version": "1", "nonce": nonce, "issuedAt": _iso(now),
            "expirationTime": _iso(now + timedelta(seconds=SIGN_IN_SECONDS)),
            "statement": "Sign in to download a dataset version you bought", "resources": [uri],
        },
        "supportedChains": [{"chainId": caip2_network(), "type": "eip191"}],
        "schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                   "properties": fields,
                   "required": ["domain", "address", "uri", "version", "chainId", "type", "nonce", "issuedAt",
                                "signature"]},
    }


def bazaar_extension(requirement: Requirement, output: dict | None = None) -> dict:
    """The `bazaar` discovery declaration: a plain GET with no parameters answering a file;
    `output` is an example of what describes it (e.g. size and content hash)."""
    info = {"input": {"type": "http", "method": "GET"}, "output": {"type": "file"}}
    if output:
        info["output"]["example"] = output
    return {
        "info": info,
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "properties": {
                "input": {"type": "object", "properties": {"type": {"type": "string", "const": "http"},
                                                           "method": {"type": "string", "enum": ["GET"]}},
                          "required": ["type", "method"], "additionalProperties": False},
                "output": {"type": "object", "properties": {"type": {"type": "string"},
                                                            "example": {"type": "object"}},
                           "required": ["type"]},
            },
            "required": ["input"],
        },
    }


def payment_required(requirement: Requirement, *, sign_in_nonce: str, domain: str,
                     error: str = "PAYMENT-SIGNATURE header is required", output: dict | None = None,
                     now: datetime | None = None) -> dict:
    """The v2 `PaymentRequired` document (see payment_required_header)."""
    return {
        "x402Version": 2, "error": error,
        "resource": {"url": requirement.resource, "description": requirement.description,
                     "mimeType": requirement.mime_type},
        "accepts": [requirement.accepts()],
        "extensions": {
            "sign-in-with-x": sign_in_extension(nonce=sign_in_nonce, domain=domain, uri=requirement.resource,
                                                now=now),
            "bazaar": bazaar_extension(requirement, output),
            # Optional: a client that sends an id gets the same answer for the same payment, and a
            # 409 for another payment under that id.
            PAYMENT_IDENTIFIER: {"info": {"required": False}, "schema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                "properties": {"required": {"type": "boolean"},
                               "id": {"type": "string", "minLength": 16, "maxLength": 128,
                                      "pattern": "^[a-zA-Z0-9_-]+$"}},
                "required": ["required"]}},
        },
    }


def payment_required_header(requirement: Requirement, **options) -> str:
    """The `PAYMENT-REQUIRED` header's value: the base64 of payment_required's JSON."""
    return _b64(payment_required(requirement, **options))


def payment_required_v1(requirement: Requirement, *, error: str = "X-PAYMENT header is required") -> dict:
    """The body of the 402 for v1 clients."""
    return {"x402Version": 1, "error": error, "accepts": [requirement.accepts_v1()]}


def payment_response(*, transaction: str, network: str, payer: str, success: bool = True,
                     error_reason: str = "") -> str:
    """The `PAYMENT-RESPONSE` (v2) or `X-PAYMENT-RESPONSE` (v1) header's value; `network` as the
    client named it (Payment.header_network)."""
    document = {"success": success, "transaction": transaction, "network": network,
                "payer": to_checksum_address(payer)}
    if error_reason:
        document["errorReason"] = error_reason
    return _b64(document)


def header_network(payment: Payment) -> str:
    """The payment's network in its own version's naming."""
    return settings.X402_V1_NETWORK if payment.version == 1 else payment.network


# Reading a payment --------------------------------------------------------------------------------

def _malformed(code: str, message: str) -> PaymentRefused:
    return PaymentRefused(code, message, status=400)


def _decode(value: str, header: str) -> dict:
    if not isinstance(value, str) or not value.strip():
        raise _malformed("payment_missing", f"The {header} header is empty.")
    value = value.strip()
    if len(value) > MAX_HEADER:
        raise _malformed("payment_too_large", f"The {header} header is longer than {MAX_HEADER} characters.")
    try:
        text = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise _malformed("bad_encoding", f"The {header} header is not base64 of UTF-8 JSON.") from None
    try:
        document = json.loads(text)
    except ValueError:
        raise _malformed("bad_json", f"The {header} header does not decode to JSON.") from None
    except RecursionError:  # nesting deeper than the parser's stack: no payment is shaped like that
        raise _malformed("bad_json", f"The {header} header's JSON is nested too deeply.") from None
    if not isinstance(document, dict):
        raise _malformed("bad_json", f"The {header} header must decode to a JSON object.")
    return document


def _field(document: dict, name: str, path: str, kind: type, label: str):
    value = document.get(name)
    if value is None:
        raise _malformed("missing_field", f"The payment has no `{path}{name}`.")
    if not isinstance(value, kind):
        raise _malformed("bad_field", f"The payment's `{path}{name}` must be {label}.")
    return value


def _object(document: dict, name: str, path: str) -> dict:
    return _field(document, name, path, dict, "an object")


def _string(document: dict, name: str, path: str) -> str:
    return _field(document, name, path, str, "a string")


def _address(document: dict, name: str, path: str) -> str:
    value = _string(document, name, path)
    if not ADDRESS.fullmatch(value) or (value[2:] != value[2:].lower() and value[2:] != value[2:].upper()
                                        and not is_checksum_address(value)):
        raise _malformed("bad_field", f"The payment's `{path}{name}` is not an address (0x and 40 hex digits, "
                         "checksummed when in mixed case).")
    return to_checksum_address(value)


def _integer(document: dict, name: str, path: str) -> int:
    value = document.get(name)
    if value is None:
        raise _malformed("missing_field", f"The payment has no `{path}{name}`.")
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and DIGITS.fullmatch(value):
        number = int(value)
    else:
        raise _malformed("bad_field", f"The payment's `{path}{name}` must be a whole number of base units "
                         "written in decimal digits.")
    if not 0 <= number <= UINT256_MAX:
        raise _malformed("bad_field", f"The payment's `{path}{name}` is out of range for a uint256.")
    return number


def _authorization(payload: dict) -> dict:
    path = "payload.authorization."
    if "authorization" not in payload and "permit2Authorization" in payload:
        raise _malformed("unsupported_scheme", "Only EIP-3009 authorizations are accepted (assetTransferMethod "
                         "eip3009), not Permit2.")
    authorization = _object(payload, "authorization", "payload.")
    nonce = _string(authorization, "nonce", path)
    if not NONCE.fullmatch(nonce):
        raise _malformed("bad_field", f"The payment's `{path}nonce` must be 0x and 64 hex digits.")
    signature = _string(payload, "signature", "payload.")
    if not HEX.fullmatch(signature) or len(signature) > 2 + 2 * MAX_SIGNATURE:
        raise _malformed("bad_field", f"The payment's `payload.signature` must be 0x and hex digits, at most "
                         f"{MAX_SIGNATURE} bytes.")
    return {
        "payer": _address(authorization, "from", path), "to": _address(authorization, "to", path),
        "value": _integer(authorization, "value", path),
        "valid_after": _integer(authorization, "validAfter", path),
        "valid_before": _integer(authorization, "validBefore", path),
        "nonce": nonce.lower(), "signature": bytes.fromhex(signature[2:]),
    }


def _version(document: dict, expected: int, header: str) -> None:
    version = document.get("x402Version")
    if version != expected or isinstance(version, bool):
        raise _malformed("unsupported_version", f"The {header} header must carry x402Version {expected}, "
                         f"not {json.dumps(version)}.")


def _scheme(scheme: str) -> None:
    if scheme != SCHEME:
        raise _malformed("unsupported_scheme", f"Only the `{SCHEME}` scheme is accepted, not {scheme!r}.")


def parse_payment_signature(value: str) -> Payment:
    """A v2 `PAYMENT-SIGNATURE` header's payment. Raises PaymentRefused (400)."""
    document = _decode(value, "PAYMENT-SIGNATURE")
    _version(document, 2, "PAYMENT-SIGNATURE")
    accepted = _object(document, "accepted", "")
    _scheme(_string(accepted, "scheme", "accepted."))
    extra = accepted.get("extra")
    if isinstance(extra, dict) and extra.get("assetTransferMethod", "eip3009") != "eip3009":
        raise _malformed("unsupported_scheme", "Only EIP-3009 authorizations are accepted (assetTransferMethod "
                         f"eip3009), not {extra['assetTransferMethod']!r}.")
    payload = _object(document, "payload", "")
    return Payment(version=2, scheme=SCHEME, network=_string(accepted, "network", "accepted."),
                   amount=_integer(accepted, "amount", "accepted."), asset=_address(accepted, "asset", "accepted."),
                   pay_to=_address(accepted, "payTo", "accepted."), header=value.strip(),
                   payment_id=_payment_id(document), **_authorization(payload))


def _payment_id(document: dict) -> str:
    """The `payment-identifier` extension's id ("" when the client sent none)."""
    extensions = document.get("extensions")
    if extensions is None:
        return ""
    if not isinstance(extensions, dict):
        raise _malformed("bad_field", "The payment's `extensions` must be an object.")
    extension = extensions.get(PAYMENT_IDENTIFIER)
    if extension is None:
        return ""
    info = extension.get("info") if isinstance(extension, dict) else None
    if not isinstance(info, dict):
        raise _malformed("bad_field", f"The payment's `extensions.{PAYMENT_IDENTIFIER}.info` must be an object.")
    payment_id = info.get("id")
    if payment_id is None:
        return ""
    if not isinstance(payment_id, str) or not PAYMENT_ID.fullmatch(payment_id):
        raise _malformed("bad_field", f"The payment's `extensions.{PAYMENT_IDENTIFIER}.info.id` must be 16 to 128 "
                         "letters, digits, hyphens or underscores.")
    return payment_id


def parse_x_payment(value: str) -> Payment:
    """A v1 `X-PAYMENT` header's payment; its network name is mapped to CAIP-2 when it is this
    chain's (X402_V1_NETWORK), else kept as given (and refused by verify). Raises PaymentRefused
    (400)."""
    document = _decode(value, "X-PAYMENT")
    _version(document, 1, "X-PAYMENT")
    _scheme(_string(document, "scheme", ""))
    network = _string(document, "network", "")
    payload = _object(document, "payload", "")
    return Payment(version=1, scheme=SCHEME, network=caip2_network() if network == settings.X402_V1_NETWORK
                   else network, amount=None, asset=None, pay_to=None, header=value.strip(),
                   **_authorization(payload))


def payment_from_headers(headers) -> Payment | None:
    """The payment in a request's headers (a case-insensitive mapping such as request.headers):
    `PAYMENT-SIGNATURE` first, then `X-PAYMENT`; None when there is neither."""
    if headers.get("PAYMENT-SIGNATURE") is not None:
        return parse_payment_signature(headers["PAYMENT-SIGNATURE"])
    if headers.get("X-PAYMENT") is not None:
        return parse_x_payment(headers["X-PAYMENT"])
    return None

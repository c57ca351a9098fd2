"""Sign-in-with-x on a paid resource: a payer who already bought a version proves it is their wallet
instead of paying again. The 402 advertises a challenge (x402.sign_in_extension) carrying a server
nonce from `issue`; the client answers with the `SIGN-IN-WITH-X` header, the base64 of JSON with
the challenge's fields, its `address`, `chainId`, `type` and the `signature` of the EIP-4361 (SIWE)
message those fields make (the x402 specification's sign-in-with-x extension, CAIP-122). `verify`
rebuilds that message, checks it against this request and resource, and spends the nonce once.

Whether the address owns the version is the caller's question (the paid URL's): this only says who
signed."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
import json
import re
import secrets

from django.utils import timezone
from eth_account.messages import encode_defunct
from eth_utils import is_checksum_address
from siwe import SiweMessage

from marketplace.accounts.models import SignInNonce
from marketplace.accounts.services import ChainUnreachable, signed_by

from .x402 import HEX, MAX_HEADER, MAX_SIGNATURE, SIGN_IN_SECONDS, PaymentRefused, caip2_network

HEADER = "SIGN-IN-WITH-X"
CLOCK_SKEW = timedelta(seconds=5)  # another web host's clock may run this much ahead of ours
# What the signed message is made of: (field, required). The client echoes the challenge and adds
# its address, chain, signature type and signature (`signatureScheme` is a hint, not signed).
FIELDS = (("domain", True), ("address", True), ("uri", True), ("version", True), ("chainId", True),
          ("type", True), ("nonce", True), ("issuedAt", True), ("signature", True), ("statement", False),
          ("expirationTime", False), ("notBefore", False), ("requestId", False), ("signatureScheme", False))


@dataclass(frozen=True)
class SignIn:
    """A `SIGN-IN-WITH-X` header as read: its fields and the message they make."""

    fields: dict
    message: str
    signature: bytes


def issue(request, resource: str) -> str:
    """A new server nonce for the sign-in-with-x challenge of `resource` (the paid URL, absolute):
    good once, for that resource only, for as long as the challenge lasts (SIGN_IN_SECONDS).
    Expired ones are deleted with the site's own (accounts.services.delete_expired_nonces)."""
    nonce = secrets.token_hex(16)  # 32 hex digits, as the specification asks
    SignInNonce.objects.create(nonce=nonce, resource=resource,
                               expires_at=timezone.now() + timedelta(seconds=SIGN_IN_SECONDS))
    return nonce


def _malformed(message: str) -> PaymentRefused:
    return PaymentRefused("siwx_malformed", message, status=400)


def _time(fields: dict, name: str) -> datetime | None:
    value = fields.get(name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _malformed(f"The sign-in's `{name}` is not an ISO 8601 time.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt_timezone.utc)


def parse(value: str) -> SignIn:
    """A `SIGN-IN-WITH-X` header's fields and the SIWE message they make. Raises PaymentRefused
    (400, `siwx_malformed`) saying what cannot be read."""
    if not isinstance(value, str) or not value.strip():
        raise _malformed(f"The {HEADER} header is empty.")
    value = value.strip()
    if len(value) > MAX_HEADER:
        raise _malformed(f"The {HEADER} header is longer than {MAX_HEADER} characters.")
    try:
        document = json.loads(base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8"))
    except (binascii.Error, ValueError):
        raise _malformed(f"The {HEADER} header is not base64 of UTF-8 JSON.") from None
    except RecursionError:  # nesting deeper than the parser's stack: no sign-in is shaped like that
        raise _malformed(f"The {HEADER} header's JSON is nested too deeply.") from None
    if not isinstance(document, dict):
        raise _malformed(f"The {HEADER} header must decode to a JSON object.")
    fields = {}
    for name, required in FIELDS:
        field = document.get(name)
        if field is None:
            if required:
                raise _malformed(f"The sign-in has no `{name}`.")
            continue
        if not isinstance(field, str) or len(field) > 2000:
            raise _malformed(f"The sign-in's `{name}` must be a string of at most 2000 characters.")
        fields[name] = field
    resources = document.get("resources")
    if resources is not None:
        if not isinstance(resources, list) or len(resources) > 20 or not all(
                isinstance(r, str) and len(r) <= 2000 for r in resources):
            raise _malformed("The sign-in's `resources` must be a list of at most 20 URLs.")
        fields["resources"] = resources
    if not is_checksum_address(fields["address"]):
        raise _malformed("The sign-in's `address` must be an EIP-55 checksummed address.")
    signature = fields["signature"]
    if not HEX.fullmatch(signature) or len(signature) > 2 + 2 * MAX_SIGNATURE:
        raise _malformed(f"The sign-in's `signature` must be 0x and hex digits, at most {MAX_SIGNATURE} bytes.")
    if fields["type"] != "eip191":
        raise _malformed(f"Only `eip191` sign-ins (EVM wallets) are accepted, not {fields['type']!r}.")
    chain = re.fullmatch(r"eip155:([0-9]{1,20})", fields["chainId"])
    if chain is None:
        raise _malformed("The sign-in's `chainId` must be CAIP-2, eip155:<chain id>.")
    for name in ("issuedAt", "expirationTime", "notBefore"):
        _time(fields, name)
    try:
        message = SiweMessage(
            domain=fields["domain"], address=fields["address"], statement=fields.get("statement"),
            uri=fields["uri"], version=fields["version"], chain_id=int(chain.group(1)), nonce=fields["nonce"],
            issued_at=fields["issuedAt"], expiration_time=fields.get("expirationTime"),
            not_before=fields.get("notBefore"), request_id=fields.get("requestId"),
            resources=fields.get("resources"),
        ).prepare_message()
    except Exception as exc:  # the siwe package's validation: say which field, not its traceback
        reason = getattr(exc, "errors", lambda: [])()
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in reason) or "a field"
        raise _malformed(f"The sign-in does not make an EIP-4361 message ({where} is not valid).") from None
    return SignIn(fields=fields, message=message, signature=bytes.fromhex(signature[2:]))


def _refused(code: str, message: str, status: int = 402) -> PaymentRefused:
    return PaymentRefused(code, message, status=status)


def check(sign_in: SignIn, *, domain: str, resource: str, now: datetime | None = None) -> None:
    """What the signed fields must say for this host and resource (no database, no chain)."""
    now = now or timezone.now()
    fields = sign_in.fields
    if fields["domain"] != domain:
        raise _refused("siwx_wrong_domain", f"The sign-in is for {fields['domain']!r}, not {domain!r}.")
    if fields["uri"] != resource:
        raise _refused("siwx_wrong_uri", f"The sign-in's uri is {fields['uri']!r}; this resource is {resource!r}.")
    if "resources" in fields and resource not in fields["resources"]:
        raise _refused("siwx_wrong_resource", f"The sign-in's resources do not include {resource!r}.")
    if fields["version"] != "1":
        raise _refused("siwx_malformed", "The sign-in's version must be \"1\".", status=400)
    if fields["chainId"] != caip2_network():
        raise _refused("siwx_wrong_chain", f"The sign-in is for chain {fields['chainId']}; sign in on "
                       f"{caip2_network()}.")
    issued = _time(fields, "issuedAt")
    if issued > now + CLOCK_SKEW:
        raise _refused("siwx_not_yet_valid", "The sign-in's issuedAt is in the future.")
    if issued + timedelta(seconds=SIGN_IN_SECONDS) < now:
        raise _refused("siwx_expired", f"The sign-in was issued more than {SIGN_IN_SECONDS} seconds ago; ask "
                       "for the resource again for a new challenge.")
    expires = _time(fields, "expirationTime")
    if expires is not None and expires <= now:
        raise _refused("siwx_expired", "The sign-in has expired; ask for the resource again for a new challenge.")
    not_before = _time(fields, "notBefore")
    if not_before is not None and not_before > now + CLOCK_SKEW:
        raise _refused("siwx_not_yet_valid", "The sign-in is not valid yet (notBefore is in the future).")


def _nonce_refusal(nonce: SignInNonce | None, resource: str, now: datetime) -> PaymentRefused | None:
    if nonce is None or not nonce.resource:
        return _refused("siwx_unknown_nonce", "This sign-in's nonce was not issued here for a paid resource; ask "
                        "for the resource again for a new challenge.")
    if nonce.resource != resource:
        return _refused("siwx_wrong_resource", "This sign-in's nonce was issued for another resource.")
    if nonce.used_at is not None:
        return _refused("siwx_nonce_used", "This sign-in's nonce was already used; ask for the resource again for "
                        "a new challenge.", status=409)
    if nonce.expires_at <= now:
        return _refused("siwx_expired", "This sign-in's challenge has expired; ask for the resource again.")
    return None


def verify(request, resource: str) -> str:
    """The checksummed address that signed the request's `SIGN-IN-WITH-X` header for `resource`
    (the paid URL, absolute), its nonce spent. Raises PaymentRefused: `siwx_malformed` (400),
    `siwx_wrong_domain`, `siwx_wrong_uri`, `siwx_wrong_resource`, `siwx_wrong_chain`,
    `siwx_expired`, `siwx_not_yet_valid`, `siwx_unknown_nonce`, `siwx_bad_signature` (402),
    `siwx_nonce_used` (409), `chain_unavailable` (503)."""
    sign_in = parse(request.headers.get(HEADER, ""))
    check(sign_in, domain=request.get_host(), resource=resource)
    address = sign_in.fields["address"]
    # Cheap refusals first: no chain call for a nonce that could never be spent.
    nonce = SignInNonce.objects.filter(nonce=sign_in.fields["nonce"]).first()
    refusal = _nonce_refusal(nonce, resource, timezone.now())
    if refusal:
        raise refusal
    try:
        if not signed_by(address, encode_defunct(text=sign_in.message), sign_in.signature):
            raise _refused("siwx_bad_signature", f"The sign-in is not signed by {address} (an ECDSA key, or an "
                           "EIP-1271 wallet's isValidSignature).")
    except ChainUnreachable:
        raise _refused("chain_unavailable", "The chain cannot be reached to check this wallet's signature; try "
                       "again soon.", status=503) from None
    # Spent by one conditional UPDATE: of two requests racing with one signature, one wins.
    now = timezone.now()
    spent = SignInNonce.objects.filter(pk=nonce.pk, resource=resource, used_at__isnull=True,
                                       expires_at__gt=now).update(used_at=now)
    if not spent:
        raise _nonce_refusal(SignInNonce.objects.filter(pk=nonce.pk).first(), resource, now) or _refused(
            "siwx_nonce_used", "This sign-in's nonce was already used.", status=409)
    return address

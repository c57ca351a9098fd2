"""Signed download requests: how a script proves it is the buyer without a browser session.

The buyer signs EIP-712 typed data (the domain names this chain and this market, so a signature
is good nowhere else) with the version's content hash, an expiry at most DOWNLOAD_TOKEN_SECONDS
ahead and a random nonce; the server accepts a nonce once per buyer. A contract wallet's
signature is checked with its EIP-1271 isValidSignature.
"""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address

from marketplace.accounts.services import ChainUnreachable, signed_by

from .delivery import DeliveryError
from .models import DownloadNonce

TYPES = {
    "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                     {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}],
    "DownloadRequest": [{"name": "buyer", "type": "address"}, {"name": "contentHash", "type": "bytes32"},
                        {"name": "expiry", "type": "uint256"}, {"name": "nonce", "type": "bytes32"}],
}
DOMAIN_NAME = "DataMarket downloads"


def typed_data(*, market: str, buyer: str, content_hash: str, expiry: int, nonce: str) -> dict:
    """What the buyer signs (eth_signTypedData_v4's argument)."""
    return {
        "types": TYPES, "primaryType": "DownloadRequest",
        "domain": {"name": DOMAIN_NAME, "version": "1", "chainId": settings.CHAIN_ID, "verifyingContract": market},
        "message": {"buyer": buyer, "contentHash": content_hash, "expiry": expiry, "nonce": nonce},
    }


def verify(*, market: str, buyer: str, content_hash: str, expiry: int, nonce: str, signature: str) -> str:
    """The checksummed buyer, once the request is signed by them, unexpired, not too far ahead
    and its nonce unused (which this records). Raises DeliveryError."""
    buyer = to_checksum_address(buyer)
    now = int(time.time())
    if expiry <= now:
        raise DeliveryError("request_expired", "The signed request has expired: sign a new one.", status=401)
    if expiry > now + settings.DOWNLOAD_TOKEN_SECONDS:
        raise DeliveryError("expiry_too_far", f"A signed request may be valid for {settings.DOWNLOAD_TOKEN_SECONDS} "
                            "seconds at most: set its expiry sooner.", status=400)
    signable = encode_typed_data(full_message=typed_data(market=market, buyer=buyer, content_hash=content_hash,
                                                         expiry=expiry, nonce=nonce))
    try:
        signed = signed_by(buyer, signable, bytes.fromhex(signature.removeprefix("0x")))
    except ChainUnreachable:
        raise DeliveryError("chain_unavailable", "The chain cannot be reached to check this wallet's signature; "
                            "try again soon.", status=503) from None
    if not signed:
        raise DeliveryError("bad_signature", f"The request is not signed by {buyer} for this market and chain.",
                            status=401)
    try:
        with transaction.atomic():
            DownloadNonce.objects.create(buyer=buyer, nonce=nonce.lower(),
                                         expires_at=datetime.fromtimestamp(expiry, tz=dt_timezone.utc))
    except IntegrityError:
        raise DeliveryError("nonce_used", "This signed request was used already: sign a new one with a fresh "
                            "nonce.", status=409) from None
    return buyer

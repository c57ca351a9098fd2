"""Which device sent a node's request: the device key's EIP-191 signature of
`signing.request_message` (chain, device, method, path with query, the node's clock, the body's
sha256) in the headers X-Device, X-Device-Time and X-Device-Signature.

A signature is taken once (kept in NodeRequestSignature until the clock skew allowed for it has
passed, after which its time is refused anyway), and only from a device bound to a wallet.
"""

from datetime import timedelta
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from eth_utils import is_address, to_checksum_address

from marketplace.api import APIError

from . import signing
from .models import Device, NodeRequestSignature


def authenticate(request) -> Device:
    """The bound device that signed `request` (a Django or DRF request); APIError (401, 403)
    otherwise."""
    request = getattr(request, "_request", request)
    device = request.headers.get("X-Device", "")
    stamp = request.headers.get("X-Device-Time", "")
    signature = request.headers.get("X-Device-Signature", "")
    if not (device and stamp and signature):
        raise APIError(
            "not_signed",
            "Sign the request with the device key (X-Device, X-Device-Time, X-Device-Signature).",
            status=401,
        )
    if not is_address(device) or not stamp.isdigit():
        raise APIError(
            "bad_signature", "X-Device is an address and X-Device-Time whole seconds.", status=401
        )
    timestamp = int(stamp)
    if abs(time.time() - timestamp) > settings.REWARD_CLOCK_SKEW:
        raise APIError(
            "clock_skew",
            f"The request's time is more than {settings.REWARD_CLOCK_SKEW} s from the "
            "server's: check the node's clock.",
            status=401,
        )
    message = signing.request_message(
        chain_id=settings.CHAIN_ID,
        device=device,
        method=request.method,
        path=request.get_full_path(),
        timestamp=timestamp,
        body=request.body,
    )
    try:
        signer = signing.recover(message, signature)
    except signing.BadSignature as exc:
        raise APIError(
            "bad_signature", f"The request's signature is not valid: {exc}.", status=401
        ) from None
    if signer != to_checksum_address(device):
        raise APIError(
            "bad_signature", "The request is not signed by the key of X-Device.", status=401
        )
    found = Device.objects.select_related("contributor").filter(address=signer).first()
    if found is None or found.contributor is None:
        raise APIError(
            "device_not_bound", "This device is not bound to a wallet: bind it first.", status=403
        )
    now = timezone.now()
    try:
        with transaction.atomic():
            NodeRequestSignature.objects.create(
                signature=signature.lower(),
                expires_at=now + timedelta(seconds=2 * settings.REWARD_CLOCK_SKEW),
            )
    except IntegrityError:
        raise APIError(
            "replayed", "This signed request was sent already: sign each request anew.", status=409
        ) from None
    return found


def delete_expired_signatures() -> int:
    return NodeRequestSignature.objects.filter(expires_at__lt=timezone.now()).delete()[0]

"""Requests signed by a device key: how a node proves who it is on any endpoint but the
heartbeat (which carries its own signature). Used by the node's session and status endpoints and
by the job endpoints.

The node sends three headers: `X-Device` (its address), `X-Device-Time` (its clock, Unix
seconds) and `X-Device-Signature`, an EIP-191 signature of `signing.request_message` over the
method, the path with its query string, that time and the body's sha256. A request is taken once:
its signature is remembered until the allowed clock skew has passed, after which its time refuses
it anyway.
"""
from datetime import datetime, timezone as dt_timezone
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from eth_utils import is_address, to_checksum_address

from marketplace.api import APIError

from . import signing
from .models import Device, DeviceRequestSignature


def authenticate(request) -> Device:
    """The device that signed this request (bound or not: see require_bound). Raises APIError:
    401 for a missing, malformed, stale or forged signature, 404 for an unknown device, 409 for a
    request already taken."""
    django_request = getattr(request, "_request", request)  # DRF's Request wraps Django's
    meta = django_request.META
    address = meta.get("HTTP_X_DEVICE", "")
    stamp = meta.get("HTTP_X_DEVICE_TIME", "")
    signature = meta.get("HTTP_X_DEVICE_SIGNATURE", "")
    if not (address and stamp and signature):
        raise APIError("not_signed", "Sign the request with the device key (X-Device, X-Device-Time and "
                       "X-Device-Signature headers).", status=401)
    if not is_address(address) or not (stamp.isascii() and stamp.isdigit()):
        raise APIError("not_signed", "X-Device is an address and X-Device-Time Unix seconds.", status=401)
    timestamp = int(stamp)
    now = time.time()
    if abs(now - timestamp) > settings.REWARD_CLOCK_SKEW:
        raise APIError("clock_skew", f"The request's time is {int(timestamp - now)} seconds off the server's "
                       f"(at most {settings.REWARD_CLOCK_SKEW} allowed): set this machine's clock.", status=401)
    address = to_checksum_address(address)
    message = signing.request_message(chain_id=settings.CHAIN_ID, device=address, method=django_request.method,
                                      path=django_request.get_full_path(), timestamp=timestamp,
                                      body=django_request.body)
    try:
        signer = signing.recover(message, signature)
    except signing.BadSignature as bad:
        raise APIError("forged", f"The request's signature is not valid: {bad}.", status=401) from None
    if signer != address:
        raise APIError("forged", "The request is not signed by the device it names.", status=401)
    device = Device.objects.select_related("contributor").filter(address=address).first()
    if device is None:
        raise APIError("unknown_device", "No device has this key: bind it first (datamarket-node bind).",
                       status=404)
    expires = datetime.fromtimestamp(timestamp + settings.REWARD_CLOCK_SKEW + 1, tz=dt_timezone.utc)
    try:
        with transaction.atomic():
            DeviceRequestSignature.objects.create(signature=signing.canonical(signature), expires_at=expires)
    except IntegrityError:
        raise APIError("replayed", "This signed request was taken already: sign each request anew.",
                       status=409) from None
    return device


def require_bound(device: Device) -> None:
    """Refuse a device that no wallet holds: its work would be paid to nobody."""
    if device.contributor_id is None:
        raise APIError("unbound_device", "This device is bound to no wallet: bind it (datamarket-node bind).",
                       status=403)


def purge_expired() -> int:
    return DeviceRequestSignature.objects.filter(expires_at__lt=datetime.now(dt_timezone.utc)).delete()[0]

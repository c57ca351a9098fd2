"""What API views call: the client's address (through the configured trusted proxies), the rate
check that answers 429 with Retry-After, and the storage reservation around an upload."""
from contextlib import contextmanager
from functools import lru_cache
import ipaddress
import time

from django.conf import settings

from marketplace.api import APIError

from . import services

# Everyone in one IPv6 /64 counts as one client: that is what a single home or host is given.
IPV6_PREFIX = 64


def _ip(text: str):
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # 203.0.113.7:51234
        text = text.split(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


@lru_cache(maxsize=8)
def _networks(networks: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(network, strict=False) for network in networks)


def _from_proxy(remote_addr: str, peer) -> bool:
    """The TCP peer is one of the trusted proxies: inside TRUSTED_PROXY_NETWORKS, or no address
    at all (a Unix socket, which only this host's processes reach)."""
    if not remote_addr:
        return True
    return peer is not None and any(peer in network for network in _networks(tuple(settings.TRUSTED_PROXY_NETWORKS)))


def client_address(request) -> str:
    """The client's IP address. With TRUSTED_PROXIES = n and a peer that is a trusted proxy, the
    n-th X-Forwarded-For entry from the right (the one the outermost trusted proxy added; anything
    left of it was written by the client); otherwise, or when the header is short or garbled, the
    TCP peer."""
    remote_addr = (request.META.get("REMOTE_ADDR") or "").strip()
    peer = _ip(remote_addr)
    hops = settings.TRUSTED_PROXIES
    if hops > 0 and _from_proxy(remote_addr, peer):
        entries = [e for e in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if e.strip()]
        if len(entries) >= hops:
            forwarded = _ip(entries[-hops])
            if forwarded is not None:
                return str(forwarded)
    return str(peer) if peer is not None else "unknown"


def client_network(request) -> str:
    """The client's address as limits count it: an IPv4 address, or an IPv6 client's /64."""
    address = client_address(request)
    if ":" in address:
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return address


def wallet_of(user) -> str | None:
    """The limits' key for a signed-in user: the wallet address (staff without one: the account)."""
    if user is None or not user.is_authenticated:
        return None
    return user.address.lower() if user.address else f"user-{user.pk}"


class RateLimited(APIError):
    def __init__(self, exceeded: services.LimitExceeded):
        super().__init__("throttled", exceeded.message, status=429)
        self.wait = exceeded.retry_after  # DRF's exception handler sends it as Retry-After


def enforce(request, rule: str, *, wallet: str | None = None) -> None:
    """Count this request against `rule` for the client's address and the signed-in wallet (or
    `wallet`); raises RateLimited (429) when one of them is over its rate."""
    try:
        services.consume(rule, ip=client_network(request), wallet=wallet or wallet_of(getattr(request, "user", None)))
    except services.LimitExceeded as exceeded:
        raise RateLimited(exceeded) from None


KEEP_ALIVE_EVERY = 60.0  # seconds between pushes of a streaming upload's reservation expiry


class _KeptAlive:
    """The request body, read through: while bytes keep arriving the reservation stays alive."""

    def __init__(self, reservation, stream):
        self.reservation, self.stream = reservation, stream
        self.touched = time.monotonic()

    def read(self, size=-1):
        chunk = self.stream.read(size)
        if time.monotonic() - self.touched > KEEP_ALIVE_EVERY:
            services.keep_reservation(self.reservation)
            self.touched = time.monotonic()
        return chunk


@contextmanager
def upload_reservation(request):
    """Reserve the declared Content-Length in the signed-in wallet's and the client's storage
    quotas (and on this host's disk) before the body is read; yields (reservation, body stream).
    Pass the reservation to the service that stores the file, which settles it; whatever else
    happens, it is given back on the way out."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if not declared.isdigit():
        if request.META.get("HTTP_TRANSFER_ENCODING"):  # chunked: the WSGI server would hand over no body
            raise APIError("length_required", "Send the file's size in the Content-Length header.", status=411)
        declared = "0"  # no body at all: uploads.receive refuses it as empty
    # A declared size over MAX_UPLOAD_SIZE is refused by uploads.receive before a byte is read.
    size = min(int(declared), settings.MAX_UPLOAD_SIZE)
    try:
        reservation = services.reserve_storage(wallet=wallet_of(request.user), ip=client_network(request), size=size)
    except services.StorageRefused as refused:
        raise APIError(refused.code, refused.message, status=refused.status) from None
    try:
        yield reservation, _KeptAlive(reservation, request._request)
    finally:
        services.release_storage(reservation)

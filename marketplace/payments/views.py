"""GET /pay/<listing id>: a dataset version's paid download for machine buyers (x402).

Outside /api/: its 402 carries the x402 bodies, not the API's error shape. Without a payment
header the answer is 402 with the v2 `PAYMENT-REQUIRED` header and the v1 body; with
`PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1) the payment is settled through the escrow
(payments.settlement) and the file is sent, Range and all, with `PAYMENT-RESPONSE` (v2) or
`X-PAYMENT-RESPONSE` (v1). With `SIGN-IN-WITH-X` instead (and no payment header), a wallet that
already holds an order of the version that gives access gets the file again without paying
(payments.siwx, orders.delivery.entitled); any other wallet gets the 402. Every refusal is JSON
`{"x402Version", "error", "code"}` with its status.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.files.storage import storages
from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from marketplace.accounts import agent_keys
from marketplace.accounts.bans import BUY, REFUSALS, active_ban
from marketplace.api import Refused
from marketplace.catalog.models import Listing
from marketplace.limits.http import client_network
from marketplace.limits.services import LimitExceeded, consume
from marketplace.orders.delivery import REMOVED, DeliveryError, entitled, send_file
from marketplace.orders.selectors import paid_orders

from . import siwx, x402
from .discovery import MIME_TYPES
from .models import X402Payment
from .settlement import Throttled, canonical, order_access, payment_key, settle
from .verify import requirement_for
from .x402 import Payment, PaymentRefused

logger = logging.getLogger(__name__)


@require_GET
def paid_download(request, listing_id: int):
    payment = None
    listing = None
    try:
        listing = _linked(listing_id)
        if listing.version.dataset.removed_at is not None:  # never served, to anyone, whatever was paid
            raise PaymentRefused("removed_for_legal_reasons", REMOVED, status=451)
        payment = x402.payment_from_headers(request.headers)
        if payment is None:
            if request.headers.get(siwx.HEADER) is not None:
                return _signed_in_download(request, listing)
            return _payment_required(request, listing)
        _refuse_banned(payment, listing)
        _refuse_missing_file(listing)
        record = settle(payment, listing=listing, requirement=lambda: _requirement(request, listing),
                        agent_key=request.headers.get(agent_keys.HEADER, ""), client=client_network(request))
        return _serve(request, listing, payment, record)
    except Refused as exc:  # PaymentRefused, or a budget hook's refusal (agent keys)
        return _refused(request, exc, listing, payment)


def _linked(listing_id: int) -> Listing:
    listing = (Listing.objects.select_related("version__dataset")
               .filter(chain_id=settings.CHAIN_ID, listing_id=listing_id).first())
    if listing is None:
        raise PaymentRefused("unknown_listing", f"Listing {listing_id} is not a dataset version sold here.",
                             status=404)
    return listing


def _refuse_missing_file(listing: Listing) -> None:
    """Never charge for (nor sign anyone in to) a file that cannot be sent."""
    if not storages["private"].exists(listing.version.file):
        logger.error("paid download of listing %s: its file %s is missing from the storage", listing.listing_id,
                     listing.version.file)
        raise PaymentRefused("file_unavailable", "This version's file cannot be sent right now; nothing was "
                             "charged. Try again later.", status=503)


def _signed_in_download(request, listing: Listing):
    """`SIGN-IN-WITH-X`: the signer's own order of this version (of any of its listings, as a
    download link's) gives them the file again, Range and all, with nothing paid; banned-after-
    purchase and legal-removal rules as for download links. A wallet that holds none gets the 402
    with a fresh challenge."""
    address = siwx.verify(request, _resource(request, listing))
    try:
        chain_id, listing_id = entitled(address, listing.version)
    except DeliveryError as exc:
        if exc.code != "not_bought":
            raise PaymentRefused(exc.code, exc.message, status=exc.status) from None
        requirement = _requirement(request, listing)  # not for sale any more: 410, with nothing to pay
        return _refused(request, PaymentRefused(
            "not_bought", f"{address} holds no order of this version that gives access (a full refund ends it): "
            "pay for it with PAYMENT-SIGNATURE.", status=402), listing, None, requirement=requirement)
    _refuse_missing_file(listing)
    access = paid_orders(address, chain_id, [listing_id])
    return send_file(request, listing.version, buyer=address, allowed=access.exists)


def _resource(request, listing: Listing) -> str:
    return request.build_absolute_uri(reverse("paid-download", args=[int(listing.listing_id)]))


def _requirement(request, listing: Listing) -> x402.Requirement:
    version = listing.version
    return requirement_for(int(listing.listing_id), resource=_resource(request, listing),
                           description=f"{version.dataset.title}, version {version.number}",
                           mime_type=MIME_TYPES.get(version.format, "application/octet-stream"))


def _output(listing: Listing) -> dict:
    """The bazaar example of the file, as the discovery list gives it."""
    version = listing.version
    return {"size": version.size, "sha256": version.content_hash, "format": version.format}


def _with_requirement(response, request, listing: Listing, requirement: x402.Requirement, error: str):
    # The sign-in-with-x challenge's nonce: single use, for this resource only (payments.siwx).
    response["PAYMENT-REQUIRED"] = x402.payment_required_header(
        requirement, sign_in_nonce=siwx.issue(request, requirement.resource), domain=request.get_host(),
        error=error, output=_output(listing))
    response["Cache-Control"] = "no-store"
    return response


def _count_challenge(request) -> None:
    """Count a 402 answer (its sign-in nonce) against the client address's rate
    (LIMITS["payment_required"]); raises Throttled (429) over it."""
    try:
        consume("payment_required", ip=client_network(request))
    except LimitExceeded as exceeded:
        raise Throttled(exceeded) from None


def _payment_required(request, listing: Listing):
    _count_challenge(request)
    requirement = _requirement(request, listing)
    response = JsonResponse(x402.payment_required_v1(requirement), status=402)
    return _with_requirement(response, request, listing, requirement, "PAYMENT-SIGNATURE header is required")


def _refuse_banned(payment: Payment, listing: Listing) -> None:
    """A wallet banned from buying is refused before anything is checked or sent; a payment it
    settled before the ban is still served on a retry (as download links are)."""
    ban = active_ban(payment.payer, BUY)
    if ban is None:
        return
    if ban.before_block is not None and X402Payment.objects.filter(
            **payment_key(payment, listing), payload_sha256=canonical(payment, listing.listing_id),
            status=X402Payment.Status.SETTLED,
            block_number__lte=ban.before_block).exists():
        return
    raise PaymentRefused("banned", REFUSALS[BUY], status=403)


def _response_header(payment: Payment) -> str:
    return "PAYMENT-RESPONSE" if payment.version == 2 else "X-PAYMENT-RESPONSE"


def _serve(request, listing: Listing, payment: Payment, record: X402Payment):
    # A retry too: the payment bought this listing's version, and its order must still be there, on
    # the market deployed now (a chain reset, a redeploy or a reorganisation takes it).
    if record.version_id != listing.version_id:
        raise PaymentRefused("order_gone", f"This payment bought another version than the one listing "
                             f"{listing.listing_id} sells now (the listing was read again from the chain): nothing "
                             "is served for it here.", status=410)
    allowed = order_access(record)
    response = send_file(request, listing.version, buyer=record.payer, allowed=allowed)
    response[_response_header(payment)] = x402.payment_response(
        transaction=record.tx_hash, network=x402.header_network(payment), payer=record.payer)
    return response


def _refused(request, exc: Refused, listing: Listing | None, payment: Payment | None, *,
             requirement: x402.Requirement | None = None):
    version = payment.version if payment is not None else 2
    body = {"x402Version": version, "error": exc.message, "code": exc.code}
    if exc.status == 402 and listing is not None and exc.code != "settlement_failed":
        # A 402 offers the payment again, with a new sign-in challenge: counted as such.
        try:
            _count_challenge(request)
        except Throttled as throttled:
            return _refused(request, throttled, listing, payment)
        if requirement is None:
            try:
                requirement = _requirement(request, listing)
            except PaymentRefused:
                requirement = None  # no longer for sale: the refusal says enough
        if requirement is not None and version == 1:
            body["accepts"] = [requirement.accepts_v1()]
    response = JsonResponse(body, status=exc.status)
    response["Cache-Control"] = "no-store"
    if getattr(exc, "retry_after", None):  # throttled, a payment in flight
        response["Retry-After"] = str(exc.retry_after)
    if requirement is not None:
        _with_requirement(response, request, listing, requirement, exc.message)
    if payment is not None and listing is not None and exc.code in ("settlement_failed", "settlement_pending"):
        try:
            record = X402Payment.objects.filter(**payment_key(payment, listing)).first()
        except PaymentRefused:  # the market is gone meanwhile
            record = None
        response[_response_header(payment)] = x402.payment_response(
            transaction=record.tx_hash if record is not None else "", network=x402.header_network(payment),
            payer=payment.payer, success=False, error_reason=exc.code)
        if exc.code == "settlement_pending":
            response["Retry-After"] = "2"
    return response

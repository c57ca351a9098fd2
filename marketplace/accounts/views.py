"""Public avatars: `/avatars/<address>` serves the uploaded image, else the generated placeholder.
URLs carry `?v=` with the avatar's digest (see avatars.url), so a matching request may be cached for
good; any other is cached briefly."""
from django.http import Http404, HttpResponse, HttpResponseNotModified
from django.views.decorators.http import require_safe
from eth_utils import is_address, to_checksum_address

from . import avatars
from .models import Avatar, User

FOREVER = "public, max-age=31536000, immutable"
BRIEFLY = "public, max-age=300"


@require_safe
def avatar(request, address):
    if not is_address(address):
        raise Http404("Not a wallet address.")
    address = to_checksum_address(address)
    digest = User.objects.filter(address=address).values_list("avatar_digest", flat=True).first() or ""
    if digest:
        row = Avatar.objects.filter(user__address=address).only("image", "content_type").first()
    else:
        row = None
    if row is None:  # no upload (or no such user: every address has its placeholder)
        etag, body, content_type, version = '"identicon"', avatars.identicon_svg(address), "image/svg+xml", "identicon"
    else:
        etag, body, content_type, version = f'"{digest}"', bytes(row.image), row.content_type, digest[:16]
    cache = FOREVER if request.GET.get("v") == version else BRIEFLY
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponseNotModified()
    else:
        response = HttpResponse(body, content_type=content_type)
    response["ETag"] = etag
    response["Cache-Control"] = cache
    # Served as an image only: nothing in it may run, load or be framed, even if opened directly.
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response["Content-Disposition"] = f'inline; filename="{address}.{"svg" if row is None else "webp"}"'
    response["Cross-Origin-Resource-Policy"] = "same-site"
    return response

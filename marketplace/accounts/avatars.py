"""Avatars: a small uploaded image, made safe to serve publicly, or a placeholder drawn from the
wallet address.

An upload is size-limited (`MAX_AVATAR_SIZE`), sniffed from its first bytes (PNG, JPEG, WebP or
GIF; anything else is refused before Pillow looks at it), checked for absurd dimensions, then
decoded and re-encoded by Pillow to a 256-pixel WebP square: what is served holds pixels only, no
metadata, comments, extra frames or anything a crafted file smuggled in. Users without one get an
identicon: a mirrored 5x5 grid in a colour, both from the sha256 of the address, as SVG.
"""
import hashlib
import io

from django.conf import settings

SIZE = 256  # pixels, square
MAX_PIXELS = 40_000_000  # a 1 MB file can declare far more; refuse before decoding it
CONTENT_TYPE = "image/webp"


class AvatarRejected(Exception):
    """An upload refused with a stable code, a message for people and an HTTP status."""

    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def sniff(head: bytes) -> str | None:
    """The Pillow format name the first bytes announce, or None for anything but our four."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def read_upload(stream, declared_size: int | None) -> bytes:
    """The request body, at most MAX_AVATAR_SIZE bytes (413 beyond, without reading it all)."""
    limit = settings.MAX_AVATAR_SIZE
    if declared_size is not None and declared_size > limit:
        raise AvatarRejected("too_large", f"The image is {declared_size:,} bytes; avatars are at most {limit:,} "
                             "bytes.", status=413)
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise AvatarRejected("too_large", f"The image is over {limit:,} bytes, the most an avatar may be.",
                             status=413)
    if not data:
        raise AvatarRejected("empty", "Send the image as the request body (PNG, JPEG, WebP or GIF).")
    return data


def normalise(data: bytes) -> bytes:
    """The avatar to serve for uploaded `data`: a SIZE x SIZE WebP, centre-cropped, upright (EXIF
    orientation applied), first frame only, with no metadata. Raises AvatarRejected."""
    from PIL import Image, ImageOps

    kind = sniff(data[:16])
    if kind is None:
        if data.lstrip()[:1] in (b"-", b"<") or b"Content-Disposition" in data[:512]:
            hint = " Send the image itself as the request body, not an HTML form or an SVG."
        else:
            hint = ""
        raise AvatarRejected("unsupported_image", "This file is not a PNG, JPEG, WebP or GIF image (its first bytes "
                             f"say so).{hint}", status=415)
    try:
        with Image.open(io.BytesIO(data), formats=[kind]) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise AvatarRejected("image_too_large", f"The image is {width:,} x {height:,} pixels; give one of at "
                                     f"most {MAX_PIXELS // 1_000_000} megapixels.")
            image.draft("RGB", (SIZE * 2, SIZE * 2))  # JPEG decodes at a smaller scale; others ignore it
            image.seek(0)  # the first frame of an animation
            upright = ImageOps.exif_transpose(image)
            square = ImageOps.fit(upright.convert("RGBA"), (SIZE, SIZE), Image.Resampling.LANCZOS)
    except AvatarRejected:
        raise
    except Exception as exc:  # whatever a truncated or crafted file makes the decoder raise
        raise AvatarRejected("invalid_image", f"This {kind} image could not be read ({exc.__class__.__name__}): "
                             "it may be truncated or damaged.") from None
    out = io.BytesIO()
    square.save(out, "WEBP", quality=85, method=4)  # a fresh file: no EXIF, XMP, ICC or comments
    return out.getvalue()


def digest(image: bytes) -> str:
    return hashlib.sha256(image).hexdigest()


def url(user) -> str | None:
    """The public URL of `user`'s avatar (uploaded, else the placeholder), versioned so a browser
    may cache it for good; None for accounts without a wallet address."""
    return None if user is None else url_for(user.address, user.avatar_digest)


def url_for(address: str | None, avatar_digest: str | None) -> str | None:
    """`url` from the two fields it needs (for pages that load plain rows, not users)."""
    if not address:
        return None
    return f"/avatars/{address}?v={(avatar_digest or 'identicon')[:16]}"


def identicon_svg(address: str) -> str:
    """A 5x5 mirrored grid (like Ethereum's blockies) in a colour from the address's sha256."""
    seed = hashlib.sha256(address.lower().encode()).digest()
    hue = int.from_bytes(seed[:2], "big") % 360
    cells = []
    for row in range(5):
        for col in range(3):
            if seed[2 + row * 3 + col] % 2:
                for x in {col, 4 - col}:
                    cells.append(f'<rect x="{x}" y="{row}" width="1" height="1"/>')
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="-0.5 -0.5 6 6" width="256" height="256" '
        'shape-rendering="crispEdges">'
        f'<rect x="-0.5" y="-0.5" width="6" height="6" fill="hsl({(hue + 180) % 360} 40% 92%)"/>'
        f'<g fill="hsl({hue} 60% 45%)">{"".join(cells)}</g></svg>'
    )

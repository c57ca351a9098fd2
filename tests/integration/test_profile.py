"""Profiles: a display name and an avatar. An avatar is uploaded as the request body, sniffed from
its first bytes, size-limited, re-encoded by Pillow to a 256-pixel WebP square with no metadata,
and served publicly at /avatars/<address>; without one, a placeholder drawn from the address."""
import io

from PIL import Image
import pytest

from marketplace.accounts.models import Avatar, User
from marketplace.accounts.services import wallet_user
from marketplace.catalog.models import Dataset, DatasetVersion

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
URL = "/api/v1/auth/me/avatar"


@pytest.fixture
def user(db):
    return wallet_user(ADDRESS)


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def image_bytes(fmt, size=(640, 480), color=(200, 30, 30), **save):
    out = io.BytesIO()
    mode = "P" if fmt == "GIF" else "RGB"
    Image.new("RGB", size, color).convert(mode).save(out, fmt, **save)
    return out.getvalue()


def put(client, body, content_type="application/octet-stream"):
    return client.put(URL, body, content_type=content_type)


def served(client, user):
    user.refresh_from_db()
    me = client.get("/api/v1/auth/me").json()
    response = client.get(me["avatar_url"])
    assert response.status_code == 200
    return me, response


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_an_uploaded_image_is_served_as_a_clean_square(signed_in, user, fmt):
    response = put(signed_in, image_bytes(fmt), content_type=f"image/{fmt.lower()}")
    assert response.status_code == 200, response.json()
    assert response.json()["has_avatar"] is True
    me, image = served(signed_in, user)
    assert me["avatar_url"] == f"/avatars/{ADDRESS}?v={user.avatar_digest[:16]}"
    assert image["Content-Type"] == "image/webp" and "immutable" in image["Cache-Control"]
    assert "default-src 'none'" in image["Content-Security-Policy"]
    decoded = Image.open(io.BytesIO(image.content))
    assert decoded.format == "WEBP" and decoded.size == (256, 256)


def test_metadata_and_extra_frames_are_stripped(signed_in, user):
    exif = Image.Exif()
    exif[0x010E] = "secret description"  # ImageDescription
    exif[0x0112] = 6  # Orientation: rotated 90 degrees; applied, then dropped
    photo = image_bytes("JPEG", size=(400, 200), exif=exif.tobytes(), comment=b"<script>alert(1)</script>")
    assert put(signed_in, photo).status_code == 200
    _, image = served(signed_in, user)
    assert b"secret description" not in image.content and b"<script>" not in image.content
    decoded = Image.open(io.BytesIO(image.content))
    assert not decoded.getexif() and "icc_profile" not in decoded.info and "xmp" not in decoded.info

    frames = [Image.new("P", (64, 64), i) for i in (1, 2, 3)]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert put(signed_in, animated.getvalue()).status_code == 200
    _, image = served(signed_in, user)
    assert getattr(Image.open(io.BytesIO(image.content)), "n_frames", 1) == 1


def test_replacing_the_avatar_changes_its_url_and_image(signed_in, user):
    put(signed_in, image_bytes("PNG", color=(255, 0, 0)))
    first_url = signed_in.get("/api/v1/auth/me").json()["avatar_url"]
    first = signed_in.get(first_url).content
    assert put(signed_in, image_bytes("PNG", color=(0, 0, 255))).status_code == 200
    me, second = served(signed_in, user)
    assert me["avatar_url"] != first_url and second.content != first
    assert Avatar.objects.count() == 1
    # A stale version still answers with the current image, but is not cached for good.
    stale = signed_in.get(first_url)
    assert stale.content == second.content and "immutable" not in stale["Cache-Control"]
    assert signed_in.get(me["avatar_url"], HTTP_IF_NONE_MATCH=second["ETag"]).status_code == 304


def test_deleting_the_avatar_brings_back_the_placeholder(signed_in, user):
    put(signed_in, image_bytes("PNG"))
    response = signed_in.delete(URL)
    assert response.status_code == 200 and response.json()["has_avatar"] is False
    assert not Avatar.objects.exists()
    me, placeholder = served(signed_in, user)
    assert me["avatar_url"] == f"/avatars/{ADDRESS}?v=identicon"
    assert placeholder["Content-Type"] == "image/svg+xml" and placeholder.content.startswith(b"<svg")
    assert signed_in.delete(URL).status_code == 200  # deleting nothing is fine


def test_placeholders_differ_by_address_and_never_change(client, db):
    other = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
    mine = client.get(f"/avatars/{ADDRESS}").content
    assert mine == client.get(f"/avatars/{ADDRESS.lower()}").content
    assert mine != client.get(f"/avatars/{other}").content
    assert client.get("/avatars/not-an-address").status_code == 404


@pytest.mark.parametrize("body, status, code", [
    (b"city,year\nParis,2020\n", 415, "unsupported_image"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", 415, "unsupported_image"),
    (b"%PDF-1.7\n", 415, "unsupported_image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, 400, "invalid_image"),  # a PNG signature, then garbage
    (b"", 400, "empty"),
])
def test_what_is_not_an_image_is_refused(signed_in, user, body, status, code):
    response = put(signed_in, body, content_type="image/png")  # the Content-Type is not believed
    assert response.status_code == status, response.json()
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    user.refresh_from_db()
    assert not user.avatar_digest and not Avatar.objects.exists()


def test_a_truncated_image_is_refused(signed_in):
    response = put(signed_in, image_bytes("JPEG")[:300])
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_image"


def test_an_image_of_absurd_dimensions_is_refused_before_decoding(signed_in):
    out = io.BytesIO()
    Image.new("1", (8000, 6000)).save(out, "PNG")  # 48 megapixels in a few kilobytes
    response = put(signed_in, out.getvalue())
    assert response.status_code == 400 and response.json()["error"]["code"] == "image_too_large"


def test_an_image_over_the_size_limit_is_refused(signed_in, settings):
    settings.MAX_AVATAR_SIZE = 2000
    big = image_bytes("PNG", size=(300, 300), color=(1, 2, 3))
    noisy = io.BytesIO()
    Image.effect_noise((200, 200), 64).save(noisy, "PNG")  # incompressible: well over 2,000 bytes
    assert len(noisy.getvalue()) > 2000
    response = put(signed_in, noisy.getvalue())
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert "2,000" in response.json()["error"]["message"]
    assert len(big) <= 2000 and put(signed_in, big).status_code == 200  # under the limit is fine


def test_signed_out_users_cannot_change_a_profile(client, user):
    for response in (put(client, image_bytes("PNG")), client.delete(URL),
                     client.patch("/api/v1/auth/me", {"display_name": "x"}, content_type="application/json")):
        assert response.status_code in (401, 403), response.content
        assert response.json()["error"]["code"] == "not_signed_in"
    assert not Avatar.objects.exists()


def test_the_display_name_is_edited_and_checked(signed_in, user):
    response = signed_in.patch("/api/v1/auth/me", {"display_name": "  Ada's data  "}, content_type="application/json")
    assert response.status_code == 200 and response.json()["display_name"] == "Ada's data"
    for bad in ("x" * 81, "two\nlines"):
        refused = signed_in.patch("/api/v1/auth/me", {"display_name": bad}, content_type="application/json")
        assert refused.status_code == 400 and "display_name" in refused.json()["error"]["fields"]
    assert signed_in.patch("/api/v1/auth/me", {"display_name": ""}, content_type="application/json").status_code == 200
    assert User.objects.get(pk=user.pk).display_name == ""


def test_pages_show_the_publishers_avatar_and_name(signed_in, user, settings, tmp_path):
    from django.test import Client

    from marketplace.catalog.indexing import SearchSync

    settings.SEARCH_INDEX_DIR = tmp_path / "search"

    visitor = Client()
    dataset = Dataset.objects.create(owner=user, slug="tides", title="Tides", license="CC0-1.0",
                                     payout_address=ADDRESS, status=Dataset.Status.LISTED)
    DatasetVersion.objects.create(dataset=dataset, number=1, file="x/tides.csv", original_name="tides.csv",
                                  format="csv", size=10, content_hash="0x" + "1" * 64, price=1, token=ADDRESS)
    page = visitor.get("/datasets/tides").content.decode()
    assert f'src="/avatars/{ADDRESS}?v=identicon"' in page  # the placeholder
    put(signed_in, image_bytes("PNG"))
    signed_in.patch("/api/v1/auth/me", {"display_name": "Tide Watch"}, content_type="application/json")
    user.refresh_from_db()
    page = visitor.get("/datasets/tides").content.decode()
    assert f'src="/avatars/{ADDRESS}?v={user.avatar_digest[:16]}"' in page and "Tide Watch" in page
    SearchSync().rebuild()
    catalog = visitor.get("/").content.decode()  # a result card
    assert f'src="/avatars/{ADDRESS}?v={user.avatar_digest[:16]}"' in catalog and "Tide Watch" in catalog
    profile = signed_in.get("/me/profile").content.decode()
    assert "data-avatar-form" in profile and 'value="Tide Watch"' in profile
    assert "data-sign-in-prompt" in visitor.get("/me/profile").content.decode()

"""A signed-in user reaches the profile from the header, uploads an avatar and sets a display
name; the header and the dataset pages show them."""
import io
import re

from PIL import Image
import pytest

from marketplace.accounts.services import wallet_user
from tests.e2e.test_catalog_pages import listed, shoot, sign_in_as

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ADDRESS = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


def png(color):
    out = io.BytesIO()
    Image.new("RGB", (300, 200), color).save(out, "PNG")
    return out.getvalue()


def test_profile_from_the_header_sets_avatar_and_name(page, live_server):
    user = wallet_user(ADDRESS)
    dataset = listed(user, "Tide gauges")
    base = live_server.url.replace("127.0.0.1", "localhost")
    sign_in_as(page, base, user)
    page.goto(f"{base}/datasets/{dataset.slug}")
    assert page.locator("[data-publisher] img").get_attribute("src") == f"/avatars/{ADDRESS}?v=identicon"
    header = page.locator("[data-wallet-status]")
    header.wait_for(state="visible")
    assert header.locator("img").get_attribute("src").endswith("?v=identicon")
    header.click()
    page.wait_for_url(re.compile(r"/me/profile$"))

    page.set_input_files("#p-avatar", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    page.locator("[data-avatar-form] [data-submit]").click()
    error = page.locator("[data-avatar-form] [data-form-error]")
    error.wait_for(state="visible")
    assert "not a PNG, JPEG, WebP or GIF" in error.inner_text()

    page.set_input_files("#p-avatar", files=[{"name": "me.png", "mimeType": "image/png", "buffer": png((20, 120, 200))}])
    page.locator("[data-avatar-form] [data-submit]").click()
    page.wait_for_url(re.compile(r"saved=1"))
    user.refresh_from_db()
    assert user.avatar_digest
    assert page.locator("[data-profile-avatar]").get_attribute("data-has-avatar") == "true"
    page.wait_for_function("() => document.querySelector('[data-profile-avatar]').naturalWidth === 256")

    page.fill("#p-name", "Tide Watch")
    page.locator("[data-profile-form] [data-submit]").click()
    page.wait_for_url(re.compile(r"saved=1"))
    page.wait_for_function("() => document.querySelector('[data-wallet-name]').textContent === 'Tide Watch'")
    assert header.locator("img").get_attribute("src") == f"/avatars/{ADDRESS}?v={user.avatar_digest[:16]}"
    shoot(page, "profile")

    page.goto(f"{base}/datasets/{dataset.slug}")
    publisher = page.locator("[data-publisher]")
    assert "Tide Watch" in publisher.inner_text()
    page.wait_for_function("() => document.querySelector('[data-publisher] img').naturalWidth === 256")

    page.goto(f"{base}/me/profile")
    page.locator("[data-avatar-remove]").click()
    page.wait_for_url(re.compile(r"saved=1"))
    assert page.locator("[data-profile-avatar]").get_attribute("src").endswith("?v=identicon")

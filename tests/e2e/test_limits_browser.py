"""A publisher over a limit reads why, in words, on the page: the new-dataset form once the day's
creations are used up, and the upload form when a file does not fit the storage quota."""
import re

import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog.models import Dataset, DatasetVersion
from marketplace.limits.models import StorageReservation
from tests.e2e.test_catalog_pages import sign_in_as

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
OWNER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
CSV = b"city,year,population\nParis,2020,2148000\nLyon,2020,516000\nNice,2021,342000\n"


def test_the_publisher_pages_say_which_limit_was_reached(page, live_server, settings, chain):
    settings.LIMITS = {**settings.LIMITS, "dataset": {"wallet": "1/day"}}
    settings.STORAGE_QUOTA_PER_WALLET = len(CSV) - 1
    base = live_server.url.replace("127.0.0.1", "localhost")
    sign_in_as(page, base, wallet_user(OWNER))

    def create(title):
        page.goto(base + "/me/datasets/new")
        page.fill("#d-title", title)
        page.select_option("#d-license", "CC-BY-4.0")
        page.locator("[data-submit]").click()

    create("French cities")
    page.wait_for_url(re.compile(r"/me/datasets/french-cities/edit\?created=1"))
    page.set_input_files("#u-file", files=[{"name": "cities.csv", "mimeType": "text/csv", "buffer": CSV}])
    page.fill("#u-price", "12.5")
    page.locator("[data-upload-form] [data-submit]").click()
    error = page.locator("[data-upload-form] [data-form-error]")
    error.wait_for(state="visible")
    assert error.inner_text() == (f"This file ({len(CSV)} bytes) does not fit in this wallet's storage quota: "
                                  f"0 bytes stored, of {len(CSV) - 1} bytes.")
    assert not DatasetVersion.objects.exists() and not StorageReservation.objects.exists()

    create("German cities")
    error = page.locator("[data-dataset-form] [data-form-error]")
    error.wait_for(state="visible")
    assert error.inner_text() == "Too many new datasets for this wallet (at most 1 per day); try again in 24 hours."
    assert list(Dataset.objects.values_list("title", flat=True)) == ["French cities"]

"""Review before changes go public, in a real browser, as the issue will be checked: an owner
edits a listed dataset and turns its sample rows on; the public page and search keep what a
moderator approved until a moderator approves the change in the admin."""
import re

from django.test import Client
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog.indexing import SearchSync
from tests.e2e.test_catalog_pages import COLUMNS, SAMPLE, index_dir, listed, owner, shoot, sign_in_as  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def moderator(db):
    return wallet_user("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65", is_staff=True, is_superuser=True)


@pytest.fixture
def visitor(browser):
    """A second browser, signed out: what the public sees."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def approve_in_admin(page, base, moderator, dataset_title):
    client = Client()
    client.force_login(moderator)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}])
    page.goto(base + "/admin/catalog/datasetrevision/?status__exact=pending")
    row = page.locator("#result_list tbody tr", has_text=dataset_title)
    assert row.count() == 1, page.locator("#result_list").inner_text()
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "approve")
    page.locator("button[name=index]").click()
    assert dataset_title in page.locator("#content").inner_text()  # the confirmation page shows what it decides
    page.locator("input[type=submit][value=Approve]").click()
    assert "1 revision(s) decided (approve)" in page.locator(".messagelist").inner_text()


def test_an_edit_to_a_listed_dataset_shows_only_once_approved(page, visitor, live_server, owner, moderator,
                                                               index_dir):
    dataset = listed(owner, "Tide gauges", analysis_status="done", row_count=3, columns=COLUMNS, sample=SAMPLE)
    SearchSync().rebuild()
    base = live_server.url.replace("127.0.0.1", "localhost")

    sign_in_as(page, base, owner)
    page.goto(f"{base}/me/datasets/{dataset.slug}/edit")
    page.fill("#d-title", "Tide gauges of Brittany")
    page.fill("#d-summary", "Hourly sea levels, now with the zanzibarite station.")
    page.locator("[data-dataset-form] [data-submit]").click()
    page.wait_for_url(re.compile(r"saved=1"))
    assert "Waiting for review" in page.locator("[data-details-waiting]").inner_text()
    assert page.input_value("#d-title") == "Tide gauges of Brittany"  # the owner sees the pending text
    shoot(page, "edit-waiting-for-review")

    SearchSync().sync_once()
    visitor.goto(f"{base}/datasets/{dataset.slug}")
    assert visitor.locator("h1.dataset-title").inner_text().strip() == "Tide gauges"
    assert "zanzibarite" not in visitor.content()
    visitor.goto(f"{base}/?q=zanzibarite")
    visitor.locator("[data-empty]").wait_for()  # search never sees pending text

    approve_in_admin(page, base, moderator, "Tide gauges")
    SearchSync().sync_once()
    visitor.goto(f"{base}/datasets/{dataset.slug}")
    assert visitor.locator("h1.dataset-title").inner_text().strip() == "Tide gauges of Brittany"
    visitor.goto(f"{base}/?q=zanzibarite")
    assert visitor.locator("[data-result]").count() == 1


def test_sample_rows_turned_on_show_only_once_approved(page, visitor, live_server, owner, moderator, index_dir):
    dataset = listed(owner, "Harbour depths", analysis_status="done", row_count=3, columns=COLUMNS, sample=SAMPLE,
                     show_sample=False)
    base = live_server.url.replace("127.0.0.1", "localhost")
    visitor.goto(f"{base}/datasets/{dataset.slug}")
    assert visitor.locator('[data-column="city"]').is_visible()
    assert visitor.locator("[data-sample] tbody tr").count() == 0  # sample rows are opt-in

    sign_in_as(page, base, owner)
    page.goto(f"{base}/me/datasets/{dataset.slug}/edit")
    preview = page.locator('[data-preview-version="1"]')
    preview.locator('[data-field="show_sample"]').check()
    assert "Paris" in preview.locator("[data-preview-sample]").inner_text()  # exactly what will be shown
    preview.locator('[data-column="population"]').uncheck()  # shows less: applies at once
    preview.locator("[data-submit]").click()
    page.wait_for_url(re.compile(r"previewed=waiting"))
    assert "the sample rows" in page.locator("[data-preview-waiting]").inner_text()
    shoot(page, "edit-preview-waiting")

    visitor.goto(f"{base}/datasets/{dataset.slug}")
    assert visitor.locator('[data-column="population"]').count() == 0
    assert visitor.locator("[data-sample] tbody tr").count() == 0

    approve_in_admin(page, base, moderator, "Harbour depths")
    visitor.goto(f"{base}/datasets/{dataset.slug}")
    sample = visitor.locator("[data-sample]").inner_text()
    assert "Paris" in sample and "population" not in sample
    assert visitor.locator('[data-column="population"]').count() == 0
    shoot(visitor, "dataset-after-preview-approval")

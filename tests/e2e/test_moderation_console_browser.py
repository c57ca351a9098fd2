"""The review queue console in a real browser, as two moderators use it: one finds the queue from
the audit log's header, opens the oldest item (its diff, its personal-data flag), claims it; the
other, on the same item, sees who holds it and is refused; the holder rejects with a policy, a
statement and an internal note; the publisher reads the statement, never the note."""
from django.contrib.auth.models import Group
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog import revisions
from marketplace.catalog.models import DatasetRevision
from tests.e2e.test_catalog_pages import COLUMNS, OWNER, listed, shoot, sign_in_as

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EMAILS = [{"city": "Paris", "population": 2148000, "contact": "mairie@paris.example"},
          {"city": "Lyon", "population": 516000, "contact": "contact@lyon.example"}]


def moderator(address):
    person = wallet_user(address)
    Group.objects.get(name="moderator").user_set.add(person)
    return person


@pytest.fixture
def owner(db):
    return wallet_user(OWNER)


@pytest.fixture
def second(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def test_two_moderators_on_one_item_and_a_rejection_with_reasons(page, second, live_server, owner):
    dataset = listed(owner, "City contacts", analysis_status="done", row_count=2,
                     columns=COLUMNS + [{"name": "contact", "type": "string", "null_count": 0, "distinct_count": 2}],
                     sample=EMAILS)
    revision = revisions.edit_dataset(dataset, by=owner, title="City contacts of France").revision
    ann = moderator("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65")
    bob = moderator("0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc")
    base = live_server.url.replace("127.0.0.1", "localhost")

    sign_in_as(page, base, ann)
    page.goto(base + "/moderation/audit")
    page.locator(".moderation-nav a", has_text="Review queue").click()
    page.wait_for_url(base + "/moderation/queue")
    row = page.locator(f'[data-item="{revision.pk}"]')
    assert "City contacts" in row.inner_text() and "nobody" in row.inner_text()
    shoot(page, "review-queue")
    row.locator("a").first.click()
    page.wait_for_url(f"{base}/moderation/review/{revision.pk}")
    title = page.locator('[data-diff] tr[data-field="title"]')
    assert "City contacts of France" in title.inner_text() and "changed" in title.inner_text()
    assert page.locator('[data-flag="contact:email"]').is_visible()
    assert "mairie@paris.example" in page.locator("[data-sample]").inner_text()
    page.locator("[data-review-claim-button]").click()
    page.locator("[data-done]").wait_for()
    assert "You hold this item" in page.locator("[data-review-claim]").inner_text()

    sign_in_as(second, base, bob)
    second.goto(f"{base}/moderation/review/{revision.pk}")
    assert "Claimed by" in second.locator("[data-review-claim]").inner_text()
    assert second.locator("[data-review-claim-button]").count() == 0
    second.locator('input[name=decision][value=approve]').check()
    second.locator("[data-decide-button]").click()
    error = second.locator("[data-review-error]")
    error.wait_for()
    assert "is claimed by" in error.inner_text()
    revision.refresh_from_db()
    assert revision.status == "pending"

    page.locator('input[name=decision][value=reject]').check()
    page.select_option("#reason-code", "misleading")
    page.fill("#statement", "The contacts are not the towns' own.")
    page.fill("#internal-note", "Scraped from a directory, seen before.")
    shoot(page, "review-item")
    page.locator("[data-decide-button]").click()
    page.locator("[data-done]").wait_for()
    assert "Rejected" in page.locator("[data-done]").inner_text()
    assert "Scraped from a directory, seen before." in page.locator("[data-dataset-record]").inner_text()
    revision.refresh_from_db()
    assert revision.status == DatasetRevision.Status.REJECTED and revision.decided_by == ann

    sign_in_as(second, base, owner)
    second.goto(base + "/me/audit")
    body = second.locator("main").inner_text()
    assert "The contacts are not the towns' own." in body and "Scraped from a directory" not in body

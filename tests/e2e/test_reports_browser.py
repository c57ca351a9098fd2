"""Reports in a real browser, as new users would: a signed-in buyer reports a dataset from its
page, someone without an account files a notice through the public form and keeps the status
page's address, a moderator finds both in one row of the reports list, closes them as
"dataset delisted", and the notifier's status page and the buyer's notifications show the outcome;
every page under the site's Content-Security-Policy, without console errors."""
from django.contrib.auth.models import Group
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.chain.models import OperatorAction
from marketplace.moderation.models import AuditEntry, Report
from tests.e2e.test_catalog_pages import OWNER, listed, shoot, sign_in_as

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
BUYER = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
MODERATOR = "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f"


@pytest.fixture
def new_page(browser):
    """Pages of separate browser contexts (separate people), closed at the end."""
    contexts = []

    def make():
        contexts.append(browser.new_context(viewport={"width": 1280, "height": 900}))
        return contexts[-1].new_page()

    yield make
    for context in contexts:
        context.close()


def watch(page):
    problems = []
    # The forms answer bad input with a 400 page, which the browser logs: expected, not a problem.
    page.on("console", lambda m: m.type == "error" and "status of 400" not in m.text
            and problems.append(f"{page.url}: {m.text}"))
    page.on("pageerror", lambda error: problems.append(f"{page.url}: {error}"))
    page.on("response", lambda r: r.status >= 500 and problems.append(f"{r.status} {r.url}"))
    return problems


def test_a_report_and_a_notice_are_closed_by_a_moderator_and_both_reporters_see_the_outcome(
        new_page, live_server, settings):
    settings.LIMITS_REDIS_URL = ""
    dataset = listed(wallet_user(OWNER), "Customer contacts")
    buyer, moderator = wallet_user(BUYER), wallet_user(MODERATOR)
    Group.objects.get(name="moderator").user_set.add(moderator)
    base = live_server.url

    # A buyer reports the dataset from its page.
    buyer_page = new_page()
    problems = watch(buyer_page)
    sign_in_as(buyer_page, base, buyer)
    buyer_page.goto(f"{base}/datasets/{dataset.slug}")
    buyer_page.locator("[data-report-link]").click()
    buyer_page.wait_for_url(f"**/datasets/{dataset.slug}/report")
    buyer_page.locator("[data-report-submit]").click()  # nothing chosen: the fields say what is missing
    assert buyer_page.locator('[data-error-for="reason"]').is_visible()
    assert buyer_page.locator('[data-error-for="evidence"]').is_visible()
    buyer_page.select_option("#r-reason", "personal_data")
    buyer_page.fill("#r-evidence", "The `email` column lists customers' private addresses.")
    shoot(buyer_page, "report-form")
    buyer_page.locator("[data-report-submit]").click()
    assert "received" in buyer_page.locator("[data-report-filed]").inner_text()

    # Someone without an account files a notice, and keeps the status page's address.
    visitor = new_page()
    problems += watch(visitor)
    visitor.goto(f"{base}/notice")
    visitor.fill("#n-target", f"{base}/datasets/{dataset.slug}")
    visitor.select_option("#r-reason", "personal_data")
    visitor.fill("#n-law", "GDPR art. 6")
    visitor.fill("#n-evidence", "Row 12 is my own e-mail address; I never agreed to this.")
    visitor.fill("#n-name", "Ana Lopes")
    visitor.fill("#n-email", "ana@example.org")
    visitor.locator("[data-notice-submit]").click()
    assert visitor.locator('[data-error-for="good_faith"]').is_visible()  # the statement is required
    visitor.check("input[name=good_faith]")
    shoot(visitor, "notice-form")
    visitor.locator("[data-notice-submit]").click()
    visitor.wait_for_url("**/notice/*?filed=1")
    status_url = visitor.url.split("?")[0]
    assert visitor.locator("[data-notice-filed]").is_visible()
    assert visitor.locator("[data-notice-status]").get_attribute("data-notice-status") == "open"

    # The moderator sees one row with both, reads them and closes them as delisted.
    mod_page = new_page()
    problems += watch(mod_page)
    sign_in_as(mod_page, base, moderator)
    mod_page.goto(f"{base}/moderation/reports")
    row = mod_page.locator(f'[data-group="dataset:{dataset.pk}"]')
    assert row.get_attribute("data-count") == "2"
    shoot(mod_page, "report-groups")
    row.get_by_role("link", name="Review").click()
    mod_page.wait_for_url(f"**/moderation/reports/dataset/{dataset.pk}")
    assert mod_page.locator("[data-report]").count() == 2
    assert "ana@example.org" in mod_page.locator("[data-report-group]").inner_text()
    mod_page.check("input[name=outcome][value=delisted]")
    mod_page.fill("#c-statement", "The dataset holds personal data without a lawful basis: delisted.")
    shoot(mod_page, "report-group")
    mod_page.locator("[data-close-submit]").click()
    assert "2 reports closed" in mod_page.locator("[data-closed]").inner_text()
    assert not mod_page.locator("[data-close-form]").count()

    assert set(Report.objects.values_list("status", "outcome")) == {("closed", "delisted")}
    assert AuditEntry.objects.filter(action="report.close").count() == 2
    assert AuditEntry.objects.filter(action="dataset.delist", target_id=str(dataset.pk)).exists()
    # Its approval is being cleared on-chain by the operator sender (purchases then revert).
    assert OperatorAction.objects.filter(kind=OperatorAction.Kind.UNAPPROVE).exists()

    # Both reporters are told.
    visitor.goto(status_url)
    assert visitor.locator("[data-notice-status]").get_attribute("data-notice-status") == "closed"
    assert "personal data without a lawful basis" in visitor.locator("[data-statement]").inner_text()
    shoot(visitor, "notice-status")
    buyer_page.goto(f"{base}/me/audit")
    assert "was closed: Dataset delisted" in buyer_page.locator("[data-notifications]").inner_text()
    assert problems == []

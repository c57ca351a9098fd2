"""A moderator bans a wallet and lifts the ban in a real browser (Debian's Chromium): the wallet
page's forms work without a failing request, a console error or a CSP violation, the ban shows on
the bans page with the ban-evasion evidence, and the banned buyer's dataset page says so."""
import os

from django.contrib.auth.models import Group
from eth_account import Account
import pytest

from marketplace.accounts.models import User, WalletBan
from marketplace.accounts.services import wallet_user
from marketplace.moderation.models import AuditEntry
from marketplace.rewards.models import AddressWallet
from tests.e2e.test_catalog_pages import listed, sign_in_as
from tests.e2e.test_page_hygiene import WATCH_VIOLATIONS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_moderator_bans_a_wallet_sees_the_evidence_and_lifts_the_ban(page, live_server):
    moderator = User.objects.create_user("mod", password="a-long-password-1")
    Group.objects.get(name="moderator").user_set.add(moderator)
    banned = wallet_user(Account.create().address)
    neighbour = Account.create().address
    AddressWallet.objects.create(day="2026-12-01", ip="198.51.100.4", wallet=banned.address)
    AddressWallet.objects.create(day="2026-12-01", ip="198.51.100.77", wallet=neighbour)
    failures, console_errors = [], []
    page.on("response", lambda r: r.status >= 400 and failures.append(f"{r.status} {r.url}"))
    page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
    page.add_init_script(WATCH_VIOLATIONS)
    sign_in_as(page, live_server.url, moderator)

    page.goto(live_server.url + "/moderation/bans")
    page.fill("#ban-address", banned.address.lower())
    page.get_by_role("button", name="Open the wallet").click()
    page.wait_for_url(f"**/moderation/wallets/{banned.address}")
    assert page.locator("[data-not-banned]").is_visible()
    page.check("input[name=scope][value=buy]")
    page.select_option("#ban-reason", "payment_abuse")
    page.fill("#ban-statement", "Chargebacks on every order.")
    page.fill("#ban-note", "see report 12")
    page.get_by_role("button", name="Ban", exact=True).click()
    page.wait_for_selector("[data-active-bans] [data-scope=buy]")
    row = WalletBan.objects.get()
    assert (row.address, row.scope, row.reason, row.internal_note) == (banned.address, "buy", "payment_abuse",
                                                                       "see report 12")
    assert page.locator("input[name=scope][value=buy]").is_disabled()
    assert page.locator(f"[data-suspects] a[href='/moderation/wallets/{neighbour}']").count() == 1
    if os.environ.get("SCREENSHOTS"):
        page.screenshot(path=os.environ["SCREENSHOTS"] + "/wallet.png", full_page=True)

    page.goto(live_server.url + "/moderation/bans")
    assert page.locator(f"[data-active-bans] [data-ban='{row.pk}']").is_visible()
    assert page.locator(f"[data-evasion] [data-suspect='{neighbour}'][data-kind=network]").is_visible()
    assert "198.51.100.0/24" in page.locator("[data-evasion]").inner_text()
    if os.environ.get("SCREENSHOTS"):
        page.screenshot(path=os.environ["SCREENSHOTS"] + "/bans.png", full_page=True)

    # The banned buyer sees it on a dataset's page.
    dataset = listed(wallet_user(Account.create().address), "Rainfall", row_count=3, analysis_status="done")
    sign_in_as(page, live_server.url, banned)
    page.goto(live_server.url + f"/datasets/{dataset.slug}")
    assert page.locator("[data-buy][data-state=banned] [data-banned]").is_visible()

    sign_in_as(page, live_server.url, moderator)
    page.goto(live_server.url + f"/moderation/wallets/{banned.address}")
    page.fill("#lift-statement", "Disputes settled.")
    page.get_by_role("button", name="Lift the ban").click()
    page.wait_for_selector("[data-not-banned]")
    row.refresh_from_db()
    assert row.lifted_at is not None and row.lift_statement == "Disputes settled."
    assert page.locator(f"[data-lifted-bans] [data-ban='{row.pk}']").is_visible()
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == ["wallet.ban", "wallet.unban"]
    assert failures == [] and console_errors == []
    assert page.evaluate("window.__violations") == []

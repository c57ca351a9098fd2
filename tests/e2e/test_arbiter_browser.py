"""Resolving a dispute in a real browser as the issue will be checked, when the operator key is not
the arbiter: an arbiter finds the disputed order in the console, reads the buyer's statement,
decides a refund share, and sends the prepared resolve(orderId, refundBps) from the connected
wallet (the test wallet: anvil's unlocked dev account that holds ARBITER_ROLE). The live server's
nudge reads the block; both balances change, the audit log has the decision and its confirmation,
and both parties are told.

A moderator clears a contributor's flag and retries a failed clearing from the console's pages.

Set SCREENSHOTS=/some/dir to keep full-page screenshots at 1280 and 390 px wide."""
from django.contrib.auth.models import Group
import pytest

from marketplace.accounts.models import User
from marketplace.moderation.models import AuditEntry, Notification
from marketplace.chain.models import OperatorAction
from marketplace.orders.models import Order
from marketplace.rewards.models import Flag
from tests.e2e.conftest import install_wallet
from tests.e2e.test_catalog_pages import shoot, sign_in_as
from tests.integration.test_datamarket_client import on_sale  # noqa: F401  (fixture)
from tests.integration.test_listing import PRICE
from tests.integration.test_moderation_abuse import WALLET, flagged  # noqa: F401  (fixture)
from tests.integration.test_moderation_disputes import (  # noqa: F401  (fixtures)
    ARBITER_WALLET, BUYER, PUBLISHER, balances, disputed, failed, make_wallet_the_arbiter,
)

pytestmark = [pytest.mark.browser, pytest.mark.chain, pytest.mark.django_db(transaction=True)]


def test_an_arbiter_resolves_a_dispute_from_the_wallet_and_both_balances_change(
        page, live_server, chain, disputed, settings):
    base = live_server.url.replace("127.0.0.1", "localhost")
    make_wallet_the_arbiter(chain, settings)
    arbiter = User.objects.create_user("arbiter", password="a-long-password-1", address=ARBITER_WALLET)
    Group.objects.get(name="arbiter").user_set.add(arbiter)
    sign_in_as(page, base, arbiter)
    install_wallet(page, rpc=chain.url, account=ARBITER_WALLET)
    buyer_before, seller_before = balances(chain)

    page.goto(base + "/moderation/disputes")
    page.locator(f'a[href="/moderation/disputes/{disputed.order_id}"]').click()
    assert "Half the stations are missing." in page.locator('[data-statement="buyer"]').inner_text()
    assert page.locator('[data-event="OrderDisputed"]').count() == 1
    shoot(page, "dispute-form")
    page.fill("#share", "60")
    page.fill("#statement", "Most stations are there; the rest is refunded.")
    page.locator("[data-resolve-form] button[type=submit]").click()
    page.locator("[data-prepared]").wait_for()
    assert "resolve(" in page.locator("[data-prepared]").inner_text()
    shoot(page, "dispute-prepared")

    page.locator("[data-send-resolve]").click()
    try:
        page.locator("[data-confirmed]").wait_for(timeout=30_000)  # the page reloads once the server has read it
    except Exception:
        raise AssertionError(page.locator("[data-send-resolve-status]").inner_text()) from None

    order = Order.objects.get(pk=disputed.pk)
    refund = PRICE * 60 // 100
    fee = (PRICE - refund) * order.fee_bps // 10_000
    assert order.status == "resolved" and order.refund == refund
    assert balances(chain) == (buyer_before + refund, seller_before + PRICE - refund - fee)
    decision = AuditEntry.objects.get(action="dispute.resolve")
    assert decision.actor == "arbiter" and decision.details["via"] == "wallet" and decision.details["refund_bps"] == 6000
    assert AuditEntry.objects.get(action="chain.confirmed").details["entry"] == decision.id
    told = set(Notification.objects.filter(kind="dispute.resolved").values_list("recipient__address", flat=True))
    assert told == {BUYER, PUBLISHER}
    assert page.locator("[data-send-resolve]").count() == 0 and page.locator("[data-resolve-form]").count() == 0
    shoot(page, "dispute-resolved")


def test_a_moderator_clears_a_flag_and_retries_a_failed_action(page, live_server, chain, on_sale, flagged):
    base = live_server.url.replace("127.0.0.1", "localhost")
    moderator = User.objects.create_user("moderator", password="a-long-password-1")
    Group.objects.get(name="moderator").user_set.add(moderator)
    sign_in_as(page, base, moderator)
    clearing = failed(chain, on_sale, "unapprove")

    page.goto(base + "/moderation/abuse")
    card = page.locator(f'[data-flag="{flagged.pk}"]')
    assert "0xbbb" in card.locator("[data-evidence]").inner_text() and "3 USDC" in card.inner_text()
    shoot(page, "moderation-abuse")
    card.locator("input[name=note]").fill("The proxy was misconfigured.")
    card.locator("[data-clear]").click()
    assert "paid in the next epoch" in page.locator("[data-console-message]").inner_text()
    assert Flag.objects.get(pk=flagged.pk).status == "cleared"
    assert AuditEntry.objects.get(action="flag.clear").internal_note == "The proxy was misconfigured."

    page.goto(base + "/moderation/actions")
    row = page.locator(f'[data-action="{clearing.pk}"]')
    assert "reverted" in row.inner_text()
    shoot(page, "moderation-actions")
    row.locator(f'[data-retry="{clearing.pk}"]').click()
    assert "queued again" in page.locator("[data-console-message]").inner_text()
    assert OperatorAction.objects.get(context__retry_of=clearing.pk).status == "pending"
    assert page.locator(f'[data-retry="{clearing.pk}"]').count() == 0  # retried once only

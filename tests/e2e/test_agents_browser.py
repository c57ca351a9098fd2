"""The agent keys page in a real browser: a signed-in user makes a key for the agent's wallet,
copies the message the wallet is asked to sign, pastes the wallet's signature (made here with
the dev key, as the command the page shows would), copies the key's secret with the button
(shown only with JavaScript), sees it listed without the secret, and revokes it."""
import pytest

from marketplace.accounts import agent_keys
from marketplace.accounts.models import AgentKey
from tests.e2e.test_catalog_pages import owner, sign_in_as  # noqa: F401
from tests.e2e.test_page_hygiene import WATCH_VIOLATIONS
from tests.integration.test_agent_keys import AGENT, sign

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_key_is_made_copied_and_revoked(page, live_server, owner):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    sign_in_as(page, live_server.url, owner)
    console_errors = []
    page.on("console", lambda m: m.type == "error" and console_errors.append(f"{page.url}: {m.text}"))
    page.add_init_script(WATCH_VIOLATIONS)
    page.goto(live_server.url + "/me/agents")
    page.fill("#a-name", "Browser bot")
    page.fill("#a-wallet", AGENT)
    page.fill("#a-max", "2")
    page.fill("#a-cap", "10")
    page.check("input[name=allowed_categories][value=health]")
    page.locator("[data-agent-key-form] button[type=submit]").click()

    proof = page.locator("[data-wallet-proof]")
    message = proof.locator("[data-challenge-message]").input_value()
    assert f"Wallet: {AGENT}" in message and AgentKey.objects.count() == 0
    proof.locator("[data-copy-message]").click()
    assert page.evaluate("navigator.clipboard.readText()") == message
    assert page.input_value("#a-name") == "Browser bot"  # the terms stay
    assert page.evaluate("window.__violations") == [] and console_errors == []  # the policy allows the step
    page.fill("#a-signature", sign(message))
    page.locator("[data-agent-key-form] button[type=submit]").click()

    secret = page.locator("[data-secret]").inner_text()
    assert agent_keys.key_for_payment(secret, AGENT) == AgentKey.objects.get()
    copy = page.locator("[data-created-key] [data-copy]")
    copy.click()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    assert copy.inner_text() == "Copied"

    page.goto(live_server.url + "/me/agents")
    assert page.locator("[data-secret]").count() == 0 and secret not in page.content()
    key = page.locator("[data-agent-key]")
    assert "Browser bot" in key.inner_text() and "0 of 10 USDC" in key.inner_text()
    key.locator("[data-revoke-form] button").click()
    page.locator("[data-revoked-notice]").wait_for()
    assert page.locator("[data-agent-key]").get_attribute("data-status") == "revoked"
    assert AgentKey.objects.get().revoked_at is not None

"""Signing in from a real browser with a wallet found through EIP-6963."""
import pytest

from marketplace.accounts.models import User
from tests.conftest import DEV_KEYS
from tests.e2e.conftest import install_wallet

pytestmark = [pytest.mark.browser, pytest.mark.chain, pytest.mark.django_db(transaction=True)]


def test_connect_wallet_signs_in_and_out(page, live_server, chain):
    from eth_account import Account

    address = Account.from_key(DEV_KEYS[1]).address  # unlocked on anvil: it answers personal_sign
    install_wallet(page, rpc=chain.url, account=address)
    page.goto(live_server.url.replace("127.0.0.1", "localhost") + "/")

    button = page.locator("[data-wallet-button]")
    button.wait_for()
    page.wait_for_function("() => !document.querySelector('[data-wallet-button]').disabled")
    assert button.inner_text().strip() == "Connect wallet"
    button.click()

    status = page.locator("[data-wallet-status]")
    status.wait_for(state="visible")
    assert status.inner_text() == f"{address[:6]}…{address[-4:]}"
    assert status.get_attribute("title") == address
    assert User.objects.filter(address=address).exists()

    page.reload()  # the session survives a reload
    page.locator("[data-wallet-status]").wait_for(state="visible")
    page.locator("[data-wallet-button]").click()
    page.wait_for_function("() => document.querySelector('[data-wallet-button] span').textContent === 'Connect wallet'")
    assert page.locator("[data-wallet-status]").is_hidden()


def test_without_a_wallet_the_page_says_what_to_install(page, live_server, db):
    page.goto(live_server.url + "/")
    page.wait_for_function("() => !document.querySelector('[data-wallet-button]').disabled")
    page.locator("[data-wallet-button]").click()
    error = page.locator("[data-wallet-error]")
    error.wait_for(state="visible")
    assert "No wallet found" in error.inner_text()

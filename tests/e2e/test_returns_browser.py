"""Returning a pushed authorization from the arbiter's wallet in a real browser, when the operator
key is not the arbiter: the payer's authorization was sent straight to the token, the indexer
recorded it for the arbiter's wallet, and the arbiter sends the prepared returnSurplusBatch from
the console's Stray transfers page (the test wallet: anvil's unlocked dev account that holds
ARBITER_ROLE). The live server's nudge reads the block; the payer is made whole and the page and
the payer's library show the return."""
from django.contrib.auth.models import Group
import pytest

from marketplace.accounts.models import User
from marketplace.chain import indexer
from marketplace.orders.models import StrayTransfer
from tests.e2e.conftest import install_wallet
from tests.e2e.test_catalog_pages import shoot, sign_in_as
from tests.integration.test_stray_transfers import (  # noqa: F401  (fixtures)
    ARBITER_WALLET, PUSHED, START, make_wallet_the_arbiter, payer, push, stranger,
)

pytestmark = [pytest.mark.browser, pytest.mark.chain, pytest.mark.django_db(transaction=True)]


def test_an_arbiter_returns_a_pushed_authorization_from_the_wallet(page, live_server, chain, payer, stranger,
                                                                   settings, no_worker):
    base = live_server.url.replace("127.0.0.1", "localhost")
    make_wallet_the_arbiter(chain, settings)
    tx_hash, _ = push(chain, payer, PUSHED, stranger)
    indexer.index_chain(chain.w3)
    stray = StrayTransfer.objects.get()
    assert stray.status == "arbiter" and chain.token.balance_of(payer.address) == START - PUSHED
    arbiter = User.objects.create_user("arbiter", password="a-long-password-1", address=ARBITER_WALLET)
    Group.objects.get(name="arbiter").user_set.add(arbiter)
    sign_in_as(page, base, arbiter)
    install_wallet(page, rpc=chain.url, account=ARBITER_WALLET)

    page.goto(base + "/moderation/returns")
    assert "returnSurplusBatch" in page.locator("[data-prepared]").inner_text()
    assert page.locator(f'[data-waiting] [data-stray="{stray.ref}"]').count() == 1
    shoot(page, "returns-prepared")
    page.locator("[data-send-prepared]").click()
    try:
        page.locator(f'[data-recent] [data-stray="{stray.ref}"][data-status="returned"]').wait_for(timeout=30_000)
    except Exception:
        raise AssertionError(page.locator("[data-send-prepared-status]").inner_text()) from None

    stray.refresh_from_db()
    assert stray.status == "returned" and stray.return_tx_hash
    assert chain.token.balance_of(payer.address) == START
    assert page.locator("[data-send-prepared]").count() == 0
    shoot(page, "returns-sent")

    payer_user = User.objects.create_user("payer", password="a-long-password-1", address=payer.address)
    sign_in_as(page, base, payer_user)
    page.goto(base + "/me/library")
    row = page.locator(f'[data-returns] [data-return="{stray.ref}"]')
    assert row.get_attribute("data-status") == "returned" and "7 USDC" in row.inner_text()
    assert page.locator(f'[data-returns] [title="{tx_hash}"]').count() == 1

"""Removing a dataset for legal reasons, in real browsers against anvil with the real contracts, as
the issue will be checked: a moderator removes a bought dataset from its console page; the buyer's
download stops at once and they are told they can dispute; the operator sender clears the approval
on-chain and a purchase then reverts (DataMarketNotBuyable); the publisher files a counter-notice;
the moderator who removed it cannot decide it, another one reverses it, and the dataset is approved
on-chain again and downloads resume.

Set SCREENSHOTS=/some/dir to keep full-page screenshots at 1280 and 390 px wide."""
from django.contrib.auth.models import Group
from eth_account import Account
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog.models import Dataset
from marketplace.chain import indexer
from marketplace.chain.reverts import error_name
from marketplace.moderation.models import Appeal, AuditEntry
from tests.conftest import DEV_KEYS, wait_until
from tests.e2e.conftest import install_wallet
from tests.e2e.test_catalog_pages import shoot, sign_in_as
from tests.integration.test_datamarket_client import (  # noqa: F401  (fixtures)
    BUYER_KEY, on_sale, operator_sender,
)
from tests.integration.test_listing import PRICE

pytestmark = [pytest.mark.browser, pytest.mark.chain, pytest.mark.django_db(transaction=True)]


def moderator_user():
    person = wallet_user(Account.create().address)
    Group.objects.get(name="moderator").user_set.add(person)
    return person


@pytest.fixture
def second_page(browser):
    """Another person's browser."""
    contexts = []

    def open_page():
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def index(chain):
    chain.rpc("evm_mine")
    indexer.index_chain(chain.w3)


def test_a_removal_stops_the_download_reverts_purchases_and_a_counter_notice_restores(
        page, second_page, live_server, chain, on_sale, operator_sender):
    base = live_server.url.replace("127.0.0.1", "localhost")
    listing_id = int(on_sale.listings.get().listing_id)
    buyer = Account.from_key(BUYER_KEY)
    market = chain.market.contract.functions
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), buyer.address)
    chain.send(market.purchase(listing_id, PRICE), buyer.address)
    index(chain)
    remover, reviewer = moderator_user(), moderator_user()

    # The moderator removes it from the dataset's console page.
    sign_in_as(page, base, remover)
    page.goto(f"{base}/moderation/datasets/{on_sale.dataset.slug}")
    page.select_option("#action-reason", "copyright")
    page.fill("#action-statement", "The rights holder showed the file is a copy of their survey.")
    page.fill("#action-note", "Notice 2026-118, checked against the original.")
    page.locator('[data-action="remove"]').click()
    page.locator('[data-done="remove"]').wait_for()
    assert page.locator("[data-state]").get_attribute("data-state") == "removed"
    assert "Notice 2026-118" in page.locator("[data-entry]").first.inner_text()
    shoot(page, "moderation-dataset-removed")
    entry = AuditEntry.objects.get(action="dataset.remove")
    assert (entry.reason, entry.actor_id, entry.details["buyers_told"]) == ("copyright", remover.pk, 1)

    # The buyer's download stops at once, and they are told they can dispute.
    shopper = second_page()
    install_wallet(shopper, rpc=chain.url, account=buyer.address)
    sign_in_as(shopper, base, wallet_user(buyer.address))
    shopper.goto(base + "/me/library")
    shopper.locator("[data-order-download]").click()
    problem = shopper.locator("[data-order-error]")
    problem.wait_for()
    assert "removed for legal reasons" in problem.inner_text()
    shopper.goto(base + "/me/audit")
    assert "you can open a dispute before it is released" in shopper.locator("[data-notifications]").inner_text()

    # The operator sender clears the approval on-chain: a purchase reverts.
    assert wait_until(lambda: not chain.market.get_listing(listing_id)["approved"], timeout=30)
    index(chain)
    other = Account.from_key(DEV_KEYS[3])
    chain.token.mint(other.address, PRICE)
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), other.address)
    with pytest.raises(Exception) as reverted:
        market.purchase(listing_id, PRICE).call({"from": other.address})
    assert error_name(reverted.value, chain.market.contract.abi) == "DataMarketNotBuyable"

    # The publisher files a counter-notice from their decisions page.
    publisher = second_page()
    sign_in_as(publisher, base, on_sale.dataset.owner)
    publisher.goto(base + "/me/audit")
    publisher.locator(f'[data-entry="{entry.pk}"] [data-appeal-link]').click()
    assert "File a counter-notice" in publisher.locator("h1").inner_text()
    publisher.fill("#appeal-statement", "I ran this survey myself; the notice names another one.")
    publisher.locator("[data-appeal-form] button[type=submit]").click()
    publisher.locator("[data-appeal-open]").wait_for()
    appeal = Appeal.objects.get()
    assert appeal.kind == "counter_notice"

    # The moderator who removed it cannot decide it; another one reverses it.
    page.goto(base + "/moderation/appeals")
    page.locator(f'[data-appeal="{appeal.pk}"] a').click()
    page.locator("[data-own-decision]").wait_for()
    assert page.locator("[data-decision-form]").count() == 0
    deciding = second_page()
    sign_in_as(deciding, base, reviewer)
    deciding.goto(f"{base}/moderation/appeals/{appeal.pk}")
    deciding.fill("#decision-statement", "The survey is the publisher's own: the notice was mistaken.")
    deciding.locator('[data-outcome="reversed"]').click()
    deciding.locator('[data-appeal-status="reversed"]').wait_for()
    shoot(deciding, "moderation-appeal-reversed")

    # Approved on-chain again by the operator sender, listed once indexed; the download resumes.
    assert wait_until(lambda: chain.market.get_listing(listing_id)["approved"], timeout=30)
    # The indexer (beat's, every second) reads it; another run may hold its lock for a moment.
    assert wait_until(lambda: index(chain) or Dataset.objects.get(pk=on_sale.dataset_id).status == "listed",
                      timeout=30)
    market.purchase(listing_id, PRICE).call({"from": other.address})  # buyable again
    shopper.goto(base + "/me/library")
    with shopper.expect_download() as download:
        shopper.locator("[data-order-download]").click()
    assert download.value.suggested_filename.endswith(".csv")
    assert [e.action for e in AuditEntry.objects.order_by("id")][-4:] == [
        "dataset.remove", "appeal.file", "dataset.restore", "appeal.reverse"]

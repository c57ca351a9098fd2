"""Buying in a real browser: the dataset page buys from the test wallet (anvil's unlocked dev
accounts) with a permit and purchaseWithPermit on the real contracts, the live server's nudge
reads the order through its block, the file downloads and its sha256 is the content hash the
chain lists; the buyer confirms it in the library, and the publisher sees the sale paid out. A
second buyer sees every state of the purchase while it waits for confirmations, disputes it with
a statement, and the publisher is told and answers. The error paths say what went wrong: a price
raised after the page loaded (the contract's maxPrice error), a wallet without the USDC, a
request rejected in the wallet. The publisher withdraws a payout the token refused (a credit).

Set SCREENSHOTS=/some/dir to keep full-page screenshots at 1280 and 390 px wide."""
import hashlib
import re
import time

from eth_account import Account
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.chain import indexer
from marketplace.chain.artifacts import load_artifact
from marketplace.chain.models import OperatorAction
from marketplace.orders.models import CreditEntry, DisputeStatement, Order
from tests.conftest import DEV_KEYS
from tests.e2e.conftest import install_wallet
from tests.e2e.test_catalog_pages import shoot, sign_in_as
from tests.integration.test_credits import (  # noqa: F401  (fixtures)
    blocking, buyer, confirm_blocked, seller,
)
from tests.integration.test_datamarket_client import (  # noqa: F401  (fixtures)
    BUYER_KEY, CONTENT, on_sale, operator_sender,
)
from tests.integration.test_listing import PRICE

pytestmark = [pytest.mark.browser, pytest.mark.chain, pytest.mark.django_db(transaction=True)]

PUBLISHER = Account.from_key(DEV_KEYS[1])
SHARE = "24.375"  # 25 USDC less the 2.5 % fee
# More of anvil's unlocked dev accounts (4, 5, 6): the test wallet needs only their addresses.
SECOND_BUYER = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
NO_USDC = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"
NOBODY = "0x976EA74026E726554dB657fA54763abd0C3a0aa9"


def hold(page, method):
    """The wallet waits on `method` (as for the user's click) until release(page, method)."""
    page.evaluate(f"""() => {{
        window.__walletHold = window.__walletHold || {{}};
        window.__walletHold.{method} = new Promise((r) => {{ window.__release_{method} = r; }});
    }}""")


def release(page, method):
    page.evaluate(f"() => {{ window.__release_{method}(); delete window.__walletHold.{method}; }}")


def base_url(live_server):
    return live_server.url.replace("127.0.0.1", "localhost")  # the host sign-in messages name


def status(card):
    return card.locator("[data-buy-status]").inner_text()


def wait_status(page, text, timeout=10_000):
    page.wait_for_function("(text) => document.querySelector('[data-buy-status]').textContent"
                           ".includes(text)", arg=text, timeout=timeout)


def wait_buy_state(page, state, timeout=10_000):
    page.wait_for_function("(state) => document.querySelector('[data-buy]').dataset.state "
                           "=== state", arg=state, timeout=timeout)


def wait_order_status(page, order_id, state, timeout=20_000):
    page.wait_for_function("([id, state]) => document.querySelector(`[data-order=\"${id}\"]`)"
                           ".dataset.status === state", arg=[str(order_id), state], timeout=timeout)


def open_buyable(page, url):
    page.goto(url)
    page.wait_for_function("() => !document.querySelector('[data-buy-button]').disabled")
    return page.locator("[data-buy]")


def test_buy_download_check_and_confirm(page, live_server, chain, on_sale, tmp_path):
    base = base_url(live_server)
    shopper = Account.from_key(BUYER_KEY)
    install_wallet(page, rpc=chain.url, account=shopper.address)
    card = open_buyable(page, base + "/datasets/rainfall")
    assert card.locator("[data-buy-button]").inner_text() == "Buy for 25 USDC"
    assert card.get_attribute("data-state") == "buyable"

    # Signed out: the wallet signs in first (personal_sign), then the permit and the purchase.
    hold(page, "eth_sendTransaction")
    card.locator("[data-buy-button]").click()
    wait_status(page, "Confirm the purchase")
    assert wallet_user(shopper.address).pk  # signed in on the way
    started = time.monotonic()
    release(page, "eth_sendTransaction")  # the wallet sends; anvil mines it at once
    card.locator("[data-bought]").wait_for(state="visible", timeout=10_000)
    wait_buy_state(page, "ready")
    appeared = time.monotonic() - started
    assert appeared < 2.0, f"the order showed {appeared:.2f} s after its block"
    assert "Ready" in status(card) and card.locator("[data-buy-button]").is_hidden()

    (order,) = Order.objects.filter(buyer=shopper.address)
    assert order.tx_hash == card.get_attribute("data-tx-hash") and order.status == "open"
    # A permit for exactly the price, used up by the purchase: nothing left to spend.
    assert chain.token.allowance(shopper.address, chain.market.address) == 0
    assert chain.token.balance_of(chain.market.address) >= PRICE
    assert page.locator("[data-wallet-status]").is_visible()  # the header shows the wallet
    assert page.locator("[data-account-link] a", has_text="Library").is_visible()

    # The download: the browser saves the file; its sha256 is the content hash listed on-chain.
    with page.expect_download() as download:
        card.locator("[data-download]").click()
    path = tmp_path / "rainfall.csv"
    download.value.save_as(path)
    listed = "0x" + chain.market.get_listing(int(order.listing_id))["content_hash"].hex()
    assert "0x" + hashlib.sha256(path.read_bytes()).hexdigest() == listed
    assert path.read_bytes() == CONTENT
    page.locator("[data-hash-match][data-match=true]").wait_for()
    assert card.locator("[data-chain-hash]").inner_text() == listed
    assert "read through your wallet" in card.locator("[data-chain-hash-source]").inner_text()
    assert card.locator("[data-file-sha256]").inner_text() == listed
    # The page hashes the saved file itself, a chunk at a time.
    card.locator("[data-verify-file]").set_input_files(str(path))
    card.locator("[data-verify-result][data-match=true]").wait_for(timeout=20_000)
    shoot(page, "dataset-bought-verified")

    # Coming back, the page knows the order: the download instead of Buy.
    page.reload()
    assert card.get_attribute("data-state") == "bought"
    assert card.locator("[data-buy-button]").count() == 0
    assert card.locator("[data-download]").is_visible()
    assert f"Order #{order.order_id}" in card.locator("[data-bought-order]").inner_text()
    shoot(page, "dataset-bought")

    # The library: download again, then confirm receipt from the wallet; the publisher is paid.
    page.locator("[data-account-link] a", has_text="Library").click()
    page.wait_for_url(re.compile(r"/me/library$"))
    row = page.locator(f'[data-order="{order.order_id}"]')
    assert "In escrow" in row.locator("[data-order-status-badge]").inner_text()
    assert "25 USDC" in row.inner_text()
    shoot(page, "library-open")
    with page.expect_download() as again:
        row.locator("[data-order-download]").click()
    again.value.save_as(tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_bytes() == CONTENT
    paid_before = chain.token.balance_of(PUBLISHER.address)
    row.locator("[data-order-confirm]").click()
    wait_order_status(page, order.order_id, "released")
    order.refresh_from_db()
    assert order.status == "released" and order.settled_tx_hash
    assert chain.market.get_order(int(order.order_id))["status"] == "released"
    assert chain.token.balance_of(PUBLISHER.address) - paid_before == PRICE - PRICE * 250 // 10_000
    row = page.locator(f'[data-order="{order.order_id}"]')
    assert "Paid to the seller" in row.locator("[data-order-status-badge]").inner_text()
    assert row.locator("[data-order-confirm]").count() == 0
    shoot(page, "library-confirmed")

    # The publisher's sales: the order, what was paid out, and the payout's transaction.
    sign_in_as(page, base, wallet_user(PUBLISHER.address))
    page.goto(base + "/me/sales")
    sale = page.locator(f'[data-orders-table] [data-order="{order.order_id}"]')
    assert SHARE in sale.inner_text() and "Paid to the seller" in sale.inner_text()
    assert page.locator('[data-summary="paid"] [data-amount]').inner_text() == SHARE
    payout = page.locator(f'[data-payouts-table] [data-payout="{order.order_id}"]')
    assert order.settled_tx_hash[:6] in payout.inner_text()
    shoot(page, "sales")


def test_each_state_of_a_purchase_then_a_dispute_the_publisher_answers(
        page, live_server, chain, on_sale, settings):
    settings.CHAIN_CONFIRMATIONS = 2  # the server waits for 3 blocks: the page shows them come in
    base = base_url(live_server)
    shopper = wallet_user(SECOND_BUYER)
    chain.token.mint(shopper.address, PRICE)
    install_wallet(page, rpc=chain.url, account=shopper.address)
    sign_in_as(page, base, shopper)
    card = open_buyable(page, base + "/datasets/rainfall")
    shoot(page, "buy-1-idle")

    hold(page, "eth_signTypedData_v4")
    card.locator("[data-buy-button]").click()
    card.locator('[data-buy-steps] [data-step="signing"].is-current').wait_for()
    wait_status(page, "permit")
    assert "exactly 25 USDC" in status(card)
    shoot(page, "buy-2-signing")

    hold(page, "eth_sendTransaction")
    release(page, "eth_signTypedData_v4")
    wait_status(page, "Confirm the purchase")
    chain.rpc("evm_setAutomine", [False])  # sent, not mined yet
    try:
        release(page, "eth_sendTransaction")
        card.locator('[data-buy-steps] [data-step="submitted"].is-current').wait_for(timeout=10_000)
        page.wait_for_timeout(1500)  # the server answers "not mined" meanwhile: still submitted
        assert card.get_attribute("data-state") == "submitted"
        assert "Submitted: transaction 0x" in status(card)
        shoot(page, "buy-3-submitted")
        chain.rpc("evm_mine")
    finally:
        chain.rpc("evm_setAutomine", [True])
    card.locator('[data-buy-steps] [data-step="confirming"].is-current').wait_for(timeout=10_000)
    assert "1 of 3" in status(card)
    shoot(page, "buy-4-confirming")
    chain.rpc("evm_mine")
    wait_status(page, "2 of 3")
    assert not Order.objects.filter(buyer=shopper.address).exists()  # not before confirmations
    chain.rpc("evm_mine")
    wait_buy_state(page, "ready")
    shoot(page, "buy-5-ready")
    order = Order.objects.get(buyer=shopper.address)

    # The dispute from the library, with a statement; the page says when it waits to be mined.
    statement = ("The file has 150,000 rows but the rain_mm column\n"
                 "is always below 2,000: the description says up to 5,000.")
    chain.rpc("evm_setAutomine", [False])
    try:
        page.goto(base + "/me/library")
        row = page.locator(f'[data-order="{order.order_id}"]')
        row.locator("[data-order-dispute-open]").click()
        row.locator('[data-dispute-form] [data-field="text"]').fill(statement)
        shoot(page, "library-dispute-form")
        row.locator("[data-dispute-form] [data-submit]").click()
        page.wait_for_function("(id) => document.querySelector(`[data-order=\"${id}\"] "
                               "[data-order-action-status]`).textContent.includes('mined')",
                               arg=str(order.order_id))
        shoot(page, "library-dispute-submitted")
        for _ in range(3):
            chain.rpc("evm_mine")
    finally:
        chain.rpc("evm_setAutomine", [True])
    wait_order_status(page, order.order_id, "disputed")
    order.refresh_from_db()
    assert order.status == "disputed"
    (said,) = DisputeStatement.objects.all()
    assert said.role == "buyer" and said.author == shopper.address and said.text == statement
    row = page.locator(f'[data-order="{order.order_id}"]')
    assert "always below 2,000" in row.locator('[data-role="buyer"] .statement-text').inner_text()
    assert "has not answered yet" in row.inner_text()
    assert page.locator("[data-disputes-notice]").is_visible()
    shoot(page, "library-disputed")

    # The publisher is told, reads the statement and answers it.
    sign_in_as(page, base, wallet_user(PUBLISHER.address))
    page.goto(base + "/me/sales")
    notice = page.locator("[data-dispute-notice]")
    assert "disputed" in notice.inner_text() and f"#{order.order_id}" in notice.inner_text()
    dispute = page.locator(f"#dispute-{order.order_id}")
    assert "always below 2,000" in dispute.locator('[data-role="buyer"]').inner_text()
    assert page.locator('[data-summary="pending"] [data-amount]').inner_text() == SHARE
    shoot(page, "sales-disputed")
    form = dispute.locator("[data-statement-form]")
    form.locator("[data-submit]").click()
    assert "Write something" in form.locator("[data-form-error]").inner_text()
    form.locator('[data-field="text"]').fill("The description says up to 2,000 mm.")
    form.locator("[data-submit]").click()
    page.locator(f'#dispute-{order.order_id} [data-role="seller"] .statement-text').wait_for()
    assert DisputeStatement.objects.get(role="seller").author == PUBLISHER.address
    assert "You have answered" in page.locator("[data-dispute-notice]").inner_text()
    page.goto(base + "/me/sales")  # as a later visit draws it
    shoot(page, "sales-answered")


def test_the_market_s_refusals_after_the_page_loaded_are_said_in_words(
        page, live_server, chain, on_sale):
    base = base_url(live_server)
    shopper = Account.from_key(BUYER_KEY)
    install_wallet(page, rpc=chain.url, account=shopper.address)
    sign_in_as(page, base, wallet_user(shopper.address))
    card = open_buyable(page, base + "/datasets/rainfall")
    error = card.locator("[data-buy-error]")

    # Rejected in the wallet: said so, nothing sent.
    page.evaluate("window.__walletReject = {eth_signTypedData_v4: true}")
    card.locator("[data-buy-button]").click()
    error.wait_for(state="visible", timeout=10_000)
    assert "rejected the request in your wallet" in error.inner_text()
    assert card.get_attribute("data-error") == "rejected"
    page.evaluate("window.__walletReject = {}")

    # The publisher raises the price after the page was drawn: the contract's maxPrice refuses.
    listing_id = int(on_sale.listings.get().listing_id)
    raise_price = chain.market.contract.functions.updateListing(listing_id, 30 * 10**6,
                                                                PUBLISHER.address)
    chain.send(raise_price, PUBLISHER.address)
    card.locator("[data-buy-button]").click()
    page.wait_for_function("() => document.querySelector('[data-buy-error-text]').textContent"
                           ".includes('price changed')", timeout=10_000)
    message = error.inner_text()
    assert "The price changed: it is now 30 USDC" in message and "at most 25 USDC" in message
    assert "Nothing was charged" in message and card.get_attribute("data-error") == "revert"
    assert card.locator("[data-buy-button]").is_enabled()  # the buyer may reload and try again
    assert not Order.objects.exists()
    assert chain.token.allowance(shopper.address, chain.market.address) == 0
    shoot(page, "buy-error-price-changed")

    # A moderator delists it meanwhile: not buyable, said before anything is signed.
    delist = chain.market.contract.functions.setApproval([listing_id], False)
    chain.send(delist, chain.operator.address)
    card.locator("[data-buy-button]").click()
    page.wait_for_function("() => document.querySelector('[data-buy-error-text]').textContent"
                           ".includes('cannot be bought right now')", timeout=10_000)
    assert "not approved by a moderator" in error.inner_text()

    # Bought meanwhile with the same wallet (another tab, the client): the page says so and
    # offers the download.
    market = chain.market.contract.functions
    chain.send(market.setApproval([listing_id], True), chain.operator.address)
    chain.send(market.updateListing(listing_id, PRICE, PUBLISHER.address), PUBLISHER.address)
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), shopper.address)
    chain.send(market.purchase(listing_id, PRICE), shopper.address)
    card.locator("[data-buy-button]").click()
    card.locator("[data-bought]").wait_for(state="visible", timeout=10_000)
    assert "You already bought this version" in status(card) and error.is_hidden()
    assert card.locator("[data-buy-button]").is_hidden()


def test_a_wallet_without_the_usdc_is_told_how_much_it_holds(page, live_server, chain, on_sale):
    base = base_url(live_server)
    poor = wallet_user(NO_USDC)  # ETH for gas, no USDC
    assert chain.token.balance_of(poor.address) == 0
    install_wallet(page, rpc=chain.url, account=poor.address)
    sign_in_as(page, base, poor)
    card = open_buyable(page, base + "/datasets/rainfall")
    card.locator("[data-buy-button]").click()
    error = card.locator("[data-buy-error]")
    error.wait_for(state="visible", timeout=10_000)
    assert "Your wallet holds 0 USDC, less than the price of 25 USDC" in error.inner_text()
    assert card.get_attribute("data-error") == "insufficient_balance"
    assert not Order.objects.exists()
    shoot(page, "buy-error-balance")


def test_a_wallet_without_eth_for_gas_is_told_so(page, live_server, chain, on_sale):
    base = base_url(live_server)
    fresh = wallet_user(Account.create().address)  # the USDC, but no ETH for the network fee
    chain.token.mint(fresh.address, PRICE)
    install_wallet(page, rpc=chain.url, account=fresh.address)
    sign_in_as(page, base, fresh)
    card = open_buyable(page, base + "/datasets/rainfall")
    card.locator("[data-buy-button]").click()
    error = card.locator("[data-buy-error]")
    error.wait_for(state="visible", timeout=10_000)
    message = error.inner_text()
    assert "no ETH on the local development chain (Anvil) to pay the network fee" in message
    assert card.get_attribute("data-error") == "no_gas" and not Order.objects.exists()


def test_a_wallet_on_another_network_is_offered_the_switch(page, live_server, chain, on_sale,
                                                           settings):
    """The server's market runs on chain 1 here; the wallet is on anvil's 31337."""
    from marketplace.chain.models import Deployment

    market = Deployment.objects.get(chain_id=31337, contract="DataMarket")
    market.pk, market.chain_id = None, 1
    market.save()
    settings.CHAIN_ID = 1
    base = base_url(live_server)
    shopper = wallet_user(Account.from_key(BUYER_KEY).address)
    install_wallet(page, rpc=chain.url, account=shopper.address)
    sign_in_as(page, base, shopper)
    card = open_buyable(page, base + "/datasets/rainfall")
    card.locator("[data-buy-button]").click()
    error = card.locator("[data-buy-error]")
    error.wait_for(state="visible", timeout=10_000)
    message = error.inner_text()
    assert "wrong network (chain 31337)" in message and "Ethereum (chain 1)" in message
    switch = card.locator("[data-switch-network]")
    assert switch.is_visible() and switch.inner_text() == "Switch to Ethereum"
    shoot(page, "buy-error-network")
    switch.click()  # this test wallet (anvil) cannot switch: the page says what to do instead
    page.wait_for_function("() => document.querySelector('[data-buy-error-text]').textContent"
                           ".includes('cannot switch networks')")
    assert "choose Ethereum (chain 1) in the wallet" in error.inner_text()
    assert not Order.objects.exists()


def test_empty_library_and_sales_say_what_comes_there(page, live_server, chain):
    base = live_server.url
    sign_in_as(page, base, wallet_user(NOBODY))
    page.goto(base + "/me/library")
    assert "Nothing bought yet" in page.locator("[data-empty]").inner_text()
    shoot(page, "library-empty")
    page.goto(base + "/me/sales")
    assert "No sales yet" in page.locator("[data-empty]").inner_text()
    assert page.locator('[data-summary="pending"] [data-amount]').inner_text() == "0"
    shoot(page, "sales-empty")


def test_the_publisher_withdraws_a_credit_the_token_refused_to_pay(
        page, live_server, chain, seller, buyer, blocking):
    token, order_id = blocking
    confirm_blocked(chain, seller, buyer, token, order_id)  # the token refuses the seller
    indexer.index_chain(chain.w3)
    owed = chain.market.credit_of(token.address, seller.address)
    assert owed == PRICE - PRICE * 250 // 10_000
    unblock = token.functions.setBlocked(seller.address, False)  # the token accepts it again
    chain.send(unblock, chain.operator.address)

    base = base_url(live_server)
    install_wallet(page, rpc=chain.url, account=seller.address)
    sign_in_as(page, base, wallet_user(seller.address))
    page.goto(base + "/me/sales")
    credits = page.locator("[data-credits]")
    assert SHARE in credits.inner_text()
    assert page.locator('[data-summary="credits"] [data-amount]').inner_text() == SHARE
    shoot(page, "sales-credit")
    credits.locator("[data-withdraw]").click()
    # The page draws itself again once the indexer read the withdrawal.
    page.locator("[data-credits]").wait_for(state="detached", timeout=20_000)
    assert chain.market.credit_of(token.address, seller.address) == 0
    assert token.functions.balanceOf(seller.address).call() == owed
    withdrawn = CreditEntry.objects.get(kind="withdrawn")
    assert withdrawn.to == seller.address and withdrawn.amount == owed
    assert page.locator('[data-summary="credits"] [data-amount]').inner_text() == "0"
    payouts = page.locator("[data-payouts-table]")
    assert payouts.locator("[data-credit-entry]").count() == 2
    assert "Credit withdrawn" in payouts.inner_text()
    shoot(page, "sales-credit-withdrawn")


def test_a_buyer_without_eth_confirms_by_signature_and_the_marketplace_sends_it(
        page, live_server, chain, on_sale, operator_sender):
    """The wallet has no ETH for gas: Confirm asks for an EIP-712 signature instead, the relay
    endpoint queues it, the operator sender sends confirmBySig, and the publisher is paid."""
    base = base_url(live_server)
    shopper = Account.from_key(BUYER_KEY)
    listing_id = int(on_sale.listings.get().listing_id)
    chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), shopper.address)
    chain.send(chain.market.contract.functions.purchase(listing_id, PRICE), shopper.address)
    indexer.index_chain(chain.w3)
    (order,) = Order.objects.filter(buyer=shopper.address)
    chain.rpc("anvil_setBalance", [shopper.address, "0x0"])
    paid_before = chain.token.balance_of(PUBLISHER.address)
    install_wallet(page, rpc=chain.url, account=shopper.address)
    sign_in_as(page, base, wallet_user(shopper.address))
    page.goto(base + "/me/library")

    page.locator(f'[data-order="{order.order_id}"] [data-order-confirm]').click()
    wait_order_status(page, order.order_id, "released", timeout=30_000)

    order.refresh_from_db()
    assert order.status == "released"
    assert chain.token.balance_of(PUBLISHER.address) - paid_before == PRICE - PRICE * 250 // 10_000
    assert chain.w3.eth.get_balance(shopper.address) == 0, "the buyer paid no gas"
    (relayed,) = OperatorAction.objects.filter(kind="confirm_by_sig")
    assert relayed.status == "confirmed" and relayed.tx_hash == order.settled_tx_hash


@pytest.fixture
def on_sale_in_a_plain_token(chain, client, settings):
    """A listed, approved version priced in a token with no permit (contracts/test/mocks)."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    from marketplace.catalog.models import Dataset, DatasetVersion
    from marketplace.chain.services import deploy_contract
    from tests.integration.test_listing import link, send_prepared

    plain = deploy_contract(chain.w3, "PlainToken", [])
    chain.send(chain.market.contract.functions.setTokenAllowed(plain.address, True, False), chain.operator.address)
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    publisher = wallet_user(PUBLISHER.address)
    client.force_login(publisher)
    dataset = Dataset.objects.create(owner=publisher, slug="plain-rain", title="Rain in a plain token",
                                     license="CC-BY-4.0", payout_address=publisher.address)
    name = storages["private"].save("datasets/plain-test/rain.csv", ContentFile(CONTENT))
    version = DatasetVersion.objects.create(
        dataset=dataset, number=1, file=name, original_name="rain.csv", format="csv", size=len(CONTENT),
        content_hash="0x" + hashlib.sha256(CONTENT).hexdigest(), price=PRICE, token=plain.address,
        analysis_status="done")
    assert link(client, version, send_prepared(chain, client, version)).status_code == 201
    listing = version.listings.get()
    chain.send(chain.market.contract.functions.setApproval([int(listing.listing_id)], True),
               chain.operator.address)
    indexer.index_chain(chain.w3)
    DatasetVersion.objects.filter(pk=version.pk).update(review="approved")
    Dataset.objects.filter(pk=dataset.pk).update(status="listed", published_at="2026-01-01T00:00:00Z")
    token = chain.w3.eth.contract(address=plain.address, abi=load_artifact("PlainToken").abi)
    chain.send(token.functions.mint(Account.from_key(BUYER_KEY).address, 10 * PRICE), chain.operator.address)
    client.logout()
    yield version, token
    storages["private"].delete(name)


def test_a_token_without_permits_is_approved_for_exactly_the_price_then_bought(
        page, live_server, chain, on_sale_in_a_plain_token):
    version, token = on_sale_in_a_plain_token
    base = base_url(live_server)
    shopper = Account.from_key(BUYER_KEY)
    install_wallet(page, rpc=chain.url, account=shopper.address)
    sign_in_as(page, base, wallet_user(shopper.address))
    card = open_buyable(page, base + "/datasets/plain-rain")

    hold(page, "eth_sendTransaction")
    card.locator("[data-buy-button]").click()
    wait_status(page, "Step 1 of 2: approve exactly 25 USDC")
    release(page, "eth_sendTransaction")
    card.locator("[data-bought]").wait_for(state="visible", timeout=15_000)
    wait_buy_state(page, "ready")

    (order,) = Order.objects.filter(buyer=shopper.address)
    assert order.token == token.address and order.amount == PRICE
    market = chain.market.address
    assert token.functions.allowance(shopper.address, market).call() == 0, "exactly the price, all used"
    approvals = token.events.Approval().get_logs(from_block=0)
    assert [log["args"]["value"] for log in approvals if log["args"]["owner"] == shopper.address] == [PRICE]

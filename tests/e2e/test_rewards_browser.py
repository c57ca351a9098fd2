"""Claiming rewards in a real browser: an epoch in which the contributor's node earned is closed,
its root proposed by the operator sender to the real RewardDistributor on anvil and matured; the
contributor's dashboard shows what can be claimed, the claim button sends claim(account,
cumulative, proof) from the test wallet, the server reads the Claimed event, and the wallet's
token balance grows by the amount. A suspended root says claims are paused and offers no button."""
from datetime import timedelta

from eth_account import Account
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.chain import indexer, sender
from marketplace.rewards import epochs
from marketplace.rewards.models import DeviceDay, Epoch, EpochAmount, RewardClaim
from tests.conftest import DEV_KEYS, dead_broker_url
from tests.e2e.conftest import install_wallet
from tests.e2e.test_catalog_pages import shoot, sign_in_as
from tests.integration.test_epochs import credit, device, first_window

pytestmark = [pytest.mark.browser, pytest.mark.chain, pytest.mark.django_db(transaction=True)]

CONTRIBUTOR = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"  # anvil's dev account 4 (unlocked)
TREASURY = Account.from_key(DEV_KEYS[3])


@pytest.fixture(autouse=True)
def _settings(settings, point_broker_at, chain):
    point_broker_at(dead_broker_url())  # the test runs the sender itself
    settings.REWARD_EPOCH_SECONDS = 3600
    settings.REWARD_EMISSION_PER_EPOCH = 1_000 * 10**6
    settings.REWARD_NETWORK_POINT_CAP = 0
    chain.token.mint(TREASURY.address, 10_000 * 10**6)
    settings.REWARD_TREASURY_KEY = DEV_KEYS[3]


def base_url(live_server):
    return live_server.url.replace("127.0.0.1", "localhost")


@pytest.fixture
def matured(chain):
    """Epoch 1 closed, proposed and matured; the contributor earned 3/4 of it."""
    epoch = first_window(hours_ago=1)
    mine = device(CONTRIBUTOR)
    credit(mine, 3, epoch.starts_at + timedelta(minutes=1))
    credit(device(Account.create().address), 1, epoch.starts_at + timedelta(minutes=1))
    DeviceDay.objects.create(device=mine, day=epoch.starts_at.date(), heartbeats=40, verified_slots=20)
    epochs.close_epochs(chain.w3)
    assert sender.send_operator_actions(timeout=15).confirmed == 1
    chain.advance(chain.distributor.root_delay() + 1)
    indexer.index_chain(chain.w3)  # an epoch matures by the indexed chain's time
    epochs.close_epochs(chain.w3)
    assert Epoch.objects.get(number=1).state == Epoch.State.MATURED
    return int(EpochAmount.objects.get(epoch__number=1, wallet=CONTRIBUTOR).amount)


def test_the_contributor_claims_from_the_dashboard_and_the_balance_grows(page, live_server, chain, matured):
    amount = matured
    assert amount == 750 * 10**6
    before = chain.token.balance_of(CONTRIBUTOR)
    base = base_url(live_server)
    install_wallet(page, rpc=chain.url, account=CONTRIBUTOR)
    sign_in_as(page, base, wallet_user(CONTRIBUTOR))
    page.goto(base + "/me/rewards")
    assert page.locator('[data-summary="claimable"] [data-amount]').inner_text() == "750"
    assert page.locator("[data-device]").count() == 1
    assert page.locator('[data-epoch="1"]').count() == 1
    shoot(page, "rewards-claimable")
    page.locator("[data-claim]").click()
    # The page reloads once the server has read the Claimed event.
    page.locator('[data-summary="claimed"] [data-amount]', has_text="750").wait_for(timeout=30_000)
    assert chain.token.balance_of(CONTRIBUTOR) == before + amount
    (claim,) = RewardClaim.objects.all()
    assert claim.account == CONTRIBUTOR and int(claim.amount) == amount
    assert page.locator('[data-summary="claimable"] [data-amount]').inner_text() == "0"
    assert page.locator("[data-claim]").count() == 0
    shoot(page, "rewards-claimed")


def test_a_suspended_root_pauses_claims_on_the_page(page, live_server, chain, matured):
    chain.send(chain.distributor.contract.functions.suspendCurrentRoot(), chain.operator.address)
    from marketplace.chain import indexer

    indexer.index_chain(chain.w3)
    base = base_url(live_server)
    install_wallet(page, rpc=chain.url, account=CONTRIBUTOR)
    sign_in_as(page, base, wallet_user(CONTRIBUTOR))
    page.goto(base + "/me/rewards")
    assert "Claims are paused" in page.locator("[data-claim-paused]").inner_text()
    assert page.locator("[data-claim]").count() == 0


def test_the_network_page_and_the_leaderboard(page, live_server, chain, matured):
    page.goto(base_url(live_server) + "/rewards")
    assert page.locator(f'[data-leader="{CONTRIBUTOR}"]').count() == 1
    assert "750" in page.locator(f'[data-leader="{CONTRIBUTOR}"]').inner_text()
    shoot(page, "rewards-network")

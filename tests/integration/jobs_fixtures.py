"""What the fetch-job tests share: the demo site on a free port, bound devices, a community
dataset and a target collecting from the site."""

from eth_account import Account
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.rewards import demo_site
from marketplace.rewards.demo_jobs import community_dataset
from marketplace.rewards.models import CollectionTarget, Contributor, Device

OPERATOR = "0x" + "0a" * 20
WEATHER = {
    "kind": "json",
    "rows": "/stations",
    "fields": {"slot": "/slot", "station": "/id", "temp_c": "/temp_c", "humidity": "/humidity"},
}


@pytest.fixture(scope="module")
def site():
    server = demo_site.serve(port=0)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def job_settings(settings, site):
    """Nodes all come from 127.0.0.1 (a trusted network, as in the demo); the server may fetch the
    demo site; no job is a canary or checked unless a test says so."""
    settings.REWARD_TRUSTED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    settings.REWARD_FETCH_ALLOW = [site.removeprefix("http://")]
    settings.REWARD_CANARY_RATE = 0.0
    settings.REWARD_SERVER_CHECK_RATE = 0.0
    settings.REWARD_JOB_REPLICAS = 2
    settings.REWARD_JOB_POINTS = 10
    settings.REWARD_QUALITY_PENALTY_BPS = 2_500
    return settings


class Node:
    def __init__(self, key, device):
        self.key, self.device = key, device

    @property
    def address(self):
        return self.device.address


def bound_device(wallet=None) -> Node:
    account = Account.create()
    wallet = wallet or Account.create().address
    contributor, _ = Contributor.objects.get_or_create(wallet=wallet)
    return Node(
        account.key, Device.objects.create(address=account.address, contributor=contributor)
    )


@pytest.fixture
def dataset(db):
    return community_dataset(
        owner=wallet_user("0x" + "0A" * 20),
        title="Community: weather readings",
        summary="Collected by nodes",
    )


def make_target(dataset, site, *, path="/weather?at={slot}", extractor=None, every=60):
    return CollectionTarget.objects.create(
        name=f"target {path}",
        url=site + path,
        extractor=extractor or WEATHER,
        dataset=dataset,
        every_seconds=every,
        max_bytes=100_000,
        timeout_seconds=5,
    )

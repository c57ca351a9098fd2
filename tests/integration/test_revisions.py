"""Review before changes go public: a published dataset's text changes only when a moderator
approves the revision (pages, API and search never see pending text), a new version is public
only once it and its listing are approved, a decision names exactly one open revision (409 on a
stale one, or on listings other than the ones shown), and re-posting an old transaction of a
rejected dataset does not put it back in review."""
import pytest

from marketplace.accounts.models import User
from marketplace.catalog import revisions
from marketplace.catalog.indexing import SearchSync, reader
from marketplace.catalog.models import Dataset, DatasetRevision, DatasetVersion, Listing
from marketplace.chain import sender
from tests.conftest import sync_until
from tests.integration.test_listing import (  # noqa: F401 (fixtures)
    admin_action, link, listed_version, publisher, publisher_client, send_approvals, send_prepared,
    sha, staff_client,
)

pytestmark = pytest.mark.chain


@pytest.fixture
def anonymous(db):
    from django.test import Client

    return Client()


@pytest.fixture
def moderator_client(db):
    from django.test import Client

    from django.contrib.auth.models import Group

    moderator = User.objects.create_user("mod", password="a-long-password-1", is_staff=True)
    Group.objects.get(name="moderator").user_set.add(moderator)
    client = Client()
    client.force_login(moderator)
    return client


def decide(client, revision, decision, **extra):
    return client.post(f"/api/v1/moderation/revisions/{revision.pk}/decision", {"decision": decision, **extra},
                       content_type="application/json")


def open_revision(dataset, kind):
    return DatasetRevision.objects.get(dataset=dataset, kind=kind, status__in=DatasetRevision.OPEN)


def publish(chain, publisher_client, moderator_client, n=1):
    """A dataset listed and approved the way a publisher and a moderator do it."""
    version = listed_version(chain, publisher_client, n)
    dataset = version.dataset
    for kind in ("details", "version"):
        answer = decide(moderator_client, open_revision(dataset, kind), "approve")
        assert answer.status_code == 200, answer.json()
    send_approvals(chain)
    dataset.refresh_from_db()
    assert dataset.status == "listed" and dataset.published_at is not None
    return version


def edit(client, dataset, **fields):
    return client.patch(f"/api/v1/datasets/{dataset.slug}", fields, content_type="application/json")


def test_a_new_dataset_is_reviewed_as_it_was_shown(chain, publisher_client, moderator_client, anonymous):
    version = listed_version(chain, publisher_client)
    dataset = version.dataset
    shown = open_revision(dataset, "details")
    assert shown.changes["title"] == "Cities 1"
    assert open_revision(dataset, "version").listings == [
        {"chain_id": 31337, "listing_id": str(Listing.objects.get().listing_id), "content_hash": version.content_hash}]

    # Before its first approval the text is edited in place, and what the moderator sees is replaced.
    assert edit(publisher_client, dataset, title="Cities of France").status_code == 200
    dataset.refresh_from_db()
    assert dataset.title == "Cities of France"
    stale = decide(moderator_client, shown, "approve")
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "stale_revision"
    fresh = open_revision(dataset, "details")
    assert fresh.changes["title"] == "Cities of France" and shown.pk != fresh.pk

    # The version cannot go first; then details, then version: the listing goes on-chain.
    early = decide(moderator_client, open_revision(dataset, "version"), "approve")
    assert early.status_code == 409 and early.json()["error"]["code"] == "decision_refused"
    assert decide(moderator_client, fresh, "approve").status_code == 200
    assert decide(moderator_client, open_revision(dataset, "version"), "approve").status_code == 200
    assert anonymous.get(f"/api/v1/datasets/{dataset.slug}").status_code == 404, "public once the chain says so"
    report = send_approvals(chain)
    assert report.confirmed == 1
    public = anonymous.get(f"/api/v1/datasets/{dataset.slug}").json()
    assert public["title"] == "Cities of France" and [v["number"] for v in public["versions"]] == [1]
    revision = DatasetRevision.objects.get(pk=fresh.pk)
    assert revision.status == "approved" and revision.decided_by.username == "mod" and revision.decided_at


@pytest.mark.django_db(transaction=True)  # the search sync reads only what has committed
def test_edits_of_a_published_dataset_wait_for_review(chain, publisher_client, moderator_client, anonymous,
                                                     settings, tmp_path):
    settings.SEARCH_INDEX_DIR = tmp_path / "search"
    dataset = publish(chain, publisher_client, moderator_client).dataset
    answer = edit(publisher_client, dataset, title="Cities 1", description="Now with zanzibarite counts.",
                  tags=["cities", "zanzibarite"])
    assert answer.status_code == 200
    body = answer.json()
    assert "zanzibarite" not in body["description"], "the response shows the public text"
    (waiting,) = [r for r in body["revisions"] if r["status"] == "pending"]
    assert waiting["kind"] == "details" and "zanzibarite" in waiting["changes"]["description"]

    public = anonymous.get(f"/api/v1/datasets/{dataset.slug}").json()
    assert "zanzibarite" not in public["description"] and public["revisions"] == []
    page = anonymous.get(f"/datasets/{dataset.slug}").content.decode()
    assert "zanzibarite" not in page
    sync = SearchSync()
    sync.rebuild()
    assert anonymous.get("/api/v1/search?q=zanzibarite").json()["total"] == 0, "search never sees pending text"

    edit_page = publisher_client.get(f"/me/datasets/{dataset.slug}/edit").content.decode()
    assert "zanzibarite" in edit_page and "data-details-waiting" in edit_page, "the owner sees both"

    assert decide(moderator_client, open_revision(dataset, "details"), "approve").status_code == 200

    def found():
        reader().reload()  # as the web process does on its own within a second
        return anonymous.get("/api/v1/search?q=zanzibarite").json()["total"] == 1

    assert sync_until(sync, found)
    assert "zanzibarite" in anonymous.get(f"/api/v1/datasets/{dataset.slug}").json()["description"]


def test_a_newer_edit_supersedes_and_changing_back_withdraws(chain, publisher_client, moderator_client):
    dataset = publish(chain, publisher_client, moderator_client).dataset
    edit(publisher_client, dataset, summary="First try")
    first = open_revision(dataset, "details")
    edit(publisher_client, dataset, summary="Second try")
    second = open_revision(dataset, "details")
    first.refresh_from_db()
    assert first.status == "superseded" and first.superseded_by_id == second.pk
    assert second.changes["summary"] == "Second try"
    assert decide(moderator_client, first, "approve").status_code == 409

    edit(publisher_client, dataset, summary=dataset.summary)
    second.refresh_from_db()
    assert second.status == "superseded" and "withdrawn" in second.reason
    assert not DatasetRevision.objects.filter(dataset=dataset, status__in=DatasetRevision.OPEN).exists()


def test_payout_changes_apply_at_once(chain, publisher_client, moderator_client):
    dataset = publish(chain, publisher_client, moderator_client).dataset
    new_payout = "0x" + "12" * 20
    assert edit(publisher_client, dataset, payout_address=new_payout).status_code == 200
    dataset.refresh_from_db()
    assert dataset.payout_address.lower() == new_payout
    assert not DatasetRevision.objects.filter(dataset=dataset, status="pending").exists()


def test_requested_changes_are_shown_to_the_owner(chain, publisher_client, moderator_client):
    dataset = publish(chain, publisher_client, moderator_client).dataset
    edit(publisher_client, dataset, title="CLICK HERE")
    revision = open_revision(dataset, "details")
    no_reason = decide(moderator_client, revision, "request_changes")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["error"]["fields"]
    assert decide(moderator_client, revision, "request_changes", reason="Titles say what the data is.").status_code == 200

    body = publisher_client.get(f"/api/v1/datasets/{dataset.slug}").json()
    assert body["revisions"][0]["status"] == "changes_requested"
    assert body["revisions"][0]["reason"] == "Titles say what the data is."
    page = publisher_client.get(f"/me/datasets/{dataset.slug}/edit").content.decode()
    assert 'data-decision="changes_requested"' in page and "Titles say what the data is." in page
    edit(publisher_client, dataset, title="Cities of France")
    revision.refresh_from_db()
    assert revision.status == "superseded"


def test_a_new_version_is_public_once_it_and_its_listing_are_approved(chain, publisher_client, moderator_client,
                                                                      anonymous):
    first = publish(chain, publisher_client, moderator_client)
    dataset = first.dataset
    second = DatasetVersion.objects.create(
        dataset=dataset, number=2, file="datasets/x/v2/cities.csv", original_name="cities-2.csv", format="csv",
        size=12, content_hash=sha(b"cities v2"), price=30_000_000, token=chain.token.address, analysis_status="done")
    assert link(publisher_client, second, send_prepared(chain, publisher_client, second)).status_code == 201
    dataset.refresh_from_db()
    assert dataset.status == "listed", "the dataset stays public while its new version waits"

    def public_numbers():
        return [v["number"] for v in anonymous.get(f"/api/v1/datasets/{dataset.slug}").json()["versions"]]

    assert public_numbers() == [1]
    owner = publisher_client.get(f"/api/v1/datasets/{dataset.slug}").json()
    assert [v["number"] for v in owner["versions"]] == [2, 1] and owner["versions"][0]["review"] == "pending"
    assert "v2" not in anonymous.get(f"/datasets/{dataset.slug}").content.decode().replace("v1", "")

    assert decide(moderator_client, open_revision(dataset, "version"), "approve").status_code == 200
    assert public_numbers() == [1], "approved, but its listing is not approved on-chain yet"
    send_approvals(chain)
    assert public_numbers() == [2, 1]


def test_a_decision_must_name_the_listings_shown(chain, publisher_client, moderator_client):
    version = listed_version(chain, publisher_client)
    decide(moderator_client, open_revision(version.dataset, "details"), "approve")
    revision = open_revision(version.dataset, "version")
    listing = Listing.objects.get()
    wrong = decide(moderator_client, revision, "approve",
                   listings=[{"listing_id": str(listing.listing_id + 1), "content_hash": version.content_hash}])
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "stale_revision"
    right = decide(moderator_client, revision, "approve",
                   listings=[{"listing_id": str(listing.listing_id), "content_hash": version.content_hash.upper()}])
    assert right.status_code == 200
    again = decide(moderator_client, revision, "reject", reason="changed my mind")
    assert again.status_code == 409, "a decided revision stays decided"


def test_only_moderators_decide(chain, publisher_client):
    version = listed_version(chain, publisher_client)
    revision = open_revision(version.dataset, "details")
    assert decide(publisher_client, revision, "approve").status_code == 403
    assert publisher_client.get("/api/v1/moderation/revisions").status_code == 403
    revision.refresh_from_db()
    assert revision.status == "pending"


def test_the_queue_lists_what_waits_oldest_first(chain, publisher_client, moderator_client):
    listed_version(chain, publisher_client, 1)
    listed_version(chain, publisher_client, 2)
    queue = moderator_client.get("/api/v1/moderation/revisions").json()
    assert [r["kind"] for r in queue] == ["version", "details", "version", "details"]
    assert queue[0]["listings"][0]["content_hash"] == sha(b"cities 1")


def test_reposting_an_old_transaction_does_not_reopen_a_rejected_dataset(chain, publisher_client, staff_client):
    version = listed_version(chain, publisher_client)
    tx_hash = Listing.objects.get().tx_hash
    admin_action(staff_client, "reject", version.dataset, reason="Not allowed here.")
    assert Dataset.objects.get().status == "rejected"
    again = link(publisher_client, version, tx_hash)
    assert again.status_code == 200
    assert Dataset.objects.get().status == "rejected"
    assert not DatasetRevision.objects.filter(status__in=DatasetRevision.OPEN).exists()

    admin_action(staff_client, "delist", version.dataset)
    assert link(publisher_client, version, tx_hash).status_code == 200
    assert Dataset.objects.get().status in ("rejected", "delisted")
    assert not DatasetRevision.objects.filter(status__in=DatasetRevision.OPEN).exists()


def test_the_admin_decides_revisions_and_shows_what_they_make_public(chain, publisher_client, moderator_client,
                                                                    staff_client):
    dataset = publish(chain, publisher_client, moderator_client).dataset
    edit(publisher_client, dataset, title="Cities, counted")
    revision = open_revision(dataset, "details")
    page = staff_client.get(f"/admin/catalog/datasetrevision/{revision.pk}/change/").content.decode()
    assert "Cities, counted" in page and "Cities 1" in page, "public now and proposed, side by side"
    response = staff_client.post("/admin/catalog/datasetrevision/", {
        "action": "request_changes", "_selected_action": [str(revision.pk)], "index": 0, "confirmed": "1",
        "revision": [str(revision.pk)], "reason": "Say which cities."})
    assert response.status_code == 302
    revision.refresh_from_db()
    assert revision.status == "changes_requested" and revision.reason == "Say which cities."
    assert staff_client.post(f"/admin/catalog/datasetrevision/{revision.pk}/change/", {}).status_code == 403


def test_a_chain_reset_closes_reviews_waiting_on_its_listings(chain, publisher_client):
    version = listed_version(chain, publisher_client)
    from marketplace.chain.services import forget_chain

    forget_chain(31337)
    revision = DatasetRevision.objects.get(kind="version")
    assert revision.status == "superseded" and "reset" in revision.reason
    assert not Listing.objects.exists()
    version.refresh_from_db()
    assert version.review == "pending"
    assert revisions.open_details(version.dataset) is not None, "the new dataset's text still waits"

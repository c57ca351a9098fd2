"""Attacks on review before changes go public, publisher-controlled previews and listing terms,
found by a security review of that change: each test is a concrete sequence of requests and
transactions that broke a guarantee before it was fixed (the docstrings tell the sequence)."""
import re
import json

import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog import services
from marketplace.catalog.models import Dataset, DatasetRevision, DatasetVersion, Listing
from marketplace.chain import sender
from marketplace.chain.models import Deployment, OperatorAction
from tests.integration.test_listing import (  # noqa: F401 (fixtures)
    PUBLISHER, STRANGER, admin_action, link, listed_version, publisher, publisher_client,
    send_approvals, send_prepared, sha, staff_client,
)
from tests.integration.test_revisions import (  # noqa: F401 (fixtures)
    anonymous, decide, edit, moderator_client, open_revision, publish,
)

pytestmark = pytest.mark.chain


def _csv_with_a_late_surprise_in_a_hidden_column() -> bytes:
    """A CSV whose `ssn` column looks numeric for the sniffer's rows, then holds one SSN-shaped
    value, plus one ragged line (so that the analysis stores its warnings)."""
    rows = ["city,population,ssn"]
    rows += [f"City{i % 3},{1000 + i},{100000000 + i}" for i in range(30_000)]
    rows.append("Lyon,5000,078-05-1120")  # a value seen once, in a hidden column
    rows.append("Nice,3000,123,extra")  # one rejected line
    return ("\n".join(rows) + "\n").encode()


def test_a_hidden_column_and_a_value_seen_once_leak_through_the_public_analysis_message(
        chain, publisher_client, moderator_client, anonymous):
    """Guarantee 3 (hidden columns absent from everything public; a value seen fewer than 5 times
    never shown). Publisher: create a dataset, upload a CSV with `?hidden_columns=ssn` (no sample,
    no distributions), the worker analyses it, list it, moderator approves details and version,
    operator sender approves on-chain. Anonymous: GET /api/v1/datasets/<slug> and
    /datasets/<slug>: `analysis_message` (API) and the "rejected rows" notice (page) carry
    `Column "ssn" was read as text: line 30,002 has "078-05-1120" ...`."""
    created = publisher_client.post("/api/v1/datasets", {"title": "People", "license": "CC-BY-4.0"},
                                    content_type="application/json")
    slug = created.json()["slug"]
    uploaded = publisher_client.post(
        f"/api/v1/datasets/{slug}/versions?filename=people.csv&price=1000000&token={chain.token.address}"
        "&hidden_columns=ssn",
        data=_csv_with_a_late_surprise_in_a_hidden_column(), content_type="application/octet-stream")
    assert uploaded.status_code == 201, uploaded.json()
    version = DatasetVersion.objects.get(dataset__slug=slug)
    services.analyse_version(version.pk)  # what the worker's task runs
    version.refresh_from_db()
    assert version.analysis_status == "done_with_rejects" and version.hidden_columns == ["ssn"]

    assert link(publisher_client, version, send_prepared(chain, publisher_client, version)).status_code == 201
    for kind in ("details", "version"):
        assert decide(moderator_client, open_revision(version.dataset, kind), "approve").status_code == 200
    send_approvals(chain)

    public = anonymous.get(f"/api/v1/datasets/{slug}").json()
    (shown,) = public["versions"]
    assert [c["name"] for c in shown["columns"]] == ["city", "population"], "the columns themselves are hidden"
    page = anonymous.get(f"/datasets/{slug}").content.decode()
    leaks = {
        "api names the hidden column": '"ssn"' in shown["analysis_message"],
        "api shows its value seen once": "078-05-1120" in json.dumps(public),
        "page names the hidden column": "&#34;ssn&#34;" in page or '"ssn"' in page,
        "page shows its value seen once": "078-05-1120" in page,
    }
    assert not any(leaks.values()), f"{leaks}; analysis_message: {shown['analysis_message']}"
    assert shown["analysis_message"] == "Analysed with 1 rejected rows."
    owner = publisher_client.get(f"/api/v1/datasets/{slug}").json()["versions"][0]
    assert '"ssn"' in owner["analysis_message"], "the owner reads why, in full"


def test_a_preview_widened_after_the_moderator_looked_is_made_public_by_the_version_approval(
        chain, publisher_client, moderator_client, anonymous):
    """Guarantees 3 and 4 (what shows more waits for review; a decision never applies to newer
    content than the moderator saw). v1 is public. Publisher: upload v2 with `email` hidden, no
    sample, no distributions, list it. Moderator: GET /api/v1/moderation/revisions (sees the v2
    revision: listing and content hash, nothing about its preview). Publisher: PATCH
    .../versions/2/preview {"hidden_columns": [], "show_sample": true, "show_distributions": true}
    -> 200, applied at once (the version is not approved yet). Moderator: approve the v2 revision
    with the listings shown -> 200 (no 409). Sender confirms: the public sees the `email` column,
    the sample rows with e-mail addresses and the distributions nobody reviewed."""
    from tests.integration.test_preview import COLUMNS, SAMPLE

    dataset = publish(chain, publisher_client, moderator_client).dataset
    v2 = DatasetVersion.objects.create(
        dataset=dataset, number=2, file="datasets/x/v2/people.csv", original_name="people.csv", format="csv",
        size=12, content_hash=sha(b"people v2"), price=30_000_000, token=chain.token.address,
        analysis_status="done", row_count=45, columns=COLUMNS, sample=SAMPLE, hidden_columns=["email"])
    assert link(publisher_client, v2, send_prepared(chain, publisher_client, v2)).status_code == 201
    queue = moderator_client.get("/api/v1/moderation/revisions").json()
    (seen,) = [r for r in queue if r["kind"] == "version"]

    assert seen["changes"]["preview"] == {"hidden_columns": ["email"], "show_sample": False,
                                          "show_distributions": False}, "the moderator is shown the preview"
    widened = publisher_client.patch(f"/api/v1/datasets/{dataset.slug}/versions/2/preview",
                                     {"hidden_columns": [], "show_sample": True, "show_distributions": True},
                                     content_type="application/json")
    assert widened.status_code == 200
    waiting = widened.json()["waiting"]
    assert waiting["kind"] == "version" and waiting["id"] != seen["id"], "a new revision shows the new preview"
    assert waiting["changes"]["preview"]["show_sample"] is True

    approval = moderator_client.post(
        f"/api/v1/moderation/revisions/{seen['id']}/decision",
        {"decision": "approve", "listings": [{"listing_id": i["listing_id"], "content_hash": i["content_hash"]}
                                             for i in seen["listings"]]},
        content_type="application/json")
    assert approval.status_code == 409, approval.json()
    send_approvals(chain)
    public = anonymous.get(f"/api/v1/datasets/{dataset.slug}").json()
    assert [v["number"] for v in public["versions"]] == [1], "v2 stays private until its preview is approved"
    assert "mayor@lyon.example" not in json.dumps(public)


def test_the_dataset_admin_action_approves_text_written_after_the_moderator_looked(
        chain, publisher_client, moderator_client, staff_client, anonymous):
    """Guarantee 4 (a stale decision is a 409, never applied to newer content than the moderator
    saw). Publisher: PATCH title "Cities, counted" (revision #1). Moderator (staff): selects the
    dataset in /admin/catalog/dataset/ and runs "Approve what waits for review": the confirmation
    page shows revision #1's text. Publisher: PATCH title "BUY FOLLOWERS AT spam.example"
    (revision #2 supersedes #1). Moderator: confirms. The action used to decide whatever was open
    at confirmation (#2, never shown); now it decides the revisions the page named, and #1 is
    superseded: nothing is approved and the moderator is told."""
    dataset = publish(chain, publisher_client, moderator_client).dataset
    edit(publisher_client, dataset, title="Cities, counted")
    data = {"action": "approve_on_chain", "_selected_action": [str(dataset.pk)], "index": 0}
    page = staff_client.post("/admin/catalog/dataset/", data)
    assert page.status_code == 200 and "Cities, counted" in page.content.decode()
    shown = re.findall(r'name="revision" value="(\d+)"', page.content.decode())
    assert shown == [str(open_revision(dataset, "details").pk)]

    edit(publisher_client, dataset, title="BUY FOLLOWERS AT spam.example")
    confirmed = staff_client.post("/admin/catalog/dataset/", {**data, "confirmed": "1", "revision": shown},
                                  follow=True)
    assert "is superseded" in confirmed.content.decode()
    assert "opened since the confirmation page" in confirmed.content.decode()

    public = anonymous.get(f"/api/v1/datasets/{dataset.slug}").json()
    assert public["title"] != "BUY FOLLOWERS AT spam.example", "approved text the moderator was never shown"
    assert open_revision(dataset, "details").changes["title"] == "BUY FOLLOWERS AT spam.example", "still waiting"


def test_a_chain_reset_leaves_pending_approvals_that_list_an_unreviewed_dataset(
        chain, publisher_client, moderator_client, anonymous):
    """Guarantees 1, 2 and 7 (a chain reset does not leave something public that should not be;
    nothing is public before a moderator approves it). Publisher lists dataset A (file F); the
    moderator approves A's text and version: an on-chain approval of listing #N waits in the
    operator outbox. The local chain is reset (anvil restarts; the contracts are redeployed at the
    same addresses; `forget_chain` runs): listings and version revisions are dropped, the pending
    OperatorAction is not. Publisher creates dataset B ("unreviewed" text) with the same file F and
    lists it: on the fresh chain it gets listing #N again. The sender sends the old approval (owner
    and content hash match) and its receipt marks B listed: B's text, which no moderator ever saw,
    is served to anonymous visitors."""
    from marketplace.chain.services import forget_chain

    before = chain.rpc("evm_snapshot")
    a = listed_version(chain, publisher_client, 1)
    for kind in ("details", "version"):
        assert decide(moderator_client, open_revision(a.dataset, kind), "approve").status_code == 200
    assert OperatorAction.objects.get().status == "pending"
    old_listing_id = Listing.objects.get().listing_id

    # The anvil restart: the chain starts over, the contracts land where they were, the server forgets.
    assert chain.rpc("evm_revert", [before]) is True
    forget_chain(31337)
    for result in chain.contracts.values():
        Deployment.objects.update_or_create(chain_id=31337, contract=result.contract,
                                            defaults=dict(result.__dict__))
    assert OperatorAction.objects.get().status == "cancelled", "an approval reviewed on the old chain"
    a.refresh_from_db()
    assert a.review == "pending", "relisted on the new chain, the version is reviewed again"

    owner = wallet_user(PUBLISHER)
    b = Dataset.objects.create(owner=owner, slug="never-reviewed", title="Never reviewed: CLICK HERE",
                               license="MIT", payout_address=owner.address)
    b_version = DatasetVersion.objects.create(
        dataset=b, number=1, file="datasets/b/v1/cities.csv", original_name="cities.csv", format="csv", size=10,
        content_hash=a.content_hash, price=a.price, token=chain.token.address)
    assert link(publisher_client, b_version, send_prepared(chain, publisher_client, b_version)).status_code == 201
    assert Listing.objects.get(version=b_version).listing_id == old_listing_id
    assert open_revision(b, "details").status == "pending", "B's text waits for a moderator"

    assert sender.send_operator_actions().transactions == []
    assert chain.market.get_listing(int(old_listing_id))["approved"] is False

    b.refresh_from_db()
    answer = anonymous.get(f"/api/v1/datasets/{b.slug}")
    assert answer.status_code == 404, (
        f"B is {b.status} and public ({answer.json().get('title')!r}) though no moderator decided anything about it")


def test_approving_a_version_revision_opened_before_a_delisting_lists_the_dataset_again(
        chain, publisher_client, moderator_client, staff_client, anonymous):
    """Guarantee 4 (decisions apply to what the moderator saw, never to newer state). v1 is public;
    the publisher lists v2 (its revision waits). A moderator delists the dataset in the admin; the
    sender clears the approval and the dataset is delisted. The v2 revision stays open in the
    queue; another moderator approves it there (the queue shows a version, not that its dataset was
    delisted) -> 200, and the sender's receipt lists the delisted dataset again."""
    first = publish(chain, publisher_client, moderator_client)
    dataset = first.dataset
    v2 = DatasetVersion.objects.create(
        dataset=dataset, number=2, file="datasets/x/v2/cities.csv", original_name="cities-2.csv", format="csv",
        size=12, content_hash=sha(b"cities v2"), price=30_000_000, token=chain.token.address)
    assert link(publisher_client, v2, send_prepared(chain, publisher_client, v2)).status_code == 201

    admin_action(staff_client, "delist", dataset)
    send_approvals(chain)
    assert Dataset.objects.get(pk=dataset.pk).status == "delisted"
    assert anonymous.get(f"/api/v1/datasets/{dataset.slug}").status_code == 404

    assert not DatasetRevision.objects.filter(dataset=dataset, status__in=DatasetRevision.OPEN).exists()
    closed = DatasetRevision.objects.get(dataset=dataset, version=v2)
    assert (closed.status, closed.reason) == ("rejected", "The dataset was delisted.")
    assert decide(moderator_client, closed, "approve").status_code == 409
    send_approvals(chain)
    assert Dataset.objects.get(pk=dataset.pk).status == "delisted"


def test_a_version_linked_while_a_delisting_is_on_its_way_cannot_be_approved(
        chain, publisher_client, moderator_client, staff_client, anonymous):
    """Guarantee 4. v1 is public. A moderator delists the dataset (the clearing waits for the
    sender). Meanwhile the publisher links v2 (a new revision opens). Approving it used to put v2's
    listing on sale and make the delisting's receipt leave the dataset listed. Now the approval is
    refused (409) until the delisting is done, and the delisting closes what opened meanwhile."""
    dataset = publish(chain, publisher_client, moderator_client).dataset
    admin_action(staff_client, "delist", dataset)
    v2 = DatasetVersion.objects.create(
        dataset=dataset, number=2, file="datasets/x/v2/cities.csv", original_name="cities-2.csv", format="csv",
        size=12, content_hash=sha(b"cities v2 in flight"), price=30_000_000, token=chain.token.address)
    assert link(publisher_client, v2, send_prepared(chain, publisher_client, v2)).status_code == 201
    waiting = open_revision(dataset, "version")
    refused = decide(moderator_client, waiting, "approve")
    assert refused.status_code == 409 and "being delisted" in refused.json()["error"]["message"]

    send_approvals(chain)
    assert Dataset.objects.get(pk=dataset.pk).status == "delisted"
    waiting.refresh_from_db()
    assert (waiting.status, waiting.reason) == ("rejected", "The dataset was delisted.")
    assert not Listing.objects.filter(version__dataset=dataset, approved=True).exists()
    assert anonymous.get(f"/api/v1/datasets/{dataset.slug}").status_code == 404


def test_an_upload_to_someone_elses_draft_answers_like_a_missing_dataset(chain, publisher_client):
    """Guarantee 5 (a draft that is not yours is invisible: 404). Publisher: create a draft
    "Layoffs at Acme 2027". Stranger (signed in): POST /api/v1/datasets/layoffs-at-acme-2027/versions
    -> 403 "Only the dataset's owner can upload versions" while a slug that does not exist -> 404:
    the upload endpoint tells anyone whether a draft with a guessed title exists (the other
    version endpoints and GET answer 404)."""
    from django.test import Client

    slug = publisher_client.post("/api/v1/datasets", {"title": "Layoffs at Acme 2027", "license": "MIT"},
                                 content_type="application/json").json()["slug"]
    stranger = Client()
    stranger.force_login(wallet_user(STRANGER))
    assert stranger.get(f"/api/v1/datasets/{slug}").status_code == 404
    missing = stranger.post("/api/v1/datasets/no-such-dataset/versions?filename=a.csv&price=1", data=b"a\n1\n",
                            content_type="application/octet-stream")
    assert missing.status_code == 404
    draft = stranger.post(f"/api/v1/datasets/{slug}/versions?filename=a.csv&price=1", data=b"a\n1\n",
                          content_type="application/octet-stream")
    assert draft.status_code == 404, f"{draft.status_code} {draft.json()}: the draft's existence leaks"


def test_a_nul_character_in_the_upload_preview_parameters_is_a_400(chain, publisher_client):
    """Any 500 on these paths. Publisher: POST /api/v1/datasets/<own draft>/versions?...&hidden_columns=%00
    (the upload's preview choice, parsed by hand in `upload_preview`, not by a DRF field with its
    null-character validator) -> PostgreSQL refuses the NUL when the version row is written: an
    unhandled DataError, HTTP 500. (PATCH .../preview with the same name answers 400.)"""
    from django.test import Client

    slug = publisher_client.post("/api/v1/datasets", {"title": "Nul", "license": "MIT"},
                                 content_type="application/json").json()["slug"]
    owner = Client(raise_request_exception=False)
    owner.force_login(wallet_user(PUBLISHER))
    answer = owner.post(f"/api/v1/datasets/{slug}/versions?filename=a.csv&price=1000000&token={chain.token.address}"
                        "&hidden_columns=%00", data=b"a,b\n1,2\n", content_type="application/octet-stream")
    assert answer.status_code == 400, answer.status_code
    assert answer.json()["error"]["code"] == "invalid_hidden_columns"


def _listed(owner, slug, title):
    from django.utils import timezone

    return Dataset.objects.create(owner=owner, slug=slug, title=title, license="CC0-1.0", payout_address=owner.address,
                                  status="listed", published_at=timezone.now())


def test_the_revision_admin_decides_only_the_revisions_its_confirmation_page_showed(staff_client):
    """Guarantee 4. Publisher A edits its title (revision #1); a moderator opens the revision
    queue. Publisher B then edits its title to "SCAM: send USDC to 0xdead" (#2). The moderator
    ticks #1, clicks "select all" (select_across=1) and runs Approve: the action used to decide
    every revision matching the list at that moment, #2 included, with no confirmation page. Now
    "select all" is refused for decisions, and Approve decides exactly the ids its confirmation
    page posted back (a forged `_selected_action` naming #2 changes nothing)."""
    a = _listed(wallet_user(PUBLISHER), "a", "Harmless A")
    b = _listed(wallet_user(STRANGER), "b", "Harmless B")
    from marketplace.catalog import revisions

    seen = revisions.edit_dataset(a, by=a.owner, title="Harmless A, renamed").revision
    queue = "/admin/catalog/datasetrevision/?status__exact=pending"
    assert "Harmless A" in staff_client.get(queue).content.decode()
    unseen = revisions.edit_dataset(b, by=b.owner, title="SCAM: send USDC to 0xdead").revision

    across = staff_client.post(queue, {"action": "approve", "_selected_action": [str(seen.pk)],
                                       "select_across": "1", "index": "0"}, follow=True)
    assert "is not accepted for decisions" in across.content.decode()
    assert {r.status for r in DatasetRevision.objects.filter(pk__in=[seen.pk, unseen.pk])} == {"pending"}

    page = staff_client.post(queue, {"action": "approve", "_selected_action": [str(seen.pk)], "index": "0"})
    assert page.status_code == 200 and "Harmless A, renamed" in page.content.decode()
    shown = re.findall(r'name="revision" value="(\d+)"', page.content.decode())
    assert shown == [str(seen.pk)]
    confirmed = staff_client.post(queue, {"action": "approve", "_selected_action": [str(seen.pk), str(unseen.pk)],
                                          "index": "0", "confirmed": "1", "revision": shown})
    assert confirmed.status_code == 302
    seen.refresh_from_db(), unseen.refresh_from_db()
    assert (seen.status, unseen.status) == ("approved", "pending"), "only the revision shown is decided"
    assert Dataset.objects.get(pk=b.pk).title == "Harmless B", "B's public title is unchanged"


def test_rejecting_in_the_revision_admin_names_the_revisions_shown_and_needs_reasons(staff_client):
    """The same confirmation page for Reject: without a statement of reasons nothing is decided."""
    from marketplace.catalog import revisions

    a = _listed(wallet_user(PUBLISHER), "a", "Harmless A")
    seen = revisions.edit_dataset(a, by=a.owner, title="Harmless A, renamed").revision
    queue = "/admin/catalog/datasetrevision/"
    data = {"action": "reject", "_selected_action": [str(seen.pk)], "index": "0"}
    page = staff_client.post(queue, data)
    assert page.status_code == 200 and re.findall(r'name="revision" value="(\d+)"', page.content.decode()) == [
        str(seen.pk)]
    again = staff_client.post(queue, {**data, "confirmed": "1", "revision": [str(seen.pk)]})
    assert again.status_code == 200 and "Give the reasons" in again.content.decode()
    assert staff_client.post(queue, {**data, "confirmed": "1", "revision": [str(seen.pk)],
                                     "reason": "Misleading title."}).status_code == 302
    seen.refresh_from_db()
    assert (seen.status, seen.reason) == ("rejected", "Misleading title.")


def _approval_queued_before_reviews_existed():
    """A dataset in review whose on-chain approval an older server queued: migration 0004 gave it a
    details revision and left `published_at` empty; the sender then settles the approval."""
    from marketplace.catalog import handlers, listing as listings, revisions
    from marketplace.chain.indexer import Event

    owner = wallet_user(PUBLISHER)
    dataset = Dataset.objects.create(owner=owner, slug="d", title="Harmless", license="CC0-1.0",
                                     payout_address=PUBLISHER, status="pending_review")
    version = DatasetVersion.objects.create(dataset=dataset, number=1, file="x", original_name="x.csv", format="csv",
                                            size=1, content_hash="0x" + "ab" * 32, price=1, token=PUBLISHER,
                                            analysis_status="done")
    Listing.objects.create(chain_id=31337, listing_id=1, version=version, owner=PUBLISHER, token=PUBLISHER, price=1,
                           payout=PUBLISHER, tx_hash="0x" + "11" * 32, log_index=0, block_number=5)
    DatasetRevision.objects.create(dataset=dataset, kind="details", created_by=owner,
                                   changes=revisions.public_text(dataset))
    DatasetRevision.objects.create(dataset=dataset, version=version, kind="version", created_by=owner,
                                   listings=[{"chain_id": 31337, "listing_id": "1",
                                              "content_hash": version.content_hash}])
    action = OperatorAction.objects.create(
        kind="approve", chain_id=31337, market=PUBLISHER, listing_id=1, expected_owner=PUBLISHER,
        expected_content_hash=version.content_hash, status="confirmed", tx_hash="0x" + "22" * 32,
        block_number=6, log_index=0, context={"intent": "approve", "dataset": dataset.pk})
    listings.on_operator_action(action)
    # The indexer reads the approval's event (its handler is the one writer of the flag).
    approval = Event(id=1, chain_id=31337, block_number=6, block_hash="0x" + "33" * 32,
                     tx_hash=action.tx_hash, tx_index=0, log_index=0, address=PUBLISHER,
                     name="ListingApprovalSet", args={"listingId": "1", "approved": True})
    handlers.on_listing_events([approval])
    return Dataset.objects.get(pk=dataset.pk)


def test_an_approval_queued_before_reviews_existed_does_not_list_a_dataset_nobody_approved(
        db, moderator_client, anonymous):
    """Guarantee 1 (nothing public before a moderator approves it). An approval queued by the old
    code, settled after the upgrade, used to mark the dataset listed with `published_at` empty;
    from then on the owner's edits applied in place, straight to the public page and search. Now
    the indexer's reading of the approval marks the listing approved and leaves the dataset in
    review; the moderator's
    approvals of its text and version list it (published), and later edits wait for review."""
    dataset = _approval_queued_before_reviews_existed()
    assert (dataset.status, dataset.published_at) == ("pending_review", None)
    assert Listing.objects.get().approved is True
    assert anonymous.get("/api/v1/datasets/d").status_code == 404

    for kind in ("details", "version"):
        assert decide(moderator_client, open_revision(dataset, kind), "approve").status_code == 200
    dataset.refresh_from_db()
    assert dataset.status == "listed" and dataset.published_at is not None
    assert OperatorAction.objects.count() == 1, "the listing was approved on-chain already: nothing is sent"

    from marketplace.catalog import revisions

    waiting = revisions.edit_dataset(dataset, by=dataset.owner, title="SCAM: pay 0xdead").revision
    assert waiting is not None and Dataset.objects.get(pk=dataset.pk).title == "Harmless"
    assert anonymous.get("/api/v1/datasets/d").json()["title"] == "Harmless"


def test_a_listed_dataset_without_published_at_takes_edits_through_review(db):
    """Guarantee 1. A dataset listed without `published_at` (listed before reviews existed, which
    migration 0004 did not see) used to be edited in place: its public text changed at once."""
    from marketplace.catalog import revisions

    dataset = _listed(wallet_user(PUBLISHER), "d", "Harmless")
    Dataset.objects.filter(pk=dataset.pk).update(published_at=None)
    dataset.refresh_from_db()
    result = revisions.edit_dataset(dataset, by=dataset.owner, title="SCAM: pay 0xdead", description="unreviewed")
    assert result.revision is not None and result.revision.changes["title"] == "SCAM: pay 0xdead"
    assert Dataset.objects.get(pk=dataset.pk).title == "Harmless"


def test_a_version_is_decided_only_once_its_analysis_has_ended(chain, publisher, publisher_client,
                                                                moderator_client, staff_client):
    """Guarantee 3 (the public sees only what a moderator saw). Publisher lists a file whose
    analysis has not run yet; the moderator approves its details and version: the revision showed
    no column and no sample row, and when the analysis finished its columns and first rows went
    public. Now the approval is refused (409 in the API, an error in the admin) until the analysis
    has ended, and the admin's summary names the public columns and the sample rows shown."""
    from tests.integration.test_preview import COLUMNS, SAMPLE

    from tests.integration.test_listing import make_version

    version = make_version(publisher, chain)
    DatasetVersion.objects.filter(pk=version.pk).update(analysis_status="running", hidden_columns=["email"],
                                                        show_sample=True)
    assert link(publisher_client, version, send_prepared(chain, publisher_client, version)).status_code == 201
    dataset = version.dataset
    assert decide(moderator_client, open_revision(dataset, "details"), "approve").status_code == 200
    waiting = DatasetRevision.objects.get(dataset=dataset, kind="version", status="pending")
    refused = decide(moderator_client, waiting, "approve")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "decision_refused"
    assert "still being analysed" in refused.json()["error"]["message"]

    queue = "/admin/catalog/datasetrevision/"
    data = {"action": "approve", "_selected_action": [str(waiting.pk)], "index": "0"}
    page = staff_client.post(queue, data).content.decode()
    answer = staff_client.post(queue, {**data, "confirmed": "1", "revision": [str(waiting.pk)]}, follow=True)
    assert "still being analysed" in answer.content.decode()
    waiting.refresh_from_db()
    assert waiting.status == "pending" and DatasetVersion.objects.get(pk=version.pk).review == "pending"
    assert "analysis: analysing" in page

    DatasetVersion.objects.filter(pk=version.pk).update(analysis_status="done", row_count=45, columns=COLUMNS,
                                                        sample=SAMPLE)
    page = staff_client.post(queue, data).content.decode()
    assert "public columns: city, population;" in page and "hidden columns: email" in page
    assert "2 sample rows public" in page
    staff_client.post(queue, {**data, "confirmed": "1", "revision": [str(waiting.pk)]})
    waiting.refresh_from_db()
    assert waiting.status == "approved"


def test_a_chain_reset_keeps_rejected_and_delisted_datasets_as_they_are(db):
    """Guarantee 7. A chain reset turned every dataset that had a listing on that chain into a
    draft, rejected and delisted ones included: relisting them came back to review as a fresh
    submission, and the demo's relisting put them back on sale. Now they keep their status; only
    their chain rows go."""
    from marketplace.chain.services import forget_chain
    from tests.factories import make_public

    owner = wallet_user(PUBLISHER)
    datasets = {}
    for status in ("listed", "rejected", "delisted"):
        dataset = Dataset.objects.create(owner=owner, slug=status, title=status, license="MIT", payout_address=PUBLISHER)
        make_public(DatasetVersion.objects.create(
            dataset=dataset, number=1, file=f"x/{status}.csv", original_name="a.csv", format="csv", size=1,
            content_hash=sha(status.encode()), price=1, token=PUBLISHER))
        Dataset.objects.filter(pk=dataset.pk).update(status=status)
        datasets[status] = dataset

    forget_chain(31337)
    assert not Listing.objects.exists()
    after = {status: Dataset.objects.get(pk=d.pk).status for status, d in datasets.items()}
    assert after == {"listed": "draft", "rejected": "rejected", "delisted": "delisted"}

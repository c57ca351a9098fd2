"""The review queue console against the real PostgreSQL (and anvil for a version's listings): the
queue oldest first with its target time, kinds and keyset pages; claims between two moderators
(refused claims and decisions name the holder, expiry, release, a race); decisions with a policy
reason, a statement of reasons and an internal note recorded in the audit log (the note never
reaches the publisher); bad, forged and replayed decisions; the item page's sections."""
from datetime import timedelta
import re
import threading

from django.db import connection, connections
from django.test import Client
from django.utils import timezone
import pytest

from marketplace.accounts.models import User
from marketplace.accounts.services import wallet_user
from marketplace.catalog import revisions, services
from marketplace.catalog.models import DatasetRevision, DatasetVersion, Listing
from marketplace.moderation import review
from marketplace.moderation.models import AuditEntry, Notification, ReviewClaim
from tests.integration.test_listing import PUBLISHER, listed_version
from tests.integration.test_moderation_audit import client_of, user

PAYOUT = "0x" + "ab" * 20


def dataset_of(owner, title="Rainfall by town"):
    return services.create_dataset(owner=owner, title=title, license="CC0-1.0", payout_address=PAYOUT)


def waiting(dataset, kind="details", **fields):
    return DatasetRevision.objects.create(dataset=dataset, kind=kind, created_by=dataset.owner,
                                          changes=fields.pop("changes", revisions.public_text(dataset)), **fields)


def aged(revision, hours):
    DatasetRevision.objects.filter(pk=revision.pk).update(created_at=timezone.now() - timedelta(hours=hours))
    revision.refresh_from_db()
    return revision


def claim_api(client, revision, method="post"):
    return getattr(client, method)(f"/api/v1/moderation/review/{revision.pk}/claim")


def decide_api(client, revision, **body):
    return client.post(f"/api/v1/moderation/review/{revision.pk}/decision", body, content_type="application/json")


REJECT = {"decision": "reject", "reason_code": "misleading", "statement": "The figures are not rainfall."}


@pytest.fixture
def ann(db):
    return user("ann", "moderator")


@pytest.fixture
def bob(db):
    return user("bob", "moderator")


@pytest.fixture
def publisher(db):
    return user("pub")


pytestmark = pytest.mark.django_db


# The queue --------------------------------------------------------------------------------------


def test_the_queue_lists_what_waits_oldest_first_with_overdue_items_marked(ann, publisher, settings):
    settings.REVIEW_TARGET_HOURS = 24
    fresh = aged(waiting(dataset_of(publisher, "Fresh")), 1)
    late = aged(waiting(dataset_of(publisher, "Late")), 30)
    decided = aged(waiting(dataset_of(publisher, "Done")), 40)
    revisions.decide(decided, decision="approve", moderator=ann)
    answer = client_of(ann).get("/api/v1/moderation/queue").json()
    assert [r["id"] for r in answer["results"]] == [late.pk, fresh.pk] and answer["next_after"] is None
    first, second = answer["results"]
    assert first["overdue"] is True and second["overdue"] is False and answer["target_hours"] == 24
    assert first["dataset"]["title"] == "Late" and first["dataset"]["new"] is True and first["publisher"] == "pub"
    assert first["age_seconds"] >= 30 * 3600 and first["claimed_by"] is None
    page = client_of(ann).get("/moderation/queue")
    html = page.content.decode()
    assert page.status_code == 200 and html.index(f'data-item="{late.pk}"') < html.index(f'data-item="{fresh.pk}"')
    assert html.count("data-overdue-badge") == 1
    settings.REVIEW_TARGET_HOURS = 48
    assert not any(r["overdue"] for r in client_of(ann).get("/api/v1/moderation/queue").json()["results"])


def test_the_queue_pages_by_keyset_and_filters_by_kind(ann, publisher):
    dataset = dataset_of(publisher)
    start = timezone.now() - timedelta(days=3)
    made = DatasetRevision.objects.bulk_create([
        DatasetRevision(dataset=dataset, kind="details" if i % 3 else "preview", created_by=publisher,
                        changes={}) for i in range(120)])
    for i, revision in enumerate(made):  # ties on created_at are ordered by id
        DatasetRevision.objects.filter(pk=revision.pk).update(created_at=start + timedelta(minutes=i // 2))
    moderator = client_of(ann)
    seen, after = [], None
    while True:
        answer = moderator.get("/api/v1/moderation/queue", {"after": after} if after else {}).json()
        seen += [r["id"] for r in answer["results"]]
        after = answer["next_after"]
        if after is None:
            break
    assert seen == [r.pk for r in made] and len(seen) == 120
    previews = moderator.get("/api/v1/moderation/queue", {"kind": "preview"}).json()["results"]
    assert [r["id"] for r in previews] == [r.pk for r in made if r.kind == "preview"]
    page = moderator.get("/moderation/queue", {"kind": "preview"})
    assert page.status_code == 200 and "Newer items" not in page.content.decode()
    second = moderator.get("/moderation/queue", {"after": made[49].pk}).content.decode()
    assert f'data-item="{made[50].pk}"' in second and f'data-item="{made[49].pk}"' not in second


@pytest.mark.parametrize("params,field", [({"after": "x"}, "after"), ({"after": "0"}, "after"),
                                          ({"kind": "everything"}, "kind")])
def test_bad_queue_parameters_are_a_400_naming_the_field(ann, params, field):
    answer = client_of(ann).get("/api/v1/moderation/queue", params)
    assert answer.status_code == 400 and field in answer.json()["error"]["fields"]
    page = client_of(ann).get("/moderation/queue", params)
    assert page.status_code == 400 and "data-queue-error" in page.content.decode()
    assert client_of(ann).get("/api/v1/moderation/queue", {"sort": "new"}).json()["error"]["code"] == \
        "unknown_parameter"


def test_every_review_url_is_401_or_the_sign_in_page_anonymous_and_403_without_the_role(publisher):
    revision = waiting(dataset_of(publisher))
    stranger = client_of(user("someone"))
    for method, url in [("get", "/api/v1/moderation/queue"), ("post", f"/api/v1/moderation/review/{revision.pk}/claim"),
                        ("delete", f"/api/v1/moderation/review/{revision.pk}/claim"),
                        ("post", f"/api/v1/moderation/review/{revision.pk}/decision")]:
        assert getattr(Client(), method)(url).status_code == 401, url
        refused = getattr(stranger, method)(url, content_type="application/json")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden", url
    for url in ["/moderation/", "/moderation/queue", f"/moderation/review/{revision.pk}"]:
        assert stranger.get(url).status_code == 403, url
        assert "sign" in Client().get(url).content.decode().lower(), url
    assert client_of(publisher).post(f"/moderation/review/{revision.pk}", {"action": "decide",
                                                                             "decision": "approve"}).status_code == 403
    revision.refresh_from_db()
    assert revision.status == "pending" and not AuditEntry.objects.exists()


# Claims: two moderators on one item ------------------------------------------------------------


def test_a_claimed_item_refuses_another_moderators_claim_and_decision_naming_the_holder(ann, bob, publisher):
    revision = waiting(dataset_of(publisher))
    held = claim_api(client_of(ann), revision)
    assert held.status_code == 200 and held.json()["moderator"] == "ann"
    queue = client_of(bob).get("/api/v1/moderation/queue").json()["results"]
    assert queue[0]["claimed_by"] == "ann"
    second = claim_api(client_of(bob), revision)
    assert second.status_code == 409 and second.json()["error"]["code"] == "claimed"
    assert "ann" in second.json()["error"]["message"]
    for answer in [decide_api(client_of(bob), revision, decision="approve"),
                   # the catalog's own endpoint and the admin's path go through the same check
                   client_of(bob).post(f"/api/v1/moderation/revisions/{revision.pk}/decision",
                                       {"decision": "approve"}, content_type="application/json")]:
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "claimed"
        assert "ann" in answer.json()["error"]["message"]
    page = client_of(bob).post(f"/moderation/review/{revision.pk}", {"action": "decide", "decision": "approve"})
    assert page.status_code == 409 and "claimed by ann" in page.content.decode()
    with pytest.raises(revisions.DecisionBlocked):
        revisions.decide(revision, decision="approve", moderator=bob)
    revision.refresh_from_db()
    assert revision.status == "pending" and not AuditEntry.objects.exists()
    # The holder decides; the claim ends with the decision.
    done = decide_api(client_of(ann), revision, **REJECT)
    assert done.status_code == 200 and done.json()["status"] == "rejected"
    assert not ReviewClaim.objects.exists()
    assert AuditEntry.objects.get().actor == "ann"


def test_a_claim_expires_and_the_next_moderator_takes_it_over(ann, bob, publisher, settings):
    settings.REVIEW_CLAIM_MINUTES = 30
    revision = waiting(dataset_of(publisher))
    assert claim_api(client_of(ann), revision).status_code == 200
    claim = ReviewClaim.objects.get()
    assert timedelta(minutes=29) < claim.expires_at - claim.claimed_at <= timedelta(minutes=30)
    ReviewClaim.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client_of(bob).get("/api/v1/moderation/queue").json()["results"][0]["claimed_by"] is None
    taken = claim_api(client_of(bob), revision)
    assert taken.status_code == 200 and taken.json()["moderator"] == "bob"
    refused = decide_api(client_of(ann), revision, decision="approve")
    assert refused.status_code == 409 and "bob" in refused.json()["error"]["message"]


def test_only_the_holder_releases_a_claim_and_then_anyone_may_claim(ann, bob, publisher):
    revision = waiting(dataset_of(publisher))
    claim_api(client_of(ann), revision)
    refused = claim_api(client_of(bob), revision, "delete")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "claimed"
    assert claim_api(client_of(ann), revision, "delete").json() == {"released": True}
    assert claim_api(client_of(ann), revision, "delete").json() == {"released": False}
    assert claim_api(client_of(bob), revision).status_code == 200
    # Claiming again extends one's own claim.
    first = ReviewClaim.objects.get().expires_at
    assert claim_api(client_of(bob), revision).status_code == 200
    assert ReviewClaim.objects.get().expires_at >= first and ReviewClaim.objects.count() == 1


def test_claiming_a_decided_revision_or_an_unknown_one_is_refused(ann, publisher):
    revision = waiting(dataset_of(publisher))
    revisions.decide(revision, decision="approve", moderator=ann)
    answer = claim_api(client_of(ann), revision)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "not_open"
    assert client_of(ann).post("/api/v1/moderation/review/999999/claim").status_code == 404
    assert client_of(ann).get("/moderation/review/999999").status_code == 404
    assert not ReviewClaim.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_moderators_claiming_at_once_get_one_claim():
    ann, bob, publisher = user("ann", "moderator"), user("bob", "moderator"), user("pub")
    revision = waiting(dataset_of(publisher))
    barrier, outcomes = threading.Barrier(2), {}

    def take(person):
        try:
            barrier.wait()
            review.claim(revision.pk, moderator=person)
            outcomes[person.username] = "held"
        except review.Claimed as exc:
            outcomes[person.username] = f"refused: {exc.claim.moderator.username}"
        finally:
            connections.close_all()

    threads = [threading.Thread(target=take, args=(p,)) for p in (ann, bob)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winner = ReviewClaim.objects.get().moderator.username
    loser = "bob" if winner == "ann" else "ann"
    assert outcomes == {winner: "held", loser: f"refused: {winner}"}


# Decisions ------------------------------------------------------------------------------------


def test_a_rejection_records_the_policy_the_statement_and_the_internal_note(ann, publisher):
    dataset = dataset_of(publisher)
    revision = waiting(dataset)
    answer = decide_api(client_of(ann), revision, **REJECT, internal_note="Same rows as dataset 12; watch them.")
    assert answer.status_code == 200, answer.json()
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target_id, entry.reason, entry.statement, entry.internal_note) == (
        "dataset.reject", str(dataset.pk), "misleading", "The figures are not rainfall.",
        "Same rows as dataset 12; watch them.")
    assert entry.details["revision"] == revision.pk and entry.actor_role == "moderator"
    # The publisher sees the policy and the statement, never the note.
    told = Notification.objects.get(recipient=publisher).text
    assert "Misleading" in told and "The figures are not rainfall." in told and "watch them" not in told
    seen = client_of(publisher).get("/api/v1/me/audit").json()["results"][0]
    assert seen["reason"] == "misleading" and "internal_note" not in seen
    assert "watch them" not in client_of(publisher).get("/me/audit").content.decode()
    # Moderators see the note on the item page and in the audit search.
    html = client_of(ann).get(f"/moderation/review/{revision.pk}").content.decode()
    assert "Same rows as dataset 12; watch them." in html and "data-internal-note" in html
    assert client_of(ann).get("/api/v1/moderation/audit", {"q": "watch"}).json()["results"][0]["id"] == entry.id


def test_request_changes_and_approve_from_the_api(ann, publisher):
    first, second = waiting(dataset_of(publisher, "One")), waiting(dataset_of(publisher, "Two"))
    sent_back = decide_api(client_of(ann), first, decision="request_changes", reason_code="low_quality",
                           statement="Name the source of each column.")
    assert sent_back.status_code == 200 and sent_back.json()["status"] == "changes_requested"
    approved = decide_api(client_of(ann), second, decision="approve", statement="", internal_note="Checked.")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert list(AuditEntry.objects.order_by("id").values_list("action", "reason", "internal_note")) == [
        ("dataset.request_changes", "low_quality", ""), ("dataset.approve", "", "Checked.")]


@pytest.mark.parametrize("body,field", [
    ({"decision": "reject", "statement": "No."}, "reason_code"),
    ({"decision": "reject", "reason_code": "spam"}, "statement"),
    ({"decision": "reject", "reason_code": "spam", "statement": "  \n\t "}, "statement"),
    ({"decision": "request_changes", "reason_code": "spam", "statement": "x" * 2001}, "statement"),
    ({"decision": "reject", "reason_code": "rude", "statement": "No."}, "reason_code"),
    ({"decision": "approve", "reason_code": "spam"}, "reason_code"),
    ({"decision": "delete"}, "decision"),
    ({"decision": "approve", "internal_note": "x" * 5001}, "internal_note"),
])
def test_a_bad_decision_is_a_400_naming_the_field_and_decides_nothing(ann, publisher, body, field):
    revision = waiting(dataset_of(publisher))
    answer = decide_api(client_of(ann), revision, **body)
    assert answer.status_code == 400 and field in answer.json()["error"]["fields"], answer.json()
    page = client_of(ann).post(f"/moderation/review/{revision.pk}", {"action": "decide", **body})
    assert page.status_code == 400 and "data-review-error" in page.content.decode()
    revision.refresh_from_db()
    assert revision.status == "pending" and not AuditEntry.objects.exists()


def test_a_statement_of_2000_characters_is_taken(ann, publisher):
    revision = waiting(dataset_of(publisher))
    answer = decide_api(client_of(ann), revision, decision="reject", reason_code="other", statement="y" * 2000)
    assert answer.status_code == 200 and len(AuditEntry.objects.get().statement) == 2000


def test_a_replayed_decision_is_a_409_and_records_nothing_more(ann, bob, publisher):
    revision = waiting(dataset_of(publisher))
    assert decide_api(client_of(ann), revision, **REJECT).status_code == 200
    again = decide_api(client_of(bob), revision, decision="approve")
    assert again.status_code == 409 and again.json()["error"]["code"] == "stale_revision"
    superseded = waiting(dataset_of(publisher, "Other"))
    newer = waiting(superseded.dataset)
    DatasetRevision.objects.filter(pk=superseded.pk).update(status="superseded", superseded_by=newer)
    stale = decide_api(client_of(ann), superseded, decision="approve")
    assert stale.status_code == 409 and f"#{newer.pk}" in stale.json()["error"]["message"]
    assert AuditEntry.objects.count() == 1


# The item page --------------------------------------------------------------------------------


def version_of(dataset, **fields):
    return DatasetVersion.objects.create(
        dataset=dataset, number=1, file="datasets/x/v1/people.csv", original_name="people.csv", format="csv",
        size=2048, content_hash="0x" + "cd" * 32, price=10**6, token=PAYOUT, analysis_status="done", row_count=3,
        columns=[{"name": "name", "type": "string", "null_count": 0, "distinct_count": 3},
                 {"name": "contact", "type": "string", "null_count": 0, "distinct_count": 3},
                 {"name": "rain_mm", "type": "float", "null_count": 1, "distinct_count": 2, "min": 0.5, "max": 9.25,
                  "mean": 4.875}],
        sample=[{"name": "Ann", "contact": "ann@example.com", "rain_mm": 0.5},
                {"name": "Bo", "contact": "bo@example.org", "rain_mm": 9.25},
                {"name": "Cy", "contact": "cy@example.net", "rain_mm": None}], **fields)


def test_the_item_page_shows_the_diff_of_an_edit_the_file_the_flags_and_the_publishers_history(ann, publisher):
    dataset = dataset_of(publisher, "Rainfall by town")
    services.update_dataset(dataset, description="Daily rainfall.\nFrom 40 stations.")
    revisions.decide(waiting(dataset), decision="approve", moderator=ann)  # published
    dataset.refresh_from_db()
    version_of(dataset)
    older = dataset_of(publisher, "Old rainfall")
    revisions.decide(waiting(older), decision="reject", moderator=ann, reason="Duplicate.", reason_code="spam")
    edit = revisions.edit_dataset(dataset, by=publisher, title="Rainfall by town, 2024",
                                  description="Daily rainfall.\nFrom 41 stations.").revision
    page = client_of(ann).get(f"/moderation/review/{edit.pk}")
    html = page.content.decode()
    assert page.status_code == 200
    title_row = re.search(r'<tr data-changed data-field="title">(.*?)</tr>', html, re.S).group(1)
    assert "Rainfall by town</td>" in title_row and "Rainfall by town, 2024" in title_row
    assert '<tr data-field="license">' in html  # unchanged fields are shown, not marked
    assert 'data-mark="removed">- From 40 stations.' in html and 'data-mark="added">+ From 41 stations.' in html
    assert 'data-flag="contact:email"' in html and "3 of 3 sample values" in html
    assert 'data-column="rain_mm"' in html and "4.875" in html and "cy@example.net" in html
    assert re.search(r'data-count="approve">1 approved', html) and re.search(r'data-count="reject">1 rejected', html)
    assert "Old rainfall" in html and "Duplicate." in html
    assert "data-open-reports" in html and "No open reports" in html
    assert 'name="csrfmiddlewaretoken"' in html


def test_the_item_page_shows_the_open_reports_on_the_dataset_and_its_publisher(ann, publisher):
    from marketplace.moderation.models import Report

    from eth_utils import to_checksum_address

    User.objects.filter(pk=publisher.pk).update(address=to_checksum_address("0x" + "cd" * 20))
    publisher.refresh_from_db()
    dataset = dataset_of(publisher)
    revision = waiting(dataset)
    reporters = iter(user(f"reporter{i}") for i in range(4))

    def report(target_type, target_id, reason, evidence, **fields):
        return Report.objects.create(target_type=target_type, target_id=target_id, source="user",
                                     reporter=next(reporters), reason=reason, evidence=evidence, **fields)

    report("dataset", str(dataset.pk), "copyright", "Copied from the national office.")
    report("dataset", str(dataset.pk), "misleading", "Not rainfall at all.")
    report("publisher", publisher.address, "spam", "Posts the same file daily.")
    report("dataset", str(dataset.pk), "spam", "Closed long ago.", status="closed", outcome="no_action",
           closed_at=timezone.now())
    html = client_of(ann).get(f"/moderation/review/{revision.pk}").content.decode()
    section = re.search(r"data-open-reports>(.*?)</section>", html, re.S).group(1)
    assert "This dataset</strong>: 2 open reports (Copyright or licence infringement, Misleading" in section
    assert "Not rainfall at all." in section and "Closed long ago." not in section
    assert f'href="/moderation/reports/dataset/{dataset.pk}"' in section
    assert "Its publisher</strong>: 1 open report (Spam" in section
    assert f'href="/moderation/reports/publisher/{publisher.address}"' in section


def test_a_preview_revision_shows_the_settings_now_and_proposed(ann, publisher):
    dataset = dataset_of(publisher)
    version = version_of(dataset, hidden_columns=["contact"], review="approved")
    revision = waiting(dataset, kind="preview", version=version,
                       changes={"hidden_columns": [], "show_sample": True, "show_distributions": False})
    html = client_of(ann).get(f"/moderation/review/{revision.pk}").content.decode()
    hidden = re.search(r"<tr data-changed><th scope=\"row\">Hidden columns</th><td>(.*?)</td><td>(.*?) ", html)
    assert hidden.groups() == ("contact", "none")
    assert re.search(r"<tr data-changed><th scope=\"row\">Sample rows</th><td>hidden</td><td>shown", html)
    assert re.search(r"<tr><th scope=\"row\">Distributions</th><td>hidden</td><td>hidden</td>", html)


def test_claiming_and_deciding_from_the_page_need_the_csrf_token(ann, publisher):
    revision = waiting(dataset_of(publisher))
    guarded = client_of(ann, enforce_csrf_checks=True)
    url = f"/moderation/review/{revision.pk}"
    assert guarded.post(url, {"action": "decide", "decision": "approve"}).status_code == 403
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', guarded.get(url).content.decode()).group(1)
    claimed = guarded.post(url, {"action": "claim", "csrfmiddlewaretoken": token})
    assert claimed.status_code == 302 and ReviewClaim.objects.get().moderator == ann
    assert "You hold this item" in guarded.get(claimed["Location"]).content.decode()
    done = guarded.post(url, {"action": "decide", "decision": "request_changes", "reason_code": "misleading",
                              "statement": "Say where it comes from.", "internal_note": "Looks scraped.",
                              "csrfmiddlewaretoken": token})
    assert done.status_code == 302 and done["Location"].endswith("?done=request_changes")
    html = guarded.get(done["Location"]).content.decode()
    # Changes requested: still open (the publisher's edit supersedes it, or a moderator decides again).
    assert "Changes requested." in html and "data-decision-form" in html and "Looks scraped." in html
    entry = AuditEntry.objects.get()
    assert (entry.reason, entry.statement, entry.internal_note) == ("misleading", "Say where it comes from.",
                                                                     "Looks scraped.")


def test_the_queue_and_an_item_page_take_a_fixed_number_of_queries(ann, publisher, django_assert_max_num_queries):
    for i in range(30):
        revision = waiting(dataset_of(publisher, f"Set {i}"))
        if i % 3 == 0:
            review.claim(revision.pk, moderator=ann)
    moderator = client_of(ann)
    moderator.get("/moderation/queue")  # the session and the user, warmed
    with django_assert_max_num_queries(6):
        assert moderator.get("/moderation/queue").status_code == 200
    with django_assert_max_num_queries(6):
        assert moderator.get("/api/v1/moderation/queue").status_code == 200
    with django_assert_max_num_queries(14):
        assert moderator.get(f"/moderation/review/{revision.pk}").status_code == 200


def test_the_moderation_pages_link_the_queue(ann):
    assert 'href="/moderation/queue"' in client_of(ann).get("/moderation/audit").content.decode()
    assert 'href="/moderation/audit"' in client_of(ann).get("/moderation/queue").content.decode()
    with connection.cursor() as cursor:  # the queue's reads have their indexes
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'catalog_datasetrevision'")
        names = {row[0] for row in cursor.fetchall()}
    assert {"revision_waiting", "revision_waiting_kind"} <= names


# A version's listings (anvil) ----------------------------------------------------------------


@pytest.mark.chain
def test_a_decision_naming_other_listings_or_hashes_is_a_409(chain, ann):
    publisher_client = client_of(wallet_user(PUBLISHER))
    version = listed_version(chain, publisher_client)
    moderator = client_of(ann)
    details = DatasetRevision.objects.get(dataset=version.dataset, kind="details", status="pending")
    assert decide_api(moderator, details, decision="approve").status_code == 200
    revision = DatasetRevision.objects.get(dataset=version.dataset, kind="version", status="pending")
    listing = Listing.objects.get()
    forged = decide_api(moderator, revision, decision="approve",
                        listings=[{"listing_id": str(listing.listing_id), "content_hash": "0x" + "00" * 32}])
    assert forged.status_code == 409 and forged.json()["error"]["code"] == "stale_revision"
    url = f"/moderation/review/{revision.pk}"
    html = moderator.get(url).content.decode()
    assert f'name="listing_id" value="{listing.listing_id}"' in html and f'data-listing="{listing.listing_id}"' in html
    page = moderator.post(url, {"action": "decide", "decision": "approve", "listing_id": str(listing.listing_id + 1),
                                "content_hash": version.content_hash})
    assert page.status_code == 409 and "other listings" in page.content.decode()
    missing = moderator.post(url, {"action": "decide", "decision": "approve"})  # a form that showed none
    assert missing.status_code == 409
    revision.refresh_from_db()
    assert revision.status == "pending"
    # A publisher banned from publishing: the right decision is refused while the ban holds.
    from marketplace.accounts.models import WalletBan

    ban = WalletBan.objects.create(address=PUBLISHER, scope="publish", reason="fraud", statement="Stolen data.")
    banned = moderator.post(url, {"action": "decide", "decision": "approve", "listing_id": str(listing.listing_id),
                                  "content_hash": version.content_hash})
    assert banned.status_code == 409 and "banned from publishing" in banned.content.decode()
    WalletBan.objects.filter(pk=ban.pk).update(lifted_at=timezone.now())
    right = moderator.post(url, {"action": "decide", "decision": "approve", "listing_id": str(listing.listing_id),
                                 "content_hash": version.content_hash})
    assert right.status_code == 302
    revision.refresh_from_db()
    assert revision.status == "approved"
    assert AuditEntry.objects.filter(action="dataset.approve").count() == 2

"""Reports and notices against the real PostgreSQL: signed-in reports and public notices, grouped
by target with a count for the moderators, rate-limited, refused when repeated while open, taken
with a word when the dataset is delisted already; a group closed with an outcome is recorded in
the audit log (reporter kept, never shown to the publisher) and told to every reporter, in the
site or on the notice's status page. Bad input is a 4xx naming the field; roles give 401/403."""
import re

from django.contrib.auth.models import Group
from django.test import Client
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog import services
from marketplace.catalog.models import Dataset
from marketplace.moderation import reports
from marketplace.moderation.models import AuditEntry, Notification, Report
from tests.integration.test_moderation_audit import client_of

pytestmark = pytest.mark.django_db
PAYOUT = "0x" + "ab" * 20
PUBLISHER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
BUYERS = ["0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65", "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
          "0x976EA74026E726554dB657fA54763abd0C3a0aa9", "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955"]
EVIDENCE = "Column `email` holds people's e-mail addresses, e.g. row 3."


@pytest.fixture(autouse=True)
def _counts_in_postgres(settings):
    settings.LIMITS_REDIS_URL = ""  # counts roll back with each test's transaction


@pytest.fixture
def publisher():
    return wallet_user(PUBLISHER)


@pytest.fixture
def buyers():
    return [wallet_user(address) for address in BUYERS]


@pytest.fixture
def moderator():
    person = wallet_user("0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f")
    Group.objects.get(name="moderator").user_set.add(person)
    return person


def listed(owner, title="Customer list", status=Dataset.Status.LISTED):
    dataset = services.create_dataset(owner=owner, title=title, license="CC0-1.0", payout_address=PAYOUT)
    Dataset.objects.filter(pk=dataset.pk).update(status=status)
    dataset.refresh_from_db()
    return dataset


def report(client, target, *, target_type="dataset", reason="personal_data", evidence=EVIDENCE, **extra):
    return client.post("/api/v1/reports", {"target_type": target_type, "target": target, "reason": reason,
                                           "evidence": evidence, **extra}, content_type="application/json")


def notice(client, target, **fields):
    body = {"name": "Ana Lopes", "email": "ana@example.org", "law": "GDPR art. 6", "target": target,
            "reason": "personal_data", "evidence": EVIDENCE, "good_faith": True, **fields}
    return client.post("/api/v1/notices", body, content_type="application/json")


def close(client, dataset_or_type, target_id=None, **fields):
    target_type, target_id = ("dataset", dataset_or_type.pk) if target_id is None else (dataset_or_type, target_id)
    body = {"outcome": "no_action", "statement": "The data is synthetic: no person is named.",
            "through": Report.objects.order_by("-pk").values_list("pk", flat=True).first() or 1, **fields}
    return client.post(f"/api/v1/moderation/reports/{target_type}/{target_id}/close", body,
                       content_type="application/json")


# Reporting --------------------------------------------------------------------------------------


def test_reports_on_one_target_group_into_one_row_with_the_count(publisher, buyers, moderator):
    crowded, quiet = listed(publisher, "Customer list"), listed(publisher, "Rainfall")
    for buyer in buyers[:3]:
        answer = report(client_of(buyer), crowded.slug)
        assert answer.status_code == 201, answer.json()
        assert answer.json()["status"] == "open" and answer.json()["target"]["id"] == str(crowded.pk)
    assert report(client_of(buyers[3]), str(quiet.pk), reason="spam").status_code == 201  # by id works too
    assert notice(Client(), f"https://market.example/datasets/{crowded.slug}").status_code == 201

    groups = client_of(moderator).get("/api/v1/moderation/reports").json()["results"]
    assert [(g["target"]["id"], g["open_count"], g["notices"]) for g in groups] == [
        (str(crowded.pk), 4, 1), (str(quiet.pk), 1, 0)]  # newest report first: the notice on crowded
    assert groups[0]["reasons"] == ["personal_data"] and groups[0]["target"]["label"] == "Customer list"
    report(client_of(buyers[0]), str(quiet.pk), reason="copyright")
    newest = client_of(moderator).get("/api/v1/moderation/reports?sort=newest").json()["results"]
    by_count = client_of(moderator).get("/api/v1/moderation/reports?sort=count").json()["results"]
    assert [g["target"]["id"] for g in newest] == [str(quiet.pk), str(crowded.pk)]
    assert [g["target"]["id"] for g in by_count] == [str(crowded.pk), str(quiet.pk)]

    detail = client_of(moderator).get(f"/api/v1/moderation/reports/dataset/{crowded.pk}").json()
    assert detail["open_count"] == 4 and len(detail["reports"]) == 4
    sent = next(r for r in detail["reports"] if r["source"] == "notice")
    assert (sent["notifier_name"], sent["notifier_email"], sent["law"]) == ("Ana Lopes", "ana@example.org",
                                                                          "GDPR art. 6")
    page = client_of(moderator).get("/moderation/reports?sort=count")
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-group="dataset:{crowded.pk}" data-count="4"' in html
    assert html.index(f"dataset:{crowded.pk}") < html.index(f"dataset:{quiet.pk}")
    group = client_of(moderator).get(f"/moderation/reports/dataset/{crowded.pk}").content.decode()
    assert group.count("data-report=") == 4 and "ana@example.org" in group and EVIDENCE[:20] in group


def test_a_publisher_is_reported_by_address_in_any_case(publisher, buyers, moderator):
    listed(publisher)
    answer = report(client_of(buyers[0]), PUBLISHER.lower(), target_type="publisher", reason="spam")
    assert answer.status_code == 201 and answer.json()["target"]["id"] == PUBLISHER
    assert [r.pk for r in reports.open_reports_for("publisher", PUBLISHER.lower())] == [answer.json()["id"]]
    # Someone who publishes nothing public is no publisher to report.
    assert report(client_of(buyers[0]), BUYERS[1], target_type="publisher").json()["error"]["fields"]["target"]


def test_the_same_person_reporting_an_open_target_again_is_refused_until_it_is_closed(publisher, buyers, moderator):
    dataset = listed(publisher)
    first = report(client_of(buyers[0]), dataset.slug)
    again = report(client_of(buyers[0]), dataset.slug, reason="copyright", evidence="Another reason entirely.")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_reported"
    assert f"report #{first.json()['id']}" in again.json()["error"]["message"]
    assert Report.objects.count() == 1 and Report.objects.get().reason == "personal_data"
    assert report(client_of(buyers[1]), dataset.slug).status_code == 201  # another person: a second report
    assert close(client_of(moderator), dataset).status_code == 200
    assert report(client_of(buyers[0]), dataset.slug).status_code == 201  # closed: a new report is taken


def test_a_report_on_a_delisted_dataset_is_taken_and_says_it_is_delisted_already(publisher, buyers):
    dataset = listed(publisher, status=Dataset.Status.DELISTED)
    answer = report(client_of(buyers[0]), dataset.slug)
    assert answer.status_code == 201
    assert answer.json()["target"]["state"] == "delisted"
    assert "already delisted" in answer.json()["message"]
    by_notice = notice(Client(), dataset.slug)
    assert by_notice.status_code == 201 and "already delisted" in by_notice.json()["message"]
    assert Report.objects.filter(target_id=str(dataset.pk), status="open").count() == 2


@pytest.mark.parametrize("body, field", [
    ({"reason": ""}, "reason"),
    ({"reason": "looks_bad"}, "reason"),
    ({"evidence": ""}, "evidence"),
    ({"evidence": "   "}, "evidence"),
    ({"evidence": "x" * 5001}, "evidence"),
    ({"law": "y" * 301}, "law"),
    ({"target_type": "order"}, "target_type"),
    ({"target": ""}, "target"),
    ({"target": "no-such-dataset"}, "target"),
    ({"evidence": 42}, "evidence"),
])
def test_bad_report_input_is_a_400_naming_the_field(publisher, buyers, body, field):
    dataset = listed(publisher)
    answer = client_of(buyers[0]).post("/api/v1/reports", {"target_type": "dataset", "target": dataset.slug,
                                                            "reason": "spam", "evidence": EVIDENCE, **body},
                                       content_type="application/json")
    assert answer.status_code == 400
    assert list(answer.json()["error"]["fields"]) == [field]
    assert not Report.objects.exists()


def test_missing_fields_are_named_and_unseen_or_own_datasets_are_refused(publisher, buyers):
    answer = client_of(buyers[0]).post("/api/v1/reports", {}, content_type="application/json")
    assert answer.status_code == 400
    assert set(answer.json()["error"]["fields"]) == {"target_type", "target", "reason", "evidence"}
    draft = listed(publisher, "Draft", status=Dataset.Status.DRAFT)
    assert report(client_of(buyers[0]), draft.slug).json()["error"]["fields"]["target"]  # never public: unknown
    own = report(client_of(publisher), listed(publisher, "Mine").slug)
    assert own.status_code == 400 and "your own dataset" in own.json()["error"]["fields"]["target"][0]
    assert not Report.objects.exists()


def test_reporting_is_rate_limited_per_wallet_and_per_address(publisher, buyers, settings):
    settings.LIMITS = {**settings.LIMITS, "report": {"ip": "3/hour", "wallet": "2/hour"}}
    datasets = [listed(publisher, f"Set {n}") for n in range(4)]
    assert report(client_of(buyers[0]), datasets[0].slug).status_code == 201
    assert report(client_of(buyers[0]), datasets[1].slug).status_code == 201
    refused = report(client_of(buyers[0]), datasets[2].slug)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "throttled"
    assert "Too many reports for this wallet (at most 2 per hour)" in refused.json()["error"]["message"]
    assert int(refused["Retry-After"]) > 0
    assert report(client_of(buyers[1]), datasets[2].slug).status_code == 201  # the address's third
    by_address = notice(Client(), datasets[3].slug)
    assert by_address.status_code == 429
    assert "from your network address (at most 3 per hour)" in by_address.json()["error"]["message"]
    assert Report.objects.count() == 3
    # A refused repeat is not counted: a 409 leaves the wallet's count where it was.
    settings.LIMITS = {**settings.LIMITS, "report": {"wallet": "2/hour"}}
    assert report(client_of(buyers[2]), datasets[0].slug).status_code == 201
    assert report(client_of(buyers[2]), datasets[0].slug).status_code == 409
    assert report(client_of(buyers[2]), datasets[1].slug).status_code == 201


def test_roles_anonymous_401_and_signed_in_without_the_role_403(publisher, buyers):
    dataset = listed(publisher)
    anonymous, ordinary = Client(), client_of(buyers[0])
    assert report(anonymous, dataset.slug).status_code == 401
    assert report(anonymous, dataset.slug).json()["error"]["code"] == "not_signed_in"
    assert anonymous.get("/api/v1/me/reports").status_code == 401
    report(ordinary, dataset.slug)
    urls = ["/api/v1/moderation/reports", f"/api/v1/moderation/reports/dataset/{dataset.pk}"]
    for url in urls:
        assert anonymous.get(url).status_code == 401
        assert ordinary.get(url).status_code == 403
    close_url = f"/api/v1/moderation/reports/dataset/{dataset.pk}/close"
    body = {"outcome": "no_action", "statement": "x", "through": 1}
    assert anonymous.post(close_url, body, content_type="application/json").status_code == 401
    assert ordinary.post(close_url, body, content_type="application/json").status_code == 403
    for page in ("/moderation/reports", f"/moderation/reports/dataset/{dataset.pk}"):
        assert "data-sign-in-prompt" in anonymous.get(page).content.decode()
        assert ordinary.get(page).status_code == 403
    assert ordinary.post(f"/moderation/reports/dataset/{dataset.pk}", {**body, "through": "1"}).status_code == 403
    assert Report.objects.get().status == "open"


# Notices ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("written", [
    "https://market.example/datasets/{slug}", "/datasets/{slug}", "{slug}", "market.example/datasets/{slug}/report",
    "{pk}",
])
def test_a_notice_names_a_dataset_as_anyone_would_copy_it(publisher, written):
    dataset = listed(publisher)
    answer = notice(Client(), written.format(slug=dataset.slug, pk=dataset.pk))
    assert answer.status_code == 201, answer.json()
    assert answer.json()["target"] == {"type": "dataset", "id": str(dataset.pk), "label": dataset.title,
                                       "link": f"/datasets/{dataset.slug}", "state": "listed"}


def test_a_notice_names_a_publisher_by_address_or_catalog_link(publisher):
    listed(publisher)
    for written in (PUBLISHER.lower(), f"https://market.example/?publisher={PUBLISHER}"):
        answer = notice(Client(), written)
        assert answer.status_code == 201 and answer.json()["target"]["type"] == "publisher"


@pytest.mark.parametrize("fields, field", [
    ({"name": ""}, "name"), ({"name": "n" * 121}, "name"), ({"email": "not-an-address"}, "email"),
    ({"law": ""}, "law"), ({"evidence": "e" * 5001}, "evidence"), ({"good_faith": False}, "good_faith"),
    ({"target": "https://market.example/datasets/nothing-here"}, "target"), ({"target": "what is this?"}, "target"),
    ({"reason": "because"}, "reason"),
])
def test_bad_notice_input_is_a_400_naming_the_field(publisher, fields, field):
    dataset = listed(publisher)
    answer = notice(Client(), **{"target": dataset.slug, **fields})
    assert answer.status_code == 400
    assert list(answer.json()["error"]["fields"]) == [field]
    assert not Report.objects.exists()


def test_a_notifier_without_an_account_checks_the_outcome_with_the_reference(publisher, moderator, settings):
    from marketplace.outbox.models import OutboxMessage

    settings.NOTIFY_BY_EMAIL = True  # and is written to, when e-mail is on
    dataset = listed(publisher)
    filed = notice(Client(), f"/datasets/{dataset.slug}").json()
    reference = filed["reference"]
    assert filed["status_url"] == f"/notice/{reference}" and len(reference) >= 20
    assert Report.objects.get().token_hash == reports.token_hash(reference)  # the token itself is not kept
    status = Client().get(f"/api/v1/notices/{reference}").json()
    assert (status["status"], status["outcome"], status["law"]) == ("open", None, "GDPR art. 6")
    page = Client().get(f"/notice/{reference}").content.decode()
    assert 'data-notice-status="open"' in page and "ana@example.org" not in page

    assert close(client_of(moderator), dataset, outcome="other",
                 statement="The publisher removed the e-mail column.").status_code == 200
    status = Client().get(f"/api/v1/notices/{reference}").json()
    assert (status["status"], status["outcome"], status["statement"]) == (
        "closed", "other", "The publisher removed the e-mail column.")
    page = Client().get(f"/notice/{reference}").content.decode()
    assert 'data-outcome="other"' in page and "The publisher removed the e-mail column." in page
    (mailed,) = OutboxMessage.objects.filter(task="moderation.send_email").values_list("args", flat=True)
    assert mailed[0] == "ana@example.org" and "The publisher removed the e-mail column." in mailed[2]
    assert Client().get("/api/v1/notices/" + "A" * 32).status_code == 404
    assert Client().get("/notice/" + "A" * 32).status_code == 404


# Closing ----------------------------------------------------------------------------------------


def test_closing_a_group_records_each_report_and_tells_each_reporter(publisher, buyers, moderator):
    dataset = listed(publisher)
    for buyer in buyers[:2]:
        report(client_of(buyer), dataset.slug)
    notice(Client(), dataset.slug)
    mine = client_of(buyers[0]).get("/api/v1/me/reports").json()["results"]
    assert [(r["status"], r["outcome"]) for r in mine] == [("open", None)]

    answer = close(client_of(moderator), dataset, internal_note="Checked 40 rows.")
    assert answer.status_code == 200 and len(answer.json()["closed"]) == 3 and answer.json()["still_open"] == 0
    entries = list(AuditEntry.objects.filter(action="report.close").order_by("id"))
    assert len(entries) == 3
    assert {(e.target_type, e.target_id, e.actor, e.actor_role, e.reason) for e in entries} == {
        ("dataset", str(dataset.pk), moderator.username, "moderator", "personal_data")}
    assert [e.reporter.split(" (report")[0] for e in entries] == [BUYERS[0], BUYERS[1], "Ana Lopes <ana@example.org>"]
    assert all(e.details["outcome"] == "no_action" and e.internal_note == "Checked 40 rows." for e in entries)
    for buyer in buyers[:2]:
        told = Notification.objects.get(recipient=buyer, kind="report.close")
        assert "No action taken" in told.text and "The data is synthetic" in told.text
    mine = client_of(buyers[0]).get("/api/v1/me/reports").json()["results"]
    assert [(r["status"], r["outcome"], r["statement"]) for r in mine] == [
        ("closed", "no_action", "The data is synthetic: no person is named.")]
    # The publisher sees the decisions about the dataset, never who reported or the note.
    seen = client_of(publisher).get("/api/v1/me/audit").json()["results"]
    assert [e["action"] for e in seen] == ["report.close"] * 3
    assert all("reporter" not in e and "internal_note" not in e for e in seen)
    assert BUYERS[0] not in str(seen) and "ana@example.org" not in str(seen)
    assert not Notification.objects.filter(recipient=publisher).exists()  # no action: nothing happened to them

    again = close(client_of(moderator), dataset)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_closed"
    assert AuditEntry.objects.filter(action="report.close").count() == 3


def test_a_report_filed_after_the_moderator_loaded_the_group_stays_open(publisher, buyers, moderator):
    dataset = listed(publisher)
    seen = report(client_of(buyers[0]), dataset.slug).json()["id"]
    later = report(client_of(buyers[1]), dataset.slug).json()["id"]
    answer = close(client_of(moderator), dataset, through=seen)
    assert answer.json() == {"closed": [seen], "still_open": 1, "outcome": "no_action"}
    assert Report.objects.get(pk=later).status == "open"
    assert [r.pk for r in reports.open_reports_for("dataset", dataset.pk)] == [later]


def test_closing_as_delisted_delists_the_dataset_and_tells_its_publisher(publisher, buyers, moderator):
    dataset = listed(publisher)
    report(client_of(buyers[0]), dataset.slug)
    answer = close(client_of(moderator), dataset, outcome="delisted", statement="It lists people's e-mails.")
    assert answer.status_code == 200
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.DELISTED  # nothing approved on-chain: delisted at once
    delisting = AuditEntry.objects.get(action="dataset.delist", target_id=str(dataset.pk))
    assert (delisting.reason, delisting.statement) == ("personal_data", "It lists people's e-mails.")
    assert AuditEntry.objects.get(action="report.close").details == {
        "report": Report.objects.get().pk, "outcome": "delisted", "source": "user", "dataset": dataset.slug}
    assert Notification.objects.filter(recipient=publisher, kind="dataset.delist").exists()
    assert "Dataset delisted" in Notification.objects.get(recipient=buyers[0]).text


@pytest.mark.parametrize("fields, field", [
    ({"statement": ""}, "statement"), ({"statement": "  "}, "statement"), ({"statement": "s" * 2001}, "statement"),
    ({"outcome": "banned"}, "outcome"), ({"through": 0}, "through"), ({"through": "x"}, "through"),
    ({"internal_note": "n" * 5001}, "internal_note"),
])
def test_a_bad_closing_is_a_400_naming_the_field_and_changes_nothing(publisher, buyers, moderator, fields, field):
    dataset = listed(publisher)
    report(client_of(buyers[0]), dataset.slug)
    answer = close(client_of(moderator), dataset, **fields)
    assert answer.status_code == 400 and list(answer.json()["error"]["fields"]) == [field]
    assert Report.objects.get().status == "open" and not AuditEntry.objects.exists()


def test_a_publisher_is_not_delisted_and_an_unknown_group_is_404(publisher, buyers, moderator):
    listed(publisher)
    report(client_of(buyers[0]), PUBLISHER, target_type="publisher")
    refused = close(client_of(moderator), "publisher", PUBLISHER, outcome="delisted")
    assert refused.status_code == 400 and "outcome" in refused.json()["error"]["fields"]
    assert close(client_of(moderator), "dataset", "999999").status_code == 404
    assert close(client_of(moderator), "order", "1").status_code == 404
    assert client_of(moderator).get("/api/v1/moderation/reports/dataset/999999").status_code == 404
    assert client_of(moderator).get("/moderation/reports/dataset/999999").status_code == 404
    assert Report.objects.get().status == "open" and not AuditEntry.objects.exists()


# Pages ------------------------------------------------------------------------------------------


def test_the_dataset_page_links_to_the_report_form_which_files_a_report(publisher, buyers):
    dataset = listed(publisher)
    from tests.factories import make_public
    from marketplace.catalog.models import DatasetVersion

    make_public(DatasetVersion.objects.create(
        dataset=dataset, number=1, file="x/1.csv", original_name="a.csv", format="csv", size=10,
        content_hash="0x" + "ab" * 32, price=1_000_000, token=PAYOUT))
    buyer = client_of(buyers[0])
    assert f'href="/datasets/{dataset.slug}/report"' in buyer.get(f"/datasets/{dataset.slug}").content.decode()
    assert "data-report-link" not in client_of(publisher).get(f"/datasets/{dataset.slug}").content.decode()
    anonymous = Client().get(f"/datasets/{dataset.slug}/report").content.decode()
    assert "data-report-sign-in" in anonymous and "/notice?target=/datasets/" in anonymous

    empty = buyer.post(f"/datasets/{dataset.slug}/report", {"about": "dataset", "reason": "", "evidence": ""})
    assert empty.status_code == 400
    assert 'data-error-for="reason"' in empty.content.decode() and 'data-error-for="evidence"' in empty.content.decode()
    filed = buyer.post(f"/datasets/{dataset.slug}/report", {"about": "publisher", "reason": "spam",
                                                            "evidence": "Twenty copies of one file."})
    assert filed.status_code == 201 and "data-report-filed" in filed.content.decode()
    assert Report.objects.get().target_type == "publisher" and Report.objects.get().target_id == PUBLISHER
    again = buyer.post(f"/datasets/{dataset.slug}/report", {"about": "publisher", "reason": "spam",
                                                           "evidence": "Again."})
    assert again.status_code == 409 and "already" in again.content.decode()


def test_the_public_notice_form_sends_the_notifier_to_the_status_page(publisher):
    dataset = listed(publisher)
    client = Client()
    form = client.get(f"/notice?target=/datasets/{dataset.slug}")
    assert form.status_code == 200 and f'value="/datasets/{dataset.slug}"' in form.content.decode()
    bad = client.post("/notice", {"target": dataset.slug, "reason": "copyright", "law": "", "evidence": "x",
                                  "name": "Ana", "email": "nope"})
    html = bad.content.decode()
    assert bad.status_code == 400
    assert all(f'data-error-for="{f}"' in html for f in ("law", "email", "good_faith"))
    assert not Report.objects.exists()
    sent = client.post("/notice", {"target": dataset.slug, "reason": "copyright", "law": "Copyright Act s. 1",
                                   "evidence": "Copied from my book.", "name": "Ana", "email": "ana@example.org",
                                   "good_faith": "on"})
    assert sent.status_code == 302 and re.fullmatch(r"/notice/[A-Za-z0-9_-]{32}\?filed=1", sent["Location"])
    status = client.get(sent["Location"]).content.decode()
    assert "data-notice-filed" in status and 'data-notice-status="open"' in status


def test_a_moderator_closes_a_group_from_its_page(publisher, buyers, moderator):
    dataset = listed(publisher)
    report(client_of(buyers[0]), dataset.slug)
    first = Report.objects.get()
    page = client_of(moderator).get(f"/moderation/reports/dataset/{dataset.pk}").content.decode()
    assert f'name="through" value="{first.pk}"' in page
    blank = client_of(moderator).post(f"/moderation/reports/dataset/{dataset.pk}",
                                      {"outcome": "no_action", "statement": "", "through": first.pk})
    assert blank.status_code == 400 and 'data-error-for="statement"' in blank.content.decode()
    report(client_of(buyers[1]), dataset.slug)  # filed while the moderator was writing
    done = client_of(moderator).post(f"/moderation/reports/dataset/{dataset.pk}",
                                     {"outcome": "no_action", "statement": "Fine.", "through": first.pk})
    assert done.status_code == 302
    after = client_of(moderator).get(done["Location"]).content.decode()
    assert "1 report closed" in after and "1 filed since you loaded the page is still open" in after
    assert list(Report.objects.order_by("pk").values_list("status", flat=True)) == ["closed", "open"]
    stale = client_of(moderator).post(f"/moderation/reports/dataset/{dataset.pk}",
                                      {"outcome": "no_action", "statement": "Fine.", "through": first.pk})
    assert stale.status_code == 409 and "closed already" in stale.content.decode()


def test_odd_group_addresses_are_404_and_a_publisher_group_takes_any_case(publisher, buyers, moderator):
    listed(publisher)
    report(client_of(buyers[0]), PUBLISHER, target_type="publisher")
    mod = client_of(moderator)
    for path in ("dataset/12%00", "dataset/" + "9" * 30, "publisher/0xnope", "order/1"):
        assert mod.get(f"/api/v1/moderation/reports/{path}").status_code == 404
        assert mod.get(f"/moderation/reports/{path}").status_code == 404
        assert close(mod, *path.split("/")).status_code == 404
    detail = mod.get(f"/api/v1/moderation/reports/publisher/{PUBLISHER.lower()}").json()
    assert detail["target"]["id"] == PUBLISHER and detail["open_count"] == 1
    assert close(mod, "publisher", PUBLISHER.lower()).status_code == 200
    assert AuditEntry.objects.get(action="report.close").target_id == PUBLISHER


@pytest.mark.parametrize("written", ["http://[nope/datasets/x", "https://market.example/?publisher=0x12",
                                     "https://market.example/about", "0x" + "1" * 40])
def test_a_notice_naming_nothing_we_know_is_a_400_on_the_target(publisher, written):
    listed(publisher)
    answer = notice(Client(), written)
    assert answer.status_code == 400 and list(answer.json()["error"]["fields"]) == ["target"]


@pytest.mark.django_db(transaction=True)
def test_two_moderators_closing_one_group_at_once_close_it_once(publisher, buyers, moderator):
    import threading

    from django.db import connection

    dataset = listed(publisher)
    for buyer in buyers[:2]:
        report(client_of(buyer), dataset.slug)
    second = wallet_user("0xa0Ee7A142d267C1f36714E4a8F75612F20a79720")
    Group.objects.get(name="moderator").user_set.add(second)
    through = Report.objects.order_by("-pk").first().pk
    start, results = threading.Barrier(2), []

    def close_as(person, outcome):
        try:
            start.wait()
            closed = reports.close_group(target_type="dataset", target_id=str(dataset.pk), moderator=person,
                                         outcome=outcome, statement=f"Decided: {outcome}.", through=through)
            results.append(("closed", outcome, len(closed.reports)))
        except reports.ReportRefused as refused:
            results.append((refused.code, outcome, refused.status))
        finally:
            connection.close()

    threads = [threading.Thread(target=close_as, args=(moderator, "no_action")),
               threading.Thread(target=close_as, args=(second, "other"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(r[0] for r in results) == ["already_closed", "closed"]
    winner = next(r for r in results if r[0] == "closed")
    assert winner[2] == 2 and next(r for r in results if r[0] != "closed")[2] == 409
    entries = AuditEntry.objects.filter(action="report.close")
    assert entries.count() == 2 and {e.details["outcome"] for e in entries} == {winner[1]}
    assert set(Report.objects.values_list("outcome", flat=True)) == {winner[1]}
    assert Notification.objects.filter(kind="report.close").count() == 2


def test_a_signed_in_notifier_is_told_in_the_site_too(publisher, buyers, moderator):
    dataset = listed(publisher)
    filed = notice(client_of(buyers[0]), dataset.slug)
    assert filed.status_code == 201 and Report.objects.get().reporter == buyers[0]
    assert report(client_of(buyers[0]), dataset.slug).status_code == 201  # a notice is no open report of theirs
    assert close(client_of(moderator), dataset, outcome="other", statement="Warned the publisher.").status_code == 200
    assert Notification.objects.filter(recipient=buyers[0], kind="report.close").count() == 2
    entry = AuditEntry.objects.filter(action="report.close").order_by("id").first()
    assert entry.reporter.startswith(f"Ana Lopes <ana@example.org> / {BUYERS[0]}")


def test_the_longest_name_and_address_fit_the_audit_entry(publisher, moderator):
    dataset = listed(publisher)
    email = "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".org"
    assert len(email) <= 254
    assert notice(Client(), dataset.slug, name="N" * 120, email=email).status_code == 201
    assert close(client_of(moderator), dataset).status_code == 200
    entry = AuditEntry.objects.get(action="report.close")
    assert len(entry.reporter) == 200 and entry.reporter.startswith("N" * 120)
    assert entry.reporter.endswith(f" (report #{Report.objects.get().pk})")
    assert Report.objects.get().notifier_email == email

"""The publisher decides what the public sees of a file: by default only the schema, types, null
counts, row count and number ranges; sample rows and value distributions only when chosen (a
value seen fewer than 5 times never); a hidden column nowhere public; the uploaded file's name
only to its owner. Showing less applies at once; showing more on a public version waits for a
moderator."""
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog import preview, services
from marketplace.catalog.models import DatasetRevision, DatasetVersion
from marketplace.chain import sender
from tests.factories import make_public
from tests.integration.test_listing import (  # noqa: F401 (fixtures)
    link, publisher, publisher_client, send_approvals, send_prepared,
)
from tests.integration.test_revisions import anonymous, decide, moderator_client, open_revision  # noqa: F401

pytestmark = pytest.mark.django_db
OWNER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
COLUMNS = [
    {"name": "city", "type": "string", "duckdb_type": "VARCHAR", "null_count": 0, "distinct_count": 3,
     "min": "Annecy", "max": "Lyon", "top_values": [{"value": "Lyon", "count": 40}, {"value": "Annecy", "count": 4}]},
    {"name": "population", "type": "integer", "duckdb_type": "BIGINT", "null_count": 1, "distinct_count": 44,
     "min": 120, "max": 516092, "mean": 20511.5,
     "histogram": [{"start": 120, "end": 1000, "count": 30}, {"start": 1000, "end": 516092, "count": 2}]},
    {"name": "email", "type": "string", "duckdb_type": "VARCHAR", "null_count": 0, "distinct_count": 45,
     "min": "a@example.com", "max": "z@example.com", "top_values": []},
]
SAMPLE = [{"city": "Lyon", "population": 516092, "email": "mayor@lyon.example"},
          {"city": "Annecy", "population": 130721, "email": "contact@annecy.example"}]


@pytest.fixture
def owner(db):
    return wallet_user(OWNER)


@pytest.fixture
def owner_client(client, owner):
    from django.test import Client

    signed_in = Client()
    signed_in.force_login(owner)
    return signed_in


def version(owner, **choice):
    dataset = services.create_dataset(owner=owner, title="French cities", license="CC-BY-4.0")
    created = DatasetVersion.objects.create(
        dataset=dataset, number=1, file="x/1.csv", original_name="mairies-export-2026.csv", format="csv", size=10,
        content_hash="0x" + "cd" * 32, price=5_000_000, token=TOKEN, analysis_status="done", row_count=45,
        columns=COLUMNS, sample=SAMPLE, **choice)
    return make_public(created)


def public_version(client, v):
    body = client.get(f"/api/v1/datasets/{v.dataset.slug}").json()
    (shown,) = body["versions"]
    return shown


def test_by_default_the_public_sees_the_schema_and_number_ranges_only(client, owner, owner_client):
    v = version(owner)
    shown = public_version(client, v)
    assert shown["sample"] == []
    assert shown["columns"] == [
        {"name": "city", "type": "string", "duckdb_type": "VARCHAR", "null_count": 0},
        {"name": "population", "type": "integer", "duckdb_type": "BIGINT", "null_count": 1, "min": 120,
         "max": 516092},
        {"name": "email", "type": "string", "duckdb_type": "VARCHAR", "null_count": 0},
    ], "no text ranges (they are values), no distinct counts, means, histograms or top values"
    assert "original_name" not in shown and "review" not in shown
    assert shown["preview"] == {"hidden_columns": [], "show_sample": False, "show_distributions": False}

    page = client.get(f"/datasets/{v.dataset.slug}").content.decode()
    assert "mayor@lyon.example" not in page and "Annecy" not in page and "mairies-export" not in page
    assert "516,092" in page  # the range of a number column

    mine = public_version(owner_client, v)
    assert mine["original_name"] == "mairies-export-2026.csv" and mine["sample"] == SAMPLE
    assert mine["columns"] == COLUMNS


def test_chosen_distributions_never_show_a_value_seen_fewer_than_5_times(client, owner):
    v = version(owner, show_distributions=True, show_sample=True)
    city, population, _ = public_version(client, v)["columns"]
    # Annecy, seen 4 times, is left out. The 45 rows less Lyon's 40 leave 5 for two values (a third
    # city is seen once): no count of either is known, and how many there are is not shown either.
    assert city["top_values"] == [{"value": "Lyon", "count": 40}] and "distinct_count" not in city
    assert population["histogram"] == [{"start": 120, "end": 1000, "count": 30},
                                       {"start": 1000, "end": 516092, "count": None}]
    assert "mean" not in population, "with the bins, the mean would solve for a withheld count"
    assert "min" not in city, "a text column's range is a value: never shown"
    assert public_version(client, v)["sample"] == SAMPLE
    page = client.get(f"/datasets/{v.dataset.slug}").content.decode()
    assert "fewer than 5" in page and ">Annecy<" not in page.replace("Annecy</td>", "")


def test_an_empty_histogram_bin_looks_like_one_seen_1_to_4_times(client, owner, owner_client):
    # One bin per value: a bin's count of 0 next to "fewer than 5" would tell which rare values
    # exist (here: that some row has 2, none has 3).
    days = {"name": "children", "type": "integer", "duckdb_type": "BIGINT", "null_count": 0, "min": 1, "max": 4,
            "histogram": [{"start": 1, "end": 2, "count": 40}, {"start": 2, "end": 3, "count": 1},
                          {"start": 3, "end": 4, "count": 0}, {"start": 4, "end": 5, "count": 4}]}
    v = version(owner, show_distributions=True)
    DatasetVersion.objects.filter(pk=v.pk).update(columns=[days])
    (shown,) = public_version(client, v)["columns"]
    assert shown["histogram"] == [{"start": 1, "end": 2, "count": 40}, {"start": 2, "end": 3, "count": None},
                                  {"start": 3, "end": 4, "count": None}, {"start": 4, "end": 5, "count": None}]
    page = client.get(f"/datasets/{v.dataset.slug}").content.decode()
    assert '<title>2 – 3: fewer than 5</title>' in page and '<title>3 – 4: fewer than 5</title>' in page
    assert public_version(owner_client, v)["columns"] == [days], "the owner sees every count"


def test_a_hidden_column_is_absent_from_everything_public(client, owner, settings, tmp_path):
    v = version(owner, show_sample=True, show_distributions=True, hidden_columns=["email"])
    shown = public_version(client, v)
    assert [c["name"] for c in shown["columns"]] == ["city", "population"]
    assert all("email" not in row for row in shown["sample"])
    assert shown["preview"]["hidden_columns"] == [], "not even its name"
    page = client.get(f"/datasets/{v.dataset.slug}").content.decode()
    assert "email" not in page and "mayor@lyon.example" not in page


def test_showing_less_applies_at_once_showing_more_waits_for_review(client, owner, owner_client):
    v = version(owner, show_sample=True)
    url = f"/api/v1/datasets/{v.dataset.slug}/versions/1/preview"
    less = owner_client.patch(url, {"hidden_columns": ["email"], "show_sample": False},
                              content_type="application/json")
    assert less.status_code == 200 and less.json()["waiting"] is None
    assert public_version(client, v)["sample"] == []
    assert [c["name"] for c in public_version(client, v)["columns"]] == ["city", "population"]

    more = owner_client.patch(url, {"show_sample": True, "show_distributions": True},
                              content_type="application/json")
    assert more.status_code == 200
    waiting = more.json()["waiting"]
    assert waiting["kind"] == "preview" and waiting["changes"] == {
        "hidden_columns": ["email"], "show_sample": True, "show_distributions": True}
    assert public_version(client, v)["sample"] == [], "showing more waits"
    assert public_version(owner_client, v)["proposed_preview"]["show_sample"] is True

    # A pure reduction while something waits withdraws what waited.
    owner_client.patch(url, {"show_sample": False, "show_distributions": False}, content_type="application/json")
    revision = DatasetRevision.objects.get(pk=waiting["id"])
    assert revision.status == "superseded"

    again = owner_client.patch(url, {"show_sample": True}, content_type="application/json").json()["waiting"]
    from marketplace.catalog import revisions

    moderator = wallet_user("0x" + "77" * 20)
    revisions.decide(DatasetRevision.objects.get(pk=again["id"]), decision="approve", moderator=moderator)
    assert public_version(client, v)["sample"] == [{"city": "Lyon", "population": 516092},
                                                 {"city": "Annecy", "population": 130721}]


def test_before_approval_a_preview_change_applies_as_it_is(owner, owner_client):
    dataset = services.create_dataset(owner=owner, title="Draft cities", license="CC-BY-4.0")
    draft = DatasetVersion.objects.create(
        dataset=dataset, number=1, file="x/2.csv", original_name="d.csv", format="csv", size=10,
        content_hash="0x" + "ce" * 32, price=5_000_000, token=TOKEN, columns=COLUMNS, sample=SAMPLE)
    answer = owner_client.patch(f"/api/v1/datasets/{dataset.slug}/versions/1/preview",
                                {"show_sample": True, "show_distributions": True}, content_type="application/json")
    assert answer.status_code == 200 and answer.json()["waiting"] is None
    draft.refresh_from_db()
    assert draft.show_sample and draft.show_distributions


@pytest.mark.parametrize("body, field", [
    ({"hidden_columns": ["no_such_column"]}, "unknown_column"),
    ({"show_sample": "sometimes"}, "invalid"),
    ({"hidden_columns": "email"}, "invalid"),
])
def test_preview_choices_are_checked(owner, owner_client, body, field):
    v = version(owner)
    answer = owner_client.patch(f"/api/v1/datasets/{v.dataset.slug}/versions/1/preview", body,
                                content_type="application/json")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == field


def test_only_the_owner_chooses_the_preview(client, owner):
    v = version(owner)
    stranger = wallet_user("0x" + "66" * 20)
    client.force_login(stranger)
    answer = client.patch(f"/api/v1/datasets/{v.dataset.slug}/versions/1/preview", {"show_sample": True},
                          content_type="application/json")
    assert answer.status_code == 403
    v.refresh_from_db()
    assert v.show_sample is False


@pytest.mark.parametrize("query, expected", [
    ("", preview.PreviewSettings()),
    ("&show_sample=true&show_distributions=1&hidden_columns=email,%20phone",
     preview.PreviewSettings(("email", "phone"), True, True)),
])
def test_the_choice_is_made_at_upload(owner_client, owner, query, expected, settings, tmp_path):
    dataset = services.create_dataset(owner=owner, title="Uploaded cities", license="CC-BY-4.0")
    answer = owner_client.post(
        f"/api/v1/datasets/{dataset.slug}/versions?filename=cities.csv&price=1000000&token={TOKEN}{query}",
        b"city,population\nLyon,516092\n", content_type="application/octet-stream")
    assert answer.status_code == 201, answer.json()
    assert preview.PreviewSettings.of(DatasetVersion.objects.get(dataset=dataset)) == expected


def test_an_invalid_choice_at_upload_is_refused(owner_client, owner):
    dataset = services.create_dataset(owner=owner, title="Uploaded cities", license="CC-BY-4.0")
    answer = owner_client.post(
        f"/api/v1/datasets/{dataset.slug}/versions?filename=cities.csv&price=1000000&token={TOKEN}&show_sample=maybe",
        b"city\nLyon\n", content_type="application/octet-stream")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_show_sample"
    assert not DatasetVersion.objects.exists()


# Hidden names and the file's columns ---------------------------------------------------------------

PEOPLE = b"id,SSN,Email\n" + b"".join(b"%d,123-45-%04d,p%d@example.com\n" % (i, i, i) for i in range(1, 8))


def test_a_hidden_name_hides_its_column_whatever_its_case_and_surrounding_spaces(client, owner):
    v = version(owner, show_sample=True, show_distributions=True, hidden_columns=["CITY", "EMAIL "])
    DatasetVersion.objects.filter(pk=v.pk).update(
        columns=[{**COLUMNS[0], "name": " city "}, *COLUMNS[1:]],
        sample=[{" city " if k == "city" else k: value for k, value in row.items()} for row in SAMPLE])
    shown = public_version(client, v)
    assert [c["name"] for c in shown["columns"]] == ["population"]
    assert shown["sample"] == [{"population": 516092}, {"population": 130721}]


def upload_people(client, chain, hidden):
    slug = client.post("/api/v1/datasets", {"title": "People", "license": "CC-BY-4.0"},
                       content_type="application/json").json()["slug"]
    uploaded = client.post(
        f"/api/v1/datasets/{slug}/versions?filename=people.csv&price=1000000&token={chain.token.address}"
        f"&hidden_columns={hidden}&show_sample=true&show_distributions=true",
        data=PEOPLE, content_type="application/octet-stream")
    assert uploaded.status_code == 201, uploaded.json()
    return DatasetVersion.objects.get(dataset__slug=slug)


@pytest.mark.chain
def test_after_analysis_the_hidden_names_are_the_files_and_the_moderator_sees_those(
        chain, publisher_client, moderator_client, anonymous):
    """The publisher hides `email,ssn`; the file says `SSN` and `Email`. Until the analysis has
    matched them the version cannot be approved; after it, its review shows the file's names, and
    nothing of those columns is public."""
    version = upload_people(publisher_client, chain, "email,ssn")
    assert link(publisher_client, version, send_prepared(chain, publisher_client, version)).status_code == 201
    assert decide(moderator_client, open_revision(version.dataset, "details"), "approve").status_code == 200
    early = decide(moderator_client, open_revision(version.dataset, "version"), "approve")
    assert early.status_code == 409 and early.json()["error"]["code"] == "decision_refused"
    assert "still being analysed" in early.json()["error"]["message"]

    services.analyse_version(version.pk)  # what the worker's task runs
    version.refresh_from_db()
    assert version.hidden_columns == ["Email", "SSN"]
    revision = open_revision(version.dataset, "version")
    assert revision.changes["preview"]["hidden_columns"] == ["Email", "SSN"], "the moderator sees the file's names"
    assert decide(moderator_client, revision, "approve").status_code == 200
    send_approvals(chain)

    public = anonymous.get(f"/api/v1/datasets/{version.dataset.slug}").json()
    (shown,) = public["versions"]
    assert [c["name"] for c in shown["columns"]] == ["id"]
    assert shown["sample"] == [{"id": i} for i in range(1, 8)]
    page = anonymous.get(f"/datasets/{version.dataset.slug}").content.decode()
    assert "p1@example.com" not in page and "123-45-0001" not in page and "Email" not in page


@pytest.mark.chain
def test_a_hidden_name_that_matches_no_column_keeps_the_version_from_approval(
        chain, publisher_client, moderator_client, anonymous):
    """The publisher hides `e_mail` (a typo): the version is not approved, the owner is told which
    name matches nothing, and choosing again puts the corrected preview up for review."""
    version = upload_people(publisher_client, chain, "e_mail,ssn")
    services.analyse_version(version.pk)
    version.refresh_from_db()
    assert version.hidden_columns == ["SSN", "e_mail"]
    assert link(publisher_client, version, send_prepared(chain, publisher_client, version)).status_code == 201
    assert decide(moderator_client, open_revision(version.dataset, "details"), "approve").status_code == 200
    refused = decide(moderator_client, open_revision(version.dataset, "version"), "approve")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "decision_refused"
    assert "'e_mail'" in refused.json()["error"]["message"]
    version.refresh_from_db()
    assert version.review == "pending"

    slug = version.dataset.slug
    (mine,) = publisher_client.get(f"/api/v1/datasets/{slug}").json()["versions"]
    assert mine["unmatched_hidden_columns"] == ["e_mail"]
    edit_page = publisher_client.get(f"/me/datasets/{slug}/edit").content.decode()
    assert "data-unmatched-hidden" in edit_page and "<code>e_mail</code>" in edit_page

    url = f"/api/v1/datasets/{slug}/versions/1/preview"
    kept = publisher_client.patch(url, {"show_sample": False}, content_type="application/json")
    assert kept.status_code == 400 and kept.json()["error"]["message"] == "No column named e_mail in version 1."
    fixed = publisher_client.patch(url, {"hidden_columns": ["ssn", " EMAIL"]}, content_type="application/json")
    assert fixed.status_code == 200, fixed.json()
    assert fixed.json()["version"]["unmatched_hidden_columns"] == []
    assert fixed.json()["version"]["preview"]["hidden_columns"] == ["Email", "SSN"]
    assert decide(moderator_client, open_revision(version.dataset, "version"), "approve").status_code == 200
    send_approvals(chain)
    (shown,) = anonymous.get(f"/api/v1/datasets/{slug}").json()["versions"]
    assert [c["name"] for c in shown["columns"]] == ["id"]

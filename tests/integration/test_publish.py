"""Publishing: a signed-in wallet creates a dataset, uploads a file streamed to private storage
(hashed, sniffed, size-limited), and a real worker analyses it with DuckDB. Bad input gets a
clear 4xx and leaves no file and no row behind."""
import hashlib
from pathlib import Path

from django.core.files.storage import storages
import pytest

from marketplace.accounts.models import User
from marketplace.accounts.services import wallet_user
from marketplace.catalog.models import Dataset, DatasetVersion
from tests.conftest import wait_until

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CSV = b"city,year,population\nParis,2020,2148000\nLyon,2020,516000\nNice,2021,342000\n"


@pytest.fixture
def owner(db):
    return wallet_user(ADDRESS)


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


def create(client, **overrides):
    body = {"title": "French cities", "summary": "Population of cities", "license": "CC-BY-4.0",
            "description": "# Cities\nCounted by **INSEE**.", "tags": ["Cities", "france", "cities"], **overrides}
    return client.post("/api/v1/datasets", body, content_type="application/json")


def upload(client, slug, content, filename="cities.csv", price="25000000"):
    return client.post(
        f"/api/v1/datasets/{slug}/versions?filename={filename}&price={price}&token={TOKEN}",
        data=content, content_type="application/octet-stream",
    )


def stored_files():
    root = Path(storages["private"].location)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_create_renders_sanitised_markdown_and_normalises_tags(owner_client):
    response = create(owner_client, description="Hi <script>alert(1)</script> [x](javascript:alert(1)) **bold**")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "draft" and body["owner"] == ADDRESS and body["payout_address"] == ADDRESS
    assert body["tags"] == ["cities", "france"]
    html = body["description_html"]
    assert "<script" not in html and "&lt;script&gt;" in html  # shown as text, never run
    assert 'href="javascript' not in html
    assert "<strong>bold</strong>" in body["description_html"]


def test_creating_needs_a_signed_in_wallet(client, db):
    response = create(client)
    assert response.status_code == 403
    assert response.json()["error"] == {"code": "not_signed_in", "message": "Sign in with your wallet first."}


@pytest.mark.parametrize(
    "overrides, field",
    [({"license": "WTFPL-9"}, "license"), ({"category": "nope"}, "category"), ({"payout_address": "0x12"}, "payout_address"),
     ({"title": ""}, "title")],
)
def test_invalid_fields_are_named(owner_client, overrides, field):
    response = create(owner_client, **overrides)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_only_the_owner_edits_or_uploads(client, owner_client, db):
    slug = create(owner_client).json()["slug"]
    stranger = User.objects.create(username="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
                                   address="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
    client.force_login(stranger)
    assert client.patch(f"/api/v1/datasets/{slug}", {"title": "Mine"}, content_type="application/json").status_code == 404
    Dataset.objects.filter(slug=slug).update(status=Dataset.Status.LISTED)
    edit = client.patch(f"/api/v1/datasets/{slug}", {"title": "Mine"}, content_type="application/json")
    assert edit.status_code == 403 and edit.json()["error"]["code"] == "not_owner"
    assert upload(client, slug, CSV).status_code == 403
    assert Dataset.objects.get(slug=slug).title == "French cities"


def test_owner_edits_and_the_description_is_rerendered(owner_client):
    slug = create(owner_client).json()["slug"]
    response = owner_client.patch(f"/api/v1/datasets/{slug}", {"description": "*new*"}, content_type="application/json")
    assert response.status_code == 200 and "<em>new</em>" in response.json()["description_html"]


@pytest.mark.parametrize(
    "content, filename, code, status",
    [
        (b"", "cities.csv", "empty_file", 400),
        (b"PAR1\x00\x00binary", "cities.csv", "content_mismatch", 415),
        (b"city,year\nParis,2020\n", "cities.parquet", "content_mismatch", 415),
        (b"not json\n", "cities.jsonl", "content_mismatch", 415),
        (b"a,b\n1,2\n", "noextension", "unknown_format", 400),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(owner_client, settings, content, filename, code, status):
    slug = create(owner_client).json()["slug"]
    before = stored_files()
    response = upload(owner_client, slug, content, filename)
    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code
    assert not DatasetVersion.objects.exists()
    assert stored_files() == before
    assert not list(Path(settings.UPLOAD_TMP_DIR).glob("upload-*"))


def test_upload_over_the_limit_is_refused(owner_client, settings):
    settings.MAX_UPLOAD_SIZE = 40
    slug = create(owner_client).json()["slug"]
    response = upload(owner_client, slug, CSV)
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert not DatasetVersion.objects.exists()


@pytest.mark.parametrize("price", ["0", "-5", "abc", "1.5e400x", "1e999999999", "1.9", "25000000.0", "0x10",
                                   " 25", "025", str(2**88)])
def test_a_price_is_digits_only_up_to_the_contract_maximum(owner_client, price):
    slug = create(owner_client).json()["slug"]
    response = upload(owner_client, slug, CSV, price=price)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_price"
    assert "whole digits" in response.json()["error"]["message"]
    assert not DatasetVersion.objects.exists()


@pytest.mark.parametrize("token", ["0x1234", "", "0x" + "zz" * 20, TOKEN + "00"])
def test_a_token_must_be_an_address(owner_client, token):
    slug = create(owner_client).json()["slug"]
    response = owner_client.post(f"/api/v1/datasets/{slug}/versions?filename=a.csv&price=1&token={token}",
                                 data=CSV, content_type="application/octet-stream")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_token"
    assert not DatasetVersion.objects.exists()


def test_the_highest_price_the_contract_takes_is_accepted(owner_client):
    slug = create(owner_client).json()["slug"]
    response = upload(owner_client, slug, CSV, price=str(2**88 - 1))
    assert response.status_code == 201, response.json()
    assert response.json()["price"] == str(2**88 - 1)


@pytest.mark.parametrize("filename, code", [
    ("cities\x00.csv", "invalid_filename"),
    ("cit\nies.csv", "invalid_filename"),
    ("../cities.csv", "invalid_filename"),
    ("dir\\cities.csv", "invalid_filename"),
    ("x" * 300 + ".csv", "invalid_filename"),
    ("cities.c\u00e9", "unknown_format"),
    (".csv", "unknown_format"),
])
def test_a_bad_file_name_is_a_400_and_stores_nothing(owner_client, settings, filename, code):
    from urllib.parse import quote

    slug = create(owner_client).json()["slug"]
    before = stored_files()
    response = owner_client.post(f"/api/v1/datasets/{slug}/versions?filename={quote(filename)}&price=1&token={TOKEN}",
                                 data=CSV, content_type="application/octet-stream")
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]
    assert not DatasetVersion.objects.exists() and stored_files() == before
    assert not list(Path(settings.UPLOAD_TMP_DIR).glob("upload-*"))


def test_someone_else_s_draft_is_a_404_to_an_uploader(client, owner_client, db):
    slug = create(owner_client).json()["slug"]
    stranger = User.objects.create(username="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
                                   address="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
    client.force_login(stranger)
    response = upload(client, slug, CSV)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert not DatasetVersion.objects.exists()


def test_stored_files_and_their_folders_are_owner_only(owner_client):
    slug = create(owner_client).json()["slug"]
    before = stored_files()
    assert upload(owner_client, slug, CSV).status_code == 201
    (stored,) = set(stored_files()) - set(before)
    assert stored.stat().st_mode & 0o777 == 0o600
    root = Path(storages["private"].location)
    for folder in stored.relative_to(root).parents:
        if folder != Path("."):
            assert (root / folder).stat().st_mode & 0o777 == 0o700, folder


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_upload_is_hashed_stored_privately_and_analysed_by_the_worker(owner_client, celery_worker):
    slug = create(owner_client).json()["slug"]
    response = upload(owner_client, slug, CSV)
    assert response.status_code == 201, response.json()
    version = response.json()
    assert version["number"] == 1 and version["format"] == "csv" and version["size"] == len(CSV)
    assert version["content_hash"] == "0x" + hashlib.sha256(CSV).hexdigest()
    assert version["price"] == "25000000"
    stored = DatasetVersion.objects.get()
    with storages["private"].open(stored.file, "rb") as handle:
        assert handle.read() == CSV

    def analysed():
        stored.refresh_from_db()
        return stored.analysis_status in ("done", "done_with_rejects", "failed")

    assert wait_until(analysed, timeout=60), celery_worker.output()
    assert stored.analysis_status == "done", stored.analysis_message
    assert stored.row_count == 3
    assert [c["name"] for c in stored.columns] == ["city", "year", "population"]
    assert stored.sample[0]["city"] == "Paris"
    detail = owner_client.get(f"/api/v1/datasets/{slug}").json()
    assert detail["versions"][0]["row_count"] == 3


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_ragged_csv_ends_in_a_visible_state_with_the_reason(owner_client, celery_worker):
    slug = create(owner_client).json()["slug"]
    ragged = b"a,b,c\n1,2,3\n4,5\n6,7,8,9,10\n" + b"".join(b"%d,%d,%d\n" % (i, i, i) for i in range(50))
    assert upload(owner_client, slug, ragged).status_code == 201
    version = DatasetVersion.objects.get()
    assert wait_until(lambda: DatasetVersion.objects.get(pk=version.pk).analysis_status
                      in ("done_with_rejects", "failed"), timeout=60), celery_worker.output()
    version.refresh_from_db()
    assert version.analysis_message, "the page must be able to say why"
    if version.analysis_status == "done_with_rejects":
        assert version.rejected_rows >= 1 and "rejected" in version.analysis_message


def test_drafts_are_hidden_from_others(client, owner_client):
    slug = create(owner_client).json()["slug"]
    client.logout()
    assert client.get(f"/api/v1/datasets/{slug}").status_code == 404


def test_a_browser_upload_with_the_csrf_token_is_accepted(owner, db):
    """As the page sends it: session cookie, the CSRF token the page set, raw file body."""
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    assert "csrftoken" not in browser.cookies
    page = browser.get("/me/datasets/new")
    assert page.status_code == 200
    token = page.cookies["csrftoken"].value  # what the page's script sends (wallet.js, pages.js)
    slug = browser.post("/api/v1/datasets", {"title": "T", "license": "MIT"}, content_type="application/json",
                        HTTP_X_CSRFTOKEN=token).json()["slug"]
    response = browser.post(f"/api/v1/datasets/{slug}/versions?filename=a.csv&price=1000000&token={TOKEN}", data=CSV,
                            content_type="application/octet-stream", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.json()
    without = browser.post(f"/api/v1/datasets/{slug}/versions?filename=a.csv&price=1000000&token={TOKEN}", data=CSV,
                           content_type="application/octet-stream")
    assert without.status_code == 403 and without.json()["error"]["code"] == "permission_denied"
    forged = browser.post(f"/api/v1/datasets/{slug}/versions?filename=a.csv&price=1000000&token={TOKEN}", data=CSV,
                          content_type="application/octet-stream", HTTP_X_CSRFTOKEN="x" * 32)
    assert forged.status_code == 403  # a token the page did not give
    assert DatasetVersion.objects.count() == 1


def test_images_in_descriptions_are_dropped(owner_client):
    response = create(owner_client, description='Look: ![chart](https://tracker.example/p.png "t") and '
                                                '<img src="https://tracker.example/x.png">')
    html = response.json()["description_html"]
    assert "<img" not in html and "tracker.example/p.png" not in html
    assert "Look:" in html and "&lt;img" in html  # raw HTML is shown as text, never as an image


def test_stored_html_is_rerendered_without_images(owner):
    """What was rendered before images were dropped is rendered again (migration 0004)."""
    from importlib import import_module

    from django.apps import apps

    from marketplace.catalog import services

    dataset = services.create_dataset(owner=owner, title="Old", license="MIT", description="![x](https://t.example/a.png) **b**")
    Dataset.objects.filter(pk=dataset.pk).update(description_html='<p><img src="https://t.example/a.png" alt="x"> '
                                                                  '<strong>b</strong></p>')
    import_module("marketplace.catalog.migrations.0005_rerender_descriptions").rerender(apps, None)
    html = Dataset.objects.get(pk=dataset.pk).description_html
    assert html == services.render_markdown(dataset.description)
    assert "<img" not in html and "<strong>b</strong>" in html

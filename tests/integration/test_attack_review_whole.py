"""Attacks found by a security review of the whole catalog-hardening change (a second review, after
test_attack_review.py's): each test is a concrete sequence that broke a guarantee before it was
fixed (the docstrings tell the sequence)."""
import gzip
import json
import re

import pytest

from marketplace.catalog import demo, preview, revisions
from marketplace.catalog.models import Dataset, DatasetRevision, DatasetVersion
from marketplace.chain import sender
from tests.integration.test_listing import (  # noqa: F401 (fixtures)
    link, make_version, publisher, publisher_client, send_approvals, send_prepared, staff_client,
)
from tests.integration.test_revisions import anonymous, decide, moderator_client, open_revision  # noqa: F401


@pytest.mark.chain
def test_a_confirmation_page_shown_while_analysing_approves_columns_and_rows_nobody_saw(
        chain, publisher, publisher_client, moderator_client, staff_client, anonymous):
    """Finding 1. Publisher lists v1 (sample rows chosen, nothing hidden) before its analysis has
    ended. Moderator: Approve in the revision admin; the confirmation page says "analysis:
    analysing; no public column; 0 sample rows public". The analysis ends (the file has an
    `email` column). Moderator: confirms the page. The approval goes through (the analysis has
    ended by then), and the public sees a column and e-mail addresses no moderator was shown."""
    from tests.integration.test_preview import COLUMNS, SAMPLE

    version = make_version(publisher, chain)
    DatasetVersion.objects.filter(pk=version.pk).update(analysis_status="running", show_sample=True)
    assert link(publisher_client, version, send_prepared(chain, publisher_client, version)).status_code == 201
    dataset = version.dataset
    assert decide(moderator_client, open_revision(dataset, "details"), "approve").status_code == 200
    waiting = open_revision(dataset, "version")

    queue = "/admin/catalog/datasetrevision/"
    data = {"action": "approve", "_selected_action": [str(waiting.pk)], "index": "0"}
    page = staff_client.post(queue, data).content.decode()
    assert "analysis: analysing" in page and "no public column" in page and "0 sample rows public" in page
    shown = re.findall(r'name="revision" value="(\d+)"', page)

    # The worker finishes the analysis while the page is open (services.analyse_version's write).
    revisions.record_analysis(version.pk, analysis_status="done", row_count=45, columns=COLUMNS, sample=SAMPLE)
    staff_client.post(queue, {**data, "confirmed": "1", "revision": shown})
    send_approvals(chain)
    assert DatasetRevision.objects.get(pk=waiting.pk).status == "superseded"
    renewed = open_revision(dataset, "version")
    assert renewed.pk != waiting.pk and renewed.changes == waiting.changes and renewed.listings == waiting.listings

    public = json.dumps(anonymous.get(f"/api/v1/datasets/{dataset.slug}").json())
    assert "mayor@lyon.example" not in public, "sample rows the confirmation page never showed are public"


@pytest.mark.chain
def test_a_listing_in_another_allowed_token_is_advertised_in_the_versions_token(
        chain, publisher, publisher_client, moderator_client, anonymous):
    """Finding 5. The market allows a second token (an admin's setTokenAllowed). Publisher: upload
    v1 (token: test USDC), then createListing(otherToken, 25000000, ...) from the wallet instead
    of the prepared transaction, and POST its hash: linked (only "allowed" is checked, not the
    version's token). The moderator's revision names listing id and content hash only. Once
    approved, the API answers `token` = test USDC beside the listing's price (search hits too,
    and the page prints "25 USDC"): buyers are shown one currency and charged in another."""
    from marketplace.chain.services import deploy_contract
    from tests.integration.test_listing import PUBLISHER, create_listing

    other = deploy_contract(chain.w3, "TestUSDC", [chain.operator.address]).address
    chain.market.set_token_allowed(other, True, True)
    version = make_version(publisher, chain)
    tx_hash = create_listing(chain, PUBLISHER, version.content_hash, token=other)
    response = link(publisher_client, version, tx_hash)
    assert response.status_code == 400 and response.json()["error"]["code"] == "token_mismatch", response.content
    assert other in response.json()["error"]["message"] and not version.listings.exists()
    # The same listing in the version's own token links.
    tx_hash = create_listing(chain, PUBLISHER, version.content_hash)
    assert link(publisher_client, version, tx_hash).status_code == 201


def test_a_preview_revision_left_open_by_a_chain_reset_unhides_a_column_hidden_since(db):
    """Finding 7. v1 is public (nothing hidden, no sample). Publisher: PATCH .../preview
    {"show_sample": true} -> a preview revision P waits. The chain is reset: the version goes back
    to pending and its version revision closes, but P stays open. Publisher: PATCH .../preview
    {"hidden_columns": ["email"]} (applied at once, the version being unapproved; P untouched),
    relists, and the relisting is approved. A moderator then approves P, still in the queue:
    P's settings (nothing hidden) replace the publisher's current ones and `email` is public."""
    from django.contrib.auth import get_user_model

    from marketplace.accounts.services import wallet_user
    from marketplace.chain.services import forget_chain
    from tests.factories import make_public
    from tests.integration.test_preview import OWNER, version as public_version

    owner = wallet_user(OWNER)
    v = public_version(owner)
    waiting = revisions.change_preview(v, preview.PreviewSettings(show_sample=True), by=owner).revision
    assert waiting.kind == "preview" and waiting.status == "pending"

    forget_chain(31337)
    v.refresh_from_db()
    assert v.review == "pending"
    asked = revisions.proposed_preview(v).to_json() | {"hidden_columns": ["email"]}  # what the API merges
    revisions.change_preview(v, preview.PreviewSettings.from_json(asked), by=owner)
    make_public(v)  # relisted; its new version revision approved as shown
    moderator = get_user_model().objects.create_user("mod", is_staff=True)
    try:
        revisions.decide(DatasetRevision.objects.get(pk=waiting.pk), decision="approve", moderator=moderator)
    except (revisions.StaleDecision, revisions.DecisionRefused):
        pass
    v.refresh_from_db()
    public = [c["name"] for c in preview.public_columns(v)]
    assert "email" not in public, f"the publisher hid email after P; P's approval made it public: {public}"


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_the_demo_seed_approves_text_anyone_wrote_while_it_ran(chain, settings, monkeypatch):
    """Finding 2. The demo publishers sign with anvil's public dev keys. While `seed_demo_catalog`
    runs (it lists, then analyses every file for about a minute, then approves), anyone signed
    in as demo publisher 1 PATCHes a dataset's title and description. approve_revisions then
    approves every open details revision of a dataset without published_at, the stranger's
    included: the demo moderator publishes text nobody reviewed."""
    original = demo.analyse_all

    def analyse_all_while_someone_edits(versions, **kwargs):
        dataset = Dataset.objects.order_by("pk").first()
        revisions.edit_dataset(dataset, by=dataset.owner, title="SCAM: send USDC to 0xdead",
                               description="Pay 0xdead first.")  # what PATCH /api/v1/datasets/<slug> runs
        return original(versions, **kwargs)

    monkeypatch.setattr(demo, "analyse_all", analyse_all_while_someone_edits)
    demo.seed(limit=2, log=lambda m: None)
    dataset = Dataset.objects.order_by("pk").first()
    assert dataset.status == "listed"
    assert dataset.title != "SCAM: send USDC to 0xdead", "the demo moderator approved a stranger's text"


def test_a_hidden_name_matched_without_case_hides_another_column_than_the_one_named(db, tmp_path):
    """Finding 6. A CSV whose header is `email,Email,city` (two columns the publisher tells apart
    by case). Upload with `?hidden_columns=Email&show_sample=true`: DuckDB renames the second
    column `Email_1`; the case-insensitive match makes "Email" hide `email` instead, stores the
    hidden name as `email`, and reports nothing unmatched, so the version is approvable. The
    public sample shows every value of the column the publisher named."""
    from marketplace.catalog.analysis import analyse, to_json

    path = tmp_path / "people.csv"
    path.write_text("email,Email,city\nlist@a.example,private@b.example,Lyon\n")
    data = to_json(analyse(path, "csv"))
    names = [c["name"] for c in data["columns"]]
    version = DatasetVersion(row_count=1, columns=data["columns"], sample=data["sample"],
                             hidden_columns=["Email"], show_sample=True)
    matched, unmatched = preview.match_hidden(["Email"], names)
    assert not preview.unmatched_hidden(version), "nothing tells the publisher or the moderator"
    version.hidden_columns = [*matched, *unmatched]  # what hide_as_the_file_names stores
    public = json.dumps([preview.public_columns(version), preview.public_sample(version)])
    assert "private@b.example" not in public, f"{names} with 'Email' hidden shows: {public}"


def test_a_count_below_5_is_the_total_less_the_counts_shown(db):
    """Finding 3. show_distributions on a 1,000-row file with a boolean `hiv_positive` column
    (3 true) and a small-integer `children` column (value 7 seen twice): the public sees
    row_count, null_count and every other count, so the hidden ones are a subtraction away."""
    columns = [
        {"name": "hiv_positive", "type": "boolean", "duckdb_type": "BOOLEAN", "null_count": 0, "distinct_count": 2,
         "top_values": [{"value": False, "count": 997}, {"value": True, "count": 3}]},
        {"name": "children", "type": "integer", "duckdb_type": "BIGINT", "null_count": 0, "distinct_count": 10,
         "min": 0, "max": 9,
         "histogram": [{"start": n, "end": n, "count": c}
                       for n, c in enumerate([300, 250, 200, 120, 60, 30, 20, 2, 10, 8])]},
    ]
    version = DatasetVersion(row_count=1000, columns=columns, show_distributions=True)
    shown = {c["name"]: c for c in preview.public_columns(version)}
    non_null = version.row_count - shown["hiv_positive"]["null_count"]
    trues = non_null - sum(t["count"] for t in shown["hiv_positive"]["top_values"])
    sevens = non_null - sum(b["count"] or 0 for b in shown["children"]["histogram"])
    assert (trues, sevens) != (3, 2), "the counts of values seen fewer than 5 times are derivable"


def test_a_gzip_upload_is_decompressed_to_disk_past_the_analysis_temp_limit(tmp_path):
    """Finding 4. An analysis may spill temp_mb (ANALYSIS_TEMP_LIMIT_MB, 10 GB) to disk, but a gzip
    CSV or JSON Lines file is first decompressed in full into the child's directory (in /tmp) up
    to 20 times its size, outside that limit and with no free-disk check: a 5 GB upload writes
    100 GB, four worker threads 400 GB. Here a 5 MB gzip file writes 12 MB with temp_mb=1."""
    from marketplace.catalog.analysis import AnalysisFailed, Limits, Workspace

    import random

    rng = random.Random(17)
    source = tmp_path / "data.csv"
    with gzip.open(source, "wb") as out:  # digits compress about 2.5 times: within the 20x cap
        out.write(b"a,b,c\n")
        for _ in range(400_000):
            out.write(b"%d,%d,%d\n" % (rng.getrandbits(30), rng.getrandbits(30), rng.getrandbits(30)))
    limits = Limits(memory_mb=2048, cpu_seconds=60, temp_mb=1)
    (tmp_path / "work").mkdir()
    with Workspace(limits, directory=tmp_path / "work") as workspace:
        with pytest.raises(AnalysisFailed, match="more disk than one analysis may use; upload it uncompressed"):
            workspace.analyse(source, "csv")
        on_disk = sum(f.stat().st_size for f in (tmp_path / "work").rglob("*") if f.is_file())
    assert on_disk <= limits.temp_mb * 2**20, f"{on_disk:,} bytes decompressed, past temp_mb={limits.temp_mb}"

    # Within the budget the same file is analysed, and DuckDB may spill what the copy left.
    with Workspace(Limits(memory_mb=2048, cpu_seconds=60, temp_mb=64)) as workspace:
        assert workspace.analyse(source, "csv").row_count == 400_000


# From a review of the fixes above ------------------------------------------------------------


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_the_demo_leaves_a_version_whose_text_someone_edited_before_its_listing_was_linked(chain, monkeypatch):
    """The demo's dataset is edited in place (never approved) before its listing is linked; the
    snapshot the link makes holds that text, which the demo does not approve. It used to approve
    the version anyway (the dataset was already marked listed), putting the text on sale."""
    original = demo.read_listings
    edited = []

    def link_after_someone_edits(w3, sent):
        version = sent[0][0]
        edited.append(version.dataset_id)
        revisions.edit_dataset(version.dataset, by=version.dataset.owner,
                               title="SCAM: send USDC to 0xdead")
        return original(w3, sent)

    monkeypatch.setattr(demo, "read_listings", link_after_someone_edits)
    demo.seed(limit=2, log=lambda m: None)
    (edited_id,) = edited
    version = DatasetVersion.objects.get(dataset_id=edited_id)
    assert version.review == "pending" and Dataset.objects.get(pk=edited_id).published_at is None
    assert open_revision(version.dataset, "details").changes["title"] == "SCAM: send USDC to 0xdead"
    other = DatasetVersion.objects.exclude(dataset_id=edited_id).get()
    assert other.review == "approved", "the demo's own datasets are still approved"


def test_a_name_duckdb_renamed_twice_is_hidden_with_the_name_it_duplicates(db, tmp_path):
    from marketplace.catalog.analysis import analyse, to_json

    path = tmp_path / "people.csv"
    path.write_text("email_1,email,Email,city\nx@a.example,list@a.example,private@b.example,Lyon\n")
    data = to_json(analyse(path, "csv"))
    names = [c["name"] for c in data["columns"]]
    assert len(names) == 4 and "Email" not in names  # DuckDB renamed the duplicate
    version = DatasetVersion(row_count=1, columns=data["columns"], sample=data["sample"],
                             hidden_columns=["Email"], show_sample=True)
    public = json.dumps([preview.public_columns(version), preview.public_sample(version)])
    assert "private@b.example" not in public and "city" in public


def test_a_value_held_by_fewer_than_5_rows_shows_neither_its_count_nor_its_range(db):
    columns = [{"name": "diagnosis", "type": "integer", "duckdb_type": "BIGINT", "null_count": 997, "min": 7, "max": 7,
                "distinct_count": 1, "histogram": [{"start": 7, "end": 7, "count": 3}]},
               {"name": "visits", "type": "integer", "duckdb_type": "BIGINT", "null_count": 0, "min": 0, "max": 9,
                "mean": 2.1, "distinct_count": 3,
                "top_values": [{"value": 1, "count": 600}, {"value": 2, "count": 398}]}]  # and 9, twice
    version = DatasetVersion(row_count=1000, columns=columns, show_distributions=True)
    diagnosis, visits = preview.public_columns(version)
    assert diagnosis == {"name": "diagnosis", "type": "integer", "duckdb_type": "BIGINT",
                         "top_values": [], "histogram": [{"start": 7, "end": 7, "count": None}]}
    tiny = DatasetVersion(row_count=2, columns=[{**columns[0], "null_count": 0}])
    assert preview.public_columns(tiny)[0]["min"] == 7, "a 2-row file shows its ranges, as the default says"
    # The 2 rows past the counts shown are withheld with the smallest count shown.
    assert visits["top_values"] == [{"value": 1, "count": 600}]
    assert "distinct_count" not in visits and "mean" not in visits


def test_an_analysis_ending_keeps_a_moderator_s_request_for_changes(chain, publisher, publisher_client,
                                                                     moderator_client):
    version = make_version(publisher, chain)
    DatasetVersion.objects.filter(pk=version.pk).update(analysis_status="running")
    assert link(publisher_client, version, send_prepared(chain, publisher_client, version)).status_code == 201
    waiting = open_revision(version.dataset, "version")
    assert decide(moderator_client, waiting, "request_changes", reason="Say where the data comes from.").status_code == 200
    revisions.record_analysis(version.pk, analysis_status="done", row_count=1, columns=[], sample=[])
    renewed = open_revision(version.dataset, "version")
    assert renewed.pk != waiting.pk and renewed.status == "changes_requested"
    assert renewed.reason == "Say where the data comes from." and renewed.decided_by is not None
    assert DatasetRevision.objects.get(pk=waiting.pk).reason == "Say where the data comes from."

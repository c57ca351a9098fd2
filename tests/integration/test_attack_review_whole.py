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
    link, make_version, publisher, publisher_client, send_prepared, staff_client,
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
    sender.send_operator_actions()
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

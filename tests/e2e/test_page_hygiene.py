"""A signed-out visit in a real browser: no request fails (no 401 from /api/v1/auth/me), nothing
is blocked by the Content-Security-Policy, and nothing is logged as an error in the console;
the same for a signed-in visit and for the API docs and the admin's login."""
import pytest

from marketplace.catalog.indexing import SearchSync
from tests.e2e.test_catalog_pages import COLUMNS, SAMPLE, index_dir, listed, owner, sign_in_as  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.chain, pytest.mark.django_db(transaction=True)]

WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


def visit_all(page, base, paths):
    failures, console_errors = [], []
    page.on("response", lambda r: r.status >= 400 and failures.append(f"{r.status} {r.url}"))
    page.on("requestfailed", lambda r: failures.append(f"failed {r.url} {r.failure}"))
    page.on("console", lambda m: m.type == "error" and console_errors.append(f"{page.url}: {m.text}"))
    page.add_init_script(WATCH_VIOLATIONS)
    violations = []
    for path in paths:
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
        violations += page.evaluate("window.__violations")
    return failures, console_errors, violations


def test_a_signed_out_visit_makes_no_failing_request(page, live_server, chain, owner, index_dir):
    dataset = listed(owner, "Rainfall", row_count=3, analysis_status="done", columns=COLUMNS, sample=SAMPLE)
    SearchSync().rebuild()
    failures, console_errors, violations = visit_all(
        page, live_server.url, ["/", "/about", f"/datasets/{dataset.slug}", "/me/datasets",
                                "/me/profile", "/me/library", "/me/sales", "/me/agents"])
    assert failures == [] and console_errors == [] and violations == []
    assert page.locator("[data-wallet-button] span").inner_text() == "Connect wallet"


def test_a_signed_in_visit_shows_the_wallet_without_asking_the_api(page, live_server, chain, owner, index_dir):
    dataset = listed(owner, "Rainfall", row_count=3, analysis_status="done", columns=COLUMNS, sample=SAMPLE)
    SearchSync().rebuild()
    sign_in_as(page, live_server.url, owner)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    failures, console_errors, violations = visit_all(
        page, live_server.url, ["/", f"/datasets/{dataset.slug}",
                                f"/me/datasets/{dataset.slug}/edit", "/me/profile", "/me/library",
                                "/me/sales", "/me/agents"])
    assert failures == [] and console_errors == [] and violations == []
    assert not [url for url in requests if "/api/v1/auth/me" in url]
    status = page.locator("[data-wallet-status]")
    assert status.is_visible() and status.get_attribute("title") == owner.address
    assert page.locator("[data-wallet-button] span").inner_text() == "Sign out"


def test_the_api_docs_and_the_admin_run_under_the_policy(page, live_server, chain):
    failures, console_errors, violations = visit_all(page, live_server.url, ["/api/v1/docs", "/admin/login/"])
    assert failures == [] and console_errors == [] and violations == []
    page.goto(live_server.url + "/api/v1/docs")
    page.locator(".swagger-ui .opblock").first.wait_for()  # the UI rendered the schema
    assert page.locator(".swagger-ui .opblock").count() >= 16

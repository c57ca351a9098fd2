"""The API's own conventions: every answer under /api/ with an error status is the API's JSON error
body, whoever produced it and whatever DEBUG says; every status an operation can answer is in
the OpenAPI schema; DRF's `?format=` override is off; the deployment check passes."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def assert_error_body(response, status, code=None):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    error = response.json()["error"]
    assert set(error) <= {"code", "message", "fields"}
    assert error["message"], error
    if code:
        assert error["code"] == code, error
    return error


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


def test_an_unknown_api_path_is_a_json_404(client, db, debug):
    error = assert_error_body(client.get("/api/v1/no-such-thing"), 404, "not_found")
    assert "/api/v1/schema" in error["message"]
    assert_error_body(client.post("/api/v2/datasets", {}, content_type="application/json"), 404, "not_found")
    assert_error_body(client.get("/api/v1/search/"), 404, "not_found")  # no trailing-slash redirect either


def test_an_unknown_object_is_a_404_with_a_message(client, db, debug):
    assert_error_body(client.get("/api/v1/datasets/no-such-dataset"), 404, "not_found")


def test_a_method_the_endpoint_lacks_is_a_json_405_with_allow(client, db, debug):
    response = client.delete("/api/v1/search")
    assert_error_body(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]
    # A route that serves some methods only (GET .../prepare, POST .../listing), to a signed-in
    # user (DRF checks permissions before the method).
    from marketplace.accounts.services import wallet_user

    client.force_login(wallet_user("0x" + "12" * 20))
    response = client.put("/api/v1/datasets/x/versions/1/listing/prepare")
    assert_error_body(response, 405, "method_not_allowed")
    # The API docs are HTML, their errors are not.
    assert_error_body(client.post("/api/v1/docs"), 405)


def test_a_request_for_another_host_is_a_json_400(client, db, debug):
    assert_error_body(client.get("/api/v1/search", HTTP_HOST="evil.example"), 400, "bad_request")


def test_pages_keep_their_html_errors(client, db):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_a_body_that_is_not_json_is_a_415(client, db):
    response = client.post("/api/v1/auth/nonce", "address=0x" + "11" * 20,
                           content_type="application/x-www-form-urlencoded")
    assert_error_body(response, 415, "unsupported_media_type")


def test_an_empty_address_gets_no_nonce(client, db):
    error = assert_error_body(client.post("/api/v1/auth/nonce", {"address": ""}, content_type="application/json"),
                              400, "invalid")
    assert "address" in error["fields"]


@pytest.mark.parametrize("value", [12345, True, ["x"], {"a": 1}, None])
def test_a_json_value_of_another_type_is_refused(client, db, value):
    """The schema says string: DRF alone would turn 12345 and True into text."""
    error = assert_error_body(client.post("/api/v1/auth/nonce", {"address": value}, content_type="application/json"),
                              400, "invalid")
    assert "address" in error["fields"]


def schema(client):
    response = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_lists_the_statuses_each_operation_can_answer(client, db):
    paths = schema(client)["paths"]
    statuses = {(method.upper(), path): set(op["responses"]) for path, ops in paths.items() for method, op in ops.items()}
    # Bodies: invalid (400), another media type (415); signed-in only: 403; objects in the path: 404.
    assert {"201", "400", "403", "415"} <= statuses[("POST", "/api/v1/datasets")]
    assert {"200", "400", "403", "404", "415"} <= statuses[("PATCH", "/api/v1/datasets/{slug}")]
    assert {"201", "400", "403", "404", "413", "415"} <= statuses[("POST", "/api/v1/datasets/{slug}/versions")]
    assert {"201", "400", "415", "429"} <= statuses[("POST", "/api/v1/auth/nonce")]
    assert {"200", "400", "401", "403", "415", "429", "503"} <= statuses[("POST", "/api/v1/auth/sign-in")]
    assert {"200", "400", "503"} <= statuses[("GET", "/api/v1/search")]
    assert {"200", "404"} == statuses[("GET", "/api/v1/datasets/{slug}")]
    for (method, path), codes in statuses.items():
        assert "500" not in codes, (method, path)  # a 500 is a bug, never part of the contract
        for code in codes - {"200", "201", "202", "204"}:  # successes have their own bodies
            body = paths[path][method.lower()]["responses"][code]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/Error"}, (method, path, code)


def test_the_listing_responses_have_real_schemas(client, db):
    paths = schema(client)["paths"]
    base = "/api/v1/datasets/{slug}/versions/{number}/listing"
    expected = {
        (base + "/prepare", "get", "200"): "ListingPrepared",
        (base, "post", "201"): "ListingLinked",
        (base + "/update/prepare", "post", "200"): "ListingUpdatePrepared",
        (base + "/update", "post", "201"): "ListingUpdateMirrored",
    }
    components = schema(client)["components"]["schemas"]
    for (path, method, status), name in expected.items():
        body = paths[path][method]["responses"][status]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{name}"}
        assert components[name]["properties"], name
    assert components["ListingPrepared"]["properties"]["transaction"] == {"$ref": "#/components/schemas/WalletTransaction"}


def test_the_schema_states_the_price_bound_of_the_contract(client, db):
    import re

    from marketplace.chain.constants import max_price

    params = schema(client)["paths"]["/api/v1/datasets/{slug}/versions"]["post"]["parameters"]
    pattern = next(p for p in params if p["name"] == "price")["schema"]["pattern"]
    for accepted in ("1", "25000000", str(max_price())):
        assert re.fullmatch(pattern, accepted)
    for refused in ("0", "025", "1.9", "1e999999999", "-1", str(max_price() + 1), ""):
        assert not re.fullmatch(pattern, refused), refused


def test_the_search_format_filter_is_documented_not_drf_s_override(client, db):
    search = schema(client)["paths"]["/api/v1/search"]["get"]
    fmt = next(p for p in search["parameters"] if p["name"] == "format")
    assert fmt["in"] == "query" and "csv" in fmt["description"]


def test_the_deployment_check_passes_with_production_settings(tmp_path):
    """What `make check-deploy` runs: debug off, a random secret key, every security setting
    left at its production default; drf-spectacular's warnings (W001) count as failures."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    env.update(DJANGO_SECRET_KEY=secrets.token_urlsafe(50), DATABASE_URL=os.environ["DATABASE_URL"],
               DJANGO_SETTINGS_MODULE="marketplace.settings", DATA_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output
    assert "could not resolve" not in output and "W001" not in output, output

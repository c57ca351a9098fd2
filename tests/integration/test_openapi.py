"""An outside client finds the API through its OpenAPI schema and Swagger UI (served locally)."""


def test_schema_lists_every_endpoint_with_the_error_body(client, db):
    response = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    for path in ("/api/v1/search", "/api/v1/datasets", "/api/v1/datasets/{slug}", "/api/v1/datasets/{slug}/versions",
                 "/api/v1/auth/nonce", "/api/v1/auth/sign-in"):
        assert path in schema["paths"], path
    assert "Error" in schema["components"]["schemas"]
    search = schema["paths"]["/api/v1/search"]["get"]
    assert {"q", "category", "tag", "sort", "page", "page_size"} <= {p["name"] for p in search["parameters"]}
    assert "400" in search["responses"]
    # How an agent pays for a version over x402 (null when it is not on sale on this chain).
    components = schema["components"]["schemas"]
    assert {"price", "asset", "network", "resource"} <= set(components["PaymentTerms"]["properties"])
    for name in ("Version", "SearchHit"):
        assert "payment" in components[name]["properties"], name


def test_swagger_ui_is_served_without_a_cdn(client, db):
    response = client.get("/api/v1/docs")
    html = response.content.decode()
    assert response.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn.jsdelivr" not in html

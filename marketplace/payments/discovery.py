"""GET /discovery/resources: the buyable catalog for agents, in the shape of the x402 v2
specification's discovery ("bazaar") list. Each item is a dataset's current version on sale on this
chain: its paid URL and the same `accepts` entry the URL's 402 gives, read from the indexed catalog
rows (not the chain) so that a page costs one search, one query and no chain call per item.

Outside /api/ (the x402 shape, not the API's), with no session and no CSRF; answers may be cached
for a few seconds. Searching goes through the catalog's search engine (catalog.search) with the
catalog search's words, filters and sorts; `limit` (1-100) and `offset` page the matching datasets."""
from __future__ import annotations

import threading

from django.conf import settings
from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_safe
from eth_utils import to_checksum_address
from rest_framework import serializers

from marketplace.catalog.api import SearchParams
from marketplace.chain.services import deployed_address

from .verify import token_domain
from .x402 import SCHEME, PaymentRefused, Requirement, bazaar_extension, caip2_network

CACHE_SECONDS = 5  # how long a client or proxy may keep a page: prices come from the chain's last read anyway
MIME_TYPES = {"csv": "text/csv", "tsv": "text/tab-separated-values", "json": "application/json",
              "jsonl": "application/jsonl", "parquet": "application/vnd.apache.parquet"}


class DiscoveryParams(SearchParams):
    """The catalog search's words, filters and sorts, paged by `limit` and `offset` as the x402
    discovery list is, and its `type` filter (only `http` resources are listed here)."""

    page = None
    page_size = None
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20,
                                     help_text="Items per page, 1-100")
    offset = serializers.IntegerField(required=False, min_value=0, default=0, help_text="Items to skip")
    # The x402 SDK's discovery filters: each either matches every item here or none.
    type = serializers.CharField(required=False, max_length=40, help_text="Resource type: only `http` has items")
    payTo = serializers.CharField(required=False, max_length=42, help_text="Only the market is paid here")
    scheme = serializers.CharField(required=False, max_length=40, help_text="Only `exact` has items")
    network = serializers.CharField(required=False, max_length=80, help_text="Only this chain (CAIP-2) has items")
    extensions = serializers.CharField(required=False, max_length=200,
                                       help_text="Extension keys the items must declare, comma-separated")

    _bound = threading.local()  # SearchParams.fields keeps this class's bound fields here

    @staticmethod
    def query(p: dict):
        from marketplace.catalog.search import SearchQuery

        return SearchQuery(
            text=p["q"], category=p.get("category"), tags=p.get("tag") or (), license=p.get("license"),
            format=p.get("format"), publisher=p.get("publisher"), price_min=p.get("price_min"),
            price_max=p.get("price_max"), sort=p["sort"], offset=p["offset"], limit=p["limit"], facets=False,
        )

    def validate(self, data):
        from marketplace.catalog.search import MAX_OFFSET

        if data["offset"] > MAX_OFFSET:
            raise serializers.ValidationError({"offset": f"Results go {MAX_OFFSET:,} deep at most; narrow the "
                                                         "search."})
        if data.get("price_min") is not None and data.get("price_max") is not None and \
                data["price_min"] > data["price_max"]:
            raise serializers.ValidationError({"price_max": "Must not be below price_min."})
        return data


def _error(code: str, message: str, status: int, fields: dict | None = None) -> JsonResponse:
    error = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return JsonResponse({"error": error}, status=status)


def item(request, row: dict, market: str) -> dict:
    """One discovery item: a listed dataset's version on sale (a `listed_rows` row)."""
    resource = request.build_absolute_uri(reverse("paid-download", args=[int(row["listing_id"])]))
    asset = to_checksum_address(row["listing_token"])
    domain = token_domain(asset)
    requirement = Requirement(
        listing_id=int(row["listing_id"]), amount=int(row["listing_price"]), asset=asset, pay_to=market,
        network=caip2_network(), resource=resource, token_name=domain["name"], token_version=domain["version"],
        description=f"{row['title']}, version {row['number']}",
        mime_type=MIME_TYPES.get(row["format"], "application/octet-stream"))
    file = {"size": row["size"], "sha256": row["content_hash"], "format": row["format"]}
    return {
        "resource": resource, "type": "http", "x402Version": 2, "accepts": [requirement.accepts()],
        "lastUpdated": int(row["updated_at"].timestamp()),
        # What the x402 SDK's discovery client also reads from an item (beside the specification's fields).
        "description": requirement.description, "mimeType": requirement.mime_type, "tags": row["tags"],
        "extensions": {"bazaar": bazaar_extension(requirement, file)},
        "metadata": {
            "title": row["title"], "summary": row["summary"], "description": requirement.description,
            "mimeType": requirement.mime_type, "category": row["category"], "tags": row["tags"],
            "license": row["license"], "provider": row["owner_address"], "dataset": row["slug"],
            "datasetUrl": request.build_absolute_uri(reverse("dataset-detail", args=[row["slug"]])),
            "version": row["number"], "listingId": str(row["listing_id"]), "rowCount": row["row_count"], **file,
        },
    }


@require_safe
def resources(request):
    """The x402 discovery list: `{"x402Version": 2, "items": [...], "pagination": {"limit",
    "offset", "total"}}`; `total` counts the matching listed datasets (a page leaves out one whose
    current version is not on sale at this moment). Bad parameters answer 400 with a message."""
    from marketplace.catalog.indexing import listed_rows, reader

    params = DiscoveryParams(data={k: (request.GET.getlist(k) if k == "tag" else v) for k, v in request.GET.items()})
    unknown = sorted(set(request.GET) - set(params.fields))
    if unknown:
        return _error("unknown_parameter", f"Unknown parameter(s): {', '.join(unknown)}. Known: "
                      f"{', '.join(params.fields)}.", 400)
    if not params.is_valid():
        fields = {name: [str(m) for m in messages] for name, messages in params.errors.items()}
        name, messages = next(iter(fields.items()))
        return _error("invalid", f"{name}: {messages[0]}", 400, fields)
    p = params.validated_data
    page = {"x402Version": 2, "items": [], "pagination": {"limit": p["limit"], "offset": p["offset"], "total": 0}}
    market = deployed_address(settings.CHAIN_ID, "DataMarket")
    if market is None:
        return _error("chain_unavailable", "The market is not deployed on this chain yet.", 503)
    wanted = {name.strip() for name in p.get("extensions", "").split(",") if name.strip()}
    if (p.get("type", "http") == "http" and p.get("scheme", SCHEME) == SCHEME
            and p.get("network", caip2_network()) == caip2_network()
            and p.get("payTo", market).lower() == market.lower() and wanted <= {"bazaar"}):
        index = reader()
        if index is None:
            return _error("index_building", "The search index is being built; try again in a moment.", 503)
        result = index.search(DiscoveryParams.query(p))
        rows = listed_rows(result.ids)
        try:
            page["items"] = [item(request, rows[i], market) for i in result.ids
                             if i in rows and rows[i]["listing_id"] is not None]
        except PaymentRefused as exc:
            return _error(exc.code, exc.message, exc.status)
        page["pagination"]["total"] = result.total
    response = JsonResponse(page)
    response["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    return response

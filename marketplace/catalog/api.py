"""Catalog API: publish and edit datasets, upload versions, read a dataset."""
from contextlib import contextmanager
import re
import threading

from django.conf import settings
from django.db.models import Q
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from eth_utils import is_address, to_checksum_address
from rest_framework import permissions, serializers
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.api import (AmountField, APIError, ConfirmationsWaiting, StrictBooleanField,
                             StrictCharField, StrictModelSerializer, StrictRegexField,
                             StrictTextField, errors)
from marketplace.accounts import bans
from marketplace.accounts.roles import IsModerator
from marketplace.chain.constants import max_price
from marketplace.limits.http import enforce, upload_reservation

from . import revisions, services, uploads
from .models import CATEGORIES, Dataset, DatasetRevision, DatasetVersion
from .preview import (PreviewSettings, column_names, match_hidden, public_analysis_message, public_columns,
                      public_sample, unmatched_hidden)

# Common SPDX identifiers; "other" covers custom terms described in the description.
LICENSES = [
    "CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "CC-BY-ND-4.0",
    "ODbL-1.0", "ODC-By-1.0", "PDDL-1.0", "MIT", "Apache-2.0", "BSD-3-Clause", "GPL-2.0-only",
    "GPL-3.0-only", "LGPL-3.0-only", "MPL-2.0", "CDLA-Permissive-2.0", "CDLA-Sharing-1.0", "other",
]


ADDRESS = r"^0x[0-9a-fA-F]{40}$"
NONZERO_ADDRESS = r"^0x(?!0{40}$)[0-9a-fA-F]{40}$"


def address_field(*, regex=ADDRESS, **kwargs):
    kwargs.setdefault("error_messages", {"invalid": "Not an Ethereum address (0x and 40 hex digits)."})
    return StrictRegexField(regex, **kwargs)


def price_field(**kwargs):
    """A price in token base units: digits only, from 1 to the DataMarket's MAX_PRICE as its
    compiled artifact states it."""
    return AmountField(maximum=max_price, **kwargs)


class ListingTermsSerializer(serializers.Serializer):
    """A version's on-chain listing and its current terms, as the chain indexer last read them."""

    chain_id = serializers.IntegerField()
    listing_id = serializers.CharField(help_text="The DataMarket listing id")
    price = serializers.CharField(help_text="Price in token base units, from the chain")
    payout = serializers.CharField(help_text="Payout address, from the chain")
    dispute_window = serializers.IntegerField(allow_null=True, help_text="Seconds a buyer may dispute an order")
    active = serializers.BooleanField(help_text="The owner sells it")
    approved = serializers.BooleanField(help_text="A moderator approved it on-chain")
    tx_hash = serializers.CharField(help_text="The transaction that created it")


def listing_terms(listing) -> dict | None:
    if listing is None:
        return None
    return {"chain_id": listing.chain_id, "listing_id": str(listing.listing_id), "price": str(listing.price),
            "payout": listing.payout, "dispute_window": listing.dispute_window, "active": listing.active,
            "approved": listing.approved, "tx_hash": listing.tx_hash}


class PaymentTermsSerializer(serializers.Serializer):
    """How an agent pays for a version over HTTP 402 (x402): what its paid URL asks."""

    price = serializers.CharField(help_text="Price in token base units, as a decimal string (the on-chain listing's)")
    asset = serializers.CharField(help_text="The payment token's address, checksummed")
    network = serializers.CharField(help_text="The chain, CAIP-2 (eip155:<chain id>)")
    resource = serializers.CharField(help_text="The paid URL: GET it for the 402 and its payment requirements, "
                                               "then again with a PAYMENT-SIGNATURE header for the file")


def payment_terms(request, *, listing_id, price, token) -> dict:
    """The x402 terms of a version on sale through listing `listing_id` of this chain."""
    from django.urls import reverse

    return {"price": str(price), "asset": to_checksum_address(token), "network": f"eip155:{settings.CHAIN_ID}",
            "resource": request.build_absolute_uri(reverse("paid-download", args=[int(listing_id)]))}


def on_sale(version):
    """The version's listing on this chain when the version is buyable (approved, listed, not
    removed; the listing active and approved), else None. Reads the prefetched listings."""
    dataset = version.dataset
    if (version.review != DatasetVersion.Review.APPROVED or dataset.status != Dataset.Status.LISTED
            or dataset.removed_at is not None):
        return None
    return next((listing for listing in version.listings.all()
                 if listing.chain_id == settings.CHAIN_ID and listing.active and listing.approved), None)


class PreviewSerializer(serializers.Serializer):
    """What the public sees of a version's file besides its schema, null counts, row count and
    numeric ranges."""

    hidden_columns = serializers.ListField(child=serializers.CharField(max_length=255), max_length=10_000,
                                           help_text="Columns absent from everything public")
    show_sample = serializers.BooleanField(help_text="The first rows are public")
    show_distributions = serializers.BooleanField(
        help_text="Top values, histograms, distinct counts and means are public (a value seen fewer than 5 times "
                  "never is)")


class RevisionSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number", allow_null=True, default=None)

    class Meta:
        model = DatasetRevision
        fields = ["id", "kind", "status", "version", "changes", "listings", "reason", "created_at", "decided_at"]


class VersionSerializer(serializers.ModelSerializer):
    """A version as its viewer may see it: the owner sees everything, the public only what the
    publisher chose to show (catalog.preview) and never the uploaded file's name."""

    price = serializers.CharField(help_text="Intended price in token base units, as a decimal string (a listed "
                                            "version sells at `listing.price`, mirrored from the chain)")
    listing = serializers.SerializerMethodField()
    payment = serializers.SerializerMethodField(help_text="How an agent buys this version over HTTP 402 (x402); "
                                                          "null when it is not on sale on this chain")
    preview = serializers.SerializerMethodField()
    original_name = serializers.CharField(required=False, help_text="Owner only")
    review = serializers.CharField(required=False, help_text="Owner only: the version's review")
    proposed_preview = serializers.SerializerMethodField(help_text="Owner only: the preview asked for, when it "
                                                                   "waits for review")
    unmatched_hidden_columns = serializers.SerializerMethodField(
        help_text="Owner only: hidden names that match no column of the analysed file (matched without case or "
                  "surrounding spaces); the version is not approved until they are chosen again")

    class Meta:
        model = DatasetVersion
        fields = [
            "number", "original_name", "format", "size", "content_hash", "price", "token",
            "analysis_status", "analysis_progress", "analysis_message", "row_count", "rejected_rows",
            "columns", "sample", "created_at", "listing", "payment", "preview", "review", "proposed_preview",
            "unmatched_hidden_columns",
        ]

    OWNER_ONLY = ("original_name", "review", "proposed_preview", "unmatched_hidden_columns")

    @extend_schema_field(ListingTermsSerializer(allow_null=True))
    def get_listing(self, version):
        return listing_terms(max(version.listings.all(), key=lambda l: l.block_number, default=None))

    @extend_schema_field(PaymentTermsSerializer(allow_null=True))
    def get_payment(self, version):
        request = self.context.get("request")
        listing = on_sale(version) if request is not None else None
        if listing is None:
            return None
        return payment_terms(request, listing_id=listing.listing_id, price=listing.price, token=listing.token)

    @extend_schema_field(PreviewSerializer)
    def get_preview(self, version):
        settings_ = PreviewSettings.of(version)
        if not self.context.get("owner"):
            return {**settings_.to_json(), "hidden_columns": []}  # the public never learns hidden names
        return settings_.to_json()

    @extend_schema_field(PreviewSerializer(allow_null=True))
    def get_proposed_preview(self, version):
        proposed = revisions.proposed_preview(version)
        return proposed.to_json() if proposed != PreviewSettings.of(version) else None

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_unmatched_hidden_columns(self, version):
        return unmatched_hidden(version)

    def to_representation(self, version):
        data = super().to_representation(version)
        if not self.context.get("owner"):
            for field in self.OWNER_ONLY:
                data.pop(field, None)
            data["columns"] = public_columns(version)
            data["sample"] = public_sample(version)
            data["analysis_message"] = public_analysis_message(version)
        return data


class VersionSchema(OpenApiSerializerExtension):
    """The owner-only fields are absent for everyone else: the schema must not require them."""

    target_class = VersionSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["required"] = [name for name in schema.get("required", []) if name not in VersionSerializer.OWNER_ONLY]
        return schema


class DatasetSerializer(StrictModelSerializer):
    """A dataset as its viewer may see it: the public sees the approved text and the public
    versions; the owner also sees every version and what waits for review (`revisions`)."""

    owner = serializers.CharField(source="owner.address", read_only=True)
    tags = serializers.ListField(child=StrictCharField(max_length=40), max_length=20, required=False)
    category = serializers.ChoiceField(choices=[c for c, _ in CATEGORIES], required=False)
    license = serializers.ChoiceField(choices=LICENSES)
    payout_address = address_field(required=False)
    versions = serializers.SerializerMethodField()
    revisions = serializers.SerializerMethodField(help_text="Owner only: the changes waiting for review, and the "
                                                            "moderators' decisions on the latest ones")

    class Meta:
        model = Dataset
        fields = [
            "slug", "title", "summary", "description", "description_html", "tags", "category", "license",
            "payout_address", "owner", "status", "created_at", "updated_at", "versions", "revisions",
        ]
        read_only_fields = ["slug", "description_html", "owner", "status", "created_at", "updated_at"]

    @extend_schema_field(VersionSerializer(many=True))
    def get_versions(self, dataset):
        versions = sorted(dataset.versions.all(), key=lambda v: v.number, reverse=True)
        if not self.context.get("owner"):
            versions = [v for v in versions if revisions.is_public(v)]
        return VersionSerializer(versions, many=True, context=self.context).data

    @extend_schema_field(RevisionSerializer(many=True))
    def get_revisions(self, dataset):
        if not self.context.get("owner"):
            return []
        latest = (DatasetRevision.objects.filter(dataset=dataset).select_related("version")
                  .exclude(status=DatasetRevision.Status.SUPERSEDED).order_by("-created_at", "-id")[:20])
        return RevisionSerializer(latest, many=True).data

    def validate_payout_address(self, value):
        if not is_address(value):
            raise serializers.ValidationError("Not an Ethereum address.")
        return to_checksum_address(value)


def visible_datasets(user):
    """What a user may read: everything listed, plus their own datasets in any state."""
    if user.is_authenticated:
        return Dataset.objects.filter(Q(status=Dataset.Status.LISTED) | Q(owner=user))
    return Dataset.objects.filter(status=Dataset.Status.LISTED)


class IsSignedIn(permissions.IsAuthenticated):
    message = "Sign in with your wallet first."


def viewer_context(request, dataset) -> dict:
    return {"owner": request.user.is_authenticated and dataset.owner_id == request.user.pk, "request": request}


class DatasetCreateView(APIView):
    permission_classes = [IsSignedIn]

    @extend_schema(request=DatasetSerializer, responses={201: DatasetSerializer, **errors(400, 403, 413, 429)})
    def post(self, request):
        bans.refuse_user_if_banned(request.user, bans.PUBLISH)
        data = DatasetSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        enforce(request, "dataset")
        fields = {k: v for k, v in data.validated_data.items()}
        dataset = services.create_dataset(owner=request.user, **fields)
        return Response(DatasetSerializer(dataset, context={"owner": True}).data, status=201)


class DatasetDetailView(APIView):
    @extend_schema(responses={200: DatasetSerializer, **errors(404)})
    def get(self, request, slug):
        dataset = get_object_or_404(visible_datasets(request.user).prefetch_related("versions__listings"), slug=slug)
        return Response(DatasetSerializer(dataset, context=viewer_context(request, dataset)).data)

    @extend_schema(
        request=DatasetSerializer,
        responses={200: DatasetSerializer, **errors(400, 403, 404)},
        description="Edit a dataset. Once it has been approved, changes to its public text (title, summary, "
                    "description, tags, category, license) wait for a moderator: the public keeps seeing the "
                    "approved text, and `revisions` shows what waits.",
    )
    def patch(self, request, slug):
        dataset = get_object_or_404(visible_datasets(request.user), slug=slug)
        if not request.user.is_authenticated or dataset.owner_id != request.user.pk:
            raise APIError("not_owner", "Only the dataset's owner can edit it.", status=403)
        bans.refuse_user_if_banned(request.user, bans.PUBLISH)
        data = DatasetSerializer(dataset, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        result = revisions.edit_dataset(dataset, by=request.user, **data.validated_data)
        dataset = Dataset.objects.prefetch_related("versions__listings").get(pk=result.dataset.pk)
        return Response(DatasetSerializer(dataset, context={"owner": True, "request": request}).data)


class UnparsedBody(BaseParser):
    """Accepts any body without reading it: the upload view streams it itself. (With no parser
    at all, DRF answers 415 as soon as the CSRF check looks at the form data.)"""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return {}


class UploadParams(serializers.Serializer):
    filename = StrictRegexField(
        uploads.FILENAME, max_length=255,
        error_messages={"invalid": "Give the file's name with an extension that says its format (data.csv), "
                                   "without slashes or control characters."},
        help_text="The file's name with its extension (csv, jsonl, parquet, ...)")
    price = price_field(help_text="Price in token base units (25 USDC = 25000000)")
    token = address_field(required=False, help_text="Payment token address (default: the deployed test USDC)")
    hidden_columns = StrictCharField(required=False, allow_blank=True, max_length=2_600_000,
                                     help_text="Comma-separated names of columns the public never sees (default: none)")
    show_sample = serializers.BooleanField(required=False, default=False,
                                           help_text="Show the first rows publicly (default: false)")
    show_distributions = serializers.BooleanField(
        required=False, default=False,
        help_text="Show top values, histograms, distinct counts and means publicly (default: false)")

    def validate_token(self, value):
        return to_checksum_address(value)


class VersionUploadView(APIView):
    """Upload a file as the dataset's next version: the request body is the file itself
    (`?filename=data.csv&price=25000000[&token=0x...]`), streamed to disk, never held in memory."""

    permission_classes = [IsSignedIn]
    parser_classes = [UnparsedBody]

    @extend_schema(
        request={"application/octet-stream": {"type": "string", "format": "binary"}},
        parameters=[UploadParams],
        responses={201: VersionSerializer, **errors(400, 403, 404, 411, 413, 415, 429, 507)},
    )
    def post(self, request, slug):
        # Someone else's draft answers like a missing dataset: slugs come from titles.
        dataset = get_object_or_404(visible_datasets(request.user), slug=slug)
        if dataset.owner_id != request.user.pk:
            raise APIError("not_owner", "Only the dataset's owner can upload versions.", status=403)
        bans.refuse_user_if_banned(request.user, bans.PUBLISH)
        params = UploadParams(data=request.query_params.dict())
        if not params.is_valid():
            field, messages = next(iter(params.errors.items()))
            if field == "filename":  # say precisely what is wrong with it
                try:
                    uploads.check_filename(request.query_params.get("filename", ""))
                except uploads.UploadRejected as exc:
                    raise APIError(exc.code, exc.message, status=exc.status) from None
            raise APIError(f"invalid_{field}", str(messages[0]))
        price = params.validated_data["price"]
        token = params.validated_data.get("token") or default_token()
        if not token:
            raise APIError("invalid_token", "Give the payment token's address (?token=0x...).")
        preview = upload_preview(params.validated_data)
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) or None
        except ValueError:
            declared = None
        enforce(request, "upload")
        with upload_reservation(request) as (reservation, body):
            try:
                received = uploads.receive(body, filename=params.validated_data["filename"], declared_size=declared)
            except uploads.UploadRejected as exc:
                raise APIError(exc.code, exc.message, status=exc.status) from None
            version = services.add_version(dataset, received, price=price, token=token, preview=preview,
                                           reservation=reservation)
        return Response(VersionSerializer(version, context={"owner": True}).data, status=201)


def upload_preview(params: dict) -> PreviewSettings:
    """The preview chosen at upload (UploadParams' validated query parameters), or an APIError
    saying what is wrong."""
    flags = {name: params.get(name, False) for name in ("show_sample", "show_distributions")}
    hidden = [name.strip() for name in params.get("hidden_columns", "").split(",") if name.strip()]
    if any(len(name) > 255 for name in hidden) or len(hidden) > 10_000:
        raise APIError("invalid_preview", "?hidden_columns= takes up to 10,000 column names of 255 characters.")
    return PreviewSettings(tuple(sorted(set(hidden))), **flags)


class PreviewRequest(serializers.Serializer):
    hidden_columns = serializers.ListField(child=StrictCharField(max_length=255), max_length=10_000,
                                           required=False)
    show_sample = StrictBooleanField(required=False)
    show_distributions = StrictBooleanField(required=False)


class PreviewResponse(serializers.Serializer):
    version = VersionSerializer()
    waiting = RevisionSerializer(allow_null=True, help_text="The part that shows more, waiting for review")


class VersionPreviewView(APIView):
    """PATCH `.../versions/<n>/preview`: what the public sees of the version's file. What shows
    less applies at once; on a version already public, what shows more waits for a moderator."""

    permission_classes = [IsSignedIn]

    @extend_schema(request=PreviewRequest, responses={200: PreviewResponse, **errors(400, 403, 404)})
    def patch(self, request, slug, number):
        version = owned_version(request, slug, number, "Only the dataset's owner can choose its preview.")
        bans.refuse_user_if_banned(request.user, bans.PUBLISH)
        data = PreviewRequest(data=request.data)
        data.is_valid(raise_exception=True)
        asked = revisions.proposed_preview(version).to_json()
        asked.update(data.validated_data)
        known = column_names(version)
        if known:  # else the names are matched to the file's once it is analysed
            matched, unknown = match_hidden(asked["hidden_columns"], known)
            if unknown:
                raise APIError("unknown_column", f"No column named {', '.join(unknown)} in version {version.number}.")
            asked["hidden_columns"] = list(matched)
        result = revisions.change_preview(version, PreviewSettings.from_json(asked), by=request.user)
        version = DatasetVersion.objects.prefetch_related("listings").get(pk=result.version.pk)
        return Response({"version": VersionSerializer(version, context={"owner": True, "request": request}).data,
                         "waiting": RevisionSerializer(result.revision).data if result.revision else None})


def default_token():
    from marketplace.chain.services import deployed_address

    return deployed_address(settings.CHAIN_ID, "TestUSDC")


class SearchParams(serializers.Serializer):
    q = StrictTextField(required=False, allow_blank=True, max_length=512, default="")
    category = serializers.ChoiceField(choices=[c for c, _ in CATEGORIES], required=False)
    tag = serializers.ListField(child=StrictCharField(max_length=40), required=False, max_length=10)
    license = StrictCharField(required=False, max_length=64)
    format = StrictCharField(required=False, max_length=16, help_text="The file format: csv, jsonl, parquet, ...")
    publisher = StrictCharField(required=False, max_length=42)
    price_min = serializers.FloatField(required=False, min_value=0)
    price_max = serializers.FloatField(required=False, min_value=0)
    sort = serializers.ChoiceField(choices=["relevance", "newest", "price_asc", "price_desc", "most_bought"],
                                   required=False, default="relevance")
    page = serializers.IntegerField(required=False, min_value=1, default=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)

    _bound = threading.local()

    @property
    def fields(self):
        # DRF deep-copies and binds the declared fields for every instance: 0.5 ms of each search.
        # They keep no state between validations, so every instance on a thread uses the copy the
        # thread's first instance bound (their parent stays that instance: they never read it).
        # (Per class: a subclass declares its own `_bound`.)
        bound = type(self)._bound
        fields = getattr(bound, "fields", None)
        if fields is None:
            fields = bound.fields = super().fields
        return fields

    @staticmethod
    def query(p: dict):
        """The engine's SearchQuery for validated parameters `p` (one page of results)."""
        from .search import SearchQuery

        return SearchQuery(
            text=p["q"], category=p.get("category"), tags=p.get("tag") or (), license=p.get("license"),
            format=p.get("format"), publisher=p.get("publisher"), price_min=p.get("price_min"),
            price_max=p.get("price_max"), sort=p["sort"], offset=(p["page"] - 1) * p["page_size"],
            limit=p["page_size"],
        )

    def validate(self, data):
        from .search import MAX_OFFSET

        if (data["page"] - 1) * data["page_size"] > MAX_OFFSET:
            raise serializers.ValidationError({"page": f"Results go {MAX_OFFSET:,} deep at most; narrow the search."})
        if data.get("price_min") is not None and data.get("price_max") is not None and data["price_min"] > data["price_max"]:
            raise serializers.ValidationError({"price_max": "Must not be below price_min."})
        return data


class HitPriceSerializer(serializers.Serializer):
    amount = serializers.CharField(help_text="Price in token base units (the listing's, else the intended one)")
    token = serializers.CharField()
    format = serializers.CharField()


class SearchHitSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.address")
    owner_name = serializers.CharField(source="owner.display_name", help_text="The publisher's display name, or \"\"")
    owner_avatar = serializers.CharField(allow_null=True, help_text="Path of the publisher's avatar image")
    price = serializers.SerializerMethodField()
    payment = serializers.SerializerMethodField(help_text="How an agent buys the latest version over HTTP 402 "
                                                          "(x402); null when it is not on sale on this chain")

    class Meta:
        model = Dataset
        fields = ["slug", "title", "summary", "tags", "category", "license", "owner", "owner_name", "owner_avatar",
                  "price", "payment", "created_at"]

    @extend_schema_field(PaymentTermsSerializer(allow_null=True))
    def get_payment(self, dataset):  # the schema's view: search_hits builds the documents
        return None

    @extend_schema_field(HitPriceSerializer(allow_null=True))
    def get_price(self, dataset):
        version = max(dataset.versions.all(), key=lambda v: v.number, default=None)
        if version is None:
            return None
        listing = max(version.listings.all(), key=lambda l: l.block_number, default=None)
        return {"amount": str(listing.price if listing else version.price), "token": version.token,
                "format": version.format}


class FacetSerializer(serializers.Serializer):
    value = serializers.CharField()
    count = serializers.IntegerField()


class SearchPageSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    results = SearchHitSerializer(many=True)
    facets = serializers.DictField(child=FacetSerializer(many=True))


def iso_time(value) -> str:
    """A time as DRF's DateTimeField renders it (ISO 8601 in the current time zone, "Z" for
    UTC), without its settings lookups for every value."""
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def search_hits(ids, request):
    """The page's rows in one query, shaped as SearchHitSerializer documents them (no model
    instances, no versions' statistics loaded: this runs on every search)."""
    from marketplace.accounts.avatars import url_for

    from .indexing import listed_rows

    return {
        pk: {
            "slug": row["slug"], "title": row["title"], "summary": row["summary"], "tags": row["tags"],
            "category": row["category"], "license": row["license"], "owner": row["owner_address"],
            "owner_name": row["owner_display_name"],
            "owner_avatar": url_for(row["owner_address"], row["owner_avatar_digest"]),
            "price": None if row["price"] is None else
            {"amount": str(row["price"]), "token": row["token"], "format": row["format"]},
            "payment": None if row["listing_id"] is None else
            payment_terms(request, listing_id=row["listing_id"], price=row["listing_price"], token=row["listing_token"]),
            "created_at": iso_time(row["created_at"]),
        }
        for pk, row in listed_rows(ids).items()
    }


class SearchView(APIView):
    """Full-text search (BM25) with filters, sorts and facet counts over the listed catalog."""

    @extend_schema(parameters=[SearchParams], responses={200: SearchPageSerializer, **errors(400, 503)})
    def get(self, request):
        from .indexing import reader

        data = SearchParams(data={k: (request.query_params.getlist(k) if k == "tag" else v)
                                  for k, v in request.query_params.items()})
        unknown = sorted(set(request.query_params) - set(data.fields))
        if unknown:
            raise APIError("unknown_parameter", f"Unknown parameter(s): {', '.join(unknown)}. "
                           f"Known: {', '.join(data.fields)}.")
        data.is_valid(raise_exception=True)
        p = data.validated_data
        index = reader()
        if index is None:
            raise APIError("index_building", "The search index is being built; try again in a moment.", status=503)
        result = index.search(SearchParams.query(p))
        rows = search_hits(result.ids, request)
        return Response({
            "total": result.total,
            "page": p["page"],
            "page_size": p["page_size"],
            "results": [rows[i] for i in result.ids if i in rows],
            "facets": {name: [{"value": v, "count": c} for v, c in counts] for name, counts in result.facets.items()},
        })


@contextmanager
def listing_errors():
    """A ListingError from catalog.listing as the API's error body."""
    from . import listing

    try:
        yield
    except listing.ListingError as exc:
        raise APIError(exc.code, exc.message, status=exc.status) from None


class ListingLinkRequest(serializers.Serializer):
    tx_hash = StrictRegexField(r"^0x[0-9a-fA-F]{64}$", help_text="The transaction's hash")


# What the listing endpoints answer (the schema's view of listing_body and the prepared
# transactions; `from` is a Python keyword, hence inline_serializer).
WalletTransaction = inline_serializer("WalletTransaction", {
    "from": serializers.CharField(help_text="The owner's address"),
    "to": serializers.CharField(help_text="The DataMarket's address"),
    "data": serializers.CharField(help_text="ABI-encoded call"),
    "value": serializers.CharField(help_text='Always "0x0"'),
    "chainId": serializers.CharField(help_text="The chain id in hex"),
})
ABI_FRAGMENT = serializers.ListField(child=serializers.DictField(), help_text="The called function's ABI, for the "
                                     "wallet to show what it signs")


class ListingSerializer(serializers.Serializer):
    chain_id = serializers.IntegerField()
    listing_id = serializers.CharField(help_text="The DataMarket listing id, as a decimal string")
    owner = serializers.CharField()
    token = serializers.CharField()
    price = serializers.CharField(help_text="Price in token base units, as a decimal string")
    payout = serializers.CharField()
    dispute_window = serializers.IntegerField(allow_null=True, help_text="Seconds a buyer may dispute an order")
    approved = serializers.BooleanField()
    active = serializers.BooleanField()
    tx_hash = serializers.CharField()
    log_index = serializers.IntegerField()
    block_number = serializers.IntegerField()


ListingPrepared = inline_serializer("ListingPrepared", {
    "chain_id": serializers.IntegerField(),
    "market": serializers.CharField(),
    "from": serializers.CharField(),
    "token": serializers.CharField(),
    "price": serializers.CharField(),
    "payout": serializers.CharField(),
    "content_hash": serializers.CharField(),
    "dispute_window": serializers.IntegerField(help_text="Seconds"),
    "function": serializers.CharField(),
    "abi": ABI_FRAGMENT,
    "transaction": WalletTransaction,
})


class ListingLinked(serializers.Serializer):
    dataset_status = serializers.CharField()
    listing = ListingSerializer()


class PriceAndPayout(serializers.Serializer):
    price = serializers.CharField()
    payout = serializers.CharField()


ListingUpdatePrepared = inline_serializer("ListingUpdatePrepared", {
    "chain_id": serializers.IntegerField(),
    "market": serializers.CharField(),
    "from": serializers.CharField(),
    "listing_id": serializers.CharField(),
    "price": serializers.CharField(),
    "payout": serializers.CharField(),
    "current": PriceAndPayout(help_text="The terms on-chain now"),
    "function": serializers.CharField(),
    "abi": ABI_FRAGMENT,
    "transaction": WalletTransaction,
})


class ListingUpdateSerializer(serializers.Serializer):
    price = serializers.CharField()
    payout = serializers.CharField()
    tx_hash = serializers.CharField()
    log_index = serializers.IntegerField()
    block_number = serializers.IntegerField()


class ListingUpdateMirrored(serializers.Serializer):
    listing = ListingSerializer()
    updates = ListingUpdateSerializer(many=True)


def owned_version(request, slug, number, refusal):
    """The signed-in owner's version `number` of dataset `slug` (404 for what they cannot see,
    403 with `refusal` for someone else's dataset)."""
    dataset = get_object_or_404(visible_datasets(request.user).select_related("owner"), slug=slug)
    if dataset.owner_id != request.user.pk:
        raise APIError("not_owner", refusal, status=403)
    return get_object_or_404(DatasetVersion.objects.select_related("dataset__owner"), dataset=dataset, number=number)


def listing_body(row):
    return {"chain_id": row.chain_id, "listing_id": str(row.listing_id), "owner": row.owner, "token": row.token,
            "price": str(row.price), "payout": row.payout, "dispute_window": row.dispute_window,
            "approved": row.approved, "active": row.active, "tx_hash": row.tx_hash, "log_index": row.log_index,
            "block_number": row.block_number}


class VersionListingView(APIView):
    """The owner's on-chain listing of a version: GET `.../listing/prepare` gives the transaction
    for the wallet (`eth_sendTransaction` with `to` and `data`); POST `.../listing` with the
    transaction's hash makes the chain indexer read through its block and answers the listing its
    handlers linked (201 when this request linked it; 202 with the confirmations so far while the
    block waits for them; 409 until it is mined)."""

    permission_classes = [IsSignedIn]

    def _version(self, request, slug, number):
        version = owned_version(request, slug, number, "Only the dataset's owner can list it.")
        bans.refuse_user_if_banned(request.user, bans.PUBLISH)
        return version

    @extend_schema(responses={200: ListingPrepared, **errors(403, 404, 409, 503)})
    def get(self, request, slug, number):
        from . import listing

        with listing_errors():
            return Response(listing.prepare_listing(self._version(request, slug, number)))

    @extend_schema(request=ListingLinkRequest, responses={200: ListingLinked, 201: ListingLinked,
                                                          202: ConfirmationsWaiting,
                                                          **errors(400, 403, 404, 409, 429, 503)})
    def post(self, request, slug, number):
        from . import listing

        version = self._version(request, slug, number)
        data = ListingLinkRequest(data=request.data)
        data.is_valid(raise_exception=True)
        enforce(request, "listing_receipt")
        with listing_errors():
            answer = listing.listing_created(version, data.validated_data["tx_hash"])
        if answer.waiting:
            return Response(answer.waiting.progress, status=202)
        version.dataset.refresh_from_db(fields=["status"])
        body = {"dataset_status": version.dataset.status, "listing": listing_body(answer.listing)}
        return Response(body, status=201 if answer.created else 200)


class ListingUpdateRequest(serializers.Serializer):
    price = price_field(required=False, help_text="New price in token base units, as an integer string "
                                                  "(25 USDC = 25000000)")
    payout = address_field(required=False, regex=NONZERO_ADDRESS,
                           error_messages={"invalid": "Not an Ethereum address (0x and 40 hex digits) other than "
                                                      "the zero address."},
                           help_text="New payout address (default: the current one); not the zero address")

    def validate_payout(self, value):
        if not is_address(value):
            raise serializers.ValidationError("Not an Ethereum address.")
        if int(value, 16) == 0:
            raise serializers.ValidationError("The payout address must not be the zero address.")
        return to_checksum_address(value)

    def validate(self, data):
        if "price" not in data and "payout" not in data:
            raise serializers.ValidationError({"price": "Give a new price, a new payout address, or both."})
        return data


class ListingUpdateRequestSchema(OpenApiSerializerExtension):
    """The schema says what validate() does: at least one of the two terms."""

    target_class = ListingUpdateRequest

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["anyOf"] = [{"required": ["price"]}, {"required": ["payout"]}]
        return schema


class ListingUpdatePrepareView(APIView):
    """Changing the price (and/or payout address) of a version's listing from the owner's wallet:
    POST `.../listing/update/prepare` with `{"price", "payout"}` gives the `updateListing`
    transaction for the wallet; POST `.../listing/update` with the transaction's hash answers the
    new terms once the chain indexer has read it (ListingUpdateMirrorView)."""

    permission_classes = [IsSignedIn]
    refusal = "Only the dataset's owner can change its listing."
    request_body_required = True  # {"price"} or {"payout"} at least

    @extend_schema(request=ListingUpdateRequest, responses={200: ListingUpdatePrepared,
                                                            **errors(400, 403, 404, 409, 503)})
    def post(self, request, slug, number):
        from . import listing

        version = owned_version(request, slug, number, self.refusal)
        bans.refuse_user_if_banned(request.user, bans.PUBLISH)
        data = ListingUpdateRequest(data=request.data)
        data.is_valid(raise_exception=True)
        with listing_errors():
            return Response(listing.prepare_listing_update(version, **data.validated_data))


class ListingUpdateMirrorView(APIView):
    """POST `.../listing/update` with the `updateListing` transaction's hash: the chain indexer
    reads through its block and the listing's price and payout are answered as its handlers set
    them from `ListingUpdated` (201 when this request stored the change, 200 when it was stored
    already; 202 with the confirmations so far while the block waits for them)."""

    permission_classes = [IsSignedIn]

    @extend_schema(request=ListingLinkRequest, responses={200: ListingUpdateMirrored, 201: ListingUpdateMirrored,
                                                          202: ConfirmationsWaiting,
                                                          **errors(400, 403, 404, 409, 429, 503)})
    def post(self, request, slug, number):
        from . import listing

        version = owned_version(request, slug, number, ListingUpdatePrepareView.refusal)
        bans.refuse_user_if_banned(request.user, bans.PUBLISH)
        data = ListingLinkRequest(data=request.data)
        data.is_valid(raise_exception=True)
        enforce(request, "listing_receipt")
        with listing_errors():
            answer = listing.listing_updated(version, data.validated_data["tx_hash"])
        if answer.waiting:
            return Response(answer.waiting.progress, status=202)
        return Response({
            "listing": listing_body(answer.listing),
            "updates": [{"price": str(u.price), "payout": u.payout, "tx_hash": u.tx_hash, "log_index": u.log_index,
                         "block_number": u.block_number} for u in answer.updates],
        }, status=201 if answer.created else 200)


ListingActivePrepared = inline_serializer("ListingActivePrepared", {
    "chain_id": serializers.IntegerField(),
    "market": serializers.CharField(),
    "from": serializers.CharField(),
    "listing_id": serializers.CharField(),
    "active": serializers.BooleanField(),
    "function": serializers.CharField(),
    "abi": ABI_FRAGMENT,
    "transaction": WalletTransaction,
})


class ListingActiveRequest(serializers.Serializer):
    active = StrictBooleanField(help_text="false stops selling the version, true sells it again")


class ListingActivePrepareView(APIView):
    """Stopping (or resuming) the sale of a version from the owner's wallet: POST
    `.../listing/active/prepare` with `{"active": false}` gives the `setListingActive` transaction;
    POST `.../listing/active` with its hash answers once the chain indexer has read it."""

    permission_classes = [IsSignedIn]
    refusal = "Only the dataset's owner can start or stop selling it."

    @extend_schema(request=ListingActiveRequest, responses={200: ListingActivePrepared,
                                                            **errors(400, 403, 404, 409, 503)})
    def post(self, request, slug, number):
        from . import listing

        version = owned_version(request, slug, number, self.refusal)
        data = ListingActiveRequest(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data["active"]:  # stopping a sale stays open to a banned publisher
            bans.refuse_user_if_banned(request.user, bans.PUBLISH)
        with listing_errors():
            return Response(listing.prepare_listing_active(version, active=data.validated_data["active"]))


class ListingActiveMirrorView(APIView):
    """POST `.../listing/active` with the `setListingActive` transaction's hash: the chain indexer
    reads through its block and the listing's terms are answered as its handlers set them from
    `ListingActiveSet` (202 with the confirmations so far while the block waits for them)."""

    permission_classes = [IsSignedIn]

    @extend_schema(request=ListingLinkRequest, responses={200: ListingTermsSerializer,
                                                          202: ConfirmationsWaiting,
                                                          **errors(400, 403, 404, 409, 429, 503)})
    def post(self, request, slug, number):
        from . import listing

        version = owned_version(request, slug, number, ListingActivePrepareView.refusal)
        data = ListingLinkRequest(data=request.data)
        data.is_valid(raise_exception=True)
        enforce(request, "listing_receipt")
        with listing_errors():
            answer = listing.listing_active_set(version, data.validated_data["tx_hash"])
        if answer.waiting:
            return Response(answer.waiting.progress, status=202)
        return Response(listing_terms(answer.listing))


# Moderation ------------------------------------------------------------------------------------


class ShownListing(serializers.Serializer):
    listing_id = StrictCharField(max_length=80)
    content_hash = StrictCharField(max_length=66)


class DecisionRequest(serializers.Serializer):
    decision = serializers.ChoiceField(choices=list(revisions.Decision.ALL))
    reason = StrictTextField(required=False, allow_blank=True, max_length=5000,
                                   help_text="The statement of reasons the publisher sees")
    listings = ShownListing(many=True, required=False, help_text="The listing ids and content hashes the "
                            "moderator was shown (a version's); refused with 409 if they are not the revision's")

    def validate(self, data):
        if data["decision"] != revisions.Decision.APPROVE and not re.search(NOT_BLANK, data.get("reason", "")):
            raise serializers.ValidationError({"reason": "Say why: the publisher sees this."})
        return data


NOT_BLANK = r"[^\x00-\x20\x7f]"


class DecisionRequestSchema(OpenApiSerializerExtension):
    """The schema says what validate() does: a decision other than approve gives a reason."""

    target_class = DecisionRequest

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["anyOf"] = [{"properties": {"decision": {"enum": [revisions.Decision.APPROVE]}}},
                           {"required": ["reason"], "properties": {"reason": {"pattern": NOT_BLANK}}}]
        return schema


class ModerationQueueView(APIView):
    """GET: the revisions waiting for a moderator (oldest first), each with what it would make
    public."""

    permission_classes = [IsModerator]

    @extend_schema(responses={200: RevisionSerializer(many=True), **errors(401, 403)})
    def get(self, request):
        waiting = (DatasetRevision.objects.filter(status=DatasetRevision.Status.PENDING)
                   .select_related("version").order_by("created_at", "id")[:200])
        return Response(RevisionSerializer(waiting, many=True).data)


class RevisionDecisionView(APIView):
    """POST `/moderation/revisions/<id>/decision`: approve, reject or request changes to exactly
    this revision (409 if it is no longer open, or the listings shown are not its own)."""

    permission_classes = [IsModerator]

    @extend_schema(request=DecisionRequest, responses={200: RevisionSerializer, **errors(400, 401, 403, 404, 409)})
    def post(self, request, revision_id):
        revision = get_object_or_404(DatasetRevision, pk=revision_id)
        data = DecisionRequest(data=request.data)
        data.is_valid(raise_exception=True)
        p = data.validated_data
        try:
            result = revisions.decide(revision, decision=p["decision"], moderator=request.user,
                                      reason=p.get("reason", ""), expected_listings=p.get("listings"))
        except (revisions.StaleDecision, revisions.DecisionRefused) as exc:
            code = getattr(exc, "code", "stale_revision" if isinstance(exc, revisions.StaleDecision) else
                           "decision_refused")  # DecisionBlocked names its own (`claimed`)
            raise APIError(code, str(exc), status=409) from None
        return Response(RevisionSerializer(result.revision).data)

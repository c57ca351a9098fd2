"""Moderation API: the audit log for moderators, a publisher's own entries, and notifications.
Lists are newest first, 50 a page; `next_before` is the `before` of the next page (null at the end)."""
import json

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.accounts.roles import IsModerator
from marketplace.api import APIError, StrictCharField, StrictTextField, errors
from marketplace.catalog.api import iso_time

from . import audit, notifications, selectors
from .models import AuditEntry, Notification

MAX_ID = 2**63 - 1


class SignedIn(permissions.BasePermission):
    """Signed in, else 401 with the API's error body."""

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            raise APIError("not_signed_in", "Sign in with your wallet first.", status=401)
        return True


def before_field():
    return serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID,
                                    help_text="Entries with a smaller id only: the previous page's `next_before`",
                                    error_messages={"invalid": "Give the id of an entry (a whole number).",
                                                    "min_value": "Give the id of an entry (1 or more).",
                                                    "max_value": "No entry has so large an id."})


class Params(serializers.Serializer):
    """Query parameters: unknown ones are refused, so a misspelt filter never reads as none."""

    @classmethod
    def read(cls, query: dict) -> dict:
        params = cls(data=query)
        unknown = sorted(set(query) - set(params.fields))
        if unknown:
            raise APIError("unknown_parameter", f"Unknown parameter(s): {', '.join(unknown)}. "
                           f"Known: {', '.join(params.fields) or 'none'}.")
        params.is_valid(raise_exception=True)
        return params.validated_data


class AuditParams(Params):
    q = StrictTextField(required=False, max_length=200, help_text="Words an entry has (actor, target id, reason, "
                        "statement, internal note, reporter), each matched whole, without case")
    action = serializers.ChoiceField(choices=sorted(audit.ACTIONS), required=False)
    target = StrictCharField(required=False, max_length=220,
                             help_text="`type:id`, e.g. `dataset:42`, or a type alone (`flag`)")
    actor = StrictCharField(required=False, max_length=200, help_text="A username or wallet address, exactly")
    before = before_field()

    def validate_target(self, value):
        kind, _, ident = value.partition(":")
        if not kind or not kind.replace("_", "").isalpha() or len(kind) > 20 or (":" in value and not ident):
            raise serializers.ValidationError("Give `type:id` (e.g. `dataset:42`) or a type alone.")
        return value


class PageParams(Params):
    before = before_field()


class NotificationParams(Params):
    before = before_field()
    unread = serializers.ChoiceField(choices=["1", "0"], required=False, help_text="1: unread ones only")


class AuditEntrySerializer(serializers.ModelSerializer):
    """An entry as moderators see it (the schema; `entry_json` renders it)."""

    class Meta:
        model = AuditEntry
        fields = list(selectors.ENTRY_FIELDS)


class PublisherAuditEntrySerializer(serializers.ModelSerializer):
    """What a publisher sees of an entry about their dataset (selectors.PUBLISHER_FIELDS)."""

    class Meta:
        model = AuditEntry
        fields = list(selectors.PUBLISHER_FIELDS)


def entry_json(row: dict) -> dict:
    """An entry's row (selectors' dicts) as the serializers above document it, without DRF's
    per-field work (a page is 50 entries). A `created_at` already text came so from the database
    (`iso_times`)."""
    created = row["created_at"]
    return {**row, "created_at": created if isinstance(created, str) else iso_time(created)}


def iso_times() -> bool:
    """Whether the database may write the entries' times (selectors.UTC_ISO): iso_time gives
    UTC when the current time zone is UTC (settings.TIME_ZONE; nothing activates another)."""
    return timezone.get_current_timezone_name() == "UTC"


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "kind", "text", "link", "created_at", "read_at"]


def paged(rows: list, results: list) -> dict:
    last = rows[-1] if len(rows) == selectors.PAGE_SIZE else None
    return {"results": results, "next_before": None if last is None else
            (last["id"] if isinstance(last, dict) else last.id)}


def json_page(rows: list[dict]) -> HttpResponse:
    """A page of entries (selectors' dicts) as `Response(paged(...))` renders it, byte for byte
    (DRF's JSONRenderer with this project's settings: compact, UTF-8 as itself, no NaN, U+2028 and
    U+2029 escaped), without DRF's content negotiation and renderer for each request."""
    body = json.dumps(paged(rows, [entry_json(row) for row in rows]), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":"))
    return HttpResponse(body.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode(),
                        content_type="application/json")


def page_schema(serializer, name):
    return inline_serializer(name, {
        "results": serializer(many=True),
        "next_before": serializers.IntegerField(allow_null=True, help_text="`before` of the next page, null at "
                                                "the end"),
    })


class AuditSearchView(APIView):
    """GET `/moderation/audit`: search the audit log (moderators)."""

    permission_classes = [IsModerator]

    @extend_schema(parameters=[AuditParams], responses={200: page_schema(AuditEntrySerializer, "AuditPage"),
                                                        **errors(400, 401, 403)})
    def get(self, request):
        p = AuditParams.read(request.query_params.dict())
        kind, _, ident = p.get("target", "").partition(":")
        rows = selectors.audit_entries(q=p.get("q", ""), action=p.get("action", ""), target_type=kind,
                                       target_id=ident, actor=p.get("actor", ""), before=p.get("before"),
                                       iso_times=iso_times())
        return json_page(rows)


class MyAuditView(APIView):
    """GET `/me/audit`: the audit entries about the signed-in publisher's datasets, without
    reporters, internal notes or the moderators' names."""

    permission_classes = [SignedIn]

    @extend_schema(parameters=[PageParams], responses={200: page_schema(PublisherAuditEntrySerializer,
                                                                        "PublisherAuditPage"), **errors(400, 401)})
    def get(self, request):
        p = PageParams.read(request.query_params.dict())
        rows = selectors.publisher_entries(request.user, before=p.get("before"), iso_times=iso_times())
        return json_page(rows)


class NotificationsView(APIView):
    """GET `/me/notifications`: what was decided about the signed-in person, newest first, with
    the number still unread."""

    permission_classes = [SignedIn]

    @extend_schema(parameters=[NotificationParams], responses={200: inline_serializer("NotificationPage", {
        "results": NotificationSerializer(many=True),
        "next_before": serializers.IntegerField(allow_null=True),
        "unread": serializers.IntegerField(help_text="How many are unread in all"),
    }), **errors(400, 401)})
    def get(self, request):
        p = NotificationParams.read(request.query_params.dict())
        rows = selectors.notifications(request.user, unread=p.get("unread") == "1", before=p.get("before"))
        return Response({**paged(rows, NotificationSerializer(rows, many=True).data),
                         "unread": selectors.unread_count(request.user)})


class MarkReadRequest(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False,
                                max_length=500, help_text="The notifications to mark read; leave out for all")


class MarkReadView(APIView):
    """POST `/me/notifications/read`: mark some (`ids`) or all of the signed-in person's
    notifications read."""

    permission_classes = [SignedIn]

    @extend_schema(request=MarkReadRequest, responses={200: inline_serializer("MarkedRead", {
        "marked": serializers.IntegerField(), "unread": serializers.IntegerField()}), **errors(400, 401, 403)})
    def post(self, request):
        data = MarkReadRequest(data=request.data)
        data.is_valid(raise_exception=True)
        marked = notifications.mark_read(request.user, ids=data.validated_data.get("ids"))
        return Response({"marked": marked, "unread": selectors.unread_count(request.user)})

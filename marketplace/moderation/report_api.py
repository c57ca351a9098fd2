"""The reports' API: a signed-in person reports (`POST /reports`) and reads their own
(`GET /me/reports`); anyone files a notice (`POST /notices`) and checks it with its reference
(`GET /notices/<token>`); moderators list the groups (`GET /moderation/reports`), read one
(`GET /moderation/reports/<type>/<id>`) and close it (`POST .../close`). The work is in reports.py."""
from django.core.validators import EmailValidator
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.accounts.roles import IsModerator
from marketplace.api import APIError, refusal, StrictBooleanField, StrictCharField, StrictTextField, errors
from marketplace.catalog.api import iso_time
from marketplace.limits.http import RateLimited, client_network
from marketplace.limits.services import LimitExceeded

from . import policy, reports
from .api import MAX_ID, Params, SignedIn
from .models import Report

CHOOSE_REASON = "Choose a reason from the list: " + ", ".join(policy.REASONS) + "."
REASON_HELP = "A policy code: " + ", ".join(f"`{code}` ({label})" for code, label in policy.REASONS.items())


class ReportRequest(serializers.Serializer):
    target_type = serializers.ChoiceField(choices=Report.TargetType.values,
                                          error_messages={"invalid_choice": "Report a dataset or a publisher."})
    target = StrictCharField(max_length=200, help_text="A dataset's name (as in /datasets/<name>) or id; a "
                             "publisher's wallet address")
    reason = serializers.ChoiceField(choices=policy.REASON_CODES, help_text=REASON_HELP,
                                     error_messages={"invalid_choice": CHOOSE_REASON})
    evidence = StrictTextField(max_length=reports.EVIDENCE_MAX, help_text="What is wrong, and where to see it")
    law = StrictCharField(required=False, allow_blank=True, max_length=reports.LAW_MAX,
                          help_text="The law or policy it breaks, if you know it")


class NoticeRequest(serializers.Serializer):
    name = StrictCharField(max_length=reports.NAME_MAX)
    email = StrictCharField(max_length=reports.EMAIL_MAX, validators=[EmailValidator("Give an e-mail address.")])
    law = StrictCharField(max_length=reports.LAW_MAX, help_text="The law or policy the content breaks")
    target = StrictCharField(max_length=reports.TARGET_TEXT_MAX, help_text="The dataset's address on this site "
                             "(…/datasets/<name>) or name, or the publisher's wallet address")
    reason = serializers.ChoiceField(choices=policy.REASON_CODES, help_text=REASON_HELP,
                                     error_messages={"invalid_choice": CHOOSE_REASON})
    evidence = StrictTextField(max_length=reports.EVIDENCE_MAX, help_text="Why it breaks that law or policy")
    good_faith = StrictBooleanField(help_text="true: you state in good faith that the notice is accurate and complete")

    def validate_good_faith(self, value):
        if value is not True:
            raise serializers.ValidationError("State that the notice is accurate and complete, in good faith.")
        return value


TargetSchema = inline_serializer("ReportTarget", {
    "type": serializers.CharField(help_text="dataset or publisher"),
    "id": serializers.CharField(help_text="A dataset's id or a publisher's address"),
    "label": serializers.CharField(),
    "link": serializers.CharField(help_text="Its page in the site; empty when it has none"),
    "state": serializers.CharField(help_text="listed, delisted, removed, publisher, or gone"),
})


def outcome_json(report: Report) -> dict:
    return {"status": report.status, "outcome": report.outcome or None,
            "outcome_label": Report.Outcome(report.outcome).label if report.outcome else None,
            "statement": report.statement or None, "created_at": iso_time(report.created_at),
            "closed_at": iso_time(report.closed_at) if report.closed_at else None}


def own_report_json(report: Report, target: reports.Target) -> dict:
    """A report as its reporter sees it."""
    return {"id": report.pk, "source": report.source, "reason": report.reason, "target": target.as_dict(),
            **outcome_json(report)}


OWN_REPORT_FIELDS = {
    "id": serializers.IntegerField(), "source": serializers.CharField(help_text="user (signed in) or notice"),
    "reason": serializers.CharField(), "target": TargetSchema,
    "status": serializers.CharField(help_text="open or closed"),
    "outcome": serializers.CharField(allow_null=True, help_text="no_action, delisted or other; null while open"),
    "outcome_label": serializers.CharField(allow_null=True),
    "statement": serializers.CharField(allow_null=True, help_text="The outcome in the moderator's words"),
    "created_at": serializers.DateTimeField(), "closed_at": serializers.DateTimeField(allow_null=True),
}


class ReportsView(APIView):
    """POST `/reports`: report a dataset or a publisher (signed in). A second open report of
    yours on the same target is a 409; a dataset already delisted is taken, and the answer says so."""

    permission_classes = [SignedIn]

    @extend_schema(request=ReportRequest, responses={201: inline_serializer("ReportFiled", {
        **OWN_REPORT_FIELDS, "message": serializers.CharField()}), **errors(400, 401, 403, 409, 429)})
    def post(self, request):
        data = ReportRequest(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            report, target = reports.file_report(reporter=request.user, ip=client_network(request),
                                                 **data.validated_data)
        except reports.ReportRefused as exc:
            raise refusal(exc) from None
        except LimitExceeded as exceeded:
            raise RateLimited(exceeded) from None
        message = target.off_sale_message or "Thank you: a moderator will read your report. You are told the outcome."
        return Response({**own_report_json(report, target), "message": message}, status=201)


class MyReportsView(APIView):
    """GET `/me/reports`: the signed-in person's reports and notices (the latest 50), with outcomes."""

    permission_classes = [SignedIn]

    @extend_schema(responses={200: inline_serializer("OwnReports", {
        "results": inline_serializer("OwnReport", OWN_REPORT_FIELDS, many=True)}),
                              **errors(401)})
    def get(self, request):
        rows = reports.reports_of(request.user)
        targets = reports.describe_many({(r.target_type, r.target_id) for r in rows})
        return Response({"results": [own_report_json(r, targets[r.target_type, r.target_id]) for r in rows]})


class NoticesView(APIView):
    """POST `/notices`: a notice through the public form, signed in or not. The answer's
    `reference` is the only way to check it later (`GET /notices/<reference>`, the page
    `/notice/<reference>`): no e-mail is sent."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(request=NoticeRequest, responses={201: inline_serializer("NoticeFiled", {
        "id": serializers.IntegerField(), "reference": serializers.CharField(),
        "status_url": serializers.CharField(), "target": TargetSchema, "message": serializers.CharField(),
    }), **errors(400, 429)})
    def post(self, request):
        data = NoticeRequest(data=request.data)
        data.is_valid(raise_exception=True)
        fields = {k: v for k, v in data.validated_data.items() if k != "good_faith"}
        try:
            report, token, target = reports.file_notice(user=request.user, ip=client_network(request), **fields)
        except reports.ReportRefused as exc:
            raise refusal(exc) from None
        except LimitExceeded as exceeded:
            raise RateLimited(exceeded) from None
        message = target.off_sale_message or "Thank you: a moderator will read your notice."
        return Response({"id": report.pk, "reference": token, "status_url": f"/notice/{token}",
                         "target": target.as_dict(), "message": message + " Keep the reference: it is how you see "
                         "the outcome (no e-mail is sent)."}, status=201)


class NoticeStatusView(APIView):
    """GET `/notices/<reference>`: a notice's status and, once closed, its outcome."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={200: inline_serializer("NoticeStatus", {
        **OWN_REPORT_FIELDS, "law": serializers.CharField()}), **errors(404)})
    def get(self, request, token):
        report = reports.notice_by_token(token)
        if report is None:
            raise APIError("not_found", "No notice has this reference.", status=404)
        target = reports.describe(report.target_type, report.target_id)
        return Response({**own_report_json(report, target), "law": report.law})


# Moderators -------------------------------------------------------------------------------------


class GroupParams(Params):
    sort = serializers.ChoiceField(choices=["newest", "count"], required=False,
                                   help_text="newest: the latest report first (default); count: most reports first")
    page = serializers.IntegerField(required=False, min_value=1, max_value=10_000)


def group_json(row: dict) -> dict:
    return {"target": row["target"].as_dict(), "open_count": row["open_count"], "notices": row["notices"],
            "reasons": row["reasons"], "first_at": iso_time(row["first_at"]), "latest_at": iso_time(row["latest_at"]),
            "newest_id": row["newest_id"]}


def moderator_report_json(report: Report) -> dict:
    return {"id": report.pk, "source": report.source, "reason": report.reason, "evidence": report.evidence,
            "law": report.law, "reporter": report.reporter.get_username() if report.reporter_id else None,
            "notifier_name": report.notifier_name or None, "notifier_email": report.notifier_email or None,
            "target_text": report.target_text or None,
            "closed_by": report.closed_by.get_username() if report.closed_by_id else None, **outcome_json(report)}


class ReportGroupsView(APIView):
    """GET `/moderation/reports`: one row per target with open reports, and how many (moderators)."""

    permission_classes = [IsModerator]

    @extend_schema(parameters=[GroupParams], responses={200: inline_serializer("ReportGroups", {
        "results": inline_serializer("ReportGroup", {
            "target": TargetSchema, "open_count": serializers.IntegerField(),
            "notices": serializers.IntegerField(help_text="How many of them are notices"),
            "reasons": serializers.ListField(child=serializers.CharField()),
            "first_at": serializers.DateTimeField(), "latest_at": serializers.DateTimeField(),
            "newest_id": serializers.IntegerField(help_text="The newest open report's id: `through` of a close"),
        }, many=True),
        "next_page": serializers.IntegerField(allow_null=True)}), **errors(400, 401, 403)})
    def get(self, request):
        p = GroupParams.read(request.query_params.dict())
        page = p.get("page", 1)
        rows, has_next = reports.report_groups(sort=p.get("sort", "newest"), page=page)
        return Response({"results": [group_json(r) for r in rows], "next_page": page + 1 if has_next else None})


def _group_or_404(target_type, target_id) -> tuple[tuple[str, str], list]:
    key = reports.target_key(target_type, target_id)
    rows = reports.group_reports(*key) if key else []
    if not rows:
        raise APIError("not_found", "No report names this target.", status=404)
    return key, rows


class ReportGroupView(APIView):
    """GET `/moderation/reports/<type>/<id>`: every report on one target (moderators)."""

    permission_classes = [IsModerator]

    @extend_schema(operation_id="moderation_report_group_retrieve", responses={200: inline_serializer(
        "ReportGroupDetail", {
        "target": TargetSchema, "open_count": serializers.IntegerField(),
        "reports": serializers.ListField(child=serializers.DictField())}), **errors(401, 403, 404)})
    def get(self, request, target_type, target_id):
        key, rows = _group_or_404(target_type, target_id)
        return Response({"target": reports.describe(*key).as_dict(),
                         "open_count": sum(r.status == Report.Status.OPEN for r in rows),
                         "reports": [moderator_report_json(r) for r in rows]})


class CloseRequest(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=Report.Outcome.values, help_text="no_action, delisted (a dataset: "
                                      "it is delisted now), or other",
                                      error_messages={"invalid_choice": "Choose an outcome: no action, dataset "
                                                      "delisted, or other."})
    statement = StrictTextField(max_length=reports.STATEMENT_MAX, help_text="What was decided, for the reporters")
    internal_note = StrictTextField(required=False, allow_blank=True, max_length=reports.NOTE_MAX,
                                    help_text="For moderators only")
    through = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="The newest report id you read: "
                                       "reports filed after it stay open")


class CloseGroupView(APIView):
    """POST `/moderation/reports/<type>/<id>/close`: close the group's open reports (up to
    `through`) with one outcome; each is recorded in the audit log and told to its reporter."""

    permission_classes = [IsModerator]

    @extend_schema(request=CloseRequest, responses={200: inline_serializer("ReportsClosed", {
        "closed": serializers.ListField(child=serializers.IntegerField()),
        "still_open": serializers.IntegerField(help_text="Reports filed after `through`, still open"),
        "outcome": serializers.CharField()}), **errors(400, 401, 403, 404, 409)})
    def post(self, request, target_type, target_id):
        data = CloseRequest(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            closed = reports.close_group(target_type=target_type, target_id=target_id, moderator=request.user,
                                         **data.validated_data)
        except reports.ReportRefused as exc:
            raise refusal(exc) from None
        return Response({"closed": [r.pk for r in closed.reports], "still_open": closed.still_open,
                         "outcome": data.validated_data["outcome"]})

"""The reports' pages: a signed-in person's report form (`/datasets/<slug>/report`), the public
notice form (`/notice`) and a notice's status (`/notice/<reference>`); for moderators, the report
groups (`/moderation/reports`) and one group with its close form. The same checks as the API
(report_api's serializers) and the same work (reports.py)."""
from urllib.parse import urlencode

from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_safe
from rest_framework.exceptions import ValidationError

from marketplace.api import APIError
from marketplace.limits.http import client_network
from marketplace.limits.services import LimitExceeded

from . import policy, reports
from .models import Report
from .report_api import CloseRequest, GroupParams, NoticeRequest, ReportRequest
from .roles import MODERATOR, role_required


def _field_errors(exc: ValidationError) -> dict:
    detail = exc.detail if isinstance(exc.detail, dict) else {"": exc.detail}
    return {name: " ".join(map(str, messages if isinstance(messages, list) else [messages]))
            for name, messages in detail.items()}


def _refused(exc: reports.ReportRefused) -> tuple[dict, str]:
    """(field errors, page error) of a refusal."""
    return ({exc.field: exc.message}, "") if exc.field and exc.status == 400 else ({}, exc.message)


def _form_values(request, names) -> dict:
    return {name: request.POST.get(name, "") for name in names}


@require_http_methods(["GET", "HEAD", "POST"])
def report_dataset(request, slug):
    """Report a dataset, or its publisher (signed in); anyone may file a notice instead."""
    found = reports.find_dataset(slug)
    if found is None or found.state not in ("listed", "delisted", "removed"):
        raise Http404("No such dataset.")
    dataset = reports.describe("dataset", found.id)
    context = {"target": dataset, "reasons": policy.REASONS, "errors": {}, "error": "", "done": None,
               "form": {"about": request.GET.get("about", "dataset"), "reason": "", "evidence": "", "law": ""},
               "limits": {"evidence": reports.EVIDENCE_MAX, "law": reports.LAW_MAX}}
    if not request.user.is_authenticated or request.method != "POST":
        return render(request, "moderation/report_form.html", context)
    form = _form_values(request, ("about", "reason", "evidence", "law"))
    context["form"] = form
    about = form["about"] if form["about"] in Report.TargetType.values else "dataset"
    data = ReportRequest(data={"target_type": about, "target": slug if about == "dataset" else dataset.publisher,
                               "reason": form["reason"], "evidence": form["evidence"], "law": form["law"]})
    status = 400
    try:
        data.is_valid(raise_exception=True)
        report, target = reports.file_report(reporter=request.user, ip=client_network(request),
                                             **data.validated_data)
    except ValidationError as exc:
        context["errors"] = _field_errors(exc)
    except reports.ReportRefused as exc:
        context["errors"], context["error"] = _refused(exc)
        status = exc.status
    except LimitExceeded as exceeded:
        context["error"], status, retry_after = exceeded.message, 429, exceeded.retry_after
    else:
        context["done"] = {"report": report, "target": target, "message": target.off_sale_message}
        status = 201
    response = render(request, "moderation/report_form.html", context, status=status)
    if status == 429:
        response["Retry-After"] = str(retry_after)
    return response


NOTICE_FIELDS = ("name", "email", "law", "target", "reason", "evidence")


@require_http_methods(["GET", "HEAD", "POST"])
def notice_form(request):
    """The public notice form: anyone reports illegal content or a breach of policy."""
    form = {name: "" for name in NOTICE_FIELDS} | {"target": request.GET.get("target", "")[:reports.TARGET_TEXT_MAX]}
    context = {"reasons": policy.REASONS, "errors": {}, "error": "", "form": form,
               "limits": {"name": reports.NAME_MAX, "email": reports.EMAIL_MAX, "law": reports.LAW_MAX,
                          "target": reports.TARGET_TEXT_MAX, "evidence": reports.EVIDENCE_MAX}}
    if request.method != "POST":
        return render(request, "moderation/notice.html", context)
    form = context["form"] = _form_values(request, NOTICE_FIELDS)
    form["good_faith"] = request.POST.get("good_faith") == "on"
    data = NoticeRequest(data=form)
    status = 400
    try:
        data.is_valid(raise_exception=True)
        fields = {k: v for k, v in data.validated_data.items() if k != "good_faith"}
        report, token, target = reports.file_notice(user=request.user, ip=client_network(request), **fields)
    except ValidationError as exc:
        context["errors"] = _field_errors(exc)
    except reports.ReportRefused as exc:
        context["errors"], context["error"] = _refused(exc)
        status = exc.status
    except LimitExceeded as exceeded:
        context["error"], status, retry_after = exceeded.message, 429, exceeded.retry_after
    else:
        return redirect(f"/notice/{token}?filed=1", permanent=False)
    response = render(request, "moderation/notice.html", context, status=status)
    if status == 429:
        response["Retry-After"] = str(retry_after)
    return response


@require_safe
def notice_status(request, token):
    """A notice's status, at the address its reference makes: the outcome once a moderator closed it."""
    report = reports.notice_by_token(token)
    if report is None:
        raise Http404("No notice has this reference.")
    return render(request, "moderation/notice_status.html", {
        "report": report, "target": reports.describe(report.target_type, report.target_id),
        "reason_label": policy.label(report.reason), "filed": request.GET.get("filed") == "1",
        "outcome_label": Report.Outcome(report.outcome).label if report.outcome else ""})


# Moderators -------------------------------------------------------------------------------------


@require_safe
@role_required(MODERATOR, "Reports")
def report_groups(request):
    """The targets with open reports, one row each, newest first or by count."""
    error, rows, has_next, page, sort = "", [], False, 1, "newest"
    try:
        p = GroupParams.read({k: v for k, v in request.GET.items() if v != ""})
    except (APIError, ValidationError) as exc:
        error = " ".join(_field_errors(exc).values()) if isinstance(exc, ValidationError) else str(exc.detail)
    else:
        page, sort = p.get("page", 1), p.get("sort", "newest")
        rows, has_next = reports.report_groups(sort=sort, page=page)

    def link(n):
        return "?" + urlencode({"sort": sort, "page": n})

    return render(request, "moderation/reports.html", {
        "groups": rows, "error": error, "sort": sort, "page": page, "reasons": policy.REASONS,
        "next_link": link(page + 1) if has_next else None, "prev_link": link(page - 1) if page > 1 else None,
    }, status=400 if error else 200)


@require_http_methods(["GET", "HEAD", "POST"])
@role_required(MODERATOR, "Reports")
def report_group(request, target_type, target_id):
    """Every report on one target, and the form that closes the open ones with an outcome."""
    key = reports.target_key(target_type, target_id)
    rows = reports.group_reports(*key) if key else []
    if not rows:
        raise Http404("No report names this target.")
    target_type, target_id = key
    errors, error, status = {}, "", 200
    form = {"outcome": "", "statement": "", "internal_note": ""}
    if request.method == "POST":
        form = _form_values(request, ("outcome", "statement", "internal_note", "through"))
        data = CloseRequest(data=form)
        try:
            data.is_valid(raise_exception=True)
            closed = reports.close_group(target_type=target_type, target_id=target_id, moderator=request.user,
                                         **data.validated_data)
        except ValidationError as exc:
            errors, status = _field_errors(exc), 400
        except reports.ReportRefused as exc:
            (errors, error), status = _refused(exc), exc.status
        else:
            return redirect(f"{request.path}?{urlencode({'closed': len(closed.reports), 'open': closed.still_open})}")
    open_rows = [r for r in rows if r.status == Report.Status.OPEN]
    return render(request, "moderation/report_group.html", {
        "target": reports.describe(target_type, target_id), "reports": rows, "open_reports": open_rows,
        "through": max((r.pk for r in open_rows), default=0), "reasons": policy.REASONS,
        "outcomes": Report.Outcome.choices, "form": form, "errors": errors, "error": error,
        "closed": request.GET.get("closed"), "still_open": request.GET.get("open"),
        "limits": {"statement": reports.STATEMENT_MAX, "note": reports.NOTE_MAX},
    }, status=status)

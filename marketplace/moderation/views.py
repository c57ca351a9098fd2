"""The moderation pages: the audit log for moderators (`/moderation/audit`), and a publisher's
own entries and notifications (`/me/audit`). The same reads as the API (selectors.py)."""
from urllib.parse import urlencode

from django.shortcuts import redirect, render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_http_methods, require_safe
from rest_framework.exceptions import ValidationError

from marketplace.api import APIError

from . import audit, notifications, selectors
from .api import AuditParams, PageParams
from .roles import MODERATOR, role_required


def _error_text(exc) -> str:
    if isinstance(exc, ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"": exc.detail}
        return " ".join(f"{name}: {' '.join(map(str, messages))}" if name else " ".join(map(str, messages))
                        for name, messages in detail.items())
    return str(exc.detail)


def _filters(request) -> dict:
    return {k: v for k, v in request.GET.items() if k != "before" and v}


def _newest_link(request):
    return request.path + ("?" + urlencode(_filters(request)) if _filters(request) else "")


def _next_link(request, rows):
    """The page of older entries, or None after the last (a page of fewer than PAGE_SIZE)."""
    if len(rows) < selectors.PAGE_SIZE:
        return None
    return "?" + urlencode({**_filters(request), "before": rows[-1]["id"]})


@require_safe
@role_required(MODERATOR, "The audit log")
def audit_log(request):
    """Search the audit log: words, an action, a target, an actor; 50 entries a page, newest first."""
    form = {k: request.GET.get(k, "") for k in ("q", "action", "target", "actor")}
    error, rows = "", []
    try:
        p = AuditParams.read({k: v for k, v in request.GET.items() if v != ""})
    except (APIError, ValidationError) as exc:
        error = _error_text(exc)
    else:
        kind, _, ident = p.get("target", "").partition(":")
        rows = selectors.audit_entries(q=p.get("q", ""), action=p.get("action", ""), target_type=kind,
                                       target_id=ident, actor=p.get("actor", ""), before=p.get("before"))
    return render(request, "moderation/audit.html", {
        "entries": rows, "form": form, "error": error, "actions": sorted(audit.ACTIONS.items()),
        "next_link": _next_link(request, rows), "paged": "before" in request.GET,
        "newest_link": _newest_link(request), "filtered": any(form.values()),
    }, status=400 if error else 200)


@require_http_methods(["GET", "HEAD", "POST"])
@ensure_csrf_cookie
def my_audit(request):
    """A publisher's page: the decisions about their datasets (from the audit log, without
    reporters, notes or moderators' names) and their notifications."""
    if not request.user.is_authenticated:
        return render(request, "web/sign_in_prompt.html", {"page_title": "Decisions about your datasets"})
    if request.method == "POST":  # "Mark all read"
        notifications.mark_read(request.user)
        return redirect(request.path)
    error, rows = "", []
    try:
        p = PageParams.read({k: v for k, v in request.GET.items() if v != ""})
    except (APIError, ValidationError) as exc:
        error = _error_text(exc)
    else:
        rows = selectors.publisher_entries(request.user, before=p.get("before"))
    return render(request, "moderation/my_audit.html", {
        "entries": rows, "error": error, "next_link": _next_link(request, rows),
        "paged": "before" in request.GET, "newest_link": _newest_link(request),
        "notifications": selectors.notifications(request.user, limit=20),
        "unread": selectors.unread_count(request.user), "action_labels": audit.ACTIONS,
    }, status=400 if error else 200)

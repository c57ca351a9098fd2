"""The console's pages for disputes (/moderation/disputes, arbiters), money that reached the market
without an order (/moderation/returns, arbiters), contributor abuse
(/moderation/abuse, moderators) and failed operator actions (/moderation/actions, moderators and
arbiters). Forms post back to the page; a refusal is shown on the page with its status (400, 403,
404, 409, 503), a success redirects with a message. The services are disputes.py, abuse.py and
operator_actions.py."""
from functools import wraps
import json
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_http_methods, require_safe

from marketplace.accounts.roles import ARBITER, MODERATOR, has_role
from marketplace.chain.retry import RetryRefused
from marketplace.orders import strays
from marketplace.orders.admin import parse_refund_share
from marketplace.rewards.models import Flag

from . import abuse, disputes, operator_actions
from .roles import role_required

MESSAGES = {
    "resolved": "The decision is recorded and queued for the operator sender: the order changes once the chain "
                "has it.",
    "prepared": "The decision is recorded. Send the prepared transaction from the arbiter's wallet below.",
}


def moderator_or_arbiter(title: str):
    """A page for either role (the failed actions): anonymous, the sign-in prompt; neither, 403."""
    def decorate(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return render(request, "web/sign_in_prompt.html", {"page_title": title,
                                                                   "audience": "moderators and arbiters"})
            if not (has_role(request.user, MODERATOR) or has_role(request.user, ARBITER)):
                return render(request, "moderation/forbidden.html", {"page_title": title, "role": MODERATOR},
                              status=403)
            return view(request, *args, **kwargs)
        return wrapped
    return decorate


# Disputes ---------------------------------------------------------------------------------------


@require_safe
@role_required(ARBITER, "Disputes")
def dispute_list(request):
    rows = disputes.open_disputes()
    return render(request, "moderation/disputes.html", {
        "rows": rows, "near_hours": disputes.near_deadline().total_seconds() // 3600,
        "left_text": disputes.left_text, "usdc": disputes.usdc,
    })


@require_http_methods(["GET", "HEAD", "POST"])
@ensure_csrf_cookie
@role_required(ARBITER, "A dispute")
def dispute_detail(request, order_id):
    if order_id > disputes.MAX_ORDER_ID:
        raise Http404
    error, status, form = "", 200, {"share": "", "statement": "", "note": ""}
    if request.method == "POST":
        form = {k: request.POST.get(k, "") for k in form}
        try:
            bps = parse_refund_share(form.get("share", ""))  # percent, two decimals
            for name in ("statement", "note"):
                if len(form[name]) > disputes.STATEMENT_MAX or "\x00" in form[name]:
                    raise disputes.Refused("invalid", f"The {name} is at most {disputes.STATEMENT_MAX} characters.",
                                           status=400)
            decision = disputes.resolve(order_id=order_id, refund_bps=bps, arbiter=request.user,
                                        statement=form["statement"].strip(), note=form["note"].strip())
        except ValueError as exc:
            error, status = str(exc), 400
        except disputes.Refused as exc:
            error, status = exc.message, exc.status
        else:
            done = "resolved" if decision.via == "operator" else "prepared"
            return redirect(f"{request.path}?{urlencode({'done': done})}")
    page = disputes.dispute_page(order_id)
    if page is None:
        raise Http404
    return render(request, "moderation/dispute.html", {
        **page, "form": form, "error": error, "message": MESSAGES.get(request.GET.get("done", ""), ""),
        "left_text": disputes.left_text, "usdc": disputes.usdc, "is_disputed": page["order"].status == "disputed",
        "percent": lambda bps: f"{int(bps or 0) / 100:g}",
        "prepared_json": _json(page["prepared"]) if page["prepared"] else "",
    }, status=status)


def _json(value) -> str:
    return json.dumps(value, indent=2)


# Money that reached the market without an order ------------------------------------------------


@require_safe
@ensure_csrf_cookie
@role_required(ARBITER, "Stray transfers")
def returns_list(request):
    page = strays.for_arbiter(settings.CHAIN_ID)
    return render(request, "moderation/returns.html", {
        **page, "usdc": disputes.usdc, "prepared_json": _json(page["prepared"]) if page["prepared"] else "",
    })


# Contributor abuse ------------------------------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
@ensure_csrf_cookie
@role_required(MODERATOR, "Contributor abuse")
def abuse_list(request):
    error, status, message = "", 200, ""
    kind = request.GET.get("kind", "")
    if kind and kind not in Flag.Kind.values:
        error, status, kind = f"Unknown kind {kind!r}.", 400, ""
    if request.method == "POST":
        try:
            flag_id = int(request.POST.get("flag", ""))
            flag = abuse.decide(flag_id=flag_id, decision=request.POST.get("decision", ""), by=request.user,
                                note=request.POST.get("note", ""))
        except ValueError:
            error, status = "Choose a flag.", 400
        except abuse.Refused as exc:
            error, status = exc.message, exc.status
        else:
            return redirect(f"{request.path}?{urlencode({'decided': flag.pk, 'status': flag.status})}")
    if request.GET.get("decided") and request.GET.get("status") in Flag.Status.values:
        message = (f"Flag #{request.GET['decided']} {request.GET['status']}: "
                   + ("its held amounts are paid in the next epoch." if request.GET["status"] == "cleared"
                      else "its held amounts return to the pool."))
    return render(request, "moderation/abuse.html", {
        "rows": abuse.open_flags(kind=kind), "recent": abuse.recent_decisions(), "kinds": Flag.Kind.choices,
        "kind": kind, "error": error, "message": message, "usdc": disputes.usdc,
    }, status=status)


# Failed operator actions ------------------------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
@ensure_csrf_cookie
@moderator_or_arbiter("Failed operator actions")
def action_list(request):
    error, status, message = "", 200, ""
    if request.method == "POST":
        try:
            action_id = int(request.POST.get("action", ""))
            new = operator_actions.retry(action_id=action_id, by=request.user)
        except ValueError:
            error, status = "Choose an action.", 400
        except RetryRefused as exc:
            error, status = exc.message, exc.status
        else:
            return redirect(f"{request.path}?{urlencode({'retried': new.context.get('retry_of'), 'as': new.pk})}")
    if request.GET.get("retried", "").isdigit() and request.GET.get("as", "").isdigit():
        message = (f"Operator action #{request.GET['retried']} is queued again as #{request.GET['as']}: the operator "
                   "sender picks it up within seconds.")
    before = request.GET.get("before", "")
    before = int(before) if before.isdigit() and 0 < int(before) < 2**63 else None
    rows = operator_actions.failed_actions(before=before)
    retry_ids = {a.pk for a in rows if operator_actions.may_retry(request.user, a)}
    return render(request, "moderation/actions.html", {
        "rows": rows, "retry_ids": retry_ids, "error": error, "message": message,
        "next_before": rows[-1].pk if len(rows) == operator_actions.PAGE else None, "paged": before is not None,
    }, status=status)

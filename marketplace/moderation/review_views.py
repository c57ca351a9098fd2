"""The review console's pages (moderators): the queue (`/moderation/queue`) and one item
(`/moderation/review/<revision id>`), where a moderator claims, releases and decides (form POSTs
with the CSRF token; the same validation and refusals as the API, review_api.py)."""
from urllib.parse import urlencode

from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_http_methods, require_safe
from rest_framework.exceptions import ValidationError

from marketplace.api import APIError
from marketplace.catalog.models import DatasetRevision

from . import policy, review
from .review_api import ReviewDecisionRequest, QueueParams, decide_or_refuse
from .roles import MODERATOR, role_required
from .views import _error_text

DONE_WORDS = {"claimed": "You hold this item", "released": "Claim released", "approve": "Approved",
              "reject": "Rejected", "request_changes": "Changes requested"}


@require_safe
@role_required(MODERATOR, "The review queue")
def queue_page(request):
    """What waits for a moderator, oldest first, 50 a page, with the due time and the claims."""
    kind = request.GET.get("kind", "")
    error, rows = "", []
    try:
        p = QueueParams.read({k: v for k, v in request.GET.items() if v != ""})
    except (APIError, ValidationError) as exc:
        error = _error_text(exc)
    else:
        rows = review.queue(kind=p.get("kind", ""), after=p.get("after"))
    next_link = None
    if len(rows) == review.PAGE_SIZE:
        next_link = "?" + urlencode({**({"kind": kind} if kind else {}), "after": rows[-1]["id"]})
    return render(request, "moderation/queue.html", {
        "items": rows, "error": error, "kind": kind, "kinds": DatasetRevision.Kind.choices,
        "target_hours": review.target_hours(), "next_link": next_link, "paged": "after" in request.GET,
        "first_link": request.path + (f"?kind={kind}" if kind else ""),
    }, status=400 if error else 200)


@require_http_methods(["GET", "HEAD", "POST"])
@ensure_csrf_cookie
@role_required(MODERATOR, "A review")
def item_page(request, revision_id):
    """One revision with everything a decision needs; POST `action` = claim, release or decide."""
    error, status, form = "", 200, {}
    if request.method == "POST":
        action = request.POST.get("action", "")
        form = {k: request.POST.get(k, "") for k in ("decision", "reason_code", "statement", "internal_note")}
        try:
            done = _act(request, revision_id, action)
        except DatasetRevision.DoesNotExist:
            raise Http404("No such revision.") from None
        except ValidationError as exc:
            error, status = _error_text(exc), 400
        except APIError as exc:
            error, status = str(exc.detail), exc.status_code
        else:
            return redirect(f"{request.path}?done={done}")
    try:
        shown = review.item(revision_id)
    except DatasetRevision.DoesNotExist:
        raise Http404("No such revision.") from None
    done = request.GET.get("done", "")
    return render(request, "moderation/review_item.html", {
        "item": shown, "revision": shown.revision, "error": error, "form": form,
        "done": DONE_WORDS.get(done, ""), "reasons": list(policy.REASONS.items()),
        "statement_max": policy.STATEMENT_MAX, "note_max": policy.NOTE_MAX,
        "mine": shown.claim is not None and shown.claim.moderator_id == request.user.pk,
        "is_open": shown.revision.status in DatasetRevision.OPEN,
        "claim_minutes": review.claim_minutes(), "reason_label": policy.label,
        "open_reports": shown.reports,
    }, status=status)


def _act(request, revision_id, action) -> str:
    """Do what the form asked; returns the word for the page after the redirect. Refusals raise
    APIError (409 claimed, not_open, stale_revision, decision_refused) or ValidationError (400)."""
    revision = DatasetRevision.objects.get(pk=revision_id)
    if action == "claim":
        try:
            review.claim(revision.pk, moderator=request.user)
        except review.Claimed as exc:
            raise APIError("claimed", str(exc), status=409) from None
        except review.NotOpen as exc:
            raise APIError("not_open", str(exc), status=409) from None
        return "claimed"
    if action == "release":
        try:
            review.release(revision.pk, moderator=request.user)
        except review.Claimed as exc:
            raise APIError("claimed", str(exc), status=409) from None
        return "released"
    if action != "decide":
        raise APIError("bad_request", "Unknown action: claim, release or decide.", status=400)
    data = {k: request.POST.get(k, "") for k in ("decision", "reason_code", "statement", "internal_note")}
    shown = list(zip(request.POST.getlist("listing_id"), request.POST.getlist("content_hash")))
    if shown or revision.kind == DatasetRevision.Kind.VERSION:
        data["listings"] = [{"listing_id": i, "content_hash": h} for i, h in shown]
    checked = ReviewDecisionRequest(data=data)
    checked.is_valid(raise_exception=True)
    decide_or_refuse(revision, request.user, checked.validated_data)
    return checked.validated_data["decision"]

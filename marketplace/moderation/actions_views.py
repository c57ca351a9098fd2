"""The moderation pages for actions on a dataset and for appeals:

- `/moderation/datasets/<id or slug>` (moderators): the dataset's state, its versions and listings,
  orders in escrow, open appeal and audit history, with the delist / remove / restore form.
- `/moderation/appeals` and `/moderation/appeals/<id>` (moderators): the open appeals, and one
  appeal with the decision it contests and the uphold / reverse form.
- `/me/appeals/new?entry=<id>` (the publisher): appeal a decision listed on /me/audit.

The same functions as the API (actions.py, appeals.py); a refusal re-renders the form with its
message and the API's status (400, 403, 409)."""
from django.db.models import Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from marketplace.catalog.models import Dataset, Listing

from . import actions, appeals, selectors
from .models import Appeal, AuditEntry
from .policy import APPEAL_MAX, NOTE_MAX, REASONS, STATEMENT_MAX
from .roles import MODERATOR, role_required


def _dataset(ident: str) -> Dataset:
    query = Q(slug=ident) | Q(pk=int(ident)) if ident.isdigit() and len(ident) < 19 else Q(slug=ident)
    dataset = Dataset.objects.select_related("owner").filter(query).first()
    if dataset is None:
        raise Http404("No such dataset")
    return dataset


def _words(request) -> dict:
    return {k: request.POST.get(k, "") for k in ("reason", "statement", "internal_note")}


@require_http_methods(["GET", "HEAD", "POST"])
@role_required(MODERATOR, "A dataset's moderation")
def dataset_page(request, ident):
    dataset = _dataset(ident)
    error, status, form = "", 200, {"reason": "", "statement": "", "internal_note": ""}
    if request.method == "POST":
        form = _words(request)
        try:
            actions.perform(dataset, request.POST.get("action", ""), moderator=request.user, **form)
        except actions.ActionRefused as exc:
            error, status = exc.message, exc.status
        else:
            return redirect(f"{request.path}?done={request.POST['action']}")
        dataset.refresh_from_db()
    state = actions.state(dataset)
    listings = Listing.objects.filter(version__dataset=dataset).select_related("version").order_by(
        "version__number", "chain_id")
    return render(request, "moderation/dataset.html", {
        "dataset": dataset, "state": state, "listings": listings,
        "versions": dataset.versions.order_by("-number"),
        "buyers": actions.open_order_buyers(dataset),
        "appeal": Appeal.objects.filter(dataset=dataset, status=Appeal.Status.OPEN).first(),
        "entries": selectors.audit_entries(target_type="dataset", target_id=str(dataset.pk), limit=20),
        "reasons": REASONS, "form": form, "error": error, "done": request.GET.get("done", ""),
        "can_delist": state not in ("removed", "delisting", Dataset.Status.DELISTED),
        "can_remove": state != "removed",
        "can_restore": state in ("removed", Dataset.Status.DELISTED, Dataset.Status.REJECTED),
        "statement_max": STATEMENT_MAX, "note_max": NOTE_MAX,
    }, status=status)


@require_http_methods(["GET", "HEAD"])
@role_required(MODERATOR, "Appeals")
def appeals_page(request):
    rows = Appeal.objects.filter(status=Appeal.Status.OPEN).select_related("dataset").order_by("created_at", "id")
    decided = (Appeal.objects.exclude(status=Appeal.Status.OPEN).select_related("dataset", "moderator")
               .order_by("-decided_at", "-id")[:20])
    return render(request, "moderation/appeals.html", {"appeals": rows[:200], "decided": decided})


@require_http_methods(["GET", "HEAD", "POST"])
@role_required(MODERATOR, "An appeal")
def appeal_page(request, pk):
    appeal = Appeal.objects.select_related("dataset__owner", "moderator").filter(pk=pk).first()
    if appeal is None:
        raise Http404("No such appeal")
    error, status, form = "", 200, {"outcome": "", "statement": ""}
    if request.method == "POST":
        form = {"outcome": request.POST.get("outcome", ""), "statement": request.POST.get("statement", "")}
        try:
            appeals.decide(appeal.pk, moderator=request.user, **form)
        except actions.ActionRefused as exc:
            error, status = exc.message, exc.status
        else:
            return redirect(request.path)
    return render(request, "moderation/appeal.html", {
        "appeal": appeal, "entry": AuditEntry.objects.filter(pk=appeal.entry_id).first(),
        "own_decision": appeal.decided_by_id is not None and appeal.decided_by_id == request.user.pk,
        "form": form, "error": error, "statement_max": STATEMENT_MAX,
    }, status=status)


@require_http_methods(["GET", "HEAD", "POST"])
def new_appeal(request):
    """A publisher's appeal (or counter-notice) of the decision `?entry=`."""
    if not request.user.is_authenticated:
        return render(request, "web/sign_in_prompt.html", {"page_title": "Appeal a decision"})
    entry_id = request.GET.get("entry", "")
    error, status, statement, entry, dataset = "", 200, "", None, None
    try:
        entry, dataset = appeals.appealable_entry(entry_id)
        if dataset.owner_id != request.user.pk:
            raise actions.ActionRefused("not_yours", "Only the dataset's publisher can appeal a decision about it.",
                                        status=403)
    except actions.ActionRefused as exc:
        return render(request, "moderation/new_appeal.html", {"error": exc.message, "entry": None},
                      status=exc.status)
    if request.method == "POST":
        statement = request.POST.get("statement", "")
        try:
            appeals.file(publisher=request.user, entry_id=entry.pk, statement=statement)
        except actions.ActionRefused as exc:
            error, status = exc.message, exc.status
        else:
            return redirect(request.get_full_path())  # the form's page, saying the appeal is waiting
    return render(request, "moderation/new_appeal.html", {
        "entry": entry, "dataset": dataset, "error": error, "statement": statement,
        "counter_notice": entry.action == "dataset.remove", "what": appeals.APPEALABLE[entry.action],
        "open_appeal": Appeal.objects.filter(dataset=dataset, status=Appeal.Status.OPEN).first(),
        "statement_max": APPEAL_MAX,
    }, status=status)

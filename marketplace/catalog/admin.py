"""Moderation in the Django admin (until the moderation console): decide on what waits for review
(DatasetRevision), reject a new dataset's submission, delist a dataset.

The actions never wait on the chain: they record the decision and write operator actions (an
outbox in chain.OperatorAction) in one database transaction, and the single operator sender does
the rest. A decision names revisions; one on a revision that is no longer open changes nothing and
says so.
"""
import json

from django.contrib import admin, messages
from django.db.models import Exists, OuterRef
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from marketplace.accounts.roles import MODERATOR, has_role

from . import revisions, services
from .models import Dataset, DatasetRevision, DatasetVersion, Listing, ListingUpdate
from .preview import PreviewSettings, public_columns, public_sample, unmatched_hidden


class AwaitingApprovalFilter(admin.SimpleListFilter):
    title = "on-chain approval"
    parameter_name = "approval"

    def lookups(self, request, model_admin):
        return [("awaiting", "Listing awaiting approval"), ("approved", "Listing approved")]

    def queryset(self, request, queryset):
        if self.value() == "awaiting":
            return queryset.filter(Exists(Listing.objects.filter(version__dataset=OuterRef("pk"), approved=False)))
        if self.value() == "approved":
            return queryset.filter(Exists(Listing.objects.filter(version__dataset=OuterRef("pk"), approved=True)))
        return queryset


class VersionInline(admin.TabularInline):
    model = DatasetVersion
    extra = 0
    can_delete = False
    fields = ("number", "original_name", "format", "size", "content_hash", "price", "token", "analysis_status",
              "listing")
    readonly_fields = fields
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="on-chain listing")
    def listing(self, version):
        listing = version.listings.order_by("-block_number").first()
        if listing is None:
            return "not listed"
        return f"#{listing.listing_id} ({'approved' if listing.approved else 'not approved'}) by {listing.owner}"


def _report(modeladmin, request, result, done):
    if result.queued or result.updated:
        modeladmin.message_user(request, f"{done}: {result.updated} dataset(s) changed, {result.queued} "
                                "on-chain action(s) queued for the operator sender.", messages.SUCCESS)
    for note in result.notes:
        modeladmin.message_user(request, note, messages.WARNING)


def _confirm(modeladmin, request, queryset, *, action, intro, submit, waiting, need_reason):
    """The intermediate page of a decision: the revisions it decides, each with what approving it
    makes public, whose ids are posted back, so that only what was shown is decided, and the
    statement of reasons when one is needed. None once confirmed.

    "Select all" (select_across) is refused: it stands for whatever matches when the action runs,
    not for what the moderator saw."""
    if request.POST.get("select_across", "0") not in ("", "0"):
        modeladmin.message_user(request, "A decision is taken on revisions you were shown: select them on this "
                                "page (\"select all\" is not accepted for decisions).", messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())
    reason = request.POST.get("reason", "").strip()
    if request.POST.get("confirmed") and (reason or not need_reason):
        return None
    items = [format_html("{}<div>{}</div>", str(r), revision_summary(r)) for r in waiting]
    return TemplateResponse(request, "admin/catalog/decision.html", {
        **modeladmin.admin_site.each_context(request), "title": submit, "intro": intro, "items": items,
        "queryset": queryset, "action": action, "submit": submit, "reason": reason, "need_reason": need_reason,
        "revision_ids": [r.pk for r in waiting],
        "error": "Give the reasons: the publisher sees them." if request.POST.get("confirmed") else "",
    })


def _confirmed(request, waiting):
    """The revisions among `waiting` whose ids the confirmation page posted back (what was shown)."""
    shown = {int(pk) for pk in request.POST.getlist("revision") if pk.isdigit()}
    return [r for r in waiting if r.pk in shown]


def revision_summary(revision):
    """What approving `revision` makes public, as the moderator sees it."""
    if revision.kind == DatasetRevision.Kind.DETAILS:
        current = revisions.public_text(revision.dataset)
        rows = [(field, json.dumps(current.get(field), ensure_ascii=False), json.dumps(value, ensure_ascii=False))
                for field, value in revision.changes.items()
                if not revisions.is_published(revision.dataset) or current.get(field) != value]
        return format_html("<table><tr><th>field</th><th>public now</th><th>proposed</th></tr>{}</table>",
                           format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows))
    version = revision.version
    if revision.kind == DatasetRevision.Kind.PREVIEW:
        return format_html("Preview: {}", _preview_text(version, PreviewSettings.from_json(revision.changes)))
    listings = format_html_join(", ", "#{} on chain {} (content hash {})",
                                ((i.get("listing_id"), i.get("chain_id"), i.get("content_hash"))
                                 for i in revision.listings)) or "—"
    preview = revision.changes.get("preview")
    settings = PreviewSettings.from_json(preview) if preview is not None else PreviewSettings.of(version)
    unmatched = unmatched_hidden(version, settings)
    return format_html("File {} ({} bytes, {} rows), content hash {}; listings: {}; analysis: {}; preview: {}{}",
                       version.original_name, version.size, version.row_count, version.content_hash, listings,
                       version.get_analysis_status_display().lower(), _preview_text(version, settings),
                       f" (no column is called {', '.join(unmatched)}: not approvable until the publisher "
                       "chooses again)" if unmatched else "")


def _preview_text(version, settings: PreviewSettings) -> str:
    """What the public would see of `version` under `settings`: its columns, and whether its first
    rows and its distributions are shown."""
    hidden = settings.hidden_columns
    columns = [c.get("name") for c in public_columns(version, settings)]
    return "; ".join([
        f"public columns: {', '.join(map(str, columns))}" if columns else "no public column",
        f"hidden columns: {', '.join(hidden)}" if hidden else "no hidden column",
        f"{len(public_sample(version, settings)):,} sample rows public" if settings.show_sample else "no sample rows",
        "distributions public" if settings.show_distributions else "no distributions",
    ])


def _decide(modeladmin, request, revision_list, decision, reason=""):
    done = stale = queued = 0
    started = timezone.now()
    for revision in revision_list:
        try:
            queued += revisions.decide(revision, decision=decision, moderator=request.user, reason=reason).queued
            done += 1
        except (revisions.StaleDecision, revisions.DecisionRefused) as exc:
            revision.refresh_from_db(fields=["decided_by", "decided_at"])
            if revision.decided_by_id == request.user.pk and revision.decided_at and revision.decided_at >= started:
                continue  # decided along with an earlier one (a rejected submission takes its versions)
            stale += 1
            modeladmin.message_user(request, str(exc), messages.ERROR)
    if done:
        modeladmin.message_user(request, f"{done} revision(s) decided ({decision.replace('_', ' ')}); {queued} "
                                "on-chain action(s) queued for the operator sender.", messages.SUCCESS)
    if not done and not stale:
        modeladmin.message_user(request, "Nothing was waiting for review.", messages.WARNING)


def _moderates(model_admin, request) -> bool:
    """A moderation action (approve, reject, request changes, delist) is a moderator's: the role,
    and the permission to change what it decides. Staff alone is not enough."""
    return has_role(request.user, MODERATOR) and model_admin.has_change_permission(request)


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("title", "slug", "owner", "status", "waiting", "category", "updated_at")
    list_filter = ("status", AwaitingApprovalFilter, "category", "license")
    search_fields = ("title", "slug", "owner__address", "owner__username")
    # Moderators decide through the actions; the content is the publisher's (edited through the API,
    # which also renders the description), so the form is read only.
    readonly_fields = [field.name for field in Dataset._meta.fields if field.name not in ("id", "description_html")]
    exclude = ("description_html",)
    inlines = [VersionInline]
    actions = ["approve_on_chain", "reject", "delist"]
    list_select_related = ("owner",)

    def has_add_permission(self, request):
        return False  # publishers create datasets from their wallet

    def has_moderate_permission(self, request):
        return _moderates(self, request)

    def has_delete_permission(self, request, obj=None):
        """A dataset with a version someone bought is never deleted (buyers keep their files)."""
        from marketplace.orders.signals import sold

        if obj is not None and any(sold(version) for version in obj.versions.all()):
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request, queryset):
        from django.db.models import ProtectedError

        try:
            super().delete_queryset(request, queryset)
        except ProtectedError as exc:
            self.message_user(request, f"Nothing was deleted: {exc.args[0]}", messages.ERROR)

    @admin.display(description="waiting for review")
    def waiting(self, dataset):
        count = dataset.revisions.filter(status=DatasetRevision.Status.PENDING).count()
        return f"{count} revision(s)" if count else "—"

    def _open(self, queryset):
        return list(DatasetRevision.objects.filter(dataset__in=queryset, status__in=DatasetRevision.OPEN)
                    .select_related("dataset", "version").order_by("dataset_id", "created_at", "id"))

    @admin.action(description="Approve what waits for review (listings go on-chain)", permissions=["moderate"])
    def approve_on_chain(self, request, queryset):
        order = {DatasetRevision.Kind.DETAILS: 0, DatasetRevision.Kind.VERSION: 1, DatasetRevision.Kind.PREVIEW: 2}
        waiting = sorted(self._open(queryset), key=lambda r: (r.dataset_id, order[r.kind], r.created_at, r.pk))
        page = _confirm(self, request, queryset, action="approve_on_chain", submit="Approve", waiting=waiting,
                        intro="Approve exactly these revisions:", need_reason=False)
        if page is not None:
            return page
        self._decide_shown(request, queryset, waiting, revisions.Decision.APPROVE)

    @admin.action(description="Reject what waits for review (a new dataset: all of it)", permissions=["moderate"])
    def reject(self, request, queryset):
        waiting = self._open(queryset)
        page = _confirm(self, request, queryset, action="reject", submit="Reject", waiting=waiting,
                        intro="Reject exactly these revisions:", need_reason=True)
        if page is not None:
            return page
        self._decide_shown(request, queryset, waiting, revisions.Decision.REJECT, request.POST["reason"].strip())

    def _decide_shown(self, request, queryset, waiting, decision, reason=""):
        """Decide what the confirmation page showed; a revision opened since waits for another look,
        and one superseded since is refused by revisions.decide."""
        shown_ids = {int(pk) for pk in request.POST.getlist("revision") if pk.isdigit()}
        newer = [r for r in waiting if r.pk not in shown_ids]
        stale = DatasetRevision.objects.filter(pk__in=shown_ids - {r.pk for r in waiting}, dataset__in=queryset)
        _decide(self, request, _confirmed(request, waiting) + list(stale), decision, reason)
        if newer:
            self.message_user(request, f"{len(newer)} revision(s) opened since the confirmation page was shown "
                              "were not decided: look at them first.", messages.WARNING)

    @admin.action(description="Delist", permissions=["moderate"])
    def delist(self, request, queryset):
        _report(self, request, services.delist(queryset, moderator=request.user), "Delisting queued")


@admin.register(DatasetRevision)
class DatasetRevisionAdmin(admin.ModelAdmin):
    """The review queue: each revision shows exactly what approving it makes public."""

    list_display = ("id", "kind", "dataset", "version_number", "status", "created_by", "created_at", "decided_by")
    list_filter = ("status", "kind")
    search_fields = ("dataset__slug", "dataset__title", "created_by__address")
    readonly_fields = ("dataset", "version", "kind", "status", "what_changes", "listings_shown", "created_by",
                       "created_at", "superseded_by", "decided_by", "decided_at", "reason")
    exclude = ("changes", "listings")
    actions = ["approve", "reject", "request_changes"]
    list_select_related = ("dataset", "version", "created_by", "decided_by")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Decided through the actions only: a revision's own page is never saved.
        return super().has_change_permission(request, obj) and (obj is None or request.method in ("GET", "HEAD"))

    def has_moderate_permission(self, request):
        return _moderates(self, request)

    @admin.display(description="version")
    def version_number(self, revision):
        return f"v{revision.version.number}" if revision.version_id else "—"

    @admin.display(description="what approving it makes public")
    def what_changes(self, revision):
        return revision_summary(revision)

    @admin.display(description="listings it puts on sale")
    def listings_shown(self, revision):
        return format_html_join(", ", "#{} on chain {} (content hash {})",
                                ((i.get("listing_id"), i.get("chain_id"), i.get("content_hash"))
                                 for i in revision.listings)) or "—"

    @admin.action(description="Approve", permissions=["moderate"])
    def approve(self, request, queryset):
        return self._decide_shown(request, queryset, revisions.Decision.APPROVE, submit="Approve",
                                  intro="Approve exactly these revisions:")

    @admin.action(description="Reject", permissions=["moderate"])
    def reject(self, request, queryset):
        return self._decide_shown(request, queryset, revisions.Decision.REJECT, submit="Reject",
                                  intro="Reject exactly these revisions:")

    @admin.action(description="Request changes", permissions=["moderate"])
    def request_changes(self, request, queryset):
        return self._decide_shown(request, queryset, revisions.Decision.REQUEST_CHANGES, submit="Request changes",
                                  intro="Ask the publisher to change exactly these revisions:")

    def _decide_shown(self, request, queryset, decision, *, submit, intro):
        """Decide the selected revisions the confirmation page showed (one decided or superseded
        since is refused by revisions.decide)."""
        waiting = list(queryset.select_related("dataset", "version").order_by("created_at", "id"))
        page = _confirm(self, request, queryset, action=decision, submit=submit, intro=intro, waiting=waiting,
                        need_reason=decision != revisions.Decision.APPROVE)
        if page is not None:
            return page
        _decide(self, request, _confirmed(request, waiting), decision, request.POST.get("reason", "").strip())


class ListingUpdateInline(admin.TabularInline):
    """The owner's price and payout changes, as the chain reported them."""

    model = ListingUpdate
    extra = 0
    can_delete = False
    fields = ("block_number", "log_index", "price", "payout", "tx_hash", "created_at")
    readonly_fields = fields
    ordering = ("-block_number", "-log_index")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    """Chain-derived: read only."""

    list_display = ("listing_id", "chain_id", "version", "owner", "price", "dispute_window", "approved", "active",
                    "block_number")
    list_filter = ("approved", "active", "chain_id")
    search_fields = ("owner", "tx_hash", "version__dataset__slug")
    readonly_fields = [field.name for field in Listing._meta.fields]
    inlines = [ListingUpdateInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

"""Moderation in the Django admin: review datasets and approve, reject or delist them on-chain.

The actions never wait on the chain: they change the status and write operator actions (an outbox
in chain.OperatorAction) in one database transaction, and the single operator sender does the rest.
"""
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef

from marketplace.chain.models import OperatorAction

from . import services
from .models import Dataset, DatasetVersion, Listing, ListingUpdate


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


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("title", "slug", "owner", "status", "category", "updated_at")
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

    @admin.action(description="Approve on-chain", permissions=["change"])
    def approve_on_chain(self, request, queryset):
        _report(self, request, services.approve_on_chain(queryset, moderator=request.user), "Approval queued")

    @admin.action(description="Reject", permissions=["change"])
    def reject(self, request, queryset):
        _report(self, request, services.reject(queryset, moderator=request.user), "Rejected")

    @admin.action(description="Delist", permissions=["change"])
    def delist(self, request, queryset):
        _report(self, request, services.delist(queryset, moderator=request.user), "Delisting queued")


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

    list_display = ("listing_id", "chain_id", "version", "owner", "price", "approved", "active", "block_number")
    list_filter = ("approved", "active", "chain_id")
    search_fields = ("owner", "tx_hash", "version__dataset__slug")
    readonly_fields = [field.name for field in Listing._meta.fields]
    inlines = [ListingUpdateInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# The operator outbox is chain/'s model; it is shown here, next to the moderation it serves,
# because chain/admin.py belongs to another change. Move it there when convenient.
@admin.register(OperatorAction)
class OperatorActionAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "listing_id", "status", "tx_hash", "error", "created_by", "created_at", "updated_at")
    list_filter = ("status", "kind", "chain_id")
    search_fields = ("tx_hash", "expected_owner", "expected_content_hash")
    readonly_fields = [field.name for field in OperatorAction._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

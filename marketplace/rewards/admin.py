"""The admin's pages of the rewards app: epochs (where each one is in its close, its pool, and why
it waits: funding, the sender, a failed proposal), held amounts, flags with their evidence (clear
or confirm them), collection targets (edited here), and fetch jobs and collected rows (read-only:
the services are their only writers)."""

from django.contrib import admin, messages

from marketplace.accounts.roles import MODERATOR, has_role

from . import flags
from .models import CollectedRow, CollectionTarget, Epoch, FetchJob, Flag, HeldAmount


@admin.register(Epoch)
class EpochAdmin(admin.ModelAdmin):
    list_display = (
        "number",
        "starts_at",
        "ends_at",
        "state",
        "root_status",
        "pool",
        "paid",
        "held",
        "total",
        "leaves",
        "waiting_reason",
    )
    list_filter = ("state", "root_status")
    exclude = ("funding_raw",)
    readonly_fields = [f.name for f in Epoch._meta.fields if f.name != "funding_raw"]

    @admin.display(description="Waiting for")
    def waiting_reason(self, epoch):
        if epoch.waiting:
            return epoch.waiting
        if epoch.action_id and epoch.action.status == "pending" and epoch.action.error:
            return epoch.action.error
        return ""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(HeldAmount)
class HeldAmountAdmin(admin.ModelAdmin):
    list_display = ("epoch", "wallet", "amount", "reason", "status", "settled_in")
    list_filter = ("status",)
    readonly_fields = ("epoch", "wallet", "flag", "amount", "reason", "status", "settled_in")


@admin.register(CollectionTarget)
class CollectionTargetAdmin(admin.ModelAdmin):
    list_display = ("name", "url", "dataset", "every_seconds", "active", "next_run_at")
    list_filter = ("active",)
    raw_id_fields = ("dataset",)


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(FetchJob)
class FetchJobAdmin(ReadOnly):
    list_display = (
        "pk",
        "url",
        "state",
        "outcome",
        "is_canary",
        "server_check",
        "created_at",
        "settled_at",
    )
    list_filter = ("state", "outcome", "is_canary", "server_check")


@admin.register(CollectedRow)
class CollectedRowAdmin(ReadOnly):
    list_display = ("pk", "dataset", "content_hash", "collected_at", "version")


@admin.register(Flag)
class FlagAdmin(admin.ModelAdmin):
    """The moderators' review list of contributor flags: the evidence, and two decisions
    (`flags.decide`). Clear: the held amounts are paid in the next epoch and the device gets back
    the quality the flag took. Confirm: they go back to the next pool. A decided flag is not
    decided again."""

    list_display = ("created_at", "kind", "wallet", "device", "status", "decided_by", "decided_at")
    list_filter = ("status", "kind")
    search_fields = ("wallet", "device__address")
    readonly_fields = ("kind", "wallet", "device", "evidence", "quality_penalty_bps", "status", "decided_by",
                       "decided_at", "created_at")
    fields = readonly_fields + ("note",)
    actions = ("clear", "confirm")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _decide(self, request, queryset, status):
        done = flags.decide(queryset.values_list("pk", flat=True), status, request.user)
        skipped = queryset.count() - done
        self.message_user(request, f"{done} flag(s) {status}" + (f"; {skipped} already decided, left as they were"
                                                                  if skipped else ""),
                          messages.SUCCESS if done else messages.WARNING)

    def has_moderate_permission(self, request):
        """Deciding a flag is a moderator's: the role, and the permission to change flags."""
        return has_role(request.user, MODERATOR) and self.has_change_permission(request)

    @admin.action(description="Clear: pay the held amounts in the next epoch, give the quality back",
                  permissions=["moderate"])
    def clear(self, request, queryset):
        self._decide(request, queryset, Flag.Status.CLEARED)

    @admin.action(description="Confirm: return the held amounts to the next pool", permissions=["moderate"])
    def confirm(self, request, queryset):
        self._decide(request, queryset, Flag.Status.CONFIRMED)

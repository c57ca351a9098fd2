"""The admin's view of epochs: where each one is in its close, its pool, and why it waits
(funding: 'waiting for funding: N more needed', the sender, a failed proposal)."""

from django.contrib import admin

from .models import Epoch, HeldAmount


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

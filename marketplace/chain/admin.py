from django.contrib import admin

from .models import Deployment, OperatorAction, OperatorTransaction


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("contract", "address", "chain_id", "block_number", "deployed_at")
    readonly_fields = [field.name for field in Deployment._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(OperatorAction)
class OperatorActionAdmin(admin.ModelAdmin):
    """What the operator key was asked to do, and how it went (read only)."""

    list_display = ("id", "kind", "listing_id", "order_id", "status", "tx_hash", "error", "created_by", "created_at",
                    "updated_at")
    list_filter = ("status", "kind", "chain_id")
    search_fields = ("tx_hash", "expected_owner", "expected_content_hash", "created_by")
    readonly_fields = [field.name for field in OperatorAction._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(OperatorTransaction)
class OperatorTransactionAdmin(admin.ModelAdmin):
    """The operator key's nonces: what was signed for each, how often it was broadcast or
    replaced, and where it was mined (read only)."""

    list_display = ("nonce", "kind", "status", "tx_hash", "broadcasts", "replacements", "block_number", "error",
                    "updated_at")
    list_filter = ("status", "kind", "chain_id")
    search_fields = ("tx_hash", "mined_hash")
    readonly_fields = [field.name for field in OperatorTransaction._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

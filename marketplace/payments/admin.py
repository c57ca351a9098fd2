from django.contrib import admin

from .models import X402Payment


@admin.register(X402Payment)
class X402PaymentAdmin(admin.ModelAdmin):
    """Read-only: the rows are what the paid download and the operator sender recorded."""

    list_display = ["id", "payer", "listing_id", "amount", "status", "error_code", "tx_hash", "created_at"]
    list_filter = ["status", "x402_version"]
    search_fields = ["payer", "nonce", "tx_hash", "payment_identifier"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

"""What staff read of orders in the admin: the parties' dispute statements (until the dispute
queue shows them beside each dispute) and the credits the indexer mirrored. Read-only: the first
are the parties' words, the second the chain's."""
from django.contrib import admin

from .models import CreditEntry, DisputeStatement


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DisputeStatement)
class DisputeStatementAdmin(ReadOnly):
    list_display = ("order_id", "role", "author", "created_at", "chain_id")
    list_filter = ("role", "chain_id")
    search_fields = ("order_id", "author", "text")


@admin.register(CreditEntry)
class CreditEntryAdmin(ReadOnly):
    list_display = ("kind", "account", "amount", "token", "order_id", "block_number", "tx_hash")
    list_filter = ("kind", "chain_id")
    search_fields = ("account", "tx_hash")

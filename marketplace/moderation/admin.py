"""The audit log in the admin: read only (the triggers would refuse a change anyway)."""
from django.contrib import admin

from .audit import ACTIONS
from .models import AuditEntry


class ActionFilter(admin.SimpleListFilter):
    """The documented actions (not a DISTINCT over the whole log)."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request, model_admin):
        return [(code, code) for code in sorted(ACTIONS)]

    def queryset(self, request, queryset):
        return queryset.filter(action=self.value()) if self.value() else queryset


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "action", "target_type", "target_id", "actor", "actor_role", "reason")
    list_filter = (ActionFilter,)
    search_fields = ("=target_id", "=actor")
    readonly_fields = [field.name for field in AuditEntry._meta.fields]
    show_full_result_count = False  # a count of millions of entries on every page is slow

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

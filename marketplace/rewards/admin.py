"""Admin pages of fetch jobs: collection targets are edited here; jobs and collected rows are
shown read-only (the services are their only writers)."""

from django.contrib import admin

from .models import CollectedRow, CollectionTarget, FetchJob


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

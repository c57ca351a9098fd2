from django.contrib import admin

from .models import Deployment


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("contract", "address", "chain_id", "block_number", "deployed_at")
    readonly_fields = [field.name for field in Deployment._meta.fields]

    def has_add_permission(self, request):
        return False

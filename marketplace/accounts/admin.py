from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "address", "display_name", "is_staff", "is_active", "date_joined")
    search_fields = ("username", "address", "display_name", "email")
    fieldsets = BaseUserAdmin.fieldsets + (("Wallet", {"fields": ("address", "display_name")}),)

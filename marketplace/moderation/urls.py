from django.urls import path

from . import api

urlpatterns = [
    path("moderation/audit", api.AuditSearchView.as_view(), name="moderation-audit"),
    path("me/audit", api.MyAuditView.as_view(), name="my-audit"),
    path("me/notifications", api.NotificationsView.as_view(), name="my-notifications"),
    path("me/notifications/read", api.MarkReadView.as_view(), name="my-notifications-read"),
]

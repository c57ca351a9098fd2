from django.urls import path

from . import api, bans_api

urlpatterns = [
    path("moderation/audit", api.AuditSearchView.as_view(), name="moderation-audit"),
    path("moderation/bans", bans_api.BansView.as_view(), name="moderation-bans"),
    path("moderation/bans/<int:ban_id>/lift", bans_api.LiftView.as_view(), name="moderation-ban-lift"),
    path("moderation/evasion", bans_api.EvasionView.as_view(), name="moderation-evasion"),
    path("me/audit", api.MyAuditView.as_view(), name="my-audit"),
    path("me/notifications", api.NotificationsView.as_view(), name="my-notifications"),
    path("me/notifications/read", api.MarkReadView.as_view(), name="my-notifications-read"),
]

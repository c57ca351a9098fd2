from django.urls import path

from . import api, console_api

urlpatterns = [
    path("moderation/audit", api.AuditSearchView.as_view(), name="moderation-audit"),
    path("me/audit", api.MyAuditView.as_view(), name="my-audit"),
    path("me/notifications", api.NotificationsView.as_view(), name="my-notifications"),
    path("me/notifications/read", api.MarkReadView.as_view(), name="my-notifications-read"),
    path("moderation/disputes", console_api.DisputesView.as_view(), name="moderation-disputes"),
    path("moderation/disputes/<int:order_id>", console_api.DisputeView.as_view(), name="moderation-dispute"),
    path("moderation/disputes/<int:order_id>/resolve", console_api.ResolveView.as_view(),
         name="moderation-dispute-resolve"),
    path("moderation/flags", console_api.FlagsView.as_view(), name="moderation-flags"),
    path("moderation/flags/<int:pk>/decide", console_api.DecideFlagView.as_view(), name="moderation-flag-decide"),
    path("moderation/actions", console_api.FailedActionsView.as_view(), name="moderation-actions"),
    path("moderation/actions/<int:pk>/retry", console_api.RetryActionView.as_view(),
         name="moderation-action-retry"),
]

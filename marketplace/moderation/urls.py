from django.urls import path

from . import actions_api, api

urlpatterns = [
    path("moderation/audit", api.AuditSearchView.as_view(), name="moderation-audit"),
    path("me/audit", api.MyAuditView.as_view(), name="my-audit"),
    path("me/notifications", api.NotificationsView.as_view(), name="my-notifications"),
    path("me/notifications/read", api.MarkReadView.as_view(), name="my-notifications-read"),
    path("moderation/datasets/<int:pk>/actions", actions_api.DatasetActionView.as_view(),
         name="moderation-dataset-actions"),
    path("moderation/appeals", actions_api.AppealsView.as_view(), name="moderation-appeals"),
    path("moderation/appeals/<int:pk>/decision", actions_api.AppealDecisionView.as_view(),
         name="moderation-appeal-decision"),
    path("me/appeals", actions_api.MyAppealsView.as_view(), name="my-appeals"),
]

from django.urls import path

from . import api, review_api

urlpatterns = [
    path("moderation/audit", api.AuditSearchView.as_view(), name="moderation-audit"),
    path("moderation/queue", review_api.ReviewQueueView.as_view(), name="moderation-queue"),
    path("moderation/review/<int:revision_id>/claim", review_api.ClaimView.as_view(), name="moderation-review-claim"),
    path("moderation/review/<int:revision_id>/decision", review_api.ReviewDecisionView.as_view(),
         name="moderation-review-decision"),
    path("me/audit", api.MyAuditView.as_view(), name="my-audit"),
    path("me/notifications", api.NotificationsView.as_view(), name="my-notifications"),
    path("me/notifications/read", api.MarkReadView.as_view(), name="my-notifications-read"),
]

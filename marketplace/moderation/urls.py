from django.urls import path

from . import actions_api, api, bans_api, report_api, review_api

urlpatterns = [
    path("moderation/audit", api.AuditSearchView.as_view(), name="moderation-audit"),
    path("moderation/queue", review_api.ReviewQueueView.as_view(), name="moderation-queue"),
    path("moderation/review/<int:revision_id>/claim", review_api.ClaimView.as_view(), name="moderation-review-claim"),
    path("moderation/review/<int:revision_id>/decision", review_api.ReviewDecisionView.as_view(),
         name="moderation-review-decision"),
    path("moderation/bans", bans_api.BansView.as_view(), name="moderation-bans"),
    path("moderation/bans/<int:ban_id>/lift", bans_api.LiftView.as_view(), name="moderation-ban-lift"),
    path("moderation/evasion", bans_api.EvasionView.as_view(), name="moderation-evasion"),
    path("me/audit", api.MyAuditView.as_view(), name="my-audit"),
    path("me/notifications", api.NotificationsView.as_view(), name="my-notifications"),
    path("me/notifications/read", api.MarkReadView.as_view(), name="my-notifications-read"),
    path("reports", report_api.ReportsView.as_view(), name="reports"),
    path("me/reports", report_api.MyReportsView.as_view(), name="my-reports"),
    path("notices", report_api.NoticesView.as_view(), name="notices"),
    path("notices/<str:token>", report_api.NoticeStatusView.as_view(), name="notice-status"),
    path("moderation/reports", report_api.ReportGroupsView.as_view(), name="moderation-reports"),
    path("moderation/reports/<str:target_type>/<str:target_id>", report_api.ReportGroupView.as_view(),
         name="moderation-report-group"),
    path("moderation/reports/<str:target_type>/<str:target_id>/close", report_api.CloseGroupView.as_view(),
         name="moderation-report-close"),
    path("moderation/datasets/<int:pk>/actions", actions_api.DatasetActionView.as_view(),
         name="moderation-dataset-actions"),
    path("moderation/appeals", actions_api.AppealsView.as_view(), name="moderation-appeals"),
    path("moderation/appeals/<int:pk>/decision", actions_api.AppealDecisionView.as_view(),
         name="moderation-appeal-decision"),
    path("me/appeals", actions_api.MyAppealsView.as_view(), name="my-appeals"),
]

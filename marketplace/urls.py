from django.contrib import admin
from django.urls import include, path

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from marketplace.accounts.views import avatar
from marketplace.health import healthz
from marketplace.moderation import actions_views as moderation_actions
from marketplace.moderation import bans_views as ban_pages
from marketplace.moderation import console_views as moderation_console
from marketplace.moderation import report_views, review_views as review_pages, views as moderation_pages
from marketplace.orders.views import download
from marketplace.payments import discovery
from marketplace.payments.views import paid_download
from marketplace.rewards import pages as reward_pages
from marketplace.rewards.views import bind_page
from marketplace.web.views import favicon

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Browsers ask for /favicon.ico on pages that name no icon (the admin's): no 404 for them.
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("api/v1/schema", SpectacularAPIView.as_view(), name="openapi-schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script (CSP).
    path("api/v1/docs", SpectacularSwaggerSplitView.as_view(url_name="openapi-schema",
                                                            template_name="api_docs/swagger_ui.html"), name="api-docs"),
    path("avatars/<str:address>", avatar, name="avatar"),
    path("api/v1/", include("marketplace.accounts.urls")),
    path("api/v1/", include("marketplace.catalog.urls")),
    path("api/v1/", include("marketplace.orders.urls")),
    path("api/v1/", include("marketplace.rewards.urls")),
    path("api/v1/", include("marketplace.moderation.urls")),
    path("downloads/<str:token>", download, name="download"),
    path("discovery/resources", discovery.resources, name="discovery-resources"),
    # x402: a listing's paid download for machine buyers (outside /api/: its 402 is x402's).
    path("pay/<int:listing_id>", paid_download, name="paid-download"),
    path("node/bind", bind_page, name="node-bind-page"),
    path("rewards", reward_pages.network_page, name="rewards"),
    path("me/rewards", reward_pages.my_rewards, name="my-rewards"),
    path("me/rewards/settings", reward_pages.my_rewards_settings, name="my-rewards-settings"),
    path("me/rewards/earnings.csv", reward_pages.my_earnings_csv, name="my-earnings-csv"),
    path("moderation/audit", moderation_pages.audit_log, name="moderation-audit-page"),
    path("moderation/", review_pages.queue_page, name="moderation-home"),
    path("moderation/queue", review_pages.queue_page, name="moderation-queue-page"),
    path("moderation/review/<int:revision_id>", review_pages.item_page, name="moderation-review-page"),
    path("moderation/bans", ban_pages.bans_page, name="moderation-bans-page"),
    path("moderation/wallets/<str:address>", ban_pages.wallet_page, name="moderation-wallet-page"),
    path("me/audit", moderation_pages.my_audit, name="my-audit-page"),
    path("moderation/reports", report_views.report_groups, name="moderation-reports-page"),
    path("moderation/reports/<str:target_type>/<str:target_id>", report_views.report_group,
         name="moderation-report-group-page"),
    path("datasets/<slug:slug>/report", report_views.report_dataset, name="report-dataset-page"),
    path("notice", report_views.notice_form, name="notice-page"),
    path("notice/<str:token>", report_views.notice_status, name="notice-status-page"),
    path("moderation/datasets/<str:ident>", moderation_actions.dataset_page, name="moderation-dataset-page"),
    path("moderation/appeals", moderation_actions.appeals_page, name="moderation-appeals-page"),
    path("moderation/appeals/<int:pk>", moderation_actions.appeal_page, name="moderation-appeal-page"),
    path("me/appeals/new", moderation_actions.new_appeal, name="new-appeal-page"),
    path("moderation/disputes", moderation_console.dispute_list, name="moderation-disputes-page"),
    path("moderation/disputes/<int:order_id>", moderation_console.dispute_detail, name="moderation-dispute-page"),
    path("moderation/returns", moderation_console.returns_list, name="moderation-returns-page"),
    path("moderation/abuse", moderation_console.abuse_list, name="moderation-abuse-page"),
    path("moderation/actions", moderation_console.action_list, name="moderation-actions-page"),
    path("", include("marketplace.web.urls")),
]

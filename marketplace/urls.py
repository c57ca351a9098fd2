from django.contrib import admin
from django.urls import include, path

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from marketplace.accounts.views import avatar
from marketplace.health import healthz
from marketplace.orders.views import download
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
    path("downloads/<str:token>", download, name="download"),
    path("", include("marketplace.web.urls")),
]

from django.contrib import admin
from django.urls import include, path

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from marketplace.accounts.views import avatar
from marketplace.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/schema", SpectacularAPIView.as_view(), name="openapi-schema"),
    path("api/v1/docs", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="api-docs"),
    path("avatars/<str:address>", avatar, name="avatar"),
    path("api/v1/", include("marketplace.accounts.urls")),
    path("api/v1/", include("marketplace.catalog.urls")),
    path("", include("marketplace.web.urls")),
]

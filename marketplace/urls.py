from django.contrib import admin
from django.urls import include, path

from marketplace.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("marketplace.accounts.urls")),
    path("api/v1/", include("marketplace.catalog.urls")),
    path("", include("marketplace.web.urls")),
]

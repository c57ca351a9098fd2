from django.urls import path

from . import api

urlpatterns = [
    path("datasets/<slug:slug>/versions/<int:number>/download", api.VersionDownloadView.as_view(),
         name="version-download"),
]

from django.urls import path

from . import api

urlpatterns = [
    path("search", api.SearchView.as_view(), name="search"),
    path("datasets", api.DatasetCreateView.as_view(), name="dataset-create"),
    path("datasets/<slug:slug>", api.DatasetDetailView.as_view(), name="dataset-detail"),
    path("datasets/<slug:slug>/versions", api.VersionUploadView.as_view(), name="dataset-upload"),
]

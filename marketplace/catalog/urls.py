from django.urls import path

from . import api

urlpatterns = [
    path("search", api.SearchView.as_view(), name="search"),
    path("datasets", api.DatasetCreateView.as_view(), name="dataset-create"),
    path("datasets/<slug:slug>", api.DatasetDetailView.as_view(), name="dataset-detail"),
    path("datasets/<slug:slug>/versions", api.VersionUploadView.as_view(), name="dataset-upload"),
    path("datasets/<slug:slug>/versions/<int:number>/listing",
         api.VersionListingView.as_view(http_method_names=["post", "options"]), name="version-listing"),
    path("datasets/<slug:slug>/versions/<int:number>/listing/prepare",
         api.VersionListingView.as_view(http_method_names=["get", "head", "options"]),
         name="version-listing-prepare"),
    path("datasets/<slug:slug>/versions/<int:number>/listing/update",
         api.ListingUpdateMirrorView.as_view(), name="version-listing-update"),
    path("datasets/<slug:slug>/versions/<int:number>/listing/update/prepare",
         api.ListingUpdatePrepareView.as_view(), name="version-listing-update-prepare"),
    path("datasets/<slug:slug>/versions/<int:number>/listing/active",
         api.ListingActiveMirrorView.as_view(), name="version-listing-active"),
    path("datasets/<slug:slug>/versions/<int:number>/listing/active/prepare",
         api.ListingActivePrepareView.as_view(), name="version-listing-active-prepare"),
    path("datasets/<slug:slug>/versions/<int:number>/preview", api.VersionPreviewView.as_view(),
         name="version-preview"),
    path("moderation/revisions", api.ModerationQueueView.as_view(), name="moderation-queue"),
    path("moderation/revisions/<int:revision_id>/decision", api.RevisionDecisionView.as_view(),
         name="revision-decision"),
]

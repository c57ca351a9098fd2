from django.urls import path

from . import agents, views

app_name = "web"
urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("about", views.about, name="about"),
    path("datasets/<slug:slug>", views.dataset_detail, name="dataset"),
    path("me/profile", views.profile, name="profile"),
    path("me/library", views.library, name="library"),
    path("me/sales", views.sales, name="sales"),
    path("me/agents", agents.my_agents, name="agents"),
    path("me/agents/<int:pk>/revoke", agents.revoke_agent, name="revoke-agent"),
    path("me/agents/<int:pk>/release-wallet", agents.release_wallet, name="release-agent-wallet"),
    path("me/datasets", views.my_datasets, name="my-datasets"),
    path("me/datasets/new", views.new_dataset, name="new-dataset"),
    path("me/datasets/<slug:slug>/edit", views.edit_dataset, name="edit-dataset"),
]

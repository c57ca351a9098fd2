from django.urls import path

from . import api

urlpatterns = [
    path("rewards/proof/<str:wallet>", api.ProofView.as_view(), name="reward-proof"),
    path("rewards/epochs", api.EpochListView.as_view(), name="reward-epochs"),
    path("rewards/epochs/<int:number>", api.EpochView.as_view(), name="reward-epoch"),
    path(
        "rewards/wallets/<str:wallet>/epochs",
        api.WalletEpochsView.as_view(),
        name="reward-wallet-epochs",
    ),
    path("rewards/scoring", api.ScoringView.as_view(), name="reward-scoring"),
]

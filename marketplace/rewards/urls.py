from django.urls import path

from . import api, ingest, jobs_api, network_api, node_api

urlpatterns = [
    path("node/heartbeat", ingest.heartbeat, name="node-heartbeat"),
    path("node/probe/<str:device>/<str:nonce>", ingest.probe, name="node-probe"),
    path("node/bind", node_api.BindView.as_view(), name="node-bind"),
    path("node/unbind", node_api.UnbindView.as_view(), name="node-unbind"),
    path("node/session", node_api.NodeSessionView.as_view(), name="node-session"),
    path("node/status", node_api.NodeStatusView.as_view(), name="node-status"),
    path("node/jobs", jobs_api.NodeJobsView.as_view(), name="node-jobs"),
    path("node/jobs/<int:job_id>/commit", jobs_api.JobCommitView.as_view(), name="node-job-commit"),
    path("node/jobs/<int:job_id>/reveal", jobs_api.JobRevealView.as_view(), name="node-job-reveal"),
    path("node/jobs/<int:job_id>/decline", jobs_api.JobDeclineView.as_view(), name="node-job-decline"),
    path("rewards/proof/<str:wallet>", api.ProofView.as_view(), name="reward-proof"),
    path("rewards/epochs", api.EpochListView.as_view(), name="reward-epochs"),
    path("rewards/epochs/<int:number>", api.EpochView.as_view(), name="reward-epoch"),
    path(
        "rewards/wallets/<str:wallet>/epochs",
        api.WalletEpochsView.as_view(),
        name="reward-wallet-epochs",
    ),
    path("rewards/scoring", api.ScoringView.as_view(), name="reward-scoring"),
    path("rewards/network", network_api.NetworkView.as_view(), name="reward-network"),
    path("rewards/leaderboard", network_api.LeaderboardView.as_view(), name="reward-leaderboard"),
]

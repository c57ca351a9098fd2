from django.urls import path

from . import api, ingest

urlpatterns = [
    path("node/heartbeat", ingest.heartbeat, name="node-heartbeat"),
    path("node/probe/<str:device>/<str:nonce>", ingest.probe, name="node-probe"),
    path("node/bind", api.BindView.as_view(), name="node-bind"),
    path("node/unbind", api.UnbindView.as_view(), name="node-unbind"),
    path("node/session", api.NodeSessionView.as_view(), name="node-session"),
    path("node/status", api.NodeStatusView.as_view(), name="node-status"),
]

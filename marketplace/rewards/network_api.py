"""The public network figures and the leaderboard, as the network page shows them."""
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from . import dashboard

NetworkBody = inline_serializer("RewardNetwork", {
    "nodes_online": serializers.IntegerField(help_text="Bound nodes whose last heartbeat is under 3 minutes old"),
    "nodes": serializers.IntegerField(help_text="Bound nodes"),
    "contributors": serializers.IntegerField(help_text="Wallets with a bound node"),
    "jobs_last_hour": serializers.IntegerField(help_text="Verified job results in the last hour"),
    "rows_collected": serializers.IntegerField(help_text="Rows of community datasets (deduplicated)"),
    "current_epoch": serializers.IntegerField(allow_null=True, help_text="The open epoch's number"),
    "last_epoch": serializers.IntegerField(allow_null=True, help_text="The latest closed epoch's number"),
    "last_pool": serializers.CharField(help_text="Its pool, in base units"),
})

LeaderboardBody = inline_serializer("RewardLeaderboard", {"results": serializers.ListField(
    child=inline_serializer("RewardLeader", {
        "rank": serializers.IntegerField(), "wallet": serializers.CharField(),
        "earned": serializers.CharField(help_text="Base units earned in all"),
        "points": serializers.IntegerField(), "epochs": serializers.IntegerField(),
        "devices": serializers.IntegerField()}))})


class NetworkView(APIView):
    """Nodes online, contributors, verified jobs in the last hour, rows collected, epochs."""

    authentication_classes = []

    @extend_schema(responses={200: NetworkBody})
    def get(self, request):
        figures = dashboard.network()
        current, last = figures.pop("current_epoch"), figures.pop("last_epoch")
        return Response({**figures, "current_epoch": current.number if current else None,
                         "last_epoch": last.number if last else None,
                         "last_pool": str(int(last.pool)) if last else "0"})


class LeaderboardView(APIView):
    """The 50 wallets that earned most, without those that opted out."""

    authentication_classes = []

    @extend_schema(responses={200: LeaderboardBody})
    def get(self, request):
        return Response({"results": [{**r, "earned": str(r["earned"])} for r in dashboard.leaderboard()]})

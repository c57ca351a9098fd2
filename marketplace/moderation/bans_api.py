"""Wallet bans for moderators: list and place bans (`/moderation/bans`), lift one
(`/moderation/bans/<id>/lift`), and the ban-evasion evidence (`/moderation/evasion`)."""
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.accounts.models import WalletBan
from marketplace.accounts.roles import IsModerator
from marketplace.api import refusal, StrictCharField, StrictTextField, errors
from marketplace.catalog.api import iso_time

from . import bans
from .api import Params


def _address(value):
    try:
        return bans.checksummed(value)
    except bans.BanRefused as refused:
        raise serializers.ValidationError(refused.message) from None


class BanRequest(serializers.Serializer):
    address = StrictCharField(max_length=42, help_text="The wallet to ban")
    scope = serializers.ChoiceField(choices=bans.SCOPES, help_text="publish, buy or contribute")
    reason = serializers.ChoiceField(choices=bans.REASON_CODES, help_text="A policy code")
    statement = StrictTextField(max_length=bans.MAX_STATEMENT, help_text="The statement of reasons the wallet's "
                                "owner reads (not empty)")
    internal_note = StrictTextField(max_length=bans.MAX_NOTE, required=False, allow_blank=True, default="",
                                    help_text="For moderators only")

    def validate_address(self, value):
        return _address(value)

    def validate_statement(self, value):
        return value.strip()


class LiftRequest(serializers.Serializer):
    statement = StrictTextField(max_length=bans.MAX_STATEMENT, help_text="Why the ban is lifted (the wallet's "
                                "owner reads it)")

    def validate_statement(self, value):
        return value.strip()


class BanListParams(Params):
    address = StrictCharField(required=False, max_length=42, help_text="One wallet's bans, lifted ones included")

    def validate_address(self, value):
        return _address(value)


class EvasionParams(Params):
    banned = StrictCharField(required=False, max_length=42, help_text="One banned wallet's suspects only")

    def validate_banned(self, value):
        return _address(value)


class WalletBanSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None)
    lifted_by = serializers.CharField(source="lifted_by.username", default=None)

    class Meta:
        model = WalletBan
        fields = ["id", "address", "scope", "reason", "statement", "internal_note", "created_by", "created_at",
                  "lifted_at", "lifted_by", "lift_statement", "before_block"]


def ban_json(row) -> dict:
    data = WalletBanSerializer(row).data
    data["created_at"] = iso_time(row.created_at)
    data["lifted_at"] = iso_time(row.lifted_at) if row.lifted_at else None
    return data


class BansView(APIView):
    """GET: the active bans, newest first (or one wallet's, lifted ones included). POST: ban a
    wallet from one scope (201); the same wallet and scope banned already is a 409."""

    permission_classes = [IsModerator]

    @extend_schema(parameters=[BanListParams], responses={200: WalletBanSerializer(many=True),
                                                          **errors(400, 401, 403)})
    def get(self, request):
        p = BanListParams.read(request.query_params.dict())
        rows = bans.wallet_bans(p["address"]) if "address" in p else bans.active_bans()
        return Response([ban_json(row) for row in rows])

    @extend_schema(request=BanRequest, responses={201: WalletBanSerializer, **errors(400, 401, 403, 409)})
    def post(self, request):
        data = BanRequest(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            row = bans.ban(**data.validated_data, moderator=request.user)
        except bans.BanRefused as exc:
            raise refusal(exc) from None
        return Response(ban_json(row), status=201)


class LiftView(APIView):
    """POST: lift an active ban (200); a lifted one is a 409, an unknown one a 404."""

    permission_classes = [IsModerator]

    @extend_schema(request=LiftRequest, responses={200: WalletBanSerializer, **errors(400, 401, 403, 404, 409)})
    def post(self, request, ban_id):
        data = LiftRequest(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            row = bans.lift(ban_id=ban_id, statement=data.validated_data["statement"], moderator=request.user)
        except bans.BanRefused as exc:
            raise refusal(exc) from None
        return Response(ban_json(row))


class EvasionView(APIView):
    """GET: wallets not banned that share a payout address, a device or a network (/24, /56) with
    a banned one, with the evidence."""

    permission_classes = [IsModerator]

    @extend_schema(parameters=[EvasionParams], responses={200: inline_serializer("EvasionSuspect", {
        "banned": serializers.CharField(), "suspect": serializers.CharField(),
        "kind": serializers.ChoiceField(choices=["payout", "device", "network"]),
        "evidence": serializers.CharField(help_text="The shared payout address, device or network")},
        many=True), **errors(400, 401, 403)})
    def get(self, request):
        p = EvasionParams.read(request.query_params.dict())
        return Response(bans.evasion_suspects(banned=p.get("banned")))

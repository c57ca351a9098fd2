"""The rewards API: epochs, a wallet's amounts per epoch, the scoring rules, and the proof of the
claimable root. Public reads (amounts on-chain are public anyway); no sign-in."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.api import APIError, errors

from . import scoring, selectors
from .models import Epoch

Amount = serializers.CharField  # token base units as decimal digits (they go past JSON numbers)


def _wallet(value: str) -> str:
    wallet = selectors.wallet_or_none(value)
    if wallet is None:
        raise APIError(
            "invalid_wallet", "Give a wallet as a 0x-prefixed 20-byte hex address.", status=400
        )
    return wallet


ProofBody = inline_serializer(
    "RewardProof",
    {
        "wallet": serializers.CharField(),
        "distributor": serializers.CharField(
            allow_null=True, help_text="The RewardDistributor to call claim() on"
        ),
        "epoch": serializers.IntegerField(
            allow_null=True, help_text="The claimable root's epoch (null: none yet)"
        ),
        "root": serializers.CharField(allow_null=True),
        "cumulative": Amount(help_text="The wallet's leaf: everything it earned up to that epoch"),
        "proof": serializers.ListField(
            child=serializers.CharField(), help_text="bytes32 siblings, leaf up"
        ),
        "claimed": Amount(help_text="Claimed so far (from the distributor's Claimed events)"),
        "claimable": Amount(help_text="cumulative - claimed (0 while paused)"),
        "paused": serializers.BooleanField(
            help_text="The root is suspended: claims are paused until a newer one matures"
        ),
    },
)


class ProofView(APIView):
    """The wallet's leaf and Merkle proof in the root the distributor pays claims against now."""

    authentication_classes = []

    @extend_schema(responses={200: ProofBody, **errors(400)})
    def get(self, request, wallet):
        return Response(selectors.proof(_wallet(wallet)))


EpochBody = inline_serializer(
    "RewardEpoch",
    {
        "number": serializers.IntegerField(),
        "starts_at": serializers.DateTimeField(),
        "ends_at": serializers.DateTimeField(),
        "state": serializers.CharField(),
        "root_status": serializers.CharField(),
        "root": serializers.CharField(),
        "total": Amount(),
        "leaves": serializers.IntegerField(),
        "valid_at": serializers.DateTimeField(allow_null=True),
        "pool": inline_serializer(
            "RewardPool",
            {
                "emission": Amount(),
                "carried_in": Amount(),
                "returned_in": Amount(),
                "revenue_in": Amount(),
                "released_in": Amount(),
                "revoked_in": Amount(),
                "total": Amount(),
                "paid": Amount(),
                "held": Amount(),
                "carried_out": Amount(),
            },
        ),
        "points": Amount(help_text="All wallets' points x 10,000"),
        "waiting": serializers.CharField(help_text="Why the close waits, if it does"),
    },
)


def epoch_body(epoch: Epoch) -> dict:
    money = {
        name: str(int(getattr(epoch, name)))
        for name in (
            "emission",
            "carried_in",
            "returned_in",
            "revenue_in",
            "released_in",
            "revoked_in",
            "paid",
            "held",
            "carried_out",
        )
    }
    return {
        "number": epoch.number,
        "starts_at": epoch.starts_at,
        "ends_at": epoch.ends_at,
        "state": epoch.state,
        "root_status": epoch.root_status,
        "root": epoch.root,
        "total": str(int(epoch.total)),
        "leaves": epoch.leaves,
        "valid_at": epoch.valid_at,
        "pool": {**money, "total": str(int(epoch.pool))},
        "points": str(int(epoch.points)),
        "waiting": epoch.waiting,
    }


class EpochListView(APIView):
    """The latest 50 epochs, newest first, with their pools and roots."""

    authentication_classes = []

    @extend_schema(
        operation_id="rewards_epochs_list",
        responses={
            200: inline_serializer(
                "RewardEpochs", {"results": serializers.ListField(child=EpochBody)}
            )
        },
    )
    def get(self, request):
        return Response({"results": [epoch_body(e) for e in selectors.epochs()]})


class EpochView(APIView):
    authentication_classes = []

    @extend_schema(responses={200: EpochBody, **errors(404)})
    def get(self, request, number):
        return Response(epoch_body(get_object_or_404(Epoch, number=number)))


WalletEpochBody = inline_serializer(
    "RewardWalletEpoch",
    {
        "epoch": serializers.IntegerField(),
        "state": serializers.CharField(),
        "root_status": serializers.CharField(
            help_text="'revoked': the epoch's amounts are in no later tree (they went back to the pool)"
        ),
        "uptime_slots": serializers.IntegerField(),
        "job_points": serializers.IntegerField(),
        "points": Amount(),
        "referral_points": Amount(),
        "amount": Amount(),
        "revenue": Amount(),
        "released": Amount(),
        "held": Amount(),
        "cumulative": Amount(allow_null=True),
        "held_amounts": serializers.ListField(
            child=inline_serializer(
                "RewardHeldAmount",
                {
                    "amount": Amount(),
                    "reason": serializers.CharField(),
                    "status": serializers.CharField(),
                    "flag": serializers.IntegerField(),
                },
            )
        ),
    },
)


class WalletEpochsView(APIView):
    """A wallet's points and amounts per epoch (newest first), held amounts and why."""

    authentication_classes = []

    @extend_schema(
        responses={
            200: inline_serializer(
                "RewardWalletEpochs",
                {
                    "wallet": serializers.CharField(),
                    "held": Amount(help_text="Held now, in all"),
                    "results": serializers.ListField(child=WalletEpochBody),
                },
            ),
            **errors(400),
        }
    )
    def get(self, request, wallet):
        wallet = _wallet(wallet)
        return Response(
            {
                "wallet": wallet,
                "held": str(selectors.held_total(wallet)),
                "results": selectors.wallet_epochs(wallet),
            }
        )


class ScoringView(APIView):
    """The scoring formula and its weights, as the close applies them (for the dashboard)."""

    authentication_classes = []

    @extend_schema(
        responses={
            200: inline_serializer(
                "RewardScoring",
                {
                    "formula": serializers.CharField(),
                    "uptime_weight": serializers.IntegerField(),
                    "job_weight": serializers.IntegerField(),
                    "referral_tiers_bps": serializers.ListField(child=serializers.IntegerField()),
                    "referral_cap_points": serializers.IntegerField(),
                    "referral_delay_days": serializers.IntegerField(),
                    "network_cap_points": serializers.IntegerField(),
                    "network_prefix": serializers.DictField(),
                    "trusted_networks": serializers.ListField(child=serializers.CharField()),
                    "epoch_seconds": serializers.IntegerField(),
                    "emission_per_epoch": Amount(),
                    "root_delay": serializers.IntegerField(),
                },
            )
        }
    )
    def get(self, request):
        from django.conf import settings

        return Response(
            {
                **scoring.Weights.from_settings().as_dict(),
                "epoch_seconds": settings.REWARD_EPOCH_SECONDS,
                "emission_per_epoch": str(settings.REWARD_EMISSION_PER_EPOCH),
                "root_delay": settings.REWARD_ROOT_DELAY,
            }
        )

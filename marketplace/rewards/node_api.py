"""The node's API besides heartbeats (ingest.py): binding a device to a wallet, unbinding it, and
the device-signed session and status a node reads when it starts and while it runs."""
from datetime import datetime, time as dt_time, timezone as dt_timezone
import time

from django.conf import settings
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.api import APIError, StrictRegexField, errors
from marketplace.limits.http import client_address, enforce

from . import binding, device_auth
from .ingest import probe_url
from .models import PendingBinding, WorkCredit

ADDRESS = r"^0x[0-9a-fA-F]{40}$"
BYTES32 = r"^0x[0-9a-fA-F]{64}$"
SIGNATURE = r"^0x(?:[0-9a-fA-F]{2})+$"


class UnbindSignature(serializers.Serializer):
    wallet = StrictRegexField(ADDRESS, help_text="The wallet the device is bound to now")
    nonce = StrictRegexField(BYTES32, help_text="32 random bytes, used once")
    issued_at = serializers.IntegerField(min_value=0, help_text="Unix seconds")
    signature = StrictRegexField(SIGNATURE, help_text="That wallet's EIP-712 signature of Unbind")


class BindRequest(serializers.Serializer):
    device = StrictRegexField(ADDRESS, help_text="The device key's address")
    wallet = StrictRegexField(ADDRESS, help_text="The wallet to bind it to")
    nonce = StrictRegexField(BYTES32, help_text="32 random bytes, used once")
    issued_at = serializers.IntegerField(min_value=0, help_text="Unix seconds")
    device_signature = StrictRegexField(SIGNATURE, help_text="The device key's EIP-712 signature of Bind")
    wallet_signature = StrictRegexField(SIGNATURE, help_text="The wallet's EIP-712 signature of the same Bind")
    unbind = UnbindSignature(required=False, help_text="To move a device bound to another wallet at once: "
                             "that wallet's signed Unbind (else the move waits REWARD_REBIND_COOLDOWN)")


BindingAnswer = inline_serializer("NodeBinding", {
    "status": serializers.ChoiceField(["bound", "pending", "unbound"]),
    "device": serializers.CharField(),
    "wallet": serializers.CharField(),
    "effective_at": serializers.DateTimeField(allow_null=True, help_text="When a pending rebinding takes effect"),
})


def _answer(outcome: binding.Outcome, status: int) -> Response:
    return Response({"status": outcome.status, "device": outcome.device.address, "wallet": outcome.wallet,
                     "effective_at": outcome.effective_at}, status=status)


def _signed_in_wallet(request) -> str | None:
    user = request.user
    return user.address if user.is_authenticated and user.address else None


class BindView(APIView):
    """Bind a device to a wallet with both signatures of one EIP-712 Bind (docs/rewards-node.md).
    201 when bound; 202 when the device is bound to another wallet and the move waits for the
    cooldown; 409 when the wallet has the most devices allowed or the nonce was used."""

    @extend_schema(request=BindRequest, responses={201: BindingAnswer, 202: BindingAnswer,
                                                   **errors(400, 401, 403, 409, 429, 503)})
    def post(self, request):
        enforce(request, "node_bind")
        data = BindRequest(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        # The website's step waits for a person; a node binding with a key signs just now.
        window = (settings.REWARD_BIND_WINDOW if _signed_in_wallet(request)
                  and _signed_in_wallet(request).lower() == body["wallet"].lower() else settings.REWARD_CLOCK_SKEW)
        unbind = None
        if "unbind" in body:
            u = body["unbind"]
            unbind = binding.Signed(body["device"], u["wallet"], u["nonce"], u["issued_at"], u["signature"])
        outcome = binding.bind(
            bind=binding.Signed(body["device"], body["wallet"], body["nonce"], body["issued_at"],
                                body["wallet_signature"]),
            device_signature=body["device_signature"], window=window, ip=client_address(request), unbind=unbind)
        return _answer(outcome, 202 if outcome.status == "pending" else 201)


class UnbindRequest(serializers.Serializer):
    device = StrictRegexField(ADDRESS, help_text="The device key's address")
    wallet = StrictRegexField(ADDRESS, required=False, help_text="With a signature: the wallet that signed")
    nonce = StrictRegexField(BYTES32, required=False)
    issued_at = serializers.IntegerField(min_value=0, required=False)
    signature = StrictRegexField(SIGNATURE, required=False, help_text="The wallet's EIP-712 signature of Unbind; "
                                 "without it, the signed-in wallet unbinds its own device")

    def validate(self, data):
        given = {k for k in ("wallet", "nonce", "issued_at", "signature") if k in data}
        if given and len(given) != 4:
            raise serializers.ValidationError({k: "Required in a signed Unbind." for k in
                                               sorted({"wallet", "nonce", "issued_at", "signature"} - given)})
        return data


class UnbindView(APIView):
    """Unbind a device: with the bound wallet's signed Unbind, or from the website signed in as
    that wallet."""

    @extend_schema(request=UnbindRequest, responses={200: BindingAnswer, **errors(400, 401, 403, 404, 409, 429, 503)})
    def post(self, request):
        enforce(request, "node_bind")
        data = UnbindRequest(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        ip = client_address(request)
        if "signature" in body:
            signed = binding.Signed(body["device"], body["wallet"], body["nonce"], body["issued_at"], body["signature"])
            window = settings.REWARD_BIND_WINDOW if _signed_in_wallet(request) else settings.REWARD_CLOCK_SKEW
            outcome = binding.unbind(device=body["device"], wallet=body["wallet"], via="wallet", signed=signed,
                                     window=window, ip=ip)
        else:
            wallet = _signed_in_wallet(request)
            if wallet is None:
                raise APIError("not_signed_in", "Sign in with the wallet the device is bound to, or send its signed "
                               "Unbind.", status=401)
            outcome = binding.unbind(device=body["device"], wallet=wallet, via="session", ip=ip)
        return _answer(outcome, 200)


NodeSession = inline_serializer("NodeSession", {
    "device": serializers.CharField(),
    "wallet": serializers.CharField(allow_null=True, help_text="The bound wallet; null when unbound"),
    "seq": serializers.IntegerField(help_text="The last acknowledged sequence number"),
    "nonce": serializers.CharField(help_text="What the next heartbeat signs"),
    "probe": inline_serializer("NodeProbe", {"url": serializers.CharField()}),
    "pending_wallet": serializers.CharField(allow_null=True),
    "pending_effective_at": serializers.DateTimeField(allow_null=True),
    "server_time": serializers.FloatField(),
    "chain_id": serializers.IntegerField(),
    "slot_seconds": serializers.IntegerField(),
    "min_interval": serializers.FloatField(help_text="Seconds between two heartbeats, at least"),
})


class NodeSessionView(APIView):
    """A node's protocol state, for a node that starts or lost its own (a device-signed request:
    X-Device, X-Device-Time, X-Device-Signature)."""

    authentication_classes = []

    @extend_schema(responses={200: NodeSession, **errors(401, 404, 409, 429)})
    def get(self, request):
        enforce(request, "node_request")
        device = device_auth.authenticate(request)
        pending = PendingBinding.objects.filter(device=device).first()
        return Response({
            "device": device.address, "wallet": device.contributor.wallet if device.contributor_id else None,
            "seq": device.seq, "nonce": device.nonce, "probe": {"url": probe_url(device.address, device.nonce)},
            "pending_wallet": pending.wallet if pending else None,
            "pending_effective_at": pending.effective_at if pending else None,
            "server_time": time.time(), "chain_id": settings.CHAIN_ID,
            "slot_seconds": settings.REWARD_SLOT_SECONDS, "min_interval": settings.REWARD_HEARTBEAT_MIN_INTERVAL,
        })


NodeStatus = inline_serializer("NodeStatus", {
    "device": serializers.CharField(),
    "wallet": serializers.CharField(allow_null=True),
    "day": serializers.DateField(help_text="Today (UTC)"),
    "verified_slots": serializers.IntegerField(help_text="Uptime slots today with an answered probe"),
    "heartbeats": serializers.IntegerField(help_text="Heartbeats stored today"),
    "jobs_done": serializers.IntegerField(help_text="Verified jobs today"),
})


def today_figures(device) -> dict:
    """Today's (UTC) verified slots and heartbeats of a device, from the raw rows (the uptime
    index answers the first), and its verified jobs."""
    start = datetime.combine(datetime.now(dt_timezone.utc).date(), dt_time.min, tzinfo=dt_timezone.utc)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT slot) FILTER (WHERE probe_ok), count(*) FROM rewards_heartbeat "
                       "WHERE device_id = %s AND received_at >= %s", [device.pk, start])
        slots, beats = cursor.fetchone()
    jobs = WorkCredit.objects.filter(device=device, earned_at__gte=start).count()
    return {"day": start.date(), "verified_slots": slots, "heartbeats": beats, "jobs_done": jobs}


class NodeStatusView(APIView):
    """What the node's terminal shows: today's verified uptime slots, heartbeats and jobs (a
    device-signed request)."""

    authentication_classes = []

    @extend_schema(responses={200: NodeStatus, **errors(401, 404, 409, 429)})
    def get(self, request):
        enforce(request, "node_request")
        device = device_auth.authenticate(request)
        return Response({"device": device.address,
                         "wallet": device.contributor.wallet if device.contributor_id else None,
                         **today_figures(device)})

"""Sign-in API: nonce, sign-in, sign-out, who am I; the signed-in user's profile and avatar."""
from django.contrib.auth import logout
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.api import (APIError, AmountField, StrictCharField, StrictRegexField, StrictTextField, errors,
                             refusal)
from marketplace.limits.http import RateLimited, enforce
from marketplace.limits.services import LimitExceeded

from . import agent_keys, avatars, services


class UserSerializer(serializers.Serializer):
    address = serializers.CharField(allow_null=True, help_text="Null for a staff account without a wallet")
    display_name = serializers.CharField()
    is_staff = serializers.BooleanField()
    avatar_url = serializers.SerializerMethodField(help_text="The public avatar (the generated placeholder "
                                                   "when none was uploaded); null without a wallet address")
    has_avatar = serializers.SerializerMethodField()

    def get_avatar_url(self, user) -> str | None:
        return avatars.url(user)

    def get_has_avatar(self, user) -> bool:
        return bool(user.avatar_digest)


class NonceSerializer(serializers.Serializer):
    address = StrictRegexField(r"^0x[0-9a-fA-F]{40}$", required=False,
                               help_text="The wallet that will sign; the answer then carries the message to sign")


class NonceView(APIView):
    """Issue a single-use nonce for a Sign-In with Ethereum message. Given an `address`, the
    answer also carries the exact message for that wallet to sign. The nonce is bound to the
    session cookie this answer sets: send the sign-in with that cookie."""

    authentication_classes = []

    @extend_schema(
        request=NonceSerializer,
        responses={201: inline_serializer("IssuedNonce", {"nonce": serializers.CharField(), "expires_at": serializers.DateTimeField(),
                                                    "message": serializers.CharField(required=False)}), **errors(400, 429)},
    )
    def post(self, request):
        enforce(request, "nonce")
        data = NonceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        nonce = services.issue_nonce(request)
        body = {"nonce": nonce.nonce, "expires_at": nonce.expires_at}
        if "address" in data.validated_data:
            body["message"] = services.sign_in_message(request, address=data.validated_data["address"], nonce=nonce)
        return Response(body, status=201)


class SignInSerializer(serializers.Serializer):
    message = StrictTextField(max_length=4000, help_text="The EIP-4361 message, as the nonce answer gave it")
    # Whole bytes: 65 for a key's signature, any length a contract wallet (EIP-1271) accepts.
    signature = StrictRegexField(r"^0x(?:[0-9a-fA-F]{2}){65,}$", max_length=20000,
                                 help_text="0x and the signature's bytes in hex (65 bytes or more)")


class SignInView(APIView):
    """Verify a signed EIP-4361 message and start a session for its address. The message must
    carry a nonce that this session asked for. A message or signature that is refused is a 401
    (the code says why); a malformed request is a 400."""

    @extend_schema(request=SignInSerializer, responses={200: UserSerializer, **errors(400, 401, 403, 429, 503)})
    def post(self, request):
        enforce(request, "sign_in")
        data = SignInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user = services.sign_in(request, **data.validated_data)
        except services.SignInError as exc:
            status = {"account_disabled": 403, "chain_unavailable": 503}.get(exc.code, 401)
            raise APIError(exc.code, exc.message, status=status) from None
        except LimitExceeded as exc:
            raise RateLimited(exc) from None
        return Response(UserSerializer(user).data)


class SignOutView(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        logout(request)
        return Response(status=204)


class IsSignedIn(permissions.IsAuthenticated):
    message = "Sign in with your wallet first."


class ProfileSerializer(serializers.Serializer):
    display_name = StrictCharField(max_length=80, allow_blank=True, help_text="Shown instead of the address; "
                                   "empty for none; one line without control characters")


class MeView(APIView):
    @extend_schema(responses={200: UserSerializer, **errors(401)})
    def get(self, request):
        if not request.user.is_authenticated:
            raise APIError("not_signed_in", "Sign in with your wallet first.", status=401)
        return Response(UserSerializer(request.user).data)

    @extend_schema(request=ProfileSerializer, responses={200: UserSerializer, **errors(400, 401)})
    def patch(self, request):
        if not request.user.is_authenticated:
            raise APIError("not_signed_in", "Sign in with your wallet first.", status=401)
        data = ProfileSerializer(data=request.data, partial=True)  # PATCH: what is not given stays
        data.is_valid(raise_exception=True)
        return Response(UserSerializer(services.update_profile(request.user, **data.validated_data)).data)


class ImageBody(BaseParser):
    """Accepts any body without reading it: the avatar view reads it itself, up to its limit, and
    tells what it is from its first bytes, not from the Content-Type."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return {}


class AvatarView(APIView):
    """PUT the image itself as the body (PNG, JPEG, WebP or GIF, at most MAX_AVATAR_SIZE bytes) to
    set or replace the avatar; DELETE to go back to the generated placeholder."""

    permission_classes = [IsSignedIn]
    parser_classes = [ImageBody]

    @extend_schema(request={"image/*": {"type": "string", "format": "binary"}},
                   responses={200: UserSerializer, **errors(400, 403, 413, 415)})
    def put(self, request):
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) or None
        except ValueError:
            declared = None
        try:
            upload = avatars.read_upload(request._request, declared)
            user = services.set_avatar(request.user, upload)
        except avatars.AvatarRejected as exc:
            raise APIError(exc.code, exc.message, status=exc.status) from None
        return Response(UserSerializer(user).data)

    @extend_schema(request=None, responses={200: UserSerializer, **errors(403)})
    def delete(self, request):
        return Response(UserSerializer(services.remove_avatar(request.user)).data)


# Agent keys -------------------------------------------------------------------------------------

ADDRESS = r"^0x[0-9a-fA-F]{40}$"
# Whole bytes: 65 for a key's signature, any length a contract wallet (EIP-1271) accepts.
SIGNATURE = r"^0x(?:[0-9a-fA-F]{2}){65,}$"
PURCHASES_PAGE = 50


class AgentKeyCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=agent_keys.MAX_NAME, help_text="What to call the agent")
    wallet = StrictRegexField(ADDRESS, help_text="The wallet the agent pays from (checksummed if mixed case): its "
                              f"payments must carry the key in the {agent_keys.HEADER} header",
                              error_messages={"invalid": "Not a wallet address (0x and 40 hex digits)."})
    max_per_purchase = AmountField(maximum=lambda: 2**256 - 1, help_text="The most one purchase may cost, in the "
                                   "token's base units; at most daily_cap")
    daily_cap = AmountField(maximum=lambda: 2**256 - 1, help_text="The most the key may spend in any 24 hours, "
                            "in base units (refunds come back to it)")
    expires_at = serializers.DateTimeField(help_text="When the key stops working (in the future, within a year)")
    allowed_categories = serializers.ListField(
        child=StrictCharField(max_length=40), required=False, max_length=agent_keys.MAX_ALLOWED,
        help_text="Dataset category slugs it may buy in (those of /api/v1/datasets: economics, health, ...); "
        "empty or absent: any")
    allowed_publishers = serializers.ListField(
        child=StrictRegexField(ADDRESS, error_messages={"invalid": "Not a wallet address (0x and 40 hex digits)."}),
        required=False, max_length=agent_keys.MAX_ALLOWED,
        help_text="Publishers' addresses it may buy from; empty or absent: any")
    nonce = StrictRegexField(r"^[0-9a-f]{32}$", required=False, help_text="The nonce of the challenge issued for "
                             "this wallet (POST /api/v1/me/agent-keys/challenge); not needed for your own address",
                             error_messages={"invalid": "Not a challenge's nonce (32 lowercase hex digits)."})
    wallet_signature = StrictRegexField(SIGNATURE, required=False, max_length=20000, help_text="The wallet's "
                                        "EIP-191 (personal_sign) signature of the challenge's message, 0x and hex; "
                                        "not needed for your own address",
                                        error_messages={"invalid": "Not a signature (0x and 65 bytes or more "
                                                        "in hex)."})


class AgentWalletChallengeRequestSerializer(serializers.Serializer):
    wallet = StrictRegexField(ADDRESS, help_text="The agent's paying wallet (checksummed if mixed case)",
                              error_messages={"invalid": "Not a wallet address (0x and 40 hex digits)."})


class AgentWalletChallengeSerializer(serializers.Serializer):
    wallet = serializers.CharField(help_text="The wallet, checksummed")
    message = serializers.CharField(help_text="The exact text for the wallet to sign with personal_sign (EIP-191)")
    nonce = serializers.CharField(help_text="Send it with the signature when making the key")
    expires_at = serializers.DateTimeField(help_text="The key must be made before then")
    proof_needed = serializers.BooleanField(help_text="False for your own address: its key needs no signature")


class AgentSpendingSerializer(serializers.Serializer):
    used = serializers.CharField(help_text="Counted against the cap in the last 24 hours (reserved, held and spent, "
                                 "net of refunds), base units")
    remaining = serializers.CharField(help_text="What the cap leaves now, base units")
    purchases = serializers.IntegerField(help_text="Payments that made an order, ever")
    refunded = serializers.CharField(help_text="Refund shares returned to the budget, ever, base units")


class AgentKeySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The secret's first characters, to recognise it")
    wallet = serializers.CharField()
    max_per_purchase = serializers.CharField()
    daily_cap = serializers.CharField()
    expires_at = serializers.DateTimeField()
    allowed_categories = serializers.ListField(child=serializers.CharField())
    allowed_publishers = serializers.ListField(child=serializers.CharField())
    status = serializers.CharField(help_text="live, revoked or expired")
    revoked_at = serializers.DateTimeField(allow_null=True)
    wallet_bound = serializers.BooleanField(help_text="Whether the key binds its wallet: live, or ended and not "
                                            "released (payments from the wallet are then refused)")
    wallet_released_at = serializers.DateTimeField(allow_null=True, help_text="When the owner released the wallet")
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    spending = AgentSpendingSerializer()


class CreatedAgentKeySerializer(AgentKeySerializer):
    secret = serializers.CharField(help_text=f"The key, shown this once (only its hash is kept): the agent sends it "
                                   f"in the {agent_keys.HEADER} header")


class AgentPurchaseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    payment_ref = serializers.CharField()
    listing_id = serializers.CharField()
    amount = serializers.CharField()
    state = serializers.ChoiceField(choices=[s.value for s in agent_keys.AgentSpend.State],
                                    help_text="reserved: settling; held: timed out, unresolved, still counted; "
                                    "released: not settled, not counted; spent: an order was made")
    chain_id = serializers.IntegerField(allow_null=True)
    order_id = serializers.CharField(allow_null=True)
    tx_hash = serializers.CharField()
    refunded = serializers.CharField(help_text="Refunded from the order and returned to the budget")
    created_at = serializers.DateTimeField()


def agent_key_body(key, spending: dict) -> dict:
    now = timezone.now()
    status = "revoked" if key.revoked_at else ("live" if key.expires_at > now else "expired")
    return {
        "id": key.pk, "name": key.name, "prefix": key.prefix, "wallet": key.wallet,
        "max_per_purchase": str(key.max_per_purchase), "daily_cap": str(key.daily_cap),
        "expires_at": key.expires_at, "allowed_categories": key.allowed_categories,
        "allowed_publishers": key.allowed_publishers, "status": status, "revoked_at": key.revoked_at,
        "wallet_bound": key.wallet_released_at is None, "wallet_released_at": key.wallet_released_at,
        "created_at": key.created_at, "last_used_at": key.last_used_at,
        "spending": {k: (v if k == "purchases" else str(v)) for k, v in spending.items()},
    }


def purchase_body(spend) -> dict:
    return {"id": spend.pk, "payment_ref": spend.payment_ref, "listing_id": str(spend.listing_id),
            "amount": str(spend.amount), "state": spend.state, "chain_id": spend.chain_id,
            "order_id": None if spend.order_id is None else str(spend.order_id), "tx_hash": spend.tx_hash,
            "refunded": str(spend.refunded), "created_at": spend.created_at}


def _my_key(request, pk):
    key = agent_keys.keys_of(request.user).filter(pk=pk).first()
    if key is None:
        raise APIError("not_found", "You have no agent key with this id.", status=404)
    return key


def agent_key_refusal(exc: agent_keys.AgentKeyRefused):
    """The wallet's proof is about the request as a whole (wallet, nonce and signature): its
    refusals keep their codes, 400 included."""
    if exc.code in agent_keys.PROOF_REFUSALS:
        return APIError(exc.code, exc.message, status=exc.status)
    return refusal(exc)


class AgentWalletChallengeView(APIView):
    """Issue the message an agent's wallet signs to agree to be registered to one of your agent
    keys: a key for a wallet that is not your own address needs its signature (a payment from a
    registered wallet needs the key, so no one may register a wallet they do not hold). Sign the
    `message` with the wallet (EIP-191 personal_sign; a contract wallet: whatever its EIP-1271
    `isValidSignature` accepts) and send the signature as `wallet_signature`, with `nonce`, when
    making the key, within 15 minutes. A challenge is used once."""

    permission_classes = [IsSignedIn]

    @extend_schema(request=AgentWalletChallengeRequestSerializer,
                   responses={201: AgentWalletChallengeSerializer, **errors(400, 401, 403, 409)})
    def post(self, request):
        data = AgentWalletChallengeRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            challenge = agent_keys.issue_challenge(request.user, data.validated_data["wallet"],
                                                   site=request.get_host())
        except agent_keys.AgentKeyRefused as exc:
            raise agent_key_refusal(exc) from None
        return Response({"wallet": challenge.wallet, "message": challenge.message, "nonce": challenge.nonce,
                         "expires_at": challenge.expires_at,
                         "proof_needed": agent_keys.proof_needed(request.user, challenge.wallet)}, status=201)


class AgentKeysView(APIView):
    """The signed-in user's agent keys. An agent pays for a dataset over HTTP 402 from its
    registered wallet and sends its key in the `X-Agent-Key` header; each payment is held to the
    key's per-purchase maximum, its cap per rolling 24 hours, its expiry and its allowed
    categories and publishers. A payment from a registered wallet without its key is refused.
    Registering a wallet that is not your own address needs the wallet's signature of a
    challenge (`POST /api/v1/me/agent-keys/challenge`): 400 `missing_proof` without it, 401
    `bad_proof` (not the wallet's signature, or a challenge issued to someone else or for
    another wallet), 401 `expired_proof`, 409 `nonce_used`."""

    permission_classes = [IsSignedIn]

    @extend_schema(responses={200: AgentKeySerializer(many=True), **errors(401, 403)})
    def get(self, request):
        keys = list(agent_keys.keys_of(request.user))
        spending = agent_keys.spending(keys)
        return Response([agent_key_body(k, spending[k.pk]) for k in keys])

    @extend_schema(request=AgentKeyCreateSerializer,
                   responses={201: CreatedAgentKeySerializer, **errors(400, 401, 403, 409, 503)})
    def post(self, request):
        data = AgentKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            created = agent_keys.create(request.user, **data.validated_data)
        except agent_keys.AgentKeyRefused as exc:
            raise agent_key_refusal(exc) from None
        body = agent_key_body(created.key, agent_keys.spending([created.key])[created.key.pk])
        response = Response({**body, "secret": created.secret}, status=201)
        response["Cache-Control"] = "no-store"  # the secret is in this answer, and only in it
        return response


class AgentKeyView(APIView):
    permission_classes = [IsSignedIn]

    @extend_schema(responses={200: AgentKeySerializer, **errors(401, 403, 404)})
    def get(self, request, pk):
        key = _my_key(request, pk)
        return Response(agent_key_body(key, agent_keys.spending([key])[key.pk]))


class AgentKeyRevokeView(APIView):
    """Revoke a key at once: the next payment made with it is refused (`key_revoked`), and so is
    a payment from its wallet without a key, until you release the wallet
    (`POST .../release-wallet`). Revoking twice is harmless."""

    permission_classes = [IsSignedIn]

    @extend_schema(request=None, responses={200: AgentKeySerializer, **errors(401, 403, 404)})
    def post(self, request, pk):
        key = agent_keys.revoke(_my_key(request, pk))
        return Response(agent_key_body(key, agent_keys.spending([key])[key.pk]))


class AgentKeyReleaseWalletView(APIView):
    """Let the wallet of a revoked or expired key pay as anyone again, with no key and no limits
    (until then its payments are refused: `key_revoked`, `key_expired`). Release it only once the
    agent no longer holds the wallet's key. 409 `key_live` for a live key: revoke it first.
    Releasing twice is harmless."""

    permission_classes = [IsSignedIn]

    @extend_schema(request=None, responses={200: AgentKeySerializer, **errors(401, 403, 404, 409)})
    def post(self, request, pk):
        try:
            key = agent_keys.release_wallet(_my_key(request, pk))
        except agent_keys.AgentKeyRefused as exc:
            raise agent_key_refusal(exc) from None
        return Response(agent_key_body(key, agent_keys.spending([key])[key.pk]))


class PurchasesParams(serializers.Serializer):
    before = serializers.IntegerField(required=False, min_value=1, help_text="The `next_before` of the previous page")


class AgentKeyPurchasesView(APIView):
    """A key's payments, newest first, in pages of 50: what each cost, its state, and the order
    it made."""

    permission_classes = [IsSignedIn]

    @extend_schema(parameters=[PurchasesParams], responses={200: inline_serializer("AgentPurchasePage", {
        "results": AgentPurchaseSerializer(many=True),
        "next_before": serializers.IntegerField(allow_null=True, help_text="`before` of the next page, null at the end"),
    }), **errors(400, 401, 403, 404)})
    def get(self, request, pk):
        params = PurchasesParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        rows = agent_keys.purchases(_my_key(request, pk))
        if "before" in params.validated_data:
            rows = rows.filter(pk__lt=params.validated_data["before"])
        rows = list(rows[:PURCHASES_PAGE])
        return Response({"results": [purchase_body(s) for s in rows],
                         "next_before": rows[-1].pk if len(rows) == PURCHASES_PAGE else None})

"""Sign-in API: nonce, sign-in, sign-out, who am I; the signed-in user's profile and avatar."""
from django.contrib.auth import logout
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.api import APIError, StrictCharField, StrictRegexField, StrictTextField, errors
from marketplace.limits.http import RateLimited, enforce
from marketplace.limits.services import LimitExceeded

from . import avatars, services


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

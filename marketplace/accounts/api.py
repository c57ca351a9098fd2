"""Sign-in API: nonce, sign-in, sign-out, who am I."""
from django.contrib.auth import logout
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from marketplace.api import APIError, errors

from . import services


class SignInThrottle(AnonRateThrottle):
    scope = "sign_in"


class UserSerializer(serializers.Serializer):
    address = serializers.CharField()
    display_name = serializers.CharField()
    is_staff = serializers.BooleanField()


class NonceSerializer(serializers.Serializer):
    address = serializers.RegexField(r"^0x[0-9a-fA-F]{40}$", required=False)


class NonceView(APIView):
    """Issue a single-use nonce for a Sign-In with Ethereum message. Given an `address`, the
    answer also carries the exact message for that wallet to sign."""

    authentication_classes = []
    throttle_classes = [SignInThrottle]

    @extend_schema(
        request=NonceSerializer,
        responses={201: inline_serializer("IssuedNonce", {"nonce": serializers.CharField(), "expires_at": serializers.DateTimeField(),
                                                    "message": serializers.CharField(required=False)}), **errors(400, 429)},
    )
    def post(self, request):
        data = NonceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        nonce = services.issue_nonce()
        body = {"nonce": nonce.nonce, "expires_at": nonce.expires_at}
        if "address" in data.validated_data:
            body["message"] = services.sign_in_message(request, address=data.validated_data["address"], nonce=nonce)
        return Response(body, status=201)


class SignInSerializer(serializers.Serializer):
    message = serializers.CharField(max_length=4000)
    signature = serializers.RegexField(r"^0x[0-9a-fA-F]{130,}$", max_length=20000)


class SignInView(APIView):
    """Verify a signed EIP-4361 message and start a session for its address."""

    throttle_classes = [SignInThrottle]

    @extend_schema(request=SignInSerializer, responses={200: UserSerializer, **errors(400, 401, 429, 503)})
    def post(self, request):
        data = SignInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user = services.sign_in(request, **data.validated_data)
        except services.SignInError as exc:
            status = {"bad_signature": 401, "chain_unavailable": 503}.get(exc.code, 400)
            raise APIError(exc.code, exc.message, status=status) from None
        return Response(UserSerializer(user).data)


class SignOutView(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        logout(request)
        return Response(status=204)


class MeView(APIView):
    @extend_schema(responses={200: UserSerializer, **errors(401)})
    def get(self, request):
        if not request.user.is_authenticated:
            raise APIError("not_signed_in", "Sign in with your wallet first.", status=401)
        return Response(UserSerializer(request.user).data)

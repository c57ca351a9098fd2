from django.urls import path

from . import api

urlpatterns = [
    path("auth/nonce", api.NonceView.as_view(), name="auth-nonce"),
    path("auth/sign-in", api.SignInView.as_view(), name="auth-sign-in"),
    path("auth/sign-out", api.SignOutView.as_view(), name="auth-sign-out"),
    path("auth/me", api.MeView.as_view(), name="auth-me"),
    path("auth/me/avatar", api.AvatarView.as_view(), name="auth-me-avatar"),
    path("me/agent-keys", api.AgentKeysView.as_view(), name="my-agent-keys"),
    path("me/agent-keys/challenge", api.AgentWalletChallengeView.as_view(), name="my-agent-key-challenge"),
    path("me/agent-keys/<int:pk>", api.AgentKeyView.as_view(), name="my-agent-key"),
    path("me/agent-keys/<int:pk>/revoke", api.AgentKeyRevokeView.as_view(), name="my-agent-key-revoke"),
    path("me/agent-keys/<int:pk>/release-wallet", api.AgentKeyReleaseWalletView.as_view(),
         name="my-agent-key-release-wallet"),
    path("me/agent-keys/<int:pk>/purchases", api.AgentKeyPurchasesView.as_view(), name="my-agent-key-purchases"),
]

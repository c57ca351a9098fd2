from django.urls import path

from . import api

urlpatterns = [
    path("auth/nonce", api.NonceView.as_view(), name="auth-nonce"),
    path("auth/sign-in", api.SignInView.as_view(), name="auth-sign-in"),
    path("auth/sign-out", api.SignOutView.as_view(), name="auth-sign-out"),
    path("auth/me", api.MeView.as_view(), name="auth-me"),
    path("auth/me/avatar", api.AvatarView.as_view(), name="auth-me-avatar"),
]

"""People and agents: a user is a wallet address; staff may also sign in with a password."""
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A wallet user's username is their checksummed address; staff and moderators are users
    with permissions, who may also have a password for the admin."""

    address = models.CharField(
        max_length=42, unique=True, null=True, blank=True,
        help_text="Checksummed wallet address bound to this account by Sign-In with Ethereum.",
    )
    display_name = models.CharField(max_length=80, blank=True)

    def __str__(self):
        return self.display_name or self.address or self.username


class SignInNonce(models.Model):
    """A server-issued SIWE nonce: used at most once, and only before it expires."""

    nonce = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

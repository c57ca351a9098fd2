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
    avatar_digest = models.CharField(
        max_length=64, blank=True, editable=False,
        help_text="sha256 of the uploaded avatar (its Avatar row), empty for the generated placeholder; "
                  "it versions the avatar's URL so browsers may cache it for good.",
    )

    def __str__(self):
        return self.display_name or self.address or self.username


class Avatar(models.Model):
    """A user's avatar as served: the upload re-encoded to a small WebP square (see avatars.py),
    kept in PostgreSQL so that every web host serves it without shared storage. Public, and never
    in the private dataset storage."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, primary_key=True, related_name="avatar")
    image = models.BinaryField()
    content_type = models.CharField(max_length=40, default="image/webp")
    digest = models.CharField(max_length=64)
    updated_at = models.DateTimeField(auto_now=True)


class SignInNonce(models.Model):
    """A server-issued SIWE nonce: used at most once, and only before it expires."""

    nonce = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

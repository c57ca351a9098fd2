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
    """A server-issued SIWE nonce: used at most once, and only before it expires. A nonce issued in
    a 402's sign-in-with-x challenge names the paid resource it was issued for (`resource`), so it
    signs in to that resource only; the site's own sign-in nonces have none."""

    nonce = models.CharField(max_length=64, unique=True)
    resource = models.CharField(max_length=2000, blank=True, default="",
                                help_text="The paid resource's URL (sign-in-with-x), or empty (the site's sign-in)")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)


class WalletBan(models.Model):
    """A moderator's ban of a wallet from one activity (`scope`): publishing, buying through our
    pages and API, or contributing. Active while `lifted_at` is empty; at most one active ban per
    wallet and scope. Here, not in moderation, so that the catalog, orders and rewards check it
    (accounts/bans.py) without importing moderation, whose actions write it (moderation/bans.py)."""

    class Scope(models.TextChoices):
        PUBLISH = "publish", "Publishing"
        BUY = "buy", "Buying"
        CONTRIBUTE = "contribute", "Contributing"

    address = models.CharField(max_length=42, help_text="The banned wallet, checksummed")
    scope = models.CharField(max_length=16, choices=Scope.choices)
    reason = models.CharField(max_length=40, help_text="A policy code (moderation/bans.py REASONS)")
    statement = models.TextField(help_text="The statement of reasons the wallet's owner sees")
    internal_note = models.TextField(blank=True, help_text="For moderators only")
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    lift_statement = models.TextField(blank=True)
    before_block = models.BigIntegerField(
        null=True, blank=True, help_text="A buy ban: how far the chain indexer had read when it was placed; orders "
        "in blocks up to this one were paid before the ban (they download, as every order settles)")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["address", "scope"], condition=models.Q(lifted_at__isnull=True),
                                               name="wallet_ban_active_once")]
        indexes = [models.Index(fields=["address", "created_at"], name="wallet_ban_address")]

    @property
    def active(self) -> bool:
        return self.lifted_at is None

    def __str__(self):
        return f"{self.address} banned from {self.scope}"

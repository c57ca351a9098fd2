"""People and agents: a user is a wallet address; staff may also sign in with a password."""
from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone


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


MONEY = dict(max_digits=78, decimal_places=0)  # token base units, NUMERIC(78,0)


class AgentKey(models.Model):
    """An API key a user gives one of their AI agents, bound to the wallet the agent pays from:
    a payment from that wallet must carry the key (X-Agent-Key), and every payment made with it
    is held to the key's limits (agent_keys.py). The secret is shown once, at creation; only its
    sha256 is kept, and its first characters (`prefix`) so that the owner can tell keys apart.

    Live while neither revoked nor expired; at most one live key per wallet (agent_keys.create
    checks it under a lock: expiry is a time, so no index can say it). A key binds its wallet
    until the owner releases it (`wallet_released_at`), live or not: a revoked or expired key's
    wallet is refused, so that an agent holding the wallet's own key cannot go on paying without
    limits once its key ends."""

    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="agent_keys")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=16, help_text="The secret's first characters, shown to recognise it")
    secret_hash = models.CharField(max_length=64, unique=True, help_text="sha256 of the secret, hex")
    wallet = models.CharField(max_length=42, help_text="The agent's paying wallet, checksummed")
    max_per_purchase = models.DecimalField(**MONEY, help_text="Largest price one payment may have, base units")
    daily_cap = models.DecimalField(**MONEY, help_text="Most the key may spend in any 24 hours, base units")
    expires_at = models.DateTimeField()
    allowed_categories = ArrayField(models.CharField(max_length=40), default=list, blank=True,
                                    help_text="Dataset category slugs it may buy from; empty: any")
    allowed_publishers = ArrayField(models.CharField(max_length=42), default=list, blank=True,
                                    help_text="Dataset owners' checksummed addresses it may buy from; empty: any")
    revoked_at = models.DateTimeField(null=True, blank=True)
    wallet_released_at = models.DateTimeField(
        null=True, blank=True, help_text="When the owner released the wallet of this ended key (it pays as anyone "
        "again); until then its payments are refused")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["wallet"], name="agent_key_wallet"),
                   models.Index(fields=["owner", "-created_at"], name="agent_key_owner")]
        constraints = [models.CheckConstraint(condition=models.Q(max_per_purchase__lte=models.F("daily_cap")),
                                              name="agent_key_max_within_cap")]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    def is_live(self, now=None) -> bool:
        return self.revoked_at is None and self.expires_at > (now or timezone.now())


class AgentWalletChallenge(models.Model):
    """A message the server issued for an agent's wallet to sign, agreeing to be registered to
    one user's agent key (agent_keys.issue_challenge): a registered wallet's payments need the
    key, so no one may register a wallet without its holder's signature. Bound to the user and
    the wallet, used at most once (by the key it made), and only before it expires."""

    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    wallet = models.CharField(max_length=42, help_text="The wallet that signs, checksummed")
    nonce = models.CharField(max_length=64, unique=True)
    message = models.TextField(help_text="The exact EIP-191 text the wallet signs")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "created_at"], name="agent_challenge_owner"),
                   models.Index(fields=["expires_at"], name="agent_challenge_expiry")]

    def __str__(self):
        return f"{self.wallet} for {self.owner_id} ({self.nonce})"


class AgentSpend(models.Model):
    """One payment an agent made with a key: reserved when the request arrives (counted against
    the cap at once), then released (the settlement was refused or reverted: it no longer
    counts), held (the settlement timed out and is unresolved: it keeps counting) or spent (an
    order was made). `created_at` is when it was reserved: the rolling 24 hours count from it."""

    class State(models.TextChoices):
        RESERVED = "reserved", "Reserved"
        RELEASED = "released", "Released"
        HELD = "held", "Held"
        SPENT = "spent", "Spent"

    key = models.ForeignKey(AgentKey, on_delete=models.CASCADE, related_name="spends")
    payment_ref = models.CharField(max_length=200, unique=True, help_text="The payments code's reference")
    listing_id = models.DecimalField(**MONEY)
    amount = models.DecimalField(**MONEY)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RESERVED)
    chain_id = models.BigIntegerField(null=True, blank=True)
    order_id = models.DecimalField(**MONEY, null=True, blank=True)
    tx_hash = models.CharField(max_length=66, blank=True, help_text="The settlement, 0x and lowercase hex")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["key", "created_at"], name="agent_spend_window"),
                   models.Index(fields=["chain_id", "order_id"], name="agent_spend_order")]

    def __str__(self):
        return f"{self.payment_ref}: {self.amount} {self.state}"


class AgentRefund(models.Model):
    """A refund share of an order an agent paid for (a `DisputeResolved` or `DisputeExpired`),
    returned to its key's budget: written once per chain event by the indexer's handler, gone
    with its block after a reorganisation and with its chain after a reset."""

    spend = models.ForeignKey(AgentSpend, on_delete=models.CASCADE, related_name="refunds")
    amount = models.DecimalField(**MONEY)
    chain_id = models.BigIntegerField()
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "tx_hash", "log_index"],
                                               name="agent_refund_event_once")]

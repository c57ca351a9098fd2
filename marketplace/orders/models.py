"""Orders mirrored from the market's escrow events (the chain indexer is their only writer)."""
from django.db import models

MONEY = dict(max_digits=78, decimal_places=0)  # token base units, NUMERIC(78,0)


class Order(models.Model):
    """One escrowed order of the DataMarket, as its events say: made by `OrderCreated` (whose
    transaction and log index key the row), moved by `OrderDisputed`, `OrderReleased`,
    `DisputeResolved` and `DisputeExpired`. Its states are the contract's: open (paid, in
    escrow), disputed, released (the owner was paid), resolved (an arbiter split it) and refunded
    (in full: no more access). The buyer may download while it is anything but refunded."""

    class Status(models.TextChoices):
        OPEN = "open", "Paid, in escrow"
        DISPUTED = "disputed", "Disputed"
        RELEASED = "released", "Released to the owner"
        RESOLVED = "resolved", "Resolved by an arbiter"
        REFUNDED = "refunded", "Refunded in full"

    chain_id = models.BigIntegerField()
    market = models.CharField(max_length=42, help_text="The DataMarket (checksummed)")
    order_id = models.DecimalField(**MONEY)
    listing_id = models.DecimalField(**MONEY)
    buyer = models.CharField(max_length=42)
    token = models.CharField(max_length=42)
    amount = models.DecimalField(**MONEY)
    fee_bps = models.PositiveIntegerField()
    release_at = models.DateTimeField(help_text="The end of the dispute window")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    dispute_deadline = models.DateTimeField(null=True, blank=True)
    refund = models.DecimalField(**MONEY, default=0)
    owner_amount = models.DecimalField(**MONEY, default=0)
    fee = models.DecimalField(**MONEY, default=0)
    tx_hash = models.CharField(max_length=66, help_text="The OrderCreated event's transaction")
    log_index = models.PositiveIntegerField()
    block_number = models.BigIntegerField()
    settled_block = models.BigIntegerField(null=True, blank=True, help_text="The block of its last state change")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "tx_hash", "log_index"], name="order_event_once"),
            models.UniqueConstraint(fields=["chain_id", "market", "order_id"], name="one_row_per_order"),
        ]
        indexes = [
            models.Index(fields=["chain_id", "listing_id", "buyer"], name="order_access"),
            models.Index(fields=["buyer", "-block_number"], name="order_library"),
            models.Index(fields=["status", "release_at"], name="order_maturity"),
        ]

    def __str__(self):
        return f"order {self.order_id} of listing {self.listing_id} ({self.status})"


class DownloadGrant(models.Model):
    """A download token: what the download endpoint gives a buyer who showed, by session or by a
    signed request, that they paid for a version. Valid for DOWNLOAD_TOKEN_SECONDS (at most 10
    minutes), for as many requests as resuming with Range takes; each request checks the order
    again. Only the token's sha256 is stored. Made by users: never deleted with chain rows (it
    names the order by its listing, not by a foreign key)."""

    token_hash = models.CharField(max_length=64, unique=True)
    buyer = models.CharField(max_length=42)
    version = models.ForeignKey("catalog.DatasetVersion", on_delete=models.PROTECT, related_name="+")
    chain_id = models.BigIntegerField()
    listing_id = models.DecimalField(**MONEY)
    via = models.CharField(max_length=16, help_text="session or signature")
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"download of {self.version} by {self.buyer} until {self.expires_at:%H:%M:%S}"


class DownloadNonce(models.Model):
    """A signed download request's nonce, used once per buyer (kept until its request expires)."""

    buyer = models.CharField(max_length=42)
    nonce = models.CharField(max_length=66)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["buyer", "nonce"], name="download_nonce_once")]


class Download(models.Model):
    """One request for a bought file, and how many bytes it was sent (the download log)."""

    grant = models.ForeignKey(DownloadGrant, on_delete=models.SET_NULL, null=True, related_name="downloads")
    buyer = models.CharField(max_length=42)
    version = models.ForeignKey("catalog.DatasetVersion", on_delete=models.PROTECT, related_name="+")
    range = models.CharField(max_length=200, blank=True, help_text="The request's Range header, if any")
    status = models.PositiveSmallIntegerField()
    bytes_served = models.BigIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True, help_text="Null while sending, or if cut short")
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["buyer", "-started_at"], name="download_by_buyer"),
                   models.Index(fields=["version", "-started_at"], name="download_by_version")]

    def __str__(self):
        return f"{self.buyer} got {self.bytes_served:,} bytes of {self.version}"

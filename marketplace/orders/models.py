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

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
    settled_tx_hash = models.CharField(
        max_length=66, blank=True, default="",
        help_text="The transaction of its last state change (a payout's, a refund's)")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "tx_hash", "log_index"], name="order_event_once"),
            models.UniqueConstraint(fields=["chain_id", "market", "order_id"], name="one_row_per_order"),
        ]
        indexes = [
            models.Index(fields=["chain_id", "listing_id", "buyer"], name="order_access"),
            models.Index(fields=["buyer", "-block_number"], name="order_library"),
            models.Index(fields=["status", "release_at"], name="order_maturity"),
            models.Index(fields=["chain_id", "settled_tx_hash"], name="order_settled_tx"),
        ]
        # Viewing orders (the dispute queue) is not deciding them: resolving moves escrowed money.
        permissions = [("resolve_dispute", "Can resolve a dispute with a refund share")]

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


class CreditEntry(models.Model):
    """One `Credited` or `Withdrawn` event of the market: a transfer out of a settlement that
    failed and became the recipient's credit, or a credit withdrawn. An account's credit of a
    token is its entries' sum (credited minus withdrawn). Chain-derived: written by the indexer's
    handler, keyed by the event, deleted with orphaned blocks and with a forgotten chain."""

    class Kind(models.TextChoices):
        CREDITED = "credited", "Credited"
        WITHDRAWN = "withdrawn", "Withdrawn"

    chain_id = models.BigIntegerField()
    market = models.CharField(max_length=42, help_text="The DataMarket (checksummed)")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    token = models.CharField(max_length=42)
    account = models.CharField(max_length=42, help_text="Whose credit it is")
    amount = models.DecimalField(**MONEY)
    order_id = models.DecimalField(**MONEY, null=True, blank=True,
                                   help_text="The order credited (Credited only)")
    to = models.CharField(max_length=42, blank=True,
                          help_text="Where a withdrawal went (Withdrawn only)")
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "tx_hash", "log_index"],
                                               name="credit_event_once")]
        indexes = [models.Index(fields=["account", "chain_id", "token"], name="credit_by_account")]

    def __str__(self):
        return f"{self.kind} {self.amount} of {self.token} for {self.account}"


class DisputeStatement(models.Model):
    """What a party to a disputed order says: the buyer's statement, the listing owner's answer,
    one each. Made by users, so it names the order by (chain id, market, order id) and the
    transaction of its `OrderCreated`, not by a foreign key: an order row goes with a
    reorganisation or a forgotten chain, a statement never does, and a reorganisation deeper than
    the confirmations can give the order id to another buyer's order, which the old statements
    must not follow."""

    class Role(models.TextChoices):
        BUYER = "buyer", "Buyer"
        SELLER = "seller", "Seller"

    chain_id = models.BigIntegerField()
    market = models.CharField(max_length=42)
    order_id = models.DecimalField(**MONEY)
    order_tx_hash = models.CharField(max_length=66, help_text="The order's OrderCreated transaction")
    role = models.CharField(max_length=8, choices=Role.choices)
    author = models.CharField(max_length=42, help_text="The wallet that wrote it")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(
            fields=["chain_id", "market", "order_id", "order_tx_hash", "role"],
            name="one_statement_per_party")]

    def __str__(self):
        return f"{self.role}'s statement on order {self.order_id}"


class StrayTransfer(models.Model):
    """A transfer of a market token into the market that no order explains (see `orders.strays`),
    keyed by its `Transfer` log. A pushed authorization (its transaction carries the token's
    `AuthorizationUsed` naming the sender) is returned to its payer from the market's surplus,
    answering `ref`; a plain transfer waits for an arbiter's review. Chain-derived: written by the
    indexer's handler, deleted with orphaned blocks and with a forgotten chain."""

    class Kind(models.TextChoices):
        AUTHORIZATION = "authorization", "A pushed authorization"
        PLAIN = "plain", "A plain transfer"

    class Status(models.TextChoices):
        RETURNING = "returning", "Being returned by the operator"
        ARBITER = "arbiter", "Waiting for the arbiter's wallet"
        RETURNED = "returned", "Returned"
        DUST = "dust", "Below the dust threshold: not returned"
        REVIEW = "review", "Waiting for an arbiter's review"
        FAILED = "failed", "The return failed: an arbiter looks at it"

    chain_id = models.BigIntegerField()
    market = models.CharField(max_length=42, help_text="The DataMarket (checksummed)")
    token = models.CharField(max_length=42)
    payer = models.CharField(max_length=42, help_text="The transfer's `from`")
    amount = models.DecimalField(**MONEY, help_text="The transfer's own value, in base units")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    ref = models.CharField(max_length=66, help_text="keccak256(abi.encode(txHash, token, n)), n the transfer's position "
                           "among its token's transfers into the market in its transaction: what the return answers")
    tx_hash = models.CharField(max_length=66, help_text="The stray transfer's transaction")
    log_index = models.PositiveIntegerField()
    block_number = models.BigIntegerField()
    action = models.ForeignKey("chain.OperatorAction", on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="+", help_text="The operator's return, when it sends it")
    error = models.TextField(blank=True)
    return_tx_hash = models.CharField(max_length=66, blank=True, help_text="The SurplusReturned transaction")
    return_block = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "tx_hash", "log_index"], name="stray_transfer_once"),
            models.UniqueConstraint(fields=["chain_id", "market", "ref"], name="stray_ref_once"),
        ]
        indexes = [
            models.Index(fields=["payer", "-block_number"], name="stray_by_payer"),
            models.Index(fields=["status", "chain_id"], name="stray_by_status"),
        ]

    def __str__(self):
        return f"{self.get_kind_display().lower()} of {self.amount} from {self.payer} ({self.status})"

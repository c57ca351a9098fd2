"""Epochs and what their close writes: per-wallet amounts, held amounts, the Merkle tree's leaves
and nodes, community revenue; and the chain-derived rows the indexer keeps for the distributor
(root events and claims). See docs/rewards-epochs.md."""

from django.db import models

from .core import MONEY, Flag


class Epoch(models.Model):
    """One reward period: a number (the distributor's epoch) and a fixed window of server time.

    The close moves it open -> scored -> queued -> proposed -> matured, each step one database
    transaction under an advisory lock (`rewards.epochs`). `scored` fixes everything the root
    depends on (amounts, leaves, tree, root, total), so a rerun or a retried transaction can only
    send the same root. The pool's parts are kept so that the admin page and the API can show
    where each amount came from; `pool == paid + held + carried_out` always."""

    class State(models.TextChoices):
        OPEN = "open", "Open"
        SCORED = "scored", "Scored: amounts and tree stored"
        QUEUED = "queued", "Queued: waiting for funding or the operator sender"
        PROPOSED = "proposed", "Proposed: root on-chain, not claimable yet"
        MATURED = "matured", "Matured: claimable"

    class RootStatus(models.TextChoices):
        NONE = "", "Not proposed"
        PROPOSED = "proposed", "Proposed"
        REPLACED = "replaced", "Replaced before it matured"
        REVOKED = "revoked", "Revoked by the admin"
        SUSPENDED = "suspended", "Suspended: claims paused"

    number = models.PositiveBigIntegerField(unique=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    # The pool's parts (token base units).
    emission = models.DecimalField(**MONEY, default=0)
    carried_in = models.DecimalField(
        **MONEY, default=0, help_text="Rounding remainder of the previous epoch"
    )
    returned_in = models.DecimalField(
        **MONEY, default=0, help_text="Held amounts whose flag was confirmed"
    )
    revenue_in = models.DecimalField(
        **MONEY, default=0, help_text="Community sales released in the window"
    )
    released_in = models.DecimalField(
        **MONEY, default=0, help_text="Held amounts whose flag was cleared"
    )
    revoked_in = models.DecimalField(
        **MONEY, default=0, help_text="What revoked roots had paid, back to the pool"
    )
    pool = models.DecimalField(**MONEY, default=0, help_text="The sum of the parts")
    paid = models.DecimalField(
        **MONEY, default=0, help_text="Added to cumulative amounts by this epoch"
    )
    held = models.DecimalField(**MONEY, default=0, help_text="Earned by flagged wallets, held")
    carried_out = models.DecimalField(
        **MONEY, default=0, help_text="Rounding remainder for the next epoch"
    )
    points = models.DecimalField(
        **MONEY, default=0, help_text="All wallets' points (x 10,000), bonuses included"
    )
    # The tree.
    root = models.CharField(max_length=66, blank=True)
    total = models.DecimalField(
        **MONEY, default=0, help_text="Sum of the leaves' cumulative amounts"
    )
    leaves = models.PositiveIntegerField(default=0)
    # Publishing.
    action = models.ForeignKey(
        "chain.OperatorAction",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The latest proposeRoot action",
    )
    proposals = models.PositiveIntegerField(default=0, help_text="proposeRoot actions queued")
    funding_tx = models.CharField(
        max_length=66, blank=True, help_text="The treasury's transfer of the emission"
    )
    funding_raw = models.TextField(
        blank=True, help_text="Its signed bytes, broadcast again after a crash"
    )
    funding_nonce = models.BigIntegerField(
        null=True, blank=True, help_text="The treasury's nonce the transfer is signed at (and any replacement)"
    )
    funding_hashes = models.JSONField(
        default=list, blank=True, help_text="Every transfer signed at that nonce (any one of them may be mined)"
    )
    funding_signed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the latest of them was signed (replaced after OPERATOR_REPLACE_AFTER)"
    )
    waiting = models.TextField(
        blank=True, help_text="Why the close waits (funding, the sender), if it does"
    )
    root_status = models.CharField(
        max_length=16, choices=RootStatus.choices, default=RootStatus.NONE, blank=True
    )
    proposed_tx = models.CharField(max_length=66, blank=True)
    revoked_back_in = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Its root revoked: the epoch whose pool took back what it paid",
    )
    valid_at = models.DateTimeField(
        null=True, blank=True, help_text="When the root becomes claimable"
    )
    scored_at = models.DateTimeField(null=True, blank=True)
    score_seconds = models.FloatField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-number"]

    def __str__(self):
        return f"epoch {self.number} ({self.state})"


class EpochAmount(models.Model):
    """What one wallet earned in one epoch: its points (x 10,000: device quality is in basis
    points) and the amount added to its cumulative amount, or held."""

    epoch = models.ForeignKey(Epoch, on_delete=models.CASCADE, related_name="amounts")
    wallet = models.CharField(max_length=42)
    uptime_slots = models.BigIntegerField(default=0)
    job_points = models.BigIntegerField(default=0)
    referral_points = models.DecimalField(**MONEY, default=0, help_text="Bonus points (x 10,000)")
    points = models.DecimalField(
        **MONEY, default=0, help_text="All points (x 10,000), bonus included"
    )
    amount = models.DecimalField(**MONEY, default=0, help_text="From the pool (paid, or held)")
    revenue = models.DecimalField(**MONEY, default=0, help_text="Its shares of community sales")
    released = models.DecimalField(**MONEY, default=0, help_text="Earlier held amounts, cleared")
    held = models.DecimalField(**MONEY, default=0, help_text="Not paid: an open flag")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["epoch", "wallet"], name="epoch_amount_once")
        ]
        indexes = [models.Index(fields=["wallet", "epoch"], name="epoch_amount_wallet")]


class HeldAmount(models.Model):
    """An amount earned while the wallet had an open flag: not in the tree. Cleared, it is paid
    in the next epoch's close (`settled_in`); confirmed, it goes back into that epoch's pool."""

    class Status(models.TextChoices):
        HELD = "held", "Held"
        RELEASED = "released", "Paid after the flag was cleared"
        RETURNED = "returned", "Back to the pool after the flag was confirmed"

    epoch = models.ForeignKey(Epoch, on_delete=models.CASCADE, related_name="held_amounts")
    wallet = models.CharField(max_length=42)
    flag = models.ForeignKey(Flag, on_delete=models.PROTECT, related_name="held_amounts")
    amount = models.DecimalField(**MONEY)
    reason = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.HELD)
    settled_in = models.ForeignKey(
        Epoch, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        indexes = [
            models.Index(fields=["status"], name="held_amount_status"),
            models.Index(fields=["wallet"], name="held_amount_wallet"),
        ]


class EpochLeaf(models.Model):
    """A leaf of an epoch's tree: the wallet's cumulative amount and where its hash is in the
    tree's node array (see `EpochTree`), so a proof reads just the sibling nodes."""

    # One index, (epoch, wallet): a proof's lookup must never be planned on an epoch-only index
    # (which a freshly loaded table's statistics can make look cheaper).
    epoch = models.ForeignKey(Epoch, on_delete=models.CASCADE, related_name="+", db_index=False)
    wallet = models.CharField(max_length=42)
    cumulative = models.DecimalField(**MONEY)
    node = models.PositiveIntegerField(help_text="Index of the leaf's hash in the node array")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["epoch", "wallet"], name="epoch_leaf_once")]


class EpochTree(models.Model):
    """An epoch's tree as `merkle.MerkleTree` lays it out: 32-byte nodes in array order. The column
    is stored uncompressed out of line (STORAGE EXTERNAL, migration), so `substring` reads only
    the pages of the nodes a proof needs, not the tree's 64 MB."""

    epoch = models.OneToOneField(
        Epoch, on_delete=models.CASCADE, primary_key=True, related_name="tree"
    )
    nodes = models.BinaryField()


class CommunityRevenue(models.Model):
    """A community sale's payout to the distributor, from the indexer's `OrderReleased` or
    `DisputeResolved` (never `OrderCreated`: a purchase can still be refunded). Chain-derived:
    keyed by its event, deleted by a reorganisation unless an epoch already counted it. An order
    pays out once, so there is one row per order (its id and its OrderCreated transaction): after
    a reorganisation deeper than the confirmations, the same payout re-mined under another
    transaction or log index is not counted again."""

    chain_id = models.BigIntegerField()
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.BigIntegerField()
    market = models.CharField(max_length=42, help_text="The DataMarket that paid (checksummed)")
    order_id = models.DecimalField(**MONEY)
    order_tx_hash = models.CharField(max_length=66, help_text="The order's OrderCreated transaction")
    listing_id = models.DecimalField(**MONEY)
    buyer = models.CharField(max_length=42)
    amount = models.DecimalField(**MONEY, help_text="The owner's amount, paid to the distributor")
    version = models.ForeignKey(
        "catalog.DatasetVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    counted_in = models.ForeignKey(
        Epoch, on_delete=models.PROTECT, null=True, blank=True, related_name="revenue"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "tx_hash", "log_index"], name="community_revenue_once"
            ),
            models.UniqueConstraint(
                fields=["chain_id", "market", "order_id", "order_tx_hash"],
                name="community_revenue_per_order",
            ),
        ]


class RootEvent(models.Model):
    """A distributor root event (RootProposed, RootReplaced, RootRevoked, RootSuspended), stored
    by the indexer's handler; a reorganisation deletes it and recomputes its epoch's status."""

    chain_id = models.BigIntegerField()
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.BigIntegerField()
    name = models.CharField(max_length=32)
    epoch = models.PositiveBigIntegerField()
    root = models.CharField(max_length=66)
    total = models.DecimalField(**MONEY, null=True, blank=True)
    valid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "tx_hash", "log_index"], name="root_event_once"
            )
        ]
        indexes = [models.Index(fields=["chain_id", "epoch"], name="root_event_epoch")]


class RewardClaim(models.Model):
    """A `Claimed` event: what an account was paid, and its claimed total after it."""

    chain_id = models.BigIntegerField()
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.BigIntegerField()
    account = models.CharField(max_length=42)
    epoch = models.PositiveBigIntegerField()
    amount = models.DecimalField(**MONEY)
    cumulative = models.DecimalField(**MONEY)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "tx_hash", "log_index"], name="reward_claim_once"
            )
        ]
        indexes = [models.Index(fields=["chain_id", "account"], name="reward_claim_account")]

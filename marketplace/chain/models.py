"""Where the contracts live on the chain the server talks to."""
from django.db import models


class Deployment(models.Model):
    """One deployed contract. Its block hash proves, at every start, that the chain still has it;
    its artifact hash, that this build's ABI and bytecode are the ones it runs."""

    chain_id = models.BigIntegerField()
    contract = models.CharField(max_length=64)
    address = models.CharField(max_length=42)  # checksummed
    tx_hash = models.CharField(max_length=66)
    block_number = models.BigIntegerField()
    block_hash = models.CharField(max_length=66)
    artifact_hash = models.CharField(
        max_length=64, blank=True,
        help_text="Artifact.code_hash of the build it was deployed from (blank: recorded before hashes were kept)",
    )
    deployed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "contract"], name="one_deployment_per_contract")
        ]

    def __str__(self):
        return f"{self.contract} at {self.address} (chain {self.chain_id})"


class OperatorTransaction(models.Model):
    """One nonce of the operator key and what was signed for it: the single sender
    (`chain.sender`) records the signed transaction here before it broadcasts it, and the nonce
    stays this row's for life. A transaction the node lost is broadcast again byte for byte; one
    stuck in the mempool is replaced at the same nonce with higher fees (every hash signed is kept
    in `hashes`, since any of them may be the one mined). The nonce goes to other work only when
    the chain shows it used by a transaction that is none of these (`dropped`)."""

    class Status(models.TextChoices):
        SIGNED = "signed", "Signed, not accepted by the node yet"
        PENDING = "pending", "In the mempool"
        MINED = "mined", "Mined, waiting for the indexer and its confirmations"
        DONE = "done", "Settled from the indexer"
        DROPPED = "dropped", "Its nonce was used by another transaction"

    OPEN = (Status.SIGNED, Status.PENDING, Status.MINED)

    chain_id = models.BigIntegerField()
    sender = models.CharField(max_length=42, help_text="The operator address (checksummed)")
    nonce = models.BigIntegerField()
    kind = models.CharField(max_length=24)
    to = models.CharField(max_length=42)
    data = models.TextField(help_text="The call data, 0x-hex")
    gas = models.BigIntegerField()
    max_fee_per_gas = models.DecimalField(max_digits=78, decimal_places=0)
    max_priority_fee_per_gas = models.DecimalField(max_digits=78, decimal_places=0)
    raw = models.TextField(help_text="The signed transaction last broadcast, 0x-hex")
    tx_hash = models.CharField(max_length=66, help_text="The hash of `raw`")
    hashes = models.JSONField(default=list, help_text="Every hash signed for this nonce, oldest first")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SIGNED)
    mined_hash = models.CharField(max_length=66, blank=True)
    block_number = models.BigIntegerField(null=True, blank=True)
    block_hash = models.CharField(max_length=66, blank=True)
    reverted = models.BooleanField(default=False)
    broadcasts = models.PositiveIntegerField(default=0)
    replacements = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="The node's last refusal, if any")
    broadcast_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["chain_id", "nonce"]
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "sender", "nonce"], name="one_row_per_nonce"),
        ]
        indexes = [models.Index(fields=["status", "chain_id"], name="operator_tx_open")]

    def __str__(self):
        return f"{self.kind} at nonce {self.nonce} ({self.status})"


class OperatorAction(models.Model):
    """One thing the operator key has to do on the market, written in the same database
    transaction as the decision that needs it (an outbox): settle an agent's x402 payment, approve or clear
    a listing, release a matured order, settle an expired dispute, resolve a dispute (only when the operator key is the
    arbiter), relay a buyer's signed confirmation or dispute, return surplus. The single sender
    (`chain.sender`) checks each row, batches those of a kind that batch into one transaction,
    and settles every row from the events the chain indexer stored for that transaction.

    chain/ imports no app: the app that queued a row names a function (`on_done`, a dotted path)
    that the sender calls with the row, in the transaction that records it confirmed or failed;
    `context` is that app's own data, which the sender never reads. `payload` is the kind's
    arguments (see `chain.sender.KINDS`)."""

    class Kind(models.TextChoices):
        PURCHASE_WITH_AUTHORIZATION = "purchase_with_auth", "Settle an x402 payment (purchaseWithAuthorization)"
        APPROVE = "approve", "Approve"
        UNAPPROVE = "unapprove", "Clear approval"
        RELEASE = "release", "Release a matured order"
        EXPIRE_DISPUTE = "expire_dispute", "Refund an expired dispute"
        RESOLVE = "resolve", "Resolve a dispute"
        CONFIRM_BY_SIG = "confirm_by_sig", "Relay a buyer's confirmation"
        DISPUTE_BY_SIG = "dispute_by_sig", "Relay a buyer's dispute"
        RETURN_SURPLUS = "return_surplus", "Return surplus"
        PROPOSE_ROOT = "propose_root", "Propose a reward root"
        REVOKE_ROOT = "revoke_root", "Revoke a pending reward root"
        CREATE_LISTING = "create_listing", "List a community dataset version"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent, waiting for the chain"
        CONFIRMED = "confirmed", "Confirmed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    OPEN = (Status.PENDING, Status.SENT)

    kind = models.CharField(max_length=24, choices=Kind.choices)
    chain_id = models.BigIntegerField()
    market = models.CharField(max_length=42, help_text="The contract it acts on (checksummed): the "
                              "DataMarket, or the RewardDistributor for reward roots")
    listing_id = models.DecimalField(max_digits=78, decimal_places=0, null=True, blank=True)
    order_id = models.DecimalField(max_digits=78, decimal_places=0, null=True, blank=True)
    expected_owner = models.CharField(max_length=42, blank=True,
                                      help_text="Approvals: the listing owner that was reviewed")
    expected_content_hash = models.CharField(max_length=66, blank=True,
                                             help_text="Approvals: the content hash that was reviewed")
    payload = models.JSONField(default=dict, blank=True, help_text="The kind's arguments")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    transaction = models.ForeignKey(OperatorTransaction, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="actions")
    tx_hash = models.CharField(max_length=66, blank=True,
                               help_text="Its transaction's latest hash (the mined one once mined)")
    block_number = models.BigIntegerField(null=True, blank=True)
    log_index = models.PositiveIntegerField(
        null=True, blank=True, help_text="Where in its block the event that settled it is")
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Transactions it was signed into")
    on_done = models.CharField(max_length=200, blank=True, help_text="Dotted path called with the settled row")
    context = models.JSONField(default=dict, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "chain_id", "kind"], name="operator_action_queue"),
            models.Index(fields=["chain_id", "listing_id"], name="operator_action_listing"),
            models.Index(fields=["chain_id", "order_id"], name="operator_action_order"),
        ]

    def __str__(self):
        if self.listing_id is not None:
            target = f"listing {self.listing_id}"
        elif self.kind in (self.Kind.PROPOSE_ROOT, self.Kind.REVOKE_ROOT):
            target = f"of epoch {self.payload.get('epoch')}"
        else:
            target = f"order {self.order_id}"
        return f"{self.get_kind_display()} {target} ({self.status})"


class ChainEvent(models.Model):
    """One log of a watched contract (the market, the reward distributor) or a Transfer of a
    market token into or out of the market, stored once per (chain, transaction, log index).
    The indexer (`chain.indexer`) is its only writer: it stores a block range's events and calls
    the apps' handlers in one database transaction, and on a reorganisation deletes the events
    of orphaned blocks after the apps' rollback handlers have seen them."""

    chain_id = models.BigIntegerField()
    block_number = models.BigIntegerField()
    block_hash = models.CharField(max_length=66)
    tx_hash = models.CharField(max_length=66)
    tx_index = models.PositiveIntegerField(help_text="The transaction's position in its block")
    log_index = models.PositiveIntegerField(help_text="The log's position in its block")
    address = models.CharField(max_length=42, help_text="The contract that emitted it (checksummed)")
    name = models.CharField(max_length=64)
    args = models.JSONField(help_text="Integers as decimal strings, addresses checksummed, bytes as 0x-hex")

    class Meta:
        ordering = ["chain_id", "block_number", "log_index"]
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "tx_hash", "log_index"], name="one_event_per_log"),
        ]
        indexes = [
            models.Index(fields=["chain_id", "block_number", "log_index"], name="chain_event_position"),
            models.Index(fields=["chain_id", "name", "block_number"], name="chain_event_name"),
        ]

    def __str__(self):
        return f"{self.name} in block {self.block_number} ({self.tx_hash}:{self.log_index})"


class IndexerCursor(models.Model):
    """How far the indexer has read a chain: every watched event up to and including
    `block_number` is stored. Also its health: the last error and when it tries again."""

    chain_id = models.BigIntegerField(unique=True)
    block_number = models.BigIntegerField()
    block_hash = models.CharField(max_length=66)
    failures = models.PositiveIntegerField(default=0, help_text="Failed runs in a row")
    error = models.TextField(blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"chain {self.chain_id} indexed through block {self.block_number}"


class IndexedBlock(models.Model):
    """A block the indexer has read, with its hash: the ends of its ranges and every block with
    an event, the latest `indexer.KEEP_BLOCKS` of them. A reorganisation is found by comparing
    the newest with the chain, and its common ancestor by walking back through them."""

    chain_id = models.BigIntegerField()
    number = models.BigIntegerField()
    hash = models.CharField(max_length=66)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "number"], name="one_hash_per_block")]

    def __str__(self):
        return f"block {self.number} {self.hash}"

"""What every part of contributions and rewards shares: contributors (wallets), their devices
(nodes), the verified work they earn points with, and the flags that hold their amounts."""
import secrets

from django.db import models

MONEY = dict(max_digits=78, decimal_places=0)  # token base units, NUMERIC(78,0)


def new_referral_code() -> str:
    return secrets.token_urlsafe(9)


class Contributor(models.Model):
    """A wallet that contributes: it binds devices, earns points and claims its rewards. Made the
    first time a device binds to the wallet (or the wallet opens its dashboard)."""

    wallet = models.CharField(max_length=42, unique=True, help_text="Checksummed; rewards are paid to it")
    referral_code = models.CharField(max_length=16, unique=True, default=new_referral_code)
    referred_by = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="referrals")
    leaderboard_opt_out = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.wallet


class Device(models.Model):
    """A node: its device key (an secp256k1 key whose private half stays in a file on the
    contributor's machine; `address` is its Ethereum address) and the wallet it is bound to.
    `seq` and `nonce` are the heartbeat protocol's state: the next heartbeat must carry a greater
    sequence number and sign `nonce`, which every acknowledgement replaces."""

    address = models.CharField(max_length=42, unique=True, help_text="The device key's address (checksummed)")
    contributor = models.ForeignKey(Contributor, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="devices", help_text="The bound wallet; empty when unbound")
    name = models.CharField(max_length=64, blank=True)
    seq = models.BigIntegerField(default=0, help_text="The last acknowledged heartbeat's sequence number")
    nonce = models.CharField(max_length=66, blank=True, help_text="What the next heartbeat must sign")
    quality_bps = models.PositiveIntegerField(default=10_000, help_text="Quality, 0-10,000 (10,000 = 1.0)")
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name or self.address


class WorkCredit(models.Model):
    """Points for verified work: a job result that agreed with the other nodes' (and with the
    canary or the server's own fetch). Written once per (device, kind, ref), for the wallet the
    device was bound to when it earned them, weighed by the device's quality at that moment (a
    later change of quality does not rewrite them). Counted by insertion: the first epoch scored after
    the credit was written claims it (`epoch`, set in the scoring transaction) if it was earned
    before that epoch's end, so a credit written after its window's epoch was scored is paid by
    the next one, once."""

    class Kind(models.TextChoices):
        JOB = "job", "Verified job"

    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="credits")
    wallet = models.CharField(max_length=42, help_text="The wallet the device was bound to when it earned them")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.JOB)
    points = models.BigIntegerField()
    ref = models.CharField(max_length=100, help_text="What was verified (a job id)")
    earned_at = models.DateTimeField()
    quality_bps = models.PositiveIntegerField(
        help_text="The device's quality when it earned them: what scoring weighs the points by")
    epoch = models.ForeignKey("rewards.Epoch", on_delete=models.PROTECT, null=True, blank=True,
                              related_name="+", help_text="The epoch that counted it; empty until one is scored")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "kind", "ref"], name="work_credit_once")]
        indexes = [models.Index(fields=["earned_at"], name="work_credit_earned"),
                   models.Index(fields=["earned_at"], condition=models.Q(epoch__isnull=True),
                                name="work_credit_uncounted"),
                   models.Index(fields=["wallet", "earned_at"], name="work_credit_wallet")]

    def __str__(self):
        return f"{self.points} points to {self.wallet} for {self.kind} {self.ref}"


class Flag(models.Model):
    """A suspicion about a device or a wallet, with its evidence. While a flag is open, what the
    wallet earns is held, not paid and not removed; a moderator clears it (the held amounts are
    paid in the next epoch, and the device gets back the quality the flag took) or confirms it
    (they go back to the pool). See `flags.decide`."""

    class Kind(models.TextChoices):
        CANARY = "canary", "Disagreed with a canary job's known answer"
        SERVER = "server", "Disagreed with the server's own fetch"
        TWO_CONNECTIONS = "two_connections", "One device key on two connections"
        OVER_WALL_TIME = "over_wall_time", "More uptime than wall time"
        WALLETS_PER_ADDRESS = "wallets_per_address", "Many wallets from one network address"
        WALLETS_PER_PAYOUT = "wallets_per_payout", "Many wallets sharing a payout"

    class Status(models.TextChoices):
        OPEN = "open", "Open: amounts held"
        CLEARED = "cleared", "Cleared: held amounts paid next epoch"
        CONFIRMED = "confirmed", "Confirmed: held amounts back to the pool"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    wallet = models.CharField(max_length=42)
    device = models.ForeignKey(Device, on_delete=models.PROTECT, null=True, blank=True, related_name="flags")
    evidence = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    quality_penalty_bps = models.PositiveIntegerField(
        default=0, help_text="What the flag took off its device's quality; given back if it is cleared")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["wallet", "status"], name="flag_wallet_status")]

    def __str__(self):
        return f"{self.get_kind_display()} ({self.wallet}, {self.status})"


class Heartbeat(models.Model):
    """One acknowledged heartbeat of a device. The table is partitioned by day on `received_at`
    (the server's clock, which decides the epoch a heartbeat counts in); its rows are deleted with
    their day's partition after REWARD_HEARTBEAT_RETENTION_DAYS, IP addresses with them. A device's
    sequence numbers only grow (the device row's `seq` is raised in the transaction that inserts
    the row), so (device, seq) is unique although the primary key must name the partition column.

    Uptime: a heartbeat with `probe_ok` answered the probe its previous acknowledgement set; a
    device earns at most one uptime slot per `slot` (received_at // REWARD_SLOT_SECONDS).
    `bytes_up`, `bytes_down` and `latency_ms` are the node's own figures: shown to its owner,
    never scored or published."""

    pk = models.CompositePrimaryKey("device_id", "seq", "received_at")
    device = models.ForeignKey(Device, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    seq = models.BigIntegerField()
    received_at = models.DateTimeField()
    slot = models.BigIntegerField()
    probe_ok = models.BooleanField()
    ip = models.GenericIPAddressField(null=True)
    sent_at = models.DateTimeField()
    bytes_up = models.BigIntegerField(default=0)
    bytes_down = models.BigIntegerField(default=0)
    latency_ms = models.IntegerField(default=0)

    class Meta:
        managed = False  # created by migration 0002 as a partitioned table
        db_table = "rewards_heartbeat"


class CommunityShare(models.Model):
    """How many rows of a community dataset's version each contributor's verified work gave it:
    a sale of that version is shared among them pro rata."""

    version = models.ForeignKey("catalog.DatasetVersion", on_delete=models.PROTECT, related_name="+")
    wallet = models.CharField(max_length=42)
    rows = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "wallet"], name="community_share_once")]

"""Collection work: the targets the admin sets up, the fetch jobs made from them, each node's
lease, commitment and revealed result, and the rows of community datasets that agreeing results
give (docs/rewards-jobs.md)."""

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.exceptions import ValidationError
from django.db import models

from marketplace.rewards import extracting

from .core import Device


def _valid_extractor(value):
    try:
        extracting.validate(value)
    except extracting.ExtractError as exc:
        raise ValidationError(str(exc)) from None


class CollectionTarget(models.Model):
    """A page to collect from on a schedule, and the community dataset its rows go to. Every
    `every_seconds` the beat makes one fetch job of it. `{slot}` in the URL is replaced by the
    job's time slot (its creation time // every_seconds), so that every node and the server's
    own fetch of one job ask for the same snapshot of a page that changes over time."""

    name = models.CharField(max_length=100)
    url = models.CharField(
        max_length=2000, help_text="http(s) URL; {slot} is replaced by the job's time slot"
    )
    extractor = models.JSONField(
        validators=[_valid_extractor],
        help_text='e.g. {"kind": "table", "table": 0} (docs/rewards-jobs.md)',
    )
    dataset = models.ForeignKey(
        "catalog.Dataset",
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The community dataset (owned by the operator's account) its rows go to",
    )
    max_bytes = models.PositiveIntegerField(default=1_000_000)
    timeout_seconds = models.PositiveIntegerField(default=20)
    every_seconds = models.PositiveIntegerField(default=600)
    active = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True, help_text="Empty: at the next beat")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class FetchJob(models.Model):
    """One fetch of a target's page, done by REWARD_JOB_REPLICAS nodes. Nodes lease it until
    `reveal_at` (or until every replica has committed); then they reveal; at `settle_at` (or
    once every committed node has revealed) it is settled. A canary's answer was fetched by the
    server before the job was handed out (`expected_hash`); a server-checked job is fetched by
    the server when it settles. Neither is visible to a node."""

    class State(models.TextChoices):
        OPEN = "open", "Open: leased and committed to"
        REVEALING = "revealing", "Every replica committed: revealing"
        SETTLED = "settled", "Settled"

    class Outcome(models.TextChoices):
        NONE = "", "Not settled"
        ACCEPTED = "accepted", "Agreeing results accepted"
        DISAGREED = "disagreed", "No result agreed"
        UNVERIFIED = "unverified", "Too few results to compare"
        FAILED = "failed", "Declined by too many nodes"

    target = models.ForeignKey(CollectionTarget, on_delete=models.PROTECT, related_name="jobs")
    dataset = models.ForeignKey("catalog.Dataset", on_delete=models.PROTECT, related_name="+")
    url = models.CharField(max_length=2000)
    extractor = models.JSONField()
    max_bytes = models.PositiveIntegerField()
    timeout_seconds = models.PositiveIntegerField()
    replicas = models.PositiveSmallIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    outcome = models.CharField(
        max_length=16, choices=Outcome.choices, default=Outcome.NONE, blank=True
    )
    is_canary = models.BooleanField(default=False)
    expected_hash = models.CharField(
        max_length=66, blank=True, help_text="A canary's known answer (rows hash)"
    )
    server_check = models.BooleanField(default=False)
    server_hash = models.CharField(
        max_length=66, blank=True, help_text="The server's own fetch (rows hash)"
    )
    server_error = models.CharField(max_length=300, blank=True)
    accepted_hash = models.CharField(max_length=66, blank=True)
    declines = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField()
    reveal_at = models.DateTimeField(help_text="Leases and commits end; reveals start")
    settle_at = models.DateTimeField(help_text="Reveals end; settled with what was revealed")
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["state", "created_at"], name="fetch_job_state"),
            models.Index(fields=["state", "settle_at"], name="fetch_job_settle"),
        ]

    def __str__(self):
        return f"job {self.pk} ({self.url})"


class JobAssignment(models.Model):
    """One node's part in a job: its lease, its commitment, then its revealed rows. A lease not
    committed to by `lease_expires_at` expires and frees its place for another node; the same
    device never gets the job again. `network` is the node's /24 (IPv4) or /56 (IPv6), empty for
    an address in REWARD_TRUSTED_NETWORKS: two live assignments of a job never share a wallet or
    a non-empty network.

    A lease that ends without a result is a strike against its device (`ended_at`): expired before
    a commitment, or committed and never revealed (`unrevealed`, at settlement); declines are
    counted apart. Too many of either in REWARD_JOB_STRIKE_WINDOW and the device gets no new
    lease for a while (jobs.lease)."""

    class State(models.TextChoices):
        LEASED = "leased", "Leased"
        COMMITTED = "committed", "Committed"
        REVEALED = "revealed", "Revealed"
        DECLINED = "declined", "Declined"
        EXPIRED = "expired", "Lease expired"
        UNREVEALED = "unrevealed", "Committed, never revealed"

    LIVE = (State.LEASED, State.COMMITTED, State.REVEALED)
    STRIKES = (State.EXPIRED, State.UNREVEALED)  # leases that ended without a result

    job = models.ForeignKey(FetchJob, on_delete=models.CASCADE, related_name="assignments")
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="job_assignments")
    wallet = models.CharField(max_length=42, help_text="The device's wallet when it leased the job")
    ip = models.GenericIPAddressField(null=True)
    network = models.CharField(max_length=50, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.LEASED)
    leased_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField()
    commit_hash = models.CharField(max_length=66, blank=True)
    committed_at = models.DateTimeField(null=True, blank=True)
    rows = models.JSONField(null=True, blank=True)
    result_hash = models.CharField(max_length=66, blank=True)
    revealed_at = models.DateTimeField(null=True, blank=True)
    decline_reason = models.CharField(max_length=300, blank=True)
    ended_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the lease ended without a result: expired, declined, or never revealed",
    )
    agreed = models.BooleanField(
        null=True, help_text="Settled: agreed with the accepted result (null: not judged)"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "device"], name="job_assignment_once")
        ]
        indexes = [
            models.Index(fields=["device", "state"], name="job_assignment_device"),
            models.Index(fields=["state", "lease_expires_at"], name="job_assignment_lease"),
            models.Index(fields=["device", "ended_at"], name="job_assignment_ended"),
            # A wallet's strikes, declines and open assignments; leases per device and per wallet
            # in the last hour (jobs.suspended_until, jobs.lease).
            models.Index(fields=["wallet", "ended_at"], name="job_assignment_wallet_ended"),
            models.Index(fields=["wallet", "state"], name="job_assignment_wallet"),
            models.Index(fields=["device", "leased_at"], name="job_assignment_device_leased"),
            models.Index(fields=["wallet", "leased_at"], name="job_assignment_wallet_leased"),
        ]

    def __str__(self):
        return f"{self.device} on {self.job_id} ({self.state})"


class CollectedRow(models.Model):
    """A row of a community dataset, kept once per content (`content_hash`, the sha256 of its
    canonical JSON): collecting the same row again adds nothing. `wallets` are the wallets whose
    agreeing results first gave it; when a version is cut from the rows not yet in one, each
    wallet's count of them fills CommunityShare (selectors: `row_counts`)."""

    dataset = models.ForeignKey("catalog.Dataset", on_delete=models.PROTECT, related_name="+")
    content_hash = models.CharField(max_length=66)
    data = models.JSONField()
    job = models.ForeignKey(FetchJob, on_delete=models.SET_NULL, null=True, related_name="+")
    wallets = ArrayField(models.CharField(max_length=42))
    collected_at = models.DateTimeField()
    version = models.ForeignKey(
        "catalog.DatasetVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The version that took it (empty: none yet)",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "content_hash"], name="collected_row_once")
        ]
        indexes = [
            models.Index(fields=["dataset", "collected_at"], name="collected_row_time"),
            GinIndex(fields=["wallets"], name="collected_row_wallets"),
        ]

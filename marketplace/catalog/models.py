"""Datasets, their versions (one file each), the on-chain listings that sell them, and the
revisions that wait for a moderator before the public sees them.

A dataset and its versions are user data: nothing on the chain ever deletes them. A listing is
chain-derived (keyed by the transaction and log index that created it) and points at the version
it sells; losing it (a reorg, a chain reset) leaves the version "needing relisting".

What the public sees of a dataset is what a moderator approved: a published dataset's text
changes only when a DatasetRevision is approved, a version is public only once its own revision
and its on-chain listing are approved, and a version's preview shows more (sample rows, value
distributions, a column the publisher had hidden) only through an approved revision. Changes that
show less apply at once.
"""
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models

MONEY = dict(max_digits=78, decimal_places=0)  # token base units, NUMERIC(78,0)

CATEGORIES = [
    ("economics", "Economics & finance"),
    ("health", "Health & medicine"),
    ("social", "Society & demographics"),
    ("environment", "Environment & climate"),
    ("science", "Science & engineering"),
    ("sports", "Sports"),
    ("transport", "Transport"),
    ("web", "Web & social media"),
    ("ai", "AI training data"),
    ("other", "Other"),
]


class Dataset(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PENDING_REVIEW = "pending_review", "Pending review"
        LISTED = "listed", "Listed"
        REJECTED = "rejected", "Rejected"
        DELISTED = "delisted", "Delisted"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="datasets")
    slug = models.SlugField(max_length=120, unique=True)
    title = models.CharField(max_length=200)
    summary = models.CharField(max_length=300, blank=True)
    description = models.TextField(blank=True, help_text="Markdown")
    description_html = models.TextField(blank=True, editable=False, help_text="Sanitised HTML of the description")
    tags = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    category = models.CharField(max_length=40, choices=CATEGORIES, default="other")
    license = models.CharField(max_length=64, help_text="SPDX license identifier")
    payout_address = models.CharField(max_length=42, help_text="Checksummed address the sales pay")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT, db_index=True)
    published_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When a moderator first approved its text; from then on, edits to it wait for review",
    )
    removed_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When a moderator removed it for legal reasons: delisted, its files refused to everyone "
                  "(451) and its sample and statistics purged, until it is restored (catalog.removal)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [GinIndex(fields=["tags"], name="dataset_tags")]
        ordering = ["-created_at"]

    def __str__(self):
        return self.title

    @property
    def current_version(self):
        return self.versions.order_by("-number").first()


class DatasetVersion(models.Model):
    """One file of a dataset. A new file makes a new version with its own on-chain listing;
    buyers of a version keep access to it."""

    class Analysis(models.TextChoices):
        PENDING = "pending", "Waiting for analysis"
        RUNNING = "running", "Analysing"
        DONE = "done", "Analysed"
        DONE_WITH_REJECTS = "done_with_rejects", "Analysed with rejected rows"
        FAILED = "failed", "Analysis failed"
        NOT_TABULAR = "not_tabular", "Not a tabular file"

    class Review(models.TextChoices):
        PENDING = "pending", "Waiting for review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    file = models.CharField(max_length=500, help_text="Name in the private storage")
    original_name = models.CharField(max_length=255)
    format = models.CharField(max_length=16)  # csv, jsonl, parquet, or another extension
    size = models.BigIntegerField()
    content_hash = models.CharField(max_length=66, help_text="0x + sha256 of the file, as listed on-chain")
    price = models.DecimalField(**MONEY, help_text="Intended price in token base units")
    token = models.CharField(max_length=42, help_text="Checksummed ERC-20 address")
    analysis_status = models.CharField(max_length=20, choices=Analysis.choices, default=Analysis.PENDING)
    analysis_progress = models.FloatField(default=0)
    analysis_message = models.CharField(max_length=500, blank=True)
    # Analyses started (each counted, committed, before it runs): a file that kills its process or
    # the worker is not tried again after catalog.services.MAX_ANALYSIS_ATTEMPTS.
    analysis_attempts = models.PositiveSmallIntegerField(default=0)
    row_count = models.BigIntegerField(null=True, blank=True)
    rejected_rows = models.BigIntegerField(default=0)
    columns = models.JSONField(default=list, blank=True, help_text="Schema and column statistics")
    sample = models.JSONField(default=list, blank=True, help_text="The first rows (public only if show_sample)")
    review = models.CharField(max_length=20, choices=Review.choices, default=Review.PENDING)
    # What the public may see of the file, the publisher's choice (see catalog.preview): schema,
    # types, null shares, row count and numeric ranges always; the rest only when chosen.
    hidden_columns = ArrayField(models.CharField(max_length=255), default=list, blank=True,
                                help_text="Columns absent from everything public")
    show_sample = models.BooleanField(default=False, help_text="The first rows are public")
    show_distributions = models.BooleanField(
        default=False, help_text="Top values, histograms, distinct counts and means are public")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="one_number_per_version")]
        # The chain indexer finds the versions a ListingCreated may be for by content hash.
        indexes = [models.Index(fields=["content_hash"], name="version_content_hash")]
        ordering = ["dataset", "-number"]

    def __str__(self):
        return f"{self.dataset} v{self.number}"


class Listing(models.Model):
    """A DataMarket listing linked to the version whose owner, content hash and token it matches;
    one per version per chain. Written only by the chain indexer's handlers (catalog.handlers):
    its terms are those of its ListingCreated, then of its later events in chain order
    (ListingUpdated for price and payout, ListingActiveSet, ListingApprovalSet)."""

    chain_id = models.BigIntegerField()
    listing_id = models.DecimalField(**MONEY)
    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="listings")
    owner = models.CharField(max_length=42)
    token = models.CharField(max_length=42)
    price = models.DecimalField(**MONEY)
    payout = models.CharField(max_length=42)
    dispute_window = models.PositiveIntegerField(null=True, blank=True,
                                                 help_text="Seconds a buyer may dispute an order (null: not read yet)")
    active = models.BooleanField(default=True)
    approved = models.BooleanField(default=False)
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tx_hash", "log_index"], name="listing_event_once"),
            models.UniqueConstraint(fields=["chain_id", "listing_id"], name="one_row_per_listing"),
            models.UniqueConstraint(fields=["version", "chain_id"], name="one_listing_per_version_per_chain"),
        ]

    def __str__(self):
        return f"listing {self.listing_id} of {self.version}"


class ListingUpdate(models.Model):
    """A `ListingUpdated` event of a linked listing (the owner changed price and payout from the
    wallet), stored once by (tx_hash, log_index) by the chain indexer's handler; chain-derived, so
    it goes with its listing (or with its block, after a reorganisation)."""

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="updates")
    price = models.DecimalField(**MONEY)
    payout = models.CharField(max_length=42)
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tx_hash", "log_index"], name="listing_update_event_once")]
        indexes = [models.Index(fields=["listing", "-block_number", "-log_index"], name="listing_update_latest")]

    def __str__(self):
        return f"listing {self.listing.listing_id} price {self.price} at block {self.block_number}"


class DatasetRevision(models.Model):
    """A change to what the public sees of a dataset, waiting for a moderator.

    - `details`: the dataset's proposed public text (all of it: title, summary, description, tags,
      category, license). A published dataset's text changes only when one is approved; before
      its first approval, the text is edited in place and the revision is its snapshot.
    - `version`: a version and the on-chain listing(s) that would sell it, recorded with their
      content hash when the listing was linked. Approving it approves exactly those listings.
    - `preview`: a version's preview settings that show more than the public sees now.

    A newer revision of the same thing supersedes a pending one (or one with changes requested).
    A decision names the revision: one on a revision that is no longer open is refused.
    """

    class Kind(models.TextChoices):
        DETAILS = "details", "Dataset details"
        VERSION = "version", "New version"
        PREVIEW = "preview", "Preview settings"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for review"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        SUPERSEDED = "superseded", "Superseded"

    OPEN = (Status.PENDING, Status.CHANGES_REQUESTED)

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="revisions")
    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, null=True, blank=True,
                                related_name="revisions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    changes = models.JSONField(default=dict, blank=True,
                               help_text="details: the proposed public text; preview: the proposed settings")
    listings = models.JSONField(default=list, blank=True,
                                help_text="version: [{chain_id, listing_id, content_hash}] it puts on sale")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    superseded_by = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="The moderator's statement of reasons, shown to the publisher")

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="revision_queue"),
            # The moderators' queue: what waits, oldest first, a page at a time by (created_at, id),
            # of every kind or of one.
            models.Index(fields=["created_at", "id"], condition=models.Q(status="pending"), name="revision_waiting"),
            models.Index(fields=["kind", "created_at", "id"], condition=models.Q(status="pending"),
                         name="revision_waiting_kind"),
        ]

    def __str__(self):
        target = f" v{self.version.number}" if self.version_id else ""
        return f"{self.get_kind_display()} of {self.dataset}{target} ({self.status})"


class SearchChange(models.Model):
    """A dataset whose search document may have changed, written by PostgreSQL triggers (see
    migration 0002) with the writing transaction's id, so that the search sync can read the log
    up to the oldest transaction still running and never skip one that commits late."""

    dataset_id = models.BigIntegerField()
    xid = models.BigIntegerField(db_index=True)  # pg_current_xact_id() of the writer
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

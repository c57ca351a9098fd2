"""Datasets, their versions (one file each) and the on-chain listings that sell them.

A dataset and its versions are user data: nothing on the chain ever deletes them. A listing is
chain-derived (keyed by the transaction and log index that created it) and points at the version
it sells; losing it (a reorg, a chain reset) leaves the version "needing relisting".
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
    row_count = models.BigIntegerField(null=True, blank=True)
    rejected_rows = models.BigIntegerField(default=0)
    columns = models.JSONField(default=list, blank=True, help_text="Schema and column statistics")
    sample = models.JSONField(default=list, blank=True, help_text="The first rows, public")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="one_number_per_version")]
        ordering = ["dataset", "-number"]

    def __str__(self):
        return f"{self.dataset} v{self.number}"


class Listing(models.Model):
    """A DataMarket listing seen on-chain (from the transaction receipt until the indexer takes
    over), linked to the version whose owner and content hash it matches. `price` and `payout`
    mirror the chain: the creation's terms, then those of its latest ListingUpdate."""

    chain_id = models.BigIntegerField()
    listing_id = models.DecimalField(**MONEY)
    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="listings")
    owner = models.CharField(max_length=42)
    token = models.CharField(max_length=42)
    price = models.DecimalField(**MONEY)
    payout = models.CharField(max_length=42)
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
        ]

    def __str__(self):
        return f"listing {self.listing_id} of {self.version}"


class ListingUpdate(models.Model):
    """A `ListingUpdated` event (the owner changed price and payout from the wallet), stored once
    by (tx_hash, log_index); chain-derived, so it goes with its listing."""

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


class SearchChange(models.Model):
    """A dataset whose search document may have changed, written by PostgreSQL triggers (see
    migration 0002) with the writing transaction's id, so that the search sync can read the log
    up to the oldest transaction still running and never skip one that commits late."""

    dataset_id = models.BigIntegerField()
    xid = models.BigIntegerField(db_index=True)  # pg_current_xact_id() of the writer
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

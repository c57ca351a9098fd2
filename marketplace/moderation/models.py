"""The moderation app's rows: the append-only audit log and the notifications people read in the
site. See docs/moderation.md."""
from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    """One moderation action (who, what, why, when), never changed or deleted: triggers refuse
    UPDATE, DELETE and TRUNCATE (migration 0002), and each entry carries the hash of the one
    before it (`audit.py` says how the hash is computed). Written only by `audit.record`.

    Nothing points into this table with a foreign key, and it points at nothing: the actor and
    the target are text, so deleting a user or a dataset never touches the log. Its words are in
    the column `search` (a tsvector PostgreSQL generates, migration 0002), which the hash leaves out."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(help_text="The database's clock when the entry was appended")
    actor = models.CharField(max_length=200, blank=True, help_text="Username or wallet address; empty for the system")
    actor_id = models.BigIntegerField(null=True, blank=True, help_text="The actor's user id, as a plain number")
    actor_role = models.CharField(max_length=20, help_text="moderator, arbiter, admin or system")
    action = models.CharField(max_length=40, help_text="A code of audit.ACTIONS")
    target_type = models.CharField(max_length=20, help_text="dataset, revision, wallet, flag, order, ...")
    target_id = models.CharField(max_length=200)
    reason = models.CharField(max_length=80, blank=True, help_text="A policy code")
    statement = models.TextField(blank=True, help_text="The statement of reasons shown to the subject")
    internal_note = models.TextField(blank=True, help_text="For moderators only, never shown to publishers")
    reporter = models.CharField(max_length=200, blank=True, help_text="Who reported it; never shown to publishers")
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    class Meta:
        indexes = [
            models.Index(fields=["action", "-id"], name="audit_action_id"),
            models.Index(fields=["target_type", "target_id", "-id"], name="audit_target_id"),
            models.Index(fields=["actor", "-id"], name="audit_actor_id"),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self):
        return f"#{self.id} {self.action} {self.target_type}:{self.target_id}"


class AuditWord(models.Model):
    """One word of one audit entry: the audit search's ordered word index (migration 0009). A row
    for each distinct word of an entry's `search` column, added by a trigger on the log's insert in
    the same transaction, never changed; the primary key (word, entry_id) reads the entries having
    a word newest first. Derived from the log: no foreign key into it, and rebuildable from it."""

    pk = models.CompositePrimaryKey("word", "entry_id")
    word = models.TextField()
    entry_id = models.BigIntegerField(help_text="An audit entry's id (no foreign key)")

    def __str__(self):
        return f"{self.word} in #{self.entry_id}"


class Notification(models.Model):
    """Something decided about a person (their dataset, their report, their order), shown to them
    in the site until they mark it read. Written by `notifications.notify`. A notice of something
    read from the chain (a dispute settled, an order paid for a removed dataset) names its event
    by its transaction and its place in it (`tx_hash`, `position`): one per recipient, kind and
    event, so the indexer reading the same events again after a reorganisation tells nobody twice,
    even when the transaction is mined again in another block at another log index."""

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=40, help_text="What it is about, e.g. dataset.approve")
    text = models.TextField()
    link = models.CharField(max_length=500, blank=True, help_text="A path in the site")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    tx_hash = models.CharField(max_length=66, blank=True, help_text="The chain event it tells of, if any")
    position = models.PositiveIntegerField(
        null=True, blank=True, help_text="The event's place in its transaction (0 for its first log we stored)")

    class Meta:
        indexes = [models.Index(fields=["recipient", "-id"], name="notification_recipient_id")]
        constraints = [
            models.UniqueConstraint(fields=["recipient", "kind", "tx_hash", "position"],
                                    condition=~models.Q(tx_hash=""), name="notification_once_per_event"),
        ]

    def __str__(self):
        return f"{self.kind} for {self.recipient_id}"


class Report(models.Model):
    """A report that a dataset or a publisher breaks the law or a policy: filed by a signed-in
    person (`source` user) or through the public notice form by anyone (`source` notice, with the
    notifier's name, e-mail and a reference token to check it later). Reports on one target are
    handled as a group: a moderator closes the group's open reports with one outcome. Written by
    `reports.py` only. See docs/moderation.md, "Reports and notices"."""

    class TargetType(models.TextChoices):
        DATASET = "dataset", "Dataset"
        PUBLISHER = "publisher", "Publisher"

    class Source(models.TextChoices):
        USER = "user", "Signed-in report"
        NOTICE = "notice", "Public notice"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    class Outcome(models.TextChoices):
        NO_ACTION = "no_action", "No action taken"
        DELISTED = "delisted", "Dataset delisted"
        OTHER = "other", "Other action"

    target_type = models.CharField(max_length=20, choices=TargetType.choices)
    target_id = models.CharField(max_length=200, help_text="A dataset's id, or a publisher's checksummed address")
    source = models.CharField(max_length=10, choices=Source.choices)
    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="reports", help_text="Who reported it, when signed in")
    notifier_name = models.CharField(max_length=120, blank=True)
    notifier_email = models.CharField(max_length=254, blank=True)
    law = models.CharField(max_length=300, blank=True, help_text="The law or policy invoked")
    target_text = models.CharField(max_length=500, blank=True, help_text="The target as the notifier wrote it")
    reason = models.CharField(max_length=40, help_text="A code of policy.REASONS")
    evidence = models.TextField()
    token_hash = models.CharField(max_length=64, null=True, blank=True, unique=True,
                                  help_text="sha256 of a notice's reference token (the token itself is not kept)")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True)
    statement = models.TextField(blank=True, help_text="The outcome in the moderator's words, shown to the reporter")
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")

    class Meta:
        indexes = [
            models.Index(fields=["target_type", "target_id", "-id"], name="report_target_id"),
            models.Index(fields=["-created_at"], condition=models.Q(status="open"), name="report_open_created"),
        ]
        constraints = [
            # One open report per person and target: a second is refused (409), not stored.
            models.UniqueConstraint(fields=["reporter", "target_type", "target_id"],
                                    condition=models.Q(status="open", source="user"), name="report_one_open_per_reporter"),
            models.CheckConstraint(condition=models.Q(status="open", closed_at__isnull=True, outcome="")
                                   | models.Q(status="closed", closed_at__isnull=False) & ~models.Q(outcome=""),
                                   name="report_closed_has_outcome"),
        ]

    def __str__(self):
        return f"report #{self.pk} on {self.target_type}:{self.target_id}"
class Appeal(models.Model):
    """A publisher's appeal of a decision about their dataset (a rejection, a delisting, a removal),
    or counter-notice to a removal for legal reasons: the audit entry it contests, the publisher's
    statement, and another moderator's decision (upheld or reversed). At most one open appeal per
    dataset. Written only by moderation.appeals."""

    class Kind(models.TextChoices):
        APPEAL = "appeal", "Appeal"
        COUNTER_NOTICE = "counter_notice", "Counter-notice"

    class Status(models.TextChoices):
        OPEN = "open", "Waiting for a moderator"
        UPHELD = "upheld", "Upheld: the decision stands"
        REVERSED = "reversed", "Reversed: the decision was undone"

    dataset = models.ForeignKey("catalog.Dataset", on_delete=models.CASCADE, related_name="appeals")
    publisher = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="appeals")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.APPEAL)
    entry_id = models.BigIntegerField(help_text="The audit entry of the decision appealed (no foreign key)")
    decision = models.CharField(max_length=40, help_text="That entry's action, e.g. dataset.remove")
    decided_by_id = models.BigIntegerField(null=True, blank=True,
                                           help_text="The user id of who took the decision (not this appeal's)")
    statement = models.TextField(help_text="The publisher's statement")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN, db_index=True)
    moderator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                  related_name="+", help_text="Who decided the appeal")
    answer = models.TextField(blank=True, help_text="The statement of the appeal's decision")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset"], condition=models.Q(status="open"),
                                               name="one_open_appeal_per_dataset")]
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk} of {self.decision} on dataset {self.dataset_id}"
class ReviewClaim(models.Model):
    """A moderator working on a revision of the review queue (moderation/review.py): until
    `expires_at`, another moderator's claim or decision on it is refused (409 `claimed`). One row
    per revision; an expired claim is taken over by the next moderator who claims. Not part of the
    audit log: it changes nothing about the dataset, and the decision that ends it is recorded."""

    revision = models.OneToOneField("catalog.DatasetRevision", on_delete=models.CASCADE, related_name="claim")
    moderator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    def __str__(self):
        return f"revision {self.revision_id} claimed by {self.moderator_id} until {self.expires_at}"

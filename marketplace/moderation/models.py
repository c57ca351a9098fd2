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


class Notification(models.Model):
    """Something decided about a person (their dataset, their report, their order), shown to them
    in the site until they mark it read. Written by `notifications.notify`."""

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=40, help_text="What it is about, e.g. dataset.approve")
    text = models.TextField()
    link = models.CharField(max_length=500, blank=True, help_text="A path in the site")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["recipient", "-id"], name="notification_recipient_id")]

    def __str__(self):
        return f"{self.kind} for {self.recipient_id}"


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

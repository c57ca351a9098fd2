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

"""Celery messages written to PostgreSQL first, so a broker outage loses nothing."""
from django.db import models


class OutboxMessage(models.Model):
    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=models.Q(published_at__isnull=True),
                name="outbox_unpublished",
            )
        ]

    def __str__(self):
        state = "published" if self.published_at else "pending"
        return f"{self.task} #{self.pk} ({state})"


class WorkerHeartbeat(models.Model):
    """The last time each Celery worker ran its periodic heartbeat task."""

    worker = models.CharField(max_length=200, unique=True)
    seen_at = models.DateTimeField()

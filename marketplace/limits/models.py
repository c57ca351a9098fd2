"""Rate counters (when Redis is not configured) and storage quotas, in PostgreSQL."""
from django.contrib.postgres.fields import ArrayField
from django.db import models


class RequestLog(models.Model):
    """When the requests counted for one key ("upload:wallet:0xab…") arrived, within its rate's
    period: a request goes through while fewer than the rate's count are newer than one period.
    Written on every limited request and cheap to lose in a crash, so UNLOGGED (no WAL); only
    the key is indexed and pages keep room, so a hit rewrites its row in place (a HOT update)."""

    key = models.CharField(max_length=200, primary_key=True)
    hits = ArrayField(models.FloatField(), help_text="Unix times of the requests in the last period")
    expires_at = models.DateTimeField(help_text="When every hit is older than the period")


class StorageUsage(models.Model):
    """Bytes of dataset files accepted from one scope ("wallet:0xab…" or "ip:203.0.113.7"). Its
    row is the lock every reservation for that scope takes."""

    scope = models.CharField(max_length=200, primary_key=True)
    used = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.scope}: {self.used:,} bytes"


class StorageReservation(models.Model):
    """Room held for an upload while it streams: counted against both scopes' quotas and this
    host's free disk, then settled into StorageUsage with the version, or deleted. A reservation
    whose upload died with its process expires and is swept."""

    wallet = models.CharField(max_length=200, db_index=True)
    ip = models.CharField(max_length=200, db_index=True)
    size = models.BigIntegerField()
    host = models.CharField(max_length=255, help_text="The web host whose disk the upload is written to")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"{self.size:,} bytes for {self.wallet} from {self.ip}"

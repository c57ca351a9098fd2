"""The node's tables: bindings of devices to wallets (history, pending rebindings, used binding
nonces), device-signed requests already taken, and the per-device per-day roll-up of heartbeats
that dashboards read after the raw rows are gone."""
from django.db import models
from django.db.models.functions import Now

from .core import Device


class BindingNonce(models.Model):
    """A Bind or Unbind nonce that was used: each signed binding is taken once, so a captured one
    cannot be replayed to undo a later change."""

    nonce = models.CharField(max_length=66, unique=True, help_text="bytes32, 0x-hex, lower case")
    used_at = models.DateTimeField(auto_now_add=True)


class BindingEvent(models.Model):
    """One change of a device's binding, kept for good: who held the device when, and on whose
    signature. Scoring counts each device's uptime for the wallet these changes say held it (in
    the order of their ids); job points for WorkCredit.wallet."""

    class Action(models.TextChoices):
        BOUND = "bound", "Bound"
        UNBOUND = "unbound", "Unbound"
        REBOUND = "rebound", "Rebound from another wallet"
        PENDING = "pending", "Rebinding asked, waiting for the cooldown"
        CANCELLED = "cancelled", "Pending rebinding cancelled"

    class Via(models.TextChoices):
        SIGNATURES = "signatures", "Device and wallet signatures"
        OLD_WALLET = "old_wallet", "The previous wallet's Unbind signature"
        COOLDOWN = "cooldown", "The rebinding cooldown passed"
        WALLET = "wallet", "The wallet's Unbind signature"
        SESSION = "session", "The wallet's signed-in session"

    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="binding_events")
    wallet = models.CharField(max_length=42, help_text="The wallet bound (or unbound)")
    previous_wallet = models.CharField(max_length=42, blank=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    via = models.CharField(max_length=16, choices=Via.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    # The database's clock, not the app server's: every server's changes are on one clock. Their
    # order is the id's (each change of a device is written under its row lock).
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [models.Index(fields=["device", "created_at"], name="binding_event_device"),
                   models.Index(fields=["ip", "created_at"], name="binding_event_ip")]


class PendingBinding(models.Model):
    """A rebinding without the old wallet's signature: it takes effect at `effective_at`
    (REWARD_REBIND_COOLDOWN after it was asked), unless the old wallet keeps the device by
    unbinding or rebinding it meanwhile. One per device: a newer request replaces it."""

    device = models.OneToOneField(Device, on_delete=models.CASCADE, related_name="pending_binding")
    wallet = models.CharField(max_length=42)
    effective_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["effective_at"], name="pending_binding_due")]


class DeviceRequestSignature(models.Model):
    """A device-signed request already taken (device_auth): kept until the clock skew it was
    allowed has passed, after which its timestamp refuses it anyway."""

    signature = models.CharField(max_length=132, unique=True)
    expires_at = models.DateTimeField(db_index=True)


class DeviceDay(models.Model):
    """A device's heartbeats of one UTC day, rolled up from the raw rows (which are dropped with
    their partition after REWARD_HEARTBEAT_RETENTION_DAYS). The self-reported figures are the
    node's own: shown to its owner, never scored or published."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="days")
    day = models.DateField()
    heartbeats = models.IntegerField(default=0)
    verified_slots = models.IntegerField(default=0, help_text="Distinct slots with an answered probe")
    bytes_up = models.BigIntegerField(default=0)
    bytes_down = models.BigIntegerField(default=0)
    latency_ms_avg = models.IntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "day"], name="device_day_once")]


class AddressWallet(models.Model):
    """A wallet seen at a network address on a day (its devices' heartbeats, its bindings): the
    evidence of the "many wallets from one address" flag, kept as long as the roll-ups (the raw
    heartbeats and their addresses go after REWARD_HEARTBEAT_RETENTION_DAYS)."""

    day = models.DateField()
    ip = models.GenericIPAddressField()
    wallet = models.CharField(max_length=42)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "ip", "wallet"], name="address_wallet_once")]

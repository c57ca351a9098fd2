"""Deciding contributor flags (the moderators' admin actions). Clear: the wallet's held amounts
are paid in the next epoch and the flagged device gets back the quality the flag took (its
`quality_penalty_bps`, so another flag's penalty stays). Confirm: the held amounts go back to the
next pool and the quality stays lowered. A decided flag is never decided again."""
from __future__ import annotations

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Least
from django.utils import timezone

from .models import Device, Flag
from .signals import flag_decided

MAX_QUALITY = 10_000


def decide(flag_ids, status: str, by, *, note: str = "") -> int:
    """Decide the open flags among `flag_ids` (`Flag.Status.CLEARED` or `CONFIRMED`) in one
    transaction; returns how many were decided. `by` is the deciding user (or a name); `note`, if
    given, is added to each flag's note (the moderators' own words, kept with the flag)."""
    assert status in (Flag.Status.CLEARED, Flag.Status.CONFIRMED), status
    with transaction.atomic():
        flags = list(Flag.objects.select_for_update().filter(pk__in=list(flag_ids), status=Flag.Status.OPEN)
                     .order_by("pk"))
        now = timezone.now()
        for flag in flags:
            flag.status, flag.decided_at = status, now
            flag.decided_by = by if isinstance(by, str) else by.get_username()
            if note:
                flag.note = f"{flag.note}\n{note}" if flag.note else note
            if status == Flag.Status.CLEARED and flag.device_id and flag.quality_penalty_bps:
                Device.objects.filter(pk=flag.device_id).update(
                    quality_bps=Least(F("quality_bps") + Value(flag.quality_penalty_bps), Value(MAX_QUALITY)))
        Flag.objects.bulk_update(flags, ["status", "decided_by", "decided_at", "note"])
        for flag in flags:
            flag_decided.send(sender=Flag, flag=flag, by=by)
    return len(flags)

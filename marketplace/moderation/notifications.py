"""Telling people in the site what was decided about them: `notify` writes a Notification in the
caller's transaction (so nothing is announced for a decision that rolls back); the recipient
reads it at /api/v1/me/notifications and marks it read. No e-mail is sent."""
from django.db import transaction
from django.utils import timezone

from .models import Notification


def notify(user, *, kind: str, text: str, link: str = "") -> Notification:
    return Notification.objects.create(recipient=user, kind=kind, text=text, link=link)


def mark_read(user, *, ids=None) -> int:
    """Mark the user's unread notifications read: those of `ids`, or all of them. Returns how many."""
    with transaction.atomic():
        unread = Notification.objects.filter(recipient=user, read_at__isnull=True)
        if ids is not None:
            unread = unread.filter(pk__in=list(ids))
        return unread.update(read_at=timezone.now())

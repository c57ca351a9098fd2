"""Telling people in the site what was decided about them: `notify` writes a Notification in the
caller's transaction (so nothing is announced for a decision that rolls back); the recipient
reads it at /api/v1/me/notifications and marks it read.

E-mail is optional and off by default: with NOTIFY_BY_EMAIL on, a notification to someone with an
e-mail address, and a report's outcome to a notifier who gave one, is also sent by e-mail through
the outbox (`email`: queued in the same transaction, sent by a Celery worker with Django's mail
settings, retried when the mail server is down)."""
from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from marketplace.outbox.services import enqueue

from marketplace.chain.models import ChainEvent

from .models import Notification


def position(event) -> int:
    """Where chain event `event` (an indexer Event, stored) is in its transaction: its log index
    less the lowest of the transaction's events the indexer stored. A reorganisation that mines the
    same transaction in another block, after other transactions' logs, changes its log index, not
    this."""
    first = (ChainEvent.objects.filter(chain_id=event.chain_id, tx_hash=event.tx_hash, block_hash=event.block_hash)
             .aggregate(first=Min("log_index"))["first"])
    return event.log_index - min(event.log_index, first if first is not None else event.log_index)


def notify(user, *, kind: str, text: str, link: str = "", event=None) -> Notification | None:
    """Tell `user`. With `event` (a chain event the indexer stored), once per recipient, kind and
    event, the event named by its transaction and its position in it: the indexer reading the
    event again after a reorganisation finds the notice (and sends no second e-mail), in whatever
    block the transaction was mined again; returns None then."""
    key = {}
    if event is not None:
        key = {"tx_hash": event.tx_hash, "position": position(event)}
        if Notification.objects.filter(recipient=user, kind=kind, **key).exists():
            return None
    notification = Notification.objects.create(recipient=user, kind=kind, text=text, link=link, **key)
    if getattr(user, "email", ""):
        email(user.email, text=text, link=link)
    return notification


def email(to: str, *, text: str, link: str = "") -> bool:
    """Queue an e-mail of `text` (and the link, made absolute) to `to` when NOTIFY_BY_EMAIL is on;
    returns whether one was queued."""
    if not settings.NOTIFY_BY_EMAIL or not to:
        return False
    body = text + (f"\n\n{settings.SITE_URL.rstrip('/')}{link}" if link else "")
    enqueue("moderation.send_email", args=[to, "Datamarket: a decision about you", body])
    return True


def mark_read(user, *, ids=None) -> int:
    """Mark the user's unread notifications read: those of `ids`, or all of them. Returns how many."""
    with transaction.atomic():
        unread = Notification.objects.filter(recipient=user, read_at__isnull=True)
        if ids is not None:
            unread = unread.filter(pk__in=list(ids))
        return unread.update(read_at=timezone.now())

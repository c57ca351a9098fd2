"""The outbox: enqueue Celery work so that it survives a broker outage.

`enqueue` writes a row in the caller's transaction and, once it commits, tries to publish at
once with a short timeout. Whatever could not be published is sent later by `sweep`, which beat
runs every few seconds. Tasks sent this way must be idempotent: a message may arrive twice.
"""
from datetime import timedelta
import logging

from django.db import transaction
from django.utils import timezone

from marketplace.celery import app as celery_app, publish_connection

from .models import OutboxMessage, WorkerHeartbeat

logger = logging.getLogger(__name__)

SWEEP_AFTER = timedelta(seconds=5)  # leave fresh rows to their own on_commit publish
KEEP_PUBLISHED = timedelta(days=7)
SWEEP_BATCH = 500


def enqueue(task: str, *, args=(), kwargs=None) -> OutboxMessage:
    message = OutboxMessage.objects.create(task=task, args=list(args), kwargs=kwargs or {})
    transaction.on_commit(lambda: publish_pending(ids=[message.pk]))
    return message


def _publish(message: OutboxMessage, producer) -> None:
    # No retry here: a failed publish is retried by the sweep, not while a request waits.
    celery_app.send_task(message.task, args=message.args, kwargs=message.kwargs, producer=producer, retry=False)


def publish_pending(*, ids=None, older_than=None) -> int:
    """Publish unpublished messages (these ids, or those older than `older_than`); returns the
    number published. Stops at the first broker error and leaves the rest for the next sweep."""
    published = 0
    with transaction.atomic():
        pending = OutboxMessage.objects.select_for_update(skip_locked=True).filter(published_at__isnull=True)
        if ids is not None:
            pending = pending.filter(pk__in=ids)
        if older_than is not None:
            pending = pending.filter(created_at__lt=timezone.now() - older_than)
        messages = list(pending.order_by("created_at")[:SWEEP_BATCH])
        if not messages:
            return 0
        try:
            with publish_connection() as connection:
                with connection.Producer() as producer:
                    for message in messages:
                        _publish(message, producer)
                        message.published_at = timezone.now()
                        message.attempts += 1
                        message.save(update_fields=["published_at", "attempts"])
                        published += 1
        except Exception as exc:  # the broker is down or refused: keep the rest for the sweep
            failed = messages[published]
            failed.attempts += 1
            failed.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            failed.save(update_fields=["attempts", "last_error"])
            logger.warning("outbox: broker unavailable, %d message(s) left for the sweep: %s",
                           len(messages) - published, failed.last_error)
    return published


def sweep() -> int:
    """Publish what the request-time publish missed, and forget old published rows."""
    published = publish_pending(older_than=SWEEP_AFTER)
    OutboxMessage.objects.filter(published_at__lt=timezone.now() - KEEP_PUBLISHED).delete()
    return published


def record_worker_heartbeat(worker: str) -> None:
    WorkerHeartbeat.objects.update_or_create(worker=worker, defaults={"seen_at": timezone.now()})

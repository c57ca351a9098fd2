"""Thin Celery wrappers over the outbox services."""
import logging

from celery import shared_task
from celery.signals import worker_ready

from . import services

logger = logging.getLogger(__name__)


@shared_task(name="outbox.sweep", ignore_result=True)
def sweep():
    return services.sweep()


@shared_task(name="outbox.worker_heartbeat", bind=True, ignore_result=True)
def worker_heartbeat(self):
    services.record_worker_heartbeat(self.request.hostname or "unknown")


@worker_ready.connect
def record_heartbeat_at_start(sender, **kwargs):
    """A worker that just started shows on /healthz at once, not after beat's first heartbeat."""
    try:
        services.record_worker_heartbeat(sender.hostname)
    except Exception:  # the database may be down at start; beat's heartbeat catches up later
        logger.warning("could not record the worker's start heartbeat", exc_info=True)

"""Thin Celery wrappers over the outbox services."""
from celery import shared_task

from . import services


@shared_task(name="outbox.sweep", ignore_result=True)
def sweep():
    return services.sweep()


@shared_task(name="outbox.worker_heartbeat", bind=True, ignore_result=True)
def worker_heartbeat(self):
    services.record_worker_heartbeat(self.request.hostname or "unknown")

"""Thin Celery wrappers over the limits services."""
from celery import shared_task

from . import services


@shared_task(name="limits.purge_expired", ignore_result=True)
def purge_expired():
    return services.purge_expired()

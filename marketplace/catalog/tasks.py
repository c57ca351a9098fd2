"""Thin Celery wrappers over catalog services."""
from celery import shared_task

from . import services


@shared_task(name="catalog.analyse_version", ignore_result=True, acks_late=True, time_limit=3600)
def analyse_version(version_id: int):
    services.analyse_version(version_id)

"""Thin Celery wrappers over the orders app."""
from celery import shared_task

from . import keeper


@shared_task(name="orders.queue_due", ignore_result=True, time_limit=120, soft_time_limit=100)
def queue_due():
    """The keeper (beat, every KEEPER_INTERVAL seconds): matured orders and expired disputes go to
    the operator sender."""
    return keeper.queue_due()

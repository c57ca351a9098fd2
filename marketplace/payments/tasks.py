"""Thin Celery wrappers over the payments services."""
from celery import shared_task

from . import settlement


@shared_task(name="payments.repair_ledgers", ignore_result=True)
def repair_ledgers():
    """Agent key ledgers a failure left behind (settlement.repair_ledgers); idempotent."""
    return settlement.repair_ledgers()

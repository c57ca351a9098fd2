"""Thin Celery wrappers over the accounts services."""
from celery import shared_task

from . import services


@shared_task(name="accounts.delete_expired_nonces", ignore_result=True)
def delete_expired_nonces():
    return services.delete_expired_nonces()

"""Thin Celery wrappers over the accounts services."""
from celery import shared_task

from . import agent_keys, services


@shared_task(name="accounts.delete_expired_nonces", ignore_result=True)
def delete_expired_nonces():
    """Sign-in nonces and agent wallets' challenges that can no longer be used."""
    return services.delete_expired_nonces() + agent_keys.delete_spent_challenges()

"""Thin Celery wrappers over the rewards app."""

from celery import shared_task

from . import device_auth, jobs


@shared_task(name="rewards.make_jobs", ignore_result=True, time_limit=300, soft_time_limit=280)
def make_jobs():
    """The beat: a fetch job of every collection target that is due (a canary's answer is
    fetched here). Two runs at once make one job per target (row locks)."""
    return jobs.make_due_jobs()


@shared_task(name="rewards.settle_jobs", ignore_result=True, time_limit=300, soft_time_limit=280)
def settle_jobs():
    """The beat: expired leases freed, server checks fetched, due jobs settled into credits, rows
    and flags; each job under its row lock, so a rerun settles nothing twice. Old request
    signatures are forgotten too."""
    device_auth.delete_expired_signatures()
    return jobs.settle_due()

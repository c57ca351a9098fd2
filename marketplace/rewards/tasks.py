"""Thin Celery wrappers over the rewards services (the schedules are in CELERY_BEAT_SCHEDULE)."""
from dataclasses import asdict
import logging

from celery import shared_task

from . import binding, community, device_auth, epochs, jobs, metering

logger = logging.getLogger(__name__)


@shared_task(name="rewards.maintain_heartbeat_partitions", ignore_result=True)
def maintain_heartbeat_partitions():
    return metering.maintain_partitions()


@shared_task(name="rewards.roll_up_heartbeats", ignore_result=True)
def roll_up_heartbeats():
    return metering.roll_up_recent()


@shared_task(name="rewards.flag_abuse", ignore_result=True)
def flag_abuse():
    return len(metering.flag_abuse())


@shared_task(name="rewards.apply_due_bindings", ignore_result=True)
def apply_due_bindings():
    return binding.apply_due_bindings()


@shared_task(name="rewards.purge_request_signatures", ignore_result=True)
def purge_request_signatures():
    return device_auth.purge_expired()


@shared_task(name="rewards.close_epochs", ignore_result=True, acks_late=True, reject_on_worker_lost=True,
             time_limit=900, soft_time_limit=840)
def close_epochs():
    """The epoch close (beat, every few seconds): each step is one transaction under the close's
    advisory lock, so a run killed midway, or two runs at once, leave one epoch with one root."""
    report = epochs.close_epochs()
    if report.scored or report.queued or report.matured:
        logger.info("epoch close: %s", asdict(report))
    return asdict(report)


@shared_task(name="rewards.make_jobs", ignore_result=True, time_limit=300, soft_time_limit=280)
def make_jobs():
    """The beat: a fetch job of every collection target that is due (a canary's answer is
    fetched here). Two runs at once make one job per target (row locks)."""
    return jobs.make_due_jobs()


@shared_task(name="rewards.settle_jobs", ignore_result=True, time_limit=300, soft_time_limit=280)
def settle_jobs():
    """The beat: expired leases freed, server checks fetched, due jobs settled into credits, rows
    and flags; each job under its row lock, so a rerun settles nothing twice."""
    return jobs.settle_due()


@shared_task(name="rewards.cut_community_versions", ignore_result=True, time_limit=600, soft_time_limit=580)
def cut_community_versions():
    """The beat: a new version of each community dataset whose rows are due (community.py)."""
    return len(community.cut_versions())

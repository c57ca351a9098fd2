"""Thin Celery wrappers over the rewards services."""

from dataclasses import asdict
import logging

from celery import shared_task

from . import epochs

logger = logging.getLogger(__name__)


@shared_task(
    name="rewards.close_epochs",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=900,
    soft_time_limit=840,
)
def close_epochs():
    """The epoch close (beat, every few seconds): each step is one transaction under the close's
    advisory lock, so a run killed midway, or two runs at once, leave one epoch with one root."""
    report = epochs.close_epochs()
    if report.scored or report.queued or report.matured:
        logger.info("epoch close: %s", asdict(report))
    return asdict(report)

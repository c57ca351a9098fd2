"""Thin Celery wrappers over chain services."""
from dataclasses import asdict
import logging

from celery import shared_task

from . import indexer, sender
from .client import WrongChain

logger = logging.getLogger(__name__)


@shared_task(name="chain.send_operator_actions", ignore_result=True, time_limit=600, soft_time_limit=540)
def send_operator_actions():
    """The single operator sender (run by beat every few seconds and enqueued by whoever queues an
    OperatorAction); a run that finds another one holding the lock returns at once."""
    try:
        report = sender.send_operator_actions()
    except WrongChain as exc:
        logger.error("operator sender: %s", exc)  # configuration, not a crash: no traceback
        return {"skipped": str(exc)}
    if not report.skipped:
        logger.info("operator sender: %s", asdict(report))
    return asdict(report)


@shared_task(name="chain.index_events", ignore_result=True, time_limit=600, soft_time_limit=540)
def index_events():
    """The chain indexer (run by beat every second); a run that finds another one holding the lock
    returns at once, and runs back off while the node does not answer."""
    try:
        report = indexer.index_chain()
    except WrongChain as exc:
        logger.error("indexer: %s", exc)
        return {"skipped": str(exc)}
    except indexer.IndexerError as exc:
        logger.error("indexer: %s", exc)
        return {"error": str(exc)}
    except Exception as exc:  # the node: recorded on the cursor with its back-off
        logger.warning("indexer: the node failed (%s); backing off", type(exc).__name__)
        return {"error": type(exc).__name__}
    if report.events or report.reorgs:
        logger.info("indexer: %s", asdict(report))
    return asdict(report)

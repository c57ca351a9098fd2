"""The keeper: the market's due work, queued for the single operator sender.

- An open order whose dispute window has ended (its `release_at` is at or before the time of the
  chain's latest block) is released: `release(ids)`, many orders in one transaction. The market
  pays the owner's payout address and the treasury; a payout the token refuses becomes a credit.
- A disputed order whose deadline has passed with no arbiter's decision is refunded in full:
  `settleExpiredDispute(id)`.

An order gets at most one open operator action; one whose last action failed or was skipped is
queued again only after `KEEPER_RETRY_AFTER` seconds. Which orders are due comes from the rows the
chain indexer wrote; the contract checks again when the transaction runs (an order no longer due
is skipped, not paid twice)."""
from datetime import datetime, timedelta, timezone as dt_timezone
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from marketplace.chain.client import get_web3
from marketplace.chain.models import OperatorAction
from marketplace.chain.services import deployed_address
from marketplace.outbox.services import enqueue

from .models import Order

logger = logging.getLogger(__name__)

LIMIT = 1000  # orders queued per run and kind

Kind, Status = OperatorAction.Kind, OperatorAction.Status


def retry_after() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "KEEPER_RETRY_AFTER", 600)))


def chain_time(w3) -> datetime:
    """The time of the chain's latest block: the market's clock, which tests and quiet chains move
    apart from the wall clock."""
    return datetime.fromtimestamp(w3.eth.get_block("latest")["timestamp"], tz=dt_timezone.utc)


def busy_orders(chain_id: int):
    """Order ids with an operator action open, or failed or skipped too recently to try again."""
    recent = timezone.now() - retry_after()
    return (OperatorAction.objects.filter(chain_id=chain_id, order_id__isnull=False)
            .filter(status__in=OperatorAction.OPEN)
            .union(OperatorAction.objects.filter(chain_id=chain_id, order_id__isnull=False,
                                                 status__in=(Status.FAILED, Status.CANCELLED),
                                                 updated_at__gt=recent))
            .values_list("order_id", flat=True))


def queue_due(w3=None) -> dict:
    """Queue a release for every matured open order and a refund for every expired dispute;
    returns how many of each."""
    chain_id = settings.CHAIN_ID
    market = deployed_address(chain_id, "DataMarket")
    if market is None:
        return {"release": 0, "expire_dispute": 0}
    now = chain_time(w3 or get_web3())
    with transaction.atomic():
        busy = set(busy_orders(chain_id))
        orders = Order.objects.filter(chain_id=chain_id, market=market)
        due = {
            Kind.RELEASE: orders.filter(status=Order.Status.OPEN, release_at__lte=now),
            Kind.EXPIRE_DISPUTE: orders.filter(status=Order.Status.DISPUTED, dispute_deadline__lte=now),
        }
        queued = {}
        for kind, query in due.items():
            ids = [i for i in query.order_by("release_at").values_list("order_id", flat=True)[:LIMIT + len(busy)]
                   if i not in busy][:LIMIT]
            OperatorAction.objects.bulk_create(
                OperatorAction(kind=kind, chain_id=chain_id, market=market, order_id=i, created_by="keeper")
                for i in ids)
            queued[kind.value] = len(ids)
        if any(queued.values()):
            enqueue("chain.send_operator_actions")
            logger.info("keeper queued %s", queued)
    return queued

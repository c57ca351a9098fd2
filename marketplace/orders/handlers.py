"""The indexer's handlers for the market's order events, and their rollback after a
reorganisation. Both apply events through `apply`, so a rolled-back order is exactly what replaying
its surviving events gives."""
from datetime import datetime, timezone

from marketplace.chain.models import ChainEvent

from .models import Order

ORDER_EVENTS = ("OrderCreated", "OrderDisputed", "OrderReleased", "DisputeResolved", "DisputeExpired")
STATUS_EVENTS = ORDER_EVENTS[1:]


def _time(seconds: str) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc)


def created(event: ChainEvent) -> Order:
    args = event.args
    return Order(
        chain_id=event.chain_id, market=event.address, order_id=int(args["orderId"]),
        listing_id=int(args["listingId"]), buyer=args["buyer"], token=args["token"], amount=int(args["amount"]),
        fee_bps=int(args["feeBps"]), release_at=_time(args["releaseAt"]), tx_hash=event.tx_hash,
        log_index=event.log_index, block_number=event.block_number,
    )


def apply(order: Order, event: ChainEvent) -> None:
    """Move `order` as one of its status events says."""
    args = event.args
    if event.name == "OrderDisputed":
        order.status, order.dispute_deadline = Order.Status.DISPUTED, _time(args["deadline"])
    elif event.name == "OrderReleased":
        order.status = Order.Status.RELEASED
        order.owner_amount, order.fee = int(args["ownerAmount"]), int(args["fee"])
    elif event.name == "DisputeResolved":
        order.refund, order.owner_amount, order.fee = int(args["refund"]), int(args["ownerAmount"]), int(args["fee"])
        order.status = Order.Status.REFUNDED if order.refund == order.amount else Order.Status.RESOLVED
    elif event.name == "DisputeExpired":
        order.status, order.refund = Order.Status.REFUNDED, int(args["refund"])
    order.settled_block = event.block_number


_STATE_FIELDS = ["status", "dispute_deadline", "refund", "owner_amount", "fee", "settled_block"]


def on_order_events(events: list[ChainEvent]) -> None:
    """One range's order events, in chain order: new orders in one insert, then the changes."""
    Order.objects.bulk_create([created(e) for e in events if e.name == "OrderCreated"])
    changes = [e for e in events if e.name in STATUS_EVENTS]
    if not changes:
        return
    keys = {(e.address, int(e.args["orderId"])) for e in changes}
    orders = {(o.market, int(o.order_id)): o for o in Order.objects.select_for_update().filter(
        chain_id=changes[0].chain_id, market__in={m for m, _ in keys}, order_id__in={i for _, i in keys})}
    for event in changes:
        order = orders.get((event.address, int(event.args["orderId"])))
        if order is not None:  # the market emits no status event for an order it did not create
            apply(order, event)
    Order.objects.bulk_update([orders[k] for k in keys if k in orders], _STATE_FIELDS)


def on_rollback(chain_id: int, ancestor: int, orphaned: list[ChainEvent]) -> None:
    """Orders created in orphaned blocks go; orders whose state changed there are replayed from
    their surviving events."""
    Order.objects.filter(chain_id=chain_id, block_number__gt=ancestor).delete()
    touched = {(e.address, int(e.args["orderId"])) for e in orphaned if e.name in STATUS_EVENTS}
    for market, order_id in touched:
        order = Order.objects.select_for_update().filter(chain_id=chain_id, market=market, order_id=order_id).first()
        if order is None:
            continue
        fresh = created(ChainEvent.objects.get(chain_id=chain_id, tx_hash=order.tx_hash, log_index=order.log_index))
        fresh.pk = order.pk
        for event in (ChainEvent.objects.filter(chain_id=chain_id, address=market, name__in=STATUS_EVENTS,
                                                args__orderId=str(order_id), block_number__lte=ancestor)
                      .order_by("block_number", "log_index")):
            apply(fresh, event)
        Order.objects.filter(pk=order.pk).update(**{f: getattr(fresh, f) for f in _STATE_FIELDS})

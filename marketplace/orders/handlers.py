"""The indexer's handlers for the market's order events, and their rollback after a
reorganisation. Both apply events through `apply`, so a rolled-back order is exactly what replaying
its surviving events gives."""
from datetime import datetime, timezone

from django.db import connection

from marketplace.chain.indexer import EVENT_FIELDS, Event
from marketplace.chain.models import ChainEvent

from .models import Order

ORDER_EVENTS = ("OrderCreated", "OrderDisputed", "OrderReleased", "DisputeResolved", "DisputeExpired")
STATUS_EVENTS = ORDER_EVENTS[1:]
_CREATED_COLUMNS = ("chain_id", "market", "order_id", "listing_id", "buyer", "token", "amount", "fee_bps",
                    "release_at", "tx_hash", "log_index", "block_number")


def _time(seconds: str) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc)


def _created(event: Event) -> tuple:
    """An OrderCreated event as the new order's values, in _CREATED_COLUMNS order."""
    args = event.args
    return (event.chain_id, event.address, int(args["orderId"]), int(args["listingId"]), args["buyer"],
            args["token"], int(args["amount"]), int(args["feeBps"]), _time(args["releaseAt"]), event.tx_hash,
            event.log_index, event.block_number)


def created(event: Event) -> Order:
    return Order(**dict(zip(_CREATED_COLUMNS, _created(event))))


def apply(order: Order, event: Event) -> None:
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


def on_order_events(events: list[Event]) -> None:
    """One range's order events, in chain order: new orders in one COPY (each comes from an event
    stored for the first time, so none exists yet), then the changes."""
    new = [_created(e) for e in events if e.name == "OrderCreated"]
    if new:
        with connection.cursor() as cursor, cursor.cursor.copy(
                f"COPY orders_order ({', '.join(_CREATED_COLUMNS)}, status, refund, owner_amount, fee) FROM STDIN") as copy:
            for row in new:
                copy.write_row((*row, Order.Status.OPEN, 0, 0, 0))
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


def on_rollback(chain_id: int, ancestor: int, orphaned: list[Event]) -> None:
    """Orders created in orphaned blocks go; orders whose state changed there are replayed from
    their surviving events."""
    Order.objects.filter(chain_id=chain_id, block_number__gt=ancestor).delete()
    touched = {(e.address, int(e.args["orderId"])) for e in orphaned if e.name in STATUS_EVENTS}
    for market, order_id in touched:
        order = Order.objects.select_for_update().filter(chain_id=chain_id, market=market, order_id=order_id).first()
        if order is None:
            continue
        fresh = created(Event(**ChainEvent.objects.values(*EVENT_FIELDS).get(
            chain_id=chain_id, tx_hash=order.tx_hash, log_index=order.log_index)))
        fresh.pk = order.pk
        for event in (ChainEvent.objects.filter(chain_id=chain_id, address=market, name__in=STATUS_EVENTS,
                                                args__orderId=str(order_id), block_number__lte=ancestor)
                      .order_by("block_number", "log_index").values(*EVENT_FIELDS)):
            apply(fresh, Event(**event))
        Order.objects.filter(pk=order.pk).update(**{f: getattr(fresh, f) for f in _STATE_FIELDS})

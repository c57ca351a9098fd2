"""The indexer's handlers for the market's order and credit events, and their rollback after a
reorganisation. Order events go through `apply`, so a rolled-back order is exactly what replaying
its surviving events gives; a credit entry is one event, so a rollback deletes the orphaned ones."""
from datetime import datetime, timezone

from django.db import connection

from marketplace.chain.indexer import EVENT_FIELDS, Event
from marketplace.chain.models import ChainEvent

from .models import CreditEntry, Order

ORDER_EVENTS = ("OrderCreated", "OrderDisputed", "OrderReleased", "DisputeResolved", "DisputeExpired")
STATUS_EVENTS = ORDER_EVENTS[1:]
CREDIT_EVENTS = ("Credited", "Withdrawn")
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
    order.settled_block, order.settled_tx_hash = event.block_number, event.tx_hash


_STATE_FIELDS = ["status", "dispute_deadline", "refund", "owner_amount", "fee", "settled_block",
                 "settled_tx_hash"]


def on_order_events(events: list[Event]) -> None:
    """One range's order events, in chain order: new orders in one COPY (each comes from an event
    stored for the first time, so none exists yet), then the changes."""
    new = [_created(e) for e in events if e.name == "OrderCreated"]
    if new:
        columns = ", ".join((*_CREATED_COLUMNS, "status", "refund", "owner_amount", "fee",
                             "settled_tx_hash"))
        sql = f"COPY orders_order ({columns}) FROM STDIN"
        with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            for row in new:
                copy.write_row((*row, Order.Status.OPEN, 0, 0, 0, ""))
        from .signals import orders_created

        orders_created.send(sender=Order, events=[e for e in events if e.name == "OrderCreated"])
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
    from .signals import dispute_resolved

    for event in changes:
        order = orders.get((event.address, int(event.args["orderId"])))
        if order is not None and event.name == "DisputeResolved":
            dispute_resolved.send(sender=Order, order=order, event=event)


def on_credit_events(events: list[Event]) -> None:
    """One range's `Credited` and `Withdrawn` events, an entry each (each event is new)."""
    entries = []
    for e in events:
        args = e.args
        if e.name == "Credited":
            kind = {"kind": CreditEntry.Kind.CREDITED, "order_id": int(args["orderId"])}
        else:
            kind = {"kind": CreditEntry.Kind.WITHDRAWN, "to": args["to"]}
        entries.append(CreditEntry(
            chain_id=e.chain_id, market=e.address, token=args["token"], account=args["account"],
            amount=int(args["amount"]), tx_hash=e.tx_hash, log_index=e.log_index,
            block_number=e.block_number, **kind))
    CreditEntry.objects.bulk_create(entries)


def on_rollback(chain_id: int, ancestor: int, orphaned: list[Event]) -> None:
    """Orders created in orphaned blocks go; orders whose state changed there are replayed from
    their surviving events. Credit entries of orphaned blocks go (each is one event)."""
    CreditEntry.objects.filter(chain_id=chain_id, block_number__gt=ancestor).delete()
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

"""The arbiters' disputes console: disputed orders by deadline (those near it flagged), each with
both parties' statements, the order's history on-chain, the buyer's download log and the
deadline, and the resolution with the buyer's refund share.

`resolve` is the one writer. It records `dispute.resolve` in the audit log and tells both parties,
in the transaction that decides; the chain does the rest. When the operator key holds
ARBITER_ROLE the decision is an operator action for the single sender (`chain.sender`);
otherwise it is prepared for the arbiter's wallet (`prepared`: the `resolve(orderId, refundBps)`
transaction the dispute's page sends from the connected wallet). Either way the order's new state
arrives through the chain indexer, whose `orders.signals.dispute_resolved` appends
`chain.confirmed` for the decision (`on_dispute_resolved`) and tells both parties the outcome.

A decision stands until the chain settles the order: a second one is refused (409) while the
first is prepared, pending, sent or confirmed; only one whose operator action failed or was
cancelled makes way for a new decision (or a retry from /moderation/actions).
"""
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone

from marketplace import api
from marketplace.catalog.models import Listing
from marketplace.chain.client import get_web3
from marketplace.chain.contracts import DataMarket
from marketplace.chain.models import ChainEvent, OperatorAction
from marketplace.chain.retry import retries_of
from marketplace.orders import selectors as orders
from marketplace.orders.admin import operator_is_arbiter
from marketplace.orders.handlers import ORDER_EVENTS
from marketplace.orders.models import Download, Order
from marketplace.orders.signals import dispute_decided, dispute_deciding, dispute_resolved
from marketplace.outbox.services import enqueue

from . import audit
from .models import AuditEntry
from .notifications import notify

MAX_BPS = 10_000
MAX_ORDER_ID = 2**256 - 1  # an order id is a uint256: a larger one is a 404, never a database error
STATEMENT_MAX = 2000


class Refused(api.Refused):
    """A dispute decision that cannot be taken."""


def near_deadline() -> timedelta:
    return timedelta(hours=settings.MODERATION_DISPUTE_NEAR_HOURS)


def _market() -> str | None:
    from marketplace.chain.services import deployed_address

    return deployed_address(settings.CHAIN_ID, "DataMarket")


def _disputed():
    return Order.objects.filter(chain_id=settings.CHAIN_ID, market=_market(), status=Order.Status.DISPUTED)


def stands(order, decision: dict) -> bool:
    """Whether a recorded decision still stands for `order`. An outside resolution (`via: chain`,
    recorded from a DisputeResolved the indexer read) stands only while the indexed order is
    settled by that transaction: a reorganisation that dropped it leaves the order disputed, and
    its entry (the log is append-only) then stands for nothing and blocks no new decision."""
    details = decision["details"]
    if details.get("via") != "chain":
        return True
    return order.status != Order.Status.DISPUTED and order.settled_tx_hash == details.get("tx_hash")


def _decisions(orders_) -> dict:
    """{(order id, order tx): the latest dispute.resolve entry that still stands} for these orders."""
    orders_ = {(str(int(o.order_id)), o.tx_hash): o for o in orders_}
    if not orders_:
        return {}
    found = {}
    rows = (AuditEntry.objects.filter(action="dispute.resolve", target_type="order",
                                      target_id__in={order_id for order_id, _ in orders_})
            .order_by("id").values("id", "created_at", "actor", "target_id", "statement", "details"))
    for row in rows:
        key = (row["target_id"], row["details"].get("order_tx"))
        if key in orders_ and stands(orders_[key], row):
            found[key] = row
    return found


def _decision_of(order, decisions) -> dict | None:
    return decisions.get((str(int(order.order_id)), order.tx_hash))


def standing_decision(order) -> dict | None:
    """The order's latest recorded decision that still stands (None: none)."""
    return _decision_of(order, _decisions([order]))


def decision_state(decision: dict | None, actions: dict) -> str:
    """Where a decision is: "" (none), "prepared" (for the arbiter's wallet), or its operator
    action's status (pending, sent, confirmed, failed, cancelled)."""
    if decision is None:
        return ""
    details = decision["details"]
    if details.get("via") == "wallet":
        return "prepared"
    if details.get("via") == "chain":
        return "confirmed"  # recorded from the chain's DisputeResolved
    action = actions.get(details.get("action"))
    return action.status if action is not None else "failed"


def _deadline(order, now) -> dict:
    left = order.dispute_deadline - now if order.dispute_deadline else None
    return {"at": order.dispute_deadline, "left": left, "passed": left is not None and left <= timedelta(0),
            "near": left is not None and timedelta(0) < left <= near_deadline()}


def left_text(left) -> str:
    if left is None:
        return ""
    if left <= timedelta(0):
        return "passed"
    hours = int(left.total_seconds() // 3600)
    return f"{hours // 24} d {hours % 24} h left" if hours >= 24 else f"{hours} h {left.seconds % 3600 // 60} min left"


def open_disputes(*, now=None) -> list[dict]:
    """The disputed orders of the current market, deadline first: each with what was bought, the
    deadline (near, passed) and the decision taken so far."""
    now = now or timezone.now()
    rows = list(_disputed().order_by("dispute_deadline", "order_id")[:500])
    decisions = _decisions(rows)
    action_ids = [d["details"].get("action") for d in decisions.values() if d["details"].get("action")]
    actions = OperatorAction.objects.in_bulk(action_ids)
    result = []
    for order, version in orders.with_versions(rows):
        decision = _decision_of(order, decisions)
        result.append({"order": order, "version": version, "deadline": _deadline(order, now),
                       "decision": decision, "state": decision_state(decision, actions)})
    return result


def history(order) -> list[ChainEvent]:
    """The order's events on-chain (created, disputed, settled; credits of its payments), in order."""
    return list(ChainEvent.objects.filter(
        chain_id=order.chain_id, address=order.market, name__in=(*ORDER_EVENTS, "Credited"),
        block_number__gte=order.block_number, args__orderId=str(int(order.order_id)),
    ).order_by("block_number", "log_index")[:100])


def download_log(order, version) -> list[Download]:
    if version is None:
        return []
    return list(Download.objects.filter(buyer=order.buyer, version=version).order_by("-started_at")[:50])


def prepared_transaction(order, refund_bps: int) -> dict:
    """The arbiter's `resolve(orderId, refundBps)` transaction, for their wallet."""
    market = DataMarket(get_web3(), order.market)
    return {"from": settings.CHAIN_ARBITER or None, "to": order.market, "chainId": hex(order.chain_id),
            "data": market.contract.encode_abi("resolve", args=[int(order.order_id), refund_bps]), "value": "0x0"}


def dispute_page(order_id: int, *, now=None) -> dict | None:
    """Everything the arbiter reads about one order of the current market (None: no such order)."""
    order = orders.current_order(settings.CHAIN_ID, order_id)
    if order is None:
        return None
    now = now or timezone.now()
    ((_, version),) = orders.with_versions([order])
    decisions = list(AuditEntry.objects.filter(action="dispute.resolve", target_type="order",
                                               target_id=str(int(order.order_id)), details__order_tx=order.tx_hash)
                     .order_by("id").values("id", "created_at", "actor", "statement", "internal_note", "details"))
    actions = list(OperatorAction.objects.filter(chain_id=order.chain_id, market=order.market,
                                                 order_id=order.order_id).order_by("-id")[:20])
    latest = next((d for d in reversed(decisions) if stands(order, d)), None)
    state = decision_state(latest, {a.pk: a for a in actions})
    prepared = None
    if latest and state == "prepared" and order.status == Order.Status.DISPUTED:
        prepared = prepared_transaction(order, int(latest["details"]["refund_bps"]))
    return {
        "order": order, "version": version, "deadline": _deadline(order, now),
        "statements": orders.statements([order]).get(orders.statement_key(order), []),
        "history": history(order), "downloads": download_log(order, version), "actions": actions,
        "decisions": decisions, "decision": latest, "state": state, "prepared": prepared,
        "seller": _seller(order),
        "confirmations": list(AuditEntry.objects.filter(action="chain.confirmed", target_type="order",
                                                        target_id=str(int(order.order_id)),
                                                        details__order_tx=order.tx_hash)
                              .order_by("id").values("id", "created_at", "details")),
    }


def _seller(order) -> str:
    listing = Listing.objects.filter(chain_id=order.chain_id, listing_id=order.listing_id).first()
    return listing.owner if listing is not None else ""


def _parties(order):
    """The users of the order's buyer and of its listing's owner (either may have no account)."""
    User = get_user_model()
    addresses = [a for a in (order.buyer, _seller(order)) if a]
    return {u.address: u for u in User.objects.filter(address__in=addresses)}, order.buyer, _seller(order)


def _blocking(order) -> str:
    """Why a new decision on `order` would be a second one ("" when none stands)."""
    decision = standing_decision(order)
    if decision is None:
        return ""
    details = decision["details"]
    if details.get("via") == "wallet":
        return (f"Order {order.order_id} was decided already (a refund of {details['refund_bps'] / 100:g} % by "
                f"{decision['actor']}): its transaction is prepared for the arbiter's wallet on the dispute's page.")
    # Its last action: the first one's latest retry (one confirmed but not read by the indexer yet
    # still stands, though the first one failed).
    last = retries_of(details.get("action"))
    action = OperatorAction.objects.filter(pk=last[-1]).first() if last else None
    if action is not None and action.status in (OperatorAction.Status.FAILED, OperatorAction.Status.CANCELLED):
        return ""  # it failed: a new decision may take its place
    return (f"Order {order.order_id} was decided already (a refund of {details['refund_bps'] / 100:g} % by "
            f"{decision['actor']}); its resolution is {action.status if action else 'recorded'}.")


@dataclass
class Decision:
    order: Order
    refund_bps: int
    via: str  # "operator" or "wallet"
    entry: AuditEntry
    action: OperatorAction | None = None
    prepared: dict | None = None


def resolve(*, order_id: int, refund_bps: int, arbiter, statement: str = "", note: str = "") -> Decision:
    """Decide the dispute of order `order_id` (of the current market): the buyer gets `refund_bps`
    basis points of the amount back, the rest goes to the listing's payout (less the fee). Refused
    (409) when the order is not disputed, its deadline has passed, or a decision stands; 404 for
    no such order; 400 for a share out of range."""
    if isinstance(refund_bps, bool) or not isinstance(refund_bps, int) or not 0 <= refund_bps <= MAX_BPS:
        raise Refused("invalid_share", "The refund share is from 0 to 10,000 basis points (0 to 100 %).", status=400)
    via = "operator" if operator_is_arbiter() else "wallet"
    with transaction.atomic():
        order = orders.current_order(settings.CHAIN_ID, order_id)
        if order is None:
            raise Refused("not_found", f"No order {order_id} on this chain's market.", status=404)
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.status != Order.Status.DISPUTED:
            raise Refused("not_disputed", f"Order {order.order_id} is {order.get_status_display().lower()}, not "
                          "disputed: there is nothing to resolve.")
        if order.dispute_deadline and order.dispute_deadline <= timezone.now():
            raise Refused("deadline_passed", f"The deadline of order {order.order_id} has passed: the market now "
                          "refunds it in full (the keeper sends that).")
        problem = _blocking(order)
        if problem:
            raise Refused("already_decided", problem)
        if OperatorAction.objects.filter(chain_id=order.chain_id, order_id=order.order_id,
                                         kind=OperatorAction.Kind.RESOLVE, status__in=OperatorAction.OPEN).exists():
            raise Refused("already_decided", f"A resolution of order {order.order_id} is already on its way.")
        action = prepared = None
        if via == "operator":
            action = OperatorAction.objects.create(
                kind=OperatorAction.Kind.RESOLVE, chain_id=order.chain_id, market=order.market,
                order_id=order.order_id, payload={"refund_bps": refund_bps},
                context={"note": note[:2000]}, created_by=arbiter.get_username())
            enqueue("chain.send_operator_actions")
        else:
            prepared = prepared_transaction(order, refund_bps)
        entry = record_decision(order, refund_bps=refund_bps, via=via, action=action, arbiter=arbiter,
                                statement=statement, note=note)
    return Decision(order=order, refund_bps=refund_bps, via=via, entry=entry, action=action, prepared=prepared)


def record_decision(order, *, refund_bps: int, via: str, action, arbiter, statement: str = "", note: str = ""):
    """The `dispute.resolve` entry of a decision and the notice to both parties, in the caller's
    transaction (the console's `resolve`, and the admin's resolve action through
    `orders.signals.dispute_decided`)."""
    entry = audit.record(
        action="dispute.resolve", target_type="order", target_id=int(order.order_id), actor=arbiter,
        actor_role="arbiter", statement=statement, internal_note=note,
        details={"chain_id": order.chain_id, "market": order.market, "order_tx": order.tx_hash,
                 "refund_bps": refund_bps, "via": via, "action": action.pk if action else None,
                 "amount": str(int(order.amount))})
    users, buyer, seller = _parties(order)
    text = (f"An arbiter decided the dispute of order {order.order_id}: {refund_bps / 100:g} % of the payment "
            f"goes back to the buyer, the rest to the seller. The money moves once the chain confirms it.")
    if statement:
        text += f" Reasons: {statement}"
    for address in {buyer, seller}:
        if address in users:
            notify(users[address], kind="dispute.resolve", text=text, link=_link(address, buyer))
    return entry


@receiver(dispute_deciding, dispatch_uid="moderation.dispute_deciding")
def on_dispute_deciding(sender, order, **kwargs) -> str:
    """The Django admin is about to decide `order` (its row locked): why it must not ("" when it
    may), as the console refuses a second decision (`already_decided`)."""
    return _blocking(order)


@receiver(dispute_decided, dispatch_uid="moderation.dispute_decided")
def on_dispute_decided(sender, order, refund_bps, user, note, via, action=None, **kwargs):
    """A decision taken in the Django admin's resolve action: recorded as the console records its own."""
    record_decision(order, refund_bps=refund_bps, via=via, action=action, arbiter=user, note=note)


def _link(address, buyer) -> str:
    return "/me/library" if address == buyer else "/me/sales"


@receiver(dispute_resolved, dispatch_uid="moderation.dispute_resolved")
def on_dispute_resolved(sender, order, event, **kwargs):
    """The indexer saw an order's `DisputeResolved` (in its transaction): `chain.confirmed` for the
    decision that sent it, or for an outside resolution recorded on its own (once, however often a
    reorganisation replays it), and both parties are told what each got (once per event)."""
    decision = standing_decision(order)
    if decision is None or not _carried(decision, event):
        decision = _record_outside_decision(order, event)
    if not AuditEntry.objects.filter(
            action="chain.confirmed", target_type="order", target_id=str(int(order.order_id)),
            details__entry=decision["id"]).exists():
        audit.record(action="chain.confirmed", target_type="order", target_id=int(order.order_id), actor=None,
                     actor_role="system",
                     details={"entry": decision["id"], "decided": "dispute.resolve", "order_tx": order.tx_hash,
                              "as_decided": _as_decided(order, decision),
                              "tx_hash": event.tx_hash, "block": event.block_number,
                              "refund": str(int(order.refund)), "owner_amount": str(int(order.owner_amount)),
                              "fee": str(int(order.fee))})
    users, buyer, seller = _parties(order)
    for address in {buyer, seller}:
        if address not in users:
            continue
        got = int(order.refund) if address == buyer else int(order.owner_amount)
        notify(users[address], kind="dispute.resolved",
               text=f"The dispute of order {order.order_id} is settled on-chain: "
                    f"{'you were refunded' if address == buyer else 'you were paid'} {usdc(got)} of the "
                    f"{usdc(order.amount)} paid.", link=_link(address, buyer), event=event)


def _carried(decision: dict, event) -> bool:
    """Whether the resolution `event` is the one `decision` sent: an operator decision's only if
    the transaction is one signed for its action or a retry of it (a resolution sent by other
    means after that action failed, or while it waited, is an outside resolution of its own); a
    decision prepared for the arbiter's wallet is sent from that wallet, by whatever tool
    (`as_decided` then says whether the share was the one decided); an outside resolution's only
    if it is that transaction."""
    details = decision["details"]
    if details.get("via") == "wallet":
        return True
    if details.get("via") == "chain":
        return details.get("tx_hash") == event.tx_hash
    return OperatorAction.objects.filter(pk__in=retries_of(details.get("action"))).filter(
        Q(tx_hash=event.tx_hash) | Q(transaction__hashes__contains=[event.tx_hash])).exists()


def _as_decided(order, decision) -> bool:
    """Whether the chain refunded the share the decision named (a resolution sent by other means
    while a decision stood would not)."""
    details = decision.get("details") or {}
    if details.get("via") == "chain":
        return True  # recorded from the chain's own figures
    bps = details.get("refund_bps")
    return bps is not None and int(order.refund) == int(order.amount) * int(bps) // 10_000


def _record_outside_decision(order, event) -> dict:
    """A resolution sent without a decision recorded here (from a transaction the admin prepared,
    or any tool of the arbiter's): its `dispute.resolve` entry, by the system from the chain's
    figures, once per order (a reorganisation replaying the event finds it)."""
    target = str(int(order.order_id))
    found = (AuditEntry.objects.filter(action="dispute.resolve", target_type="order", target_id=target,
                                       details__tx_hash=event.tx_hash).values("id", "details").first())
    if found is None:
        amount = int(order.amount)
        entry = audit.record(
            action="dispute.resolve", target_type="order", target_id=int(order.order_id), actor=None,
            actor_role="system", statement="Resolved on-chain by the arbiter outside the console.",
            details={"chain_id": order.chain_id, "market": order.market, "order_tx": order.tx_hash,
                     "refund_bps": int(order.refund) * 10_000 // amount if amount else 0, "via": "chain",
                     "tx_hash": event.tx_hash, "amount": str(amount)})
        found = {"id": entry.id, "details": entry.details}
    return found


def usdc(amount) -> str:
    """Base units (6 decimals) as token units: 24375000 -> "24.375 USDC"."""
    whole, frac = divmod(int(amount), 10**6)
    return f"{whole:,}" + (f".{frac:06d}".rstrip("0") if frac else "") + " USDC"

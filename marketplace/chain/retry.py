"""Queueing a failed or cancelled operator action again (the moderation console's retry button).

A retry never changes the old row's outcome: it writes a fresh `OperatorAction` with the same
kind, target and arguments (`context.retry_of` names the old one, whose `context.retried_as` names
the new one), so the old row keeps its transaction and error for the record and the sender's
rules for a new row apply (one nonce at a time, settled from the indexer's events). A retry is
refused when it could send the same thing twice or is no longer needed:

- the row is not failed or cancelled, or was retried already;
- an action of the same kind for the same order or listing is pending or sent;
- an approval or clearing was superseded by a newer decision about its listing;
- the chain no longer wants it: the listing is already (not) approved, the order is no longer
  open or disputed (the call would revert: simulated with `eth_call` from the operator key), or
  the operator key does not hold the arbiter role a resolution needs.

The chain is asked first, with no row locked (`ask_chain`): the node may be slow or hang, and a
row lock held over the call would make every moderator acting on the same action, order or dataset
wait on the network. `requeue` then takes the locks and checks the database again; it refuses the
retry when the row changed after the chain was asked (`changed`: try again).

The caller (moderation) records the retry in the audit log and enqueues the sender in the same
transaction.
"""
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from eth_utils import to_checksum_address
from web3.exceptions import ContractLogicError

from marketplace.api import Refused

from . import reverts
from .models import OperatorAction

Kind = OperatorAction.Kind
Status = OperatorAction.Status

#: Kinds the console may queue again. Reward roots are queued again by the epoch close itself
#: (rewards.epochs), and a community listing by its dataset's next cut: a second copy from here
#: could race them.
RETRYABLE = (Kind.APPROVE, Kind.UNAPPROVE, Kind.RESOLVE, Kind.RELEASE, Kind.EXPIRE_DISPUTE, Kind.CONFIRM_BY_SIG,
             Kind.DISPUTE_BY_SIG, Kind.RETURN_SURPLUS)
COPIED = ("kind", "chain_id", "market", "listing_id", "order_id", "expected_owner", "expected_content_hash",
          "payload", "on_done")


class RetryRefused(Refused):
    """A failed or cancelled operator action that cannot be queued again."""


def _target(action) -> dict:
    if action.listing_id is not None:
        return {"listing_id": action.listing_id}
    if action.order_id is not None:
        return {"order_id": action.order_id}
    return {}


def _chain_check(action: OperatorAction) -> str:
    """Why the chain no longer wants `action` ("" when it does). Reads only."""
    from .client import operator_account, operator_web3
    from .sender import KINDS, ZERO_ADDRESS, _call, mismatch
    from .services import market as deployed_market

    w3 = operator_web3()
    market = deployed_market(w3)
    if to_checksum_address(action.market) != market.address:
        return f"the market is now at {market.address}, not at {action.market} where this action was decided"
    operator = operator_account()
    spec = KINDS[action.kind]
    if spec.arbiter and not market.has_role("ARBITER_ROLE", operator.address):
        return (f"the operator key {operator.address} does not hold ARBITER_ROLE: the arbiter's wallet has to send "
                "this (the dispute's page prepares it)")
    if action.kind in (Kind.APPROVE, Kind.UNAPPROVE):
        listing = market.get_listing(int(action.listing_id))
        if listing["owner"] == ZERO_ADDRESS:
            return f"listing {action.listing_id} does not exist on-chain"
        wanted = action.kind == Kind.APPROVE
        if listing["approved"] == wanted:
            return (f"no longer needed: listing {action.listing_id} is already "
                    f"{'approved' if wanted else 'not approved'} on-chain")
        return mismatch(market, action)
    if action.kind == Kind.RELEASE:
        order = market.get_order(int(action.order_id))
        if order["status"] != "open":
            return f"no longer needed: order {action.order_id} is {order['status']} on-chain"
        if order["release_at"] > w3.eth.get_block("latest")["timestamp"]:
            return f"order {action.order_id} is not matured yet: the keeper releases it when it is"
        return ""
    try:
        _call(market, action.kind, [action]).call({"from": operator.address})
    except ContractLogicError as exc:
        return f"no longer possible: {spec.function} would revert: {reverts.describe(exc, market.contract.abi)}"
    return ""


def retries_of(action_id) -> list[int]:
    """The action and every retry that followed it, in order (`context.retried_as`, hop by hop):
    one recursive query, however long the chain, that stops at a row seen before (a cycle, which
    nothing writes, cannot make it loop)."""
    if action_id is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute("""
            WITH RECURSIVE walk (id, next, path) AS (
                SELECT id, (context ->> 'retried_as')::bigint, ARRAY[id]
                FROM chain_operatoraction WHERE id = %s
              UNION ALL
                SELECT a.id, (a.context ->> 'retried_as')::bigint, walk.path || a.id
                FROM walk JOIN chain_operatoraction a ON a.id = walk.next
                WHERE a.id <> ALL (walk.path)
            )
            SELECT id FROM walk ORDER BY cardinality(path)""", [int(action_id)])
        return [row[0] for row in cursor.fetchall()]


@dataclass(frozen=True)
class ChainAsked:
    """That the chain still wants action `action_id`, as its row was (`updated_at`) when asked."""

    action_id: int
    updated_at: datetime


def _refusal(old, action_id, *, others: bool = False) -> None:
    """The refusals the database decides: the row's own and, with `others`, those the other
    actions on its order or listing make."""
    if old is None:
        raise RetryRefused("not_found", f"No operator action #{action_id}.", status=404)
    if old.status not in (Status.FAILED, Status.CANCELLED):
        raise RetryRefused("not_failed", f"Operator action #{old.pk} is {old.get_status_display().lower()}: only "
                           "a failed or cancelled action is queued again.")
    if (old.context or {}).get("retried_as"):
        raise RetryRefused("already_retried", f"Operator action #{old.pk} was queued again already, as "
                           f"#{old.context['retried_as']}.")
    if old.kind not in RETRYABLE:
        raise RetryRefused("not_retryable", f"A {old.get_kind_display().lower()} is queued again by the part "
                           "of the system that made it, not from the console.")
    if old.chain_id != settings.CHAIN_ID:
        raise RetryRefused("other_chain", f"Operator action #{old.pk} is for chain {old.chain_id}; this server "
                           f"runs on chain {settings.CHAIN_ID}.")
    if not others:
        return
    target = _target(old)
    same = OperatorAction.objects.filter(chain_id=old.chain_id, **target).exclude(pk=old.pk)
    open_one = same.filter(kind=old.kind, status__in=OperatorAction.OPEN).order_by("id").first()
    if open_one is not None:
        raise RetryRefused("already_queued", f"Operator action #{open_one.pk} does the same and is "
                           f"{open_one.get_status_display().lower()}: nothing is sent twice.")
    if old.kind in (Kind.APPROVE, Kind.UNAPPROVE):
        newer = same.filter(kind__in=(Kind.APPROVE, Kind.UNAPPROVE), pk__gt=old.pk,
                            status__in=(Status.PENDING, Status.SENT, Status.CONFIRMED)).order_by("-id").first()
        if newer is not None:
            raise RetryRefused("superseded", f"No longer needed: operator action #{newer.pk} "
                               f"({newer.get_kind_display().lower()}, {newer.status}) is a newer decision about "
                               f"listing {old.listing_id}.")


def ask_chain(action_id: int) -> ChainAsked:
    """Whether the chain still wants action `action_id` (RetryRefused 409 when not, 503 when the
    node cannot be asked), read with no row locked and outside any lock of the caller's: call it
    before the transaction that calls `requeue`."""
    old = OperatorAction.objects.filter(pk=action_id).first()
    _refusal(old, action_id, others=True)  # the cheap refusals first; requeue checks them again under the lock
    try:
        reason = _chain_check(old)
    except RetryRefused:
        raise
    except Exception as exc:  # the node is down or unreachable: nothing is decided
        raise RetryRefused("chain_unavailable", f"The chain cannot be asked now ({type(exc).__name__}); try "
                           "again soon.", status=503) from None
    if reason:
        raise RetryRefused("not_needed", reason[0].upper() + reason[1:] + ".")
    return ChainAsked(action_id=old.pk, updated_at=old.updated_at)


def requeue(action_id: int, *, by: str, asked: ChainAsked) -> tuple[OperatorAction, OperatorAction]:
    """Queue failed or cancelled action `action_id` again, once `ask_chain` said the chain wants
    it (`asked`); returns (old, new). RetryRefused says why not (409; 404 for no such action).
    Runs in the caller's transaction and asks the node nothing."""
    with transaction.atomic():
        if asked.action_id != action_id:
            raise ValueError(f"the chain was asked about operator action #{asked.action_id}, not #{action_id}")
        old = OperatorAction.objects.select_for_update().filter(pk=action_id).first()
        _refusal(old, action_id, others=True)
        if old.updated_at != asked.updated_at:
            raise RetryRefused("changed", f"Operator action #{old.pk} changed while the chain was asked; try again.")
        new = OperatorAction.objects.create(
            **{name: getattr(old, name) for name in COPIED},
            context={**(old.context or {}), "retry_of": old.pk}, created_by=by[:150])
        old.context = {**(old.context or {}), "retried_as": new.pk}
        old.save(update_fields=["context", "updated_at"])
    return old, new

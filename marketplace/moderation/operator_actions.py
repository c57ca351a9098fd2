"""Operator actions that failed or were cancelled, with the reason, and the retry: a fresh action
queued through `chain.retry.requeue` (which refuses anything that could be sent twice or that the
chain no longer wants), after the checks only the apps above the chain can make: an approval or a
clearing is not sent again once a later moderation decision about its dataset went the other way
(a dataset relisted after a failed delisting stays listed). Moderators retry every kind;
resolutions are the arbiters' (and need the arbiter role). Each retry is recorded (`chain.retry`)
in the transaction that queues it."""
from django.db import transaction

from marketplace.accounts.bans import PUBLISH, is_banned
from marketplace.accounts.roles import ARBITER, MODERATOR, has_role
from marketplace.catalog.listing import unapproved_version
from marketplace.catalog.models import Dataset
from marketplace.chain.models import OperatorAction
from marketplace.chain.retry import RETRYABLE, RetryRefused, ask_chain, requeue, retries_of
from marketplace.orders.models import Order
from marketplace.outbox.services import enqueue

from . import audit
from .models import AuditEntry

Kind, Status = OperatorAction.Kind, OperatorAction.Status
PAGE = 50
# A later decision about the whole dataset that makes a failed approval or clearing unwanted (a
# review decision counts only when it is about the whole dataset: audit.dataset_decisions).
OPPOSITE = {
    Kind.APPROVE: ("dataset.delist", "dataset.reject", "dataset.remove"),
    Kind.UNAPPROVE: ("dataset.approve", "dataset.relist", "dataset.restore"),
}


class Refused(RetryRefused):
    pass


def role_for(kind: str) -> str:
    return ARBITER if kind == Kind.RESOLVE else MODERATOR


def may_retry(user, action: OperatorAction) -> bool:
    return (action.kind in RETRYABLE and not (action.context or {}).get("retried_as")
            and has_role(user, role_for(action.kind)))


def failed_actions(*, before: int | None = None, kind: str = "") -> list[OperatorAction]:
    """Failed and cancelled operator actions, newest first, 50 a page (keyset by id)."""
    rows = OperatorAction.objects.filter(status__in=(Status.FAILED, Status.CANCELLED))
    if kind:
        rows = rows.filter(kind=kind)
    if before is not None:
        rows = rows.filter(id__lt=before)
    return list(rows.order_by("-id")[:PAGE])


def _later_decision(action: OperatorAction) -> str:
    """Why a moderation decision taken after `action` makes it unwanted ("" when none does)."""
    opposite = OPPOSITE.get(action.kind)
    dataset = (action.context or {}).get("dataset")
    if not opposite or dataset is None:
        return ""
    later = audit.dataset_decisions(dataset, opposite).filter(created_at__gt=action.created_at)
    if action.kind == Kind.UNAPPROVE:  # a removal undone that left the dataset delisted or rejected approved nothing
        for status in (Dataset.Status.DELISTED, Dataset.Status.REJECTED):
            later = later.exclude(action="dataset.restore", details__contains={"status": status})
    later = later.last()
    if later is None:
        return ""
    return (f"No longer needed: the dataset was decided again after this action ({later.action}, audit entry "
            f"#{later.id}, {later.created_at:%Y-%m-%d %H:%M} UTC).")


def _not_wanted_now(action: OperatorAction) -> str:
    """Why the catalog's or the order's state now makes `action` unwanted ("" when nothing does):
    an approval of a dataset removed for legal reasons, delisted or rejected, or of a publisher
    banned from publishing; a resolution that is no longer the order's standing decision (a later
    decision took its place, or another share was decided)."""
    if action.kind == Kind.APPROVE:
        dataset = Dataset.objects.select_related("owner").filter(pk=(action.context or {}).get("dataset")).first()
        if dataset is None:
            return ""
        if dataset.removed_at is not None:
            return "No longer needed: the dataset was removed for legal reasons; restore it instead."
        if dataset.status not in (Dataset.Status.PENDING_REVIEW, Dataset.Status.LISTED):
            return f"No longer needed: the dataset is {dataset.get_status_display().lower()}; restore it instead."
        if dataset.owner.address and is_banned(dataset.owner.address, PUBLISH):
            return "No longer needed: the publisher is banned from publishing."
    if action.kind == Kind.RESOLVE:
        return _not_the_standing_resolution(action)
    return ""


def _not_the_standing_resolution(action: OperatorAction) -> str:
    """A resolution is sent again only as the order's standing decision, with its share: the
    decision names this action or one it retried (the chain of retries is followed however long)."""
    from .disputes import standing_decision

    order = Order.objects.filter(chain_id=action.chain_id, market=action.market, order_id=action.order_id).first()
    if order is None:
        return ""
    decision = standing_decision(order)
    if decision is None:
        return ""
    details = decision["details"]
    if details.get("via") != "operator" or action.pk not in retries_of(details.get("action")):
        return (f"No longer needed: a later decision on order {action.order_id} took its place (audit entry "
                f"#{decision['id']}, a refund of {details.get('refund_bps', 0) / 100:g} %).")
    if (action.payload or {}).get("refund_bps") != details.get("refund_bps"):
        return "Refused: its share is not the one decided."
    outside = (AuditEntry.objects.filter(action="dispute.resolve", target_type="order", target_id=decision["target_id"],
                                         details__order_tx=order.tx_hash, details__via="chain", id__gt=decision["id"])
               .order_by("id").first())
    if outside is not None:
        # A resolution sent outside the console after this decision, which a reorganisation dropped
        # since (it no longer stands), may be mined again: a retry would race it.
        return (f"No longer needed: order {action.order_id} was resolved on-chain outside the console after this "
                f"decision (audit entry #{outside.id}, transaction {outside.details.get('tx_hash')}); that "
                "resolution may be mined again. An arbiter decides again.")
    return ""


def _checked(action_id: int, by) -> OperatorAction:
    """The action, once the checks above this app's chain part pass (404, 403, 409 not needed)."""
    action = OperatorAction.objects.filter(pk=action_id).first()
    if action is None:
        raise Refused("not_found", f"No operator action #{action_id}.", status=404)
    role = role_for(action.kind)
    if not has_role(by, role):
        raise Refused("forbidden", f"Only {role}s may retry a {action.get_kind_display().lower()}.", status=403)
    if action.status not in (Status.FAILED, Status.CANCELLED):
        return action  # chain.retry refuses it (not_failed)
    reason = _later_decision(action) or _not_wanted_now(action)
    if reason:
        raise Refused("not_needed", reason)
    if action.kind == Kind.APPROVE:
        # A rejection of the version (a decision about a part of the dataset, which the two checks
        # above do not see) or its new review waiting: the version is approved again first.
        why = unapproved_version(action, by_listing_id=True)
        if why:
            raise Refused("version_not_approved", f"Not queued again: {why}. A moderator approves the version "
                          "first (its review queues the approval).")
    return action


def retry(*, action_id: int, by) -> OperatorAction:
    """Queue failed or cancelled action `action_id` again for the operator sender, as `by` (a
    moderator, or an arbiter for a resolution); returns the new action. Refused: 403 without the
    role, 404 no such action, 409 not needed or already on its way, 503 the chain cannot be asked.

    The chain is asked first, with no row locked (the node may be slow: nobody else waits on it).
    Then, in one transaction, the dataset's row (an approval or clearing) or the order's (a
    resolution) is locked, as removals, restores and decisions lock it, every database check is
    made again, and the new action and its audit entry are written: a decision taken while the
    chain was asked is seen, and one taken after waits for the commit and sees the retry."""
    _checked(action_id, by)
    asked = ask_chain(action_id)
    with transaction.atomic():
        peek = OperatorAction.objects.filter(pk=action_id).values("kind", "context", "chain_id", "market",
                                                                  "order_id").first()
        if peek is not None:
            dataset_id = (peek["context"] or {}).get("dataset")
            if dataset_id is not None and peek["kind"] in (Kind.APPROVE, Kind.UNAPPROVE):
                list(Dataset.objects.select_for_update(of=("self",)).filter(pk=dataset_id)
                     .values_list("pk", flat=True))
            if peek["kind"] == Kind.RESOLVE:
                list(Order.objects.select_for_update().filter(
                    chain_id=peek["chain_id"], market=peek["market"], order_id=peek["order_id"])
                     .values_list("pk", flat=True))
        _checked(action_id, by)
        role = role_for(peek["kind"])
        old, new = requeue(action_id, by=by.get_username(), asked=asked)
        details = {"kind": old.kind, "retry_of": old.pk, "action": new.pk, "status": old.status,
                   "error": (old.error or "")[:500]}
        if old.order_id is not None:
            details["order_id"] = str(int(old.order_id))
        if old.listing_id is not None:
            details["listing_id"] = str(int(old.listing_id))
        audit.record(action="chain.retry", target_type="operator_action", target_id=old.pk, actor=by,
                     actor_role=role, details=details)
        enqueue("chain.send_operator_actions")
    return new

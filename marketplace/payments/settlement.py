"""Settling an x402 payment through the market's escrow, once, however often it is presented.

`settle` takes a parsed payment for a linked listing and answers its `X402Payment` row once the
payment is settled (the file may be served), or raises PaymentRefused. The steps:

1. **Claim** (one database transaction, the row locked): the row keyed by (chain, token, payer,
   nonce) is created or found. A row that holds its key (settling, settled, failed, timed out)
   with another payload is a 409; with the same payload it is a retry, and goes to step 3. A new
   payload (or one refused before) reserves the agent key's budget (`budget_hooks.reserve`, the
   one place where a key is checked), is verified against the chain (`verify.verify`), and gets
   a `purchase_with_auth` OperatorAction, queued for the operator sender in the same transaction.
   Two requests racing with one authorization meet on the row's lock: one queues, the other
   waits for its result.
2. Nothing else ever moves the payer's money: the sender calls `purchaseWithAuthorization` (never
   the token's `transferWithAuthorization`), after its pre-check that the price is still the
   authorized value and a simulation.
3. **Wait**, at most X402_SETTLEMENT_SECONDS: run the sender (if another process holds its lock,
   that one sends), then look at the action. Settled when the action is confirmed (the indexer
   stored the `OrderCreated` of that listing and payer in its transaction), or, earlier, when its
   mined receipt carries that event; served once the block has the confirmations the price needs
   (`confirmations_needed`). Past the limit the row is `timed_out` and the payer is told to send
   the same payment again: it stays with the sender, and a retry serves the file once settled.

The budget hooks are told when a reservation is released (refused, failed), held (timed out) or
spent (settled), each once, in the transaction that moves the row.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from eth_utils import to_checksum_address
from web3.exceptions import TransactionNotFound
from web3.logs import DISCARD

from marketplace.api import Refused
from marketplace.catalog.models import Listing
from marketplace.chain.client import get_web3, read_web3
from marketplace.chain.contracts import DataMarket
from marketplace.chain.models import ChainEvent, OperatorAction
from marketplace.chain.sender import send_operator_actions
from marketplace.outbox.services import enqueue

from . import budget_hooks
from .models import X402Payment
from .verify import verify
from .x402 import Payment, PaymentRefused

logger = logging.getLogger(__name__)

Status = X402Payment.Status
ActionStatus = OperatorAction.Status
POLL_SECONDS = 0.1  # between looks at the action while another process sends ...
POLL_SLOWER = (1.0, 0.25)  # ... and this much after waiting that long: a crowd of waiting requests
# looking ten times a second is the sender's competition for the CPU and the database
# How long a request leaves its new action to the worker the claim enqueued the sender for, before
# it runs the sender itself: a worker's run sends what many requests queue and follows it, while a
# request that runs it waits for the whole pass (the indexer's catch-up and every transaction's
# settlement) before it can serve its own file.
WORKER_GRACE_SECONDS = 0.3


class SettlementPending(PaymentRefused):
    """The settlement did not finish within the request's limit; the same payment sent again is
    served once it has."""

    default_status = 504


def canonical(payment: Payment, listing_id: int) -> str:
    """The sha256 of what makes a payment this payment: the listing it buys (which the signature
    does not cover) and the signed authorization. The header's own bytes (spacing, key order, the
    version that carried it) do not count: the same authorization re-encoded is a retry."""
    document = {"listingId": str(int(listing_id)), "from": payment.payer, "to": payment.to,
                "value": str(payment.value), "validAfter": str(payment.valid_after),
                "validBefore": str(payment.valid_before), "nonce": payment.nonce,
                "signature": "0x" + payment.signature.hex(), "paymentIdentifier": payment.payment_id}
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def confirmations_needed(amount: int) -> int:
    """Blocks on top of a settlement's block before its file is served."""
    return settings.X402_CONFIRMATIONS if amount > settings.X402_CONFIRMATIONS_ABOVE else 0


def settle(payment: Payment, *, listing: Listing, requirement, agent_key: str = "") -> X402Payment:
    """The payment's row once it is settled with the confirmations its price needs. `requirement`
    is called (only for a payment not seen before) for the listing's current Requirement. Raises
    PaymentRefused: the verification's refusals, 409 `nonce_used` / `payment_identifier_reused`,
    402 `settlement_failed`, 504 `settlement_pending` (SettlementPending)."""
    record, refusal = _claim(payment, listing, requirement, agent_key)
    if refusal is not None:
        raise refusal
    return _await(record)


def _claim(payment: Payment, listing: Listing, requirement, agent_key: str):
    """(the row, None) when the payment is queued or was before; (the row, the refusal) when it
    was refused now, the refusal recorded (and committed) on the row."""
    digest = canonical(payment, listing.listing_id)
    key = dict(chain_id=settings.CHAIN_ID, token=listing.token, payer=payment.payer, nonce=payment.nonce)
    try:
        with transaction.atomic():
            if payment.payment_id:
                _check_identifier(payment, digest)
            X402Payment.objects.bulk_create([X402Payment(
                **key, payload_sha256=digest, listing_id=listing.listing_id, version_id=listing.version_id,
                amount=payment.value, valid_before=payment.valid_before, x402_version=payment.version,
                payment_identifier=payment.payment_id, status=Status.REFUSED)], ignore_conflicts=True)
            record = X402Payment.objects.select_for_update().filter(**key).first()
            if record is None:  # the identifier's constraint, taken meanwhile by another payment
                raise _identifier_reused(payment)
            if record.status in X402Payment.CLAIMED:
                if record.payload_sha256 != digest:
                    raise PaymentRefused("nonce_used", "This authorization's nonce was already presented here with "
                                         "another payload: sign a new authorization with a fresh nonce.", status=409)
                if record.status == Status.SETTLED and time.time() >= int(record.valid_before):
                    raise PaymentRefused(
                        "payment_expired", "This payment was settled and its authorization has expired: a payment "
                        "is served again only until its validBefore. The order is yours: download the version again "
                        "with sign-in-with-x or a signed download request, or buy again.", status=410)
                return record, None  # a retry: its result, once there is one
            return _queue(record, payment, listing, digest, requirement, agent_key)
    except IntegrityError:  # two new payments under one payment identifier at once
        raise _identifier_reused(payment) from None


def _identifier_reused(payment: Payment) -> PaymentRefused:
    return PaymentRefused("payment_identifier_reused", f"The payment identifier {payment.payment_id!r} was used for "
                          "another payment: send this payment under a new identifier.", status=409)


def _check_identifier(payment: Payment, digest: str) -> None:
    """The same payment identifier with another payment is a 409; a refused payment lets its
    identifier go."""
    other = (X402Payment.objects.select_for_update()
             .filter(payer=payment.payer, payment_identifier=payment.payment_id).first())
    if other is None or other.payload_sha256 == digest:
        return
    if other.status in X402Payment.CLAIMED:
        raise _identifier_reused(payment)
    other.payment_identifier = ""
    other.save(update_fields=["payment_identifier", "updated_at"])


def _queue(record: X402Payment, payment: Payment, listing: Listing, digest: str, requirement, agent_key: str):
    """Reserve, verify, queue (inside _claim's transaction, the row locked)."""
    record.payload_sha256, record.x402_version = digest, payment.version
    record.payment_identifier, record.listing_id, record.version_id = (
        payment.payment_id, listing.listing_id, listing.version_id)
    record.amount, record.valid_before = payment.value, payment.valid_before
    reserved = False
    try:
        # The agent key's budget: checked and reserved here, after parsing and before anything is
        # verified or broadcast (budget_hooks).
        budget_hooks.reserve(record, agent_key=agent_key)
        reserved = True
        wanted = requirement()
        verify(payment, wanted)
    except Refused as exc:  # a PaymentRefused, or the agent keys' own refusals (AgentKeyRefused)
        record.status, record.error_code, record.error = Status.REFUSED, exc.code, exc.message
        record.save()
        if reserved:
            budget_hooks.release(record, reason=exc.code)
        return record, exc
    action = OperatorAction.objects.create(
        kind=OperatorAction.Kind.PURCHASE_WITH_AUTHORIZATION, chain_id=settings.CHAIN_ID, market=wanted.pay_to,
        listing_id=listing.listing_id, created_by=payment.payer, on_done="marketplace.payments.settlement.on_done",
        payload={"from": payment.payer, "value": str(payment.value), "valid_after": str(payment.valid_after),
                 "valid_before": str(payment.valid_before), "nonce": payment.nonce,
                 "signature": "0x" + payment.signature.hex()},
        context={"payment": record.pk})
    record.action, record.status, record.error_code, record.error = action, Status.SETTLING, "", ""
    record.save()
    enqueue("chain.send_operator_actions")  # a worker's sender, if this request's own loses the race
    return record, None


def _await(record: X402Payment) -> X402Payment:
    started = time.monotonic()
    deadline = started + settings.X402_SETTLEMENT_SECONDS
    grace = started + WORKER_GRACE_SECONDS
    while True:
        record = _look(record)
        if record.status == Status.FAILED:
            raise PaymentRefused("settlement_failed", f"The payment was not settled: {record.error or record.error_code}. "
                                 "Nothing was taken from the payer: ask for the resource again and sign a new "
                                 "authorization.", status=402)
        if record.status == Status.REFUSED:  # on_done cannot make one; a refused retry is re-checked
            raise PaymentRefused(record.error_code or "refused", record.error or "The payment was refused.")
        if record.status == Status.SETTLED and _confirmed_enough(record):
            return record
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _timed_out(record)
            raise SettlementPending(
                "settlement_pending", "The payment is being settled on the chain and did not finish within "
                f"{settings.X402_SETTLEMENT_SECONDS} seconds. Send the same payment again (the same header): "
                "it is settled once and the file is served then; it is never charged twice.")
        action_status = OperatorAction.objects.filter(pk=record.action_id).values_list("status", flat=True).first()
        if record.status != Status.SETTLED and action_status in OperatorAction.OPEN and time.monotonic() < grace:
            time.sleep(min(_poll_seconds(started), max(0.0, remaining)))  # a worker may be sending it
        elif record.status != Status.SETTLED and action_status in OperatorAction.OPEN:
            # This request sends, unless another process holds the sender's lock: that one looks at
            # the queue again when it releases it.
            try:
                # One pass: what other requests queue meanwhile they send themselves (or a worker).
                report = send_operator_actions(timeout=remaining, passes=1)
                confirmed = report.confirmed
                if report.left:
                    enqueue("chain.send_operator_actions")
            except Exception:  # the node or the key failed: the sender's next run (beat's) tries again
                logger.warning("x402 payment %s: the operator sender failed while the request waited", record.pk,
                               exc_info=True)
                confirmed = 0
            if not confirmed:
                time.sleep(min(_poll_seconds(started), max(0.0, deadline - time.monotonic())))
        else:
            time.sleep(min(0.5, max(0.0, remaining)))  # confirmations: a new block


def _poll_seconds(started: float) -> float:
    return POLL_SLOWER[1] if time.monotonic() - started >= POLL_SLOWER[0] else POLL_SECONDS


def _look(record: X402Payment) -> X402Payment:
    """The row as the chain and its action say now: settled from the action (confirmed) or from
    its mined receipt, failed with the action."""
    record.refresh_from_db()
    if record.status not in (Status.SETTLING, Status.TIMED_OUT) or record.action_id is None:
        return record
    action = OperatorAction.objects.select_related("transaction").get(pk=record.action_id)
    if action.status in (ActionStatus.CONFIRMED, ActionStatus.FAILED, ActionStatus.CANCELLED):
        on_done(action)
    elif action.status == ActionStatus.SENT and action.transaction and not action.transaction.reverted:
        found = _order_in_receipt(action)
        if found is None:
            return record  # nothing moved it
        _finish(record.pk, Status.SETTLED, tx_hash=found[0], block_number=found[1], order_id=found[2])
    else:
        return record
    record.refresh_from_db()
    return record


def _order_in_receipt(action: OperatorAction):
    """(tx hash, block, order id) of the OrderCreated of the action's listing and payer in the
    receipt of its transaction (the hash the sender saw mined, else any hash signed for its nonce,
    newest first: served as soon as it is mined, not once the sender has followed it), as the
    node has it now; None if it has none."""
    sent = action.transaction
    try:
        dm = DataMarket.shared(read_web3(), action.market)  # where the sender sent it (it checks that first)
        receipt = None
        for tx_hash in [sent.mined_hash] if sent.mined_hash else reversed(sent.hashes or [sent.tx_hash]):
            try:
                receipt = dm.w3.eth.get_transaction_receipt(tx_hash)
                break
            except TransactionNotFound:
                continue
    except Exception:
        return None
    if receipt is None or receipt["status"] != 1:
        return None
    for log in dm.contract.events.OrderCreated().process_receipt(receipt, errors=DISCARD):
        if (log["address"] == dm.address and int(log["args"]["listingId"]) == int(action.listing_id)
                and log["args"]["buyer"] == to_checksum_address(action.payload["from"])):
            return "0x" + bytes(receipt["transactionHash"]).hex(), receipt["blockNumber"], int(log["args"]["orderId"])
    return None


def _confirmed_enough(record: X402Payment) -> bool:
    needed = confirmations_needed(int(record.amount))
    if needed == 0:
        return True
    try:
        w3 = get_web3()
        receipt = w3.eth.get_transaction_receipt(record.tx_hash)  # the chain's, now (after a reorg: none)
        return receipt is not None and w3.eth.block_number - receipt["blockNumber"] >= needed
    except Exception:
        return False


def on_done(action: OperatorAction) -> None:
    """The operator sender's callback (OperatorAction.on_done), in the transaction that records the
    action confirmed or failed; the waiting request calls it too. Idempotent."""
    record = X402Payment.objects.filter(action_id=action.pk).values_list("pk", flat=True).first()
    if record is None:
        return
    if action.status == ActionStatus.CONFIRMED:
        event = ChainEvent.objects.filter(chain_id=action.chain_id, tx_hash=action.tx_hash,
                                          log_index=action.log_index).first()
        _finish(record, Status.SETTLED, tx_hash=action.tx_hash, block_number=action.block_number,
                order_id=int(event.args["orderId"]) if event is not None else None)
    elif action.status in (ActionStatus.FAILED, ActionStatus.CANCELLED):
        _finish(record, Status.FAILED, error=action.error, tx_hash=action.tx_hash)


def _finish(pk: int, status: str, **fields) -> None:
    """Move the row to settled or failed, once, and tell the budget hooks."""
    with transaction.atomic():
        record = X402Payment.objects.select_for_update().get(pk=pk)
        if record.status == status or record.status not in (Status.SETTLING, Status.TIMED_OUT, Status.SETTLED):
            return
        if record.status == Status.SETTLED:
            # Served from its receipt, then failed on the chain (a reorganisation took it): say so.
            logger.error("x402 payment %s was served from transaction %s, which then failed: %s", pk,
                         record.tx_hash, fields.get("error"))
        record.status = status
        record.error_code = "settlement_failed" if status == Status.FAILED else ""
        record.error = (fields.get("error") or "")[:2000]
        record.tx_hash = fields.get("tx_hash") or record.tx_hash
        if status == Status.SETTLED:
            record.block_number, record.order_id = fields.get("block_number"), fields.get("order_id")
            record.settled_at = timezone.now()
        record.save()
        if status == Status.SETTLED:
            budget_hooks.spend(record)
        else:
            budget_hooks.release(record, reason="settlement_failed")


def _timed_out(record: X402Payment) -> None:
    with transaction.atomic():
        record = X402Payment.objects.select_for_update().get(pk=record.pk)
        if record.status != Status.SETTLING:
            return
        record.status = Status.TIMED_OUT
        record.save(update_fields=["status", "updated_at"])
        budget_hooks.hold(record)

"""Settling an x402 payment through the market's escrow, once, however often it is presented.

`settle` takes a parsed payment for a linked listing and answers its `X402Payment` row once the
payment is settled (the file may be served), or raises PaymentRefused. The steps:

1. **Claim** (one database transaction, the row locked): the row keyed by (chain, token, payer,
   nonce) is created or found. A row that holds its key (settling, settled, failed, timed out)
   with another payload is a 409; with the same payload it is a retry, and goes to step 3. A new
   payload (or one refused before) is checked against the payer's agent key and reserves its
   budget (`_reserve`, the one place where a key is checked), is verified against the chain
   (`verify.verify`), and gets a `purchase_with_auth` OperatorAction, queued for the operator
   sender in the same transaction.
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

An agent key's reservation (accounts.agent_keys, under `budget_ref`) is released when the payment
is refused or its settlement fails, held when the request's limit passes with it unresolved, and
spent once settled, in the transaction that moves the row (in a savepoint that never raises: a
ledger that fails flags the row for `repair_ledgers`); for a payer without a key these find no
reservation and do nothing.
"""
from __future__ import annotations

from datetime import timedelta
import hashlib
import json
import logging
import time

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone
from eth_utils import to_checksum_address
from web3.exceptions import TransactionNotFound
from web3.logs import DISCARD

from marketplace.accounts import agent_keys
from marketplace.api import Refused
from marketplace.catalog.models import Listing
from marketplace.chain.client import get_web3, read_web3
from marketplace.chain.contracts import DataMarket
from marketplace.chain.indexer import authorization_pushed
from marketplace.chain.models import ChainEvent, IndexerCursor, OperatorAction
from marketplace.chain.services import deployed_address
from marketplace.limits.services import LimitExceeded, consume
from marketplace.chain.sender import send_operator_actions
from marketplace.orders import strays
from marketplace.orders.models import Order
from marketplace.orders.relay import SUSPENSION
from marketplace.outbox.services import enqueue

from .models import X402Payment
from .verify import verify
from .x402 import Payment, PaymentInFlight, PaymentRefused

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


#: The error code a settled payment's row gets when its chain is reset (its order went with it).
CHAIN_RESET = "chain_reset"
#: The error code of a failed payment whose authorization was used on the token with no order:
#: the money reached the market and is returned as a stray transfer.
PAID_WITHOUT_ORDER = "paid_without_order"
#: How far back from a failed settlement's block its authorization's use by another transaction
#: is looked for: the push lands between the verification and the settlement, seconds apart.
PUSH_LOOKBACK_BLOCKS = 5000
#: Front-run settlements a payer is forgiven in SUSPENSION: one more suspends it like any revert.
FRONT_RUNS_FORGIVEN = 1


class SettlementPending(PaymentRefused):
    """The settlement did not finish within the request's limit; the same payment sent again is
    served once it has."""

    default_status = 504


def canonical(payment: Payment, listing_id: int) -> str:
    """The sha256 of what makes a payment this payment: the listing it buys (which the signature
    does not cover) and the signed authorization (its `to`, the market, included). The header's
    own bytes (spacing, key order, the version that carried it) do not count: the same
    authorization re-encoded is a retry."""
    document = {"listingId": str(int(listing_id)), "from": payment.payer, "to": payment.to,
                "value": str(payment.value), "validAfter": str(payment.valid_after),
                "validBefore": str(payment.valid_before), "nonce": payment.nonce,
                "signature": "0x" + payment.signature.hex(), "paymentIdentifier": payment.payment_id}
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def confirmations_needed(amount: int) -> int:
    """Blocks on top of a settlement's block before its file is served."""
    return settings.X402_CONFIRMATIONS if amount > settings.X402_CONFIRMATIONS_ABOVE else 0


def settle(payment: Payment, *, listing: Listing, requirement, agent_key: str = "",
           client: str | None = None) -> X402Payment:
    """The payment's row once it is settled with the confirmations its price needs. `requirement`
    is called (only for a payment not seen before) for the listing's current Requirement; a new
    payment counts against the `payment` rates of the `client` address and of its payer first.
    Raises PaymentRefused: the verification's refusals, 409 `nonce_used` /
    `payment_identifier_reused`, 402 `settlement_failed`, 504 `settlement_pending`
    (SettlementPending), 429 `throttled` (Throttled)."""
    record, refusal = _claim(payment, listing, requirement, agent_key, client)
    if refusal is not None:
        raise refusal
    return _await(record)


def current_market() -> str:
    """The market deployed on CHAIN_ID now (checksummed); 503 when there is none."""
    address = deployed_address(settings.CHAIN_ID, "DataMarket")
    if address is None:
        raise PaymentRefused("chain_unavailable", "The market is not deployed on this chain yet.", status=503)
    return to_checksum_address(address)


def payment_key(payment: Payment, listing: Listing) -> dict:
    """The fields that key the payment's row: the token's own key of an authorization (chain,
    token, payer, nonce), under the market deployed now, so that a row of a market deployed
    before (whose listing ids started over) is never taken for this one's."""
    return dict(chain_id=settings.CHAIN_ID, market=current_market(), token=listing.token, payer=payment.payer,
                nonce=payment.nonce)


def _claim(payment: Payment, listing: Listing, requirement, agent_key: str, client: str | None = None):
    """(the row, None) when the payment is queued or was before; (the row, the refusal) when it
    was refused now, the refusal recorded (and committed) on the row."""
    digest = canonical(payment, listing.listing_id)
    key = payment_key(payment, listing)
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
                if record.status == Status.SETTLED:
                    if time.time() >= served_until(record):
                        raise PaymentRefused(
                            "payment_expired", "This payment was settled and is no longer served again: a payment "
                            "is served again only until its validBefore, and at most "
                            f"{settings.DOWNLOAD_TOKEN_SECONDS} seconds after it settled. The order is yours: "
                            "download the version again with sign-in-with-x or a signed download request, or buy "
                            "again.", status=410)
                    _count_download(record)
                return record, None  # a retry: its result, once there is one
            # A new payment: counted before the chain is asked anything (a refusal here rolls the
            # row back: nothing is stored for it).
            _count(lambda: consume("payment", ip=client, wallet=payment.payer.lower()))
            in_flight = _payer_in_flight(record)
            return _queue(record, payment, listing, digest, requirement, agent_key, in_flight)
    except IntegrityError:  # two new payments under one payment identifier at once
        raise _identifier_reused(payment) from None


def served_until(record: X402Payment) -> float:
    """Unix time until which a settled payment's header is served again (to whoever presents it):
    its validBefore, and at most a download link's life (DOWNLOAD_TOKEN_SECONDS) after it settled."""
    until = float(int(record.valid_before))
    if record.settled_at is not None:
        until = min(until, record.settled_at.timestamp() + settings.DOWNLOAD_TOKEN_SECONDS)
    return until


class Throttled(PaymentRefused):
    """Over one of the paid URL's rates (marketplace.limits): 429 with Retry-After."""

    default_status = 429

    def __init__(self, exceeded: LimitExceeded):
        super().__init__("throttled", exceeded.message)
        self.retry_after = exceeded.retry_after


def _count(consuming) -> None:
    try:
        consuming()
    except LimitExceeded as exceeded:
        raise Throttled(exceeded) from None


def _count_download(record: X402Payment) -> None:
    """A settled payment served again is a download like a link's: counted against the payer's
    `download` rate (LIMITS["download"]["wallet"]); raises Throttled over it."""
    _count(lambda: consume("download", wallet=record.payer.lower()))


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


def unsendable(action: OperatorAction) -> str:
    """The operator sender's check before it signs a settlement (settings.CHAIN_PURCHASE_CHECK):
    why the payment must not be sent now. Its agent key, revoked or expired since the payment was
    claimed, stops it: the action fails with the reason and the reservation is released."""
    record = X402Payment.objects.filter(action_id=action.pk).first()
    if record is None:
        return ""
    return agent_keys.unusable_key(budget_ref(record))


def _payer_in_flight(record: X402Payment) -> int:
    """What the payer's settlements not yet resolved (settling, timed out) take of its balance of
    the row's token, under a lock on the payer held to the end of the claim's transaction: two
    payments of one payer are verified one after the other, each seeing the other's row. Raises
    PaymentRefused: 403 `payer_suspended` when one of the payer's settlements reverted on-chain in
    the last 24 hours (the relayer paid for it), 409 `payment_in_flight` when one of them buys
    the same listing (its own header is the one to send again)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"x402-payer:{record.chain_id}:{record.payer}"])
    payments = X402Payment.objects.filter(chain_id=record.chain_id, payer=record.payer).exclude(pk=record.pk)
    reverted = payments.filter(status=Status.FAILED, action__transaction__reverted=True,
                               action__updated_at__gt=timezone.now() - timedelta(seconds=SUSPENSION))
    front_runs = 0
    for row in reverted.select_related("action__transaction").order_by("pk"):
        if row.error_code != PAID_WITHOUT_ORDER and not _front_run(row):
            raise PaymentRefused("payer_suspended", f"A settlement of {record.payer}'s reverted on the chain in the "
                                 f"last {SUSPENSION // 3600} hours, at the marketplace's cost: payments from this "
                                 "wallet are not taken for now. Buy from the wallet with the market's purchase.",
                                 status=403)
        front_runs += 1
    if front_runs > FRONT_RUNS_FORGIVEN:
        raise PaymentRefused("payer_suspended", f"{front_runs} settlements of {record.payer}'s were front-run in the "
                             f"last {SUSPENSION // 3600} hours (their authorizations sent straight to the token "
                             "ahead of them; the money is returned), at the marketplace's cost: payments from this "
                             "wallet are not taken for now. Buy from the wallet with the market's purchase.",
                             status=403)
    in_flight = payments.filter(market=record.market, token=record.token, status__in=(Status.SETTLING,
                                                                                        Status.TIMED_OUT))
    if in_flight.filter(listing_id=record.listing_id).exists():
        raise PaymentInFlight("payment_in_flight", f"A payment of {record.payer}'s for listing {record.listing_id} "
                              "is being settled: send that payment's header again (it is served once settled, "
                              "and never charged twice) rather than a new authorization.")
    return int(in_flight.aggregate(total=Sum("amount"))["total"] or 0)


def _front_run(row: X402Payment) -> bool:
    """Whether a reverted settlement reverted because someone sent its authorization to the token
    ahead of it (a mempool watcher copying it from the relayer's pending transaction): the money
    went to the market and is returned (orders.strays). Recorded on the row (PAID_WITHOUT_ORDER)
    when the claim goes on, so the chain is asked once. A settlement whose mined position is not
    known (unmined by a reorganisation) is no front-run. The payer is forgiven FRONT_RUNS_FORGIVEN
    of these a day: a payer doing it to itself from a second wallet pays that transfer's gas, and
    the relayer about twice that (the revert and its share of the return)."""
    if row.action is None or row.action.transaction is None or row.action.transaction.block_number is None:
        return False
    if not _authorization_used(row):
        return False
    X402Payment.objects.filter(pk=row.pk).update(error_code=PAID_WITHOUT_ORDER, updated_at=timezone.now())
    return True


def _queue(record: X402Payment, payment: Payment, listing: Listing, digest: str, requirement, agent_key: str,
           in_flight: int = 0):
    """Reserve, verify, queue (inside _claim's transaction, the row locked)."""
    record.payload_sha256, record.x402_version = digest, payment.version
    record.payment_identifier, record.listing_id, record.version_id = (
        payment.payment_id, listing.listing_id, listing.version_id)
    record.amount, record.valid_before = payment.value, payment.valid_before
    reserved = False
    try:
        # The agent key's budget: checked and reserved here, after parsing and before anything is
        # verified or broadcast.
        reserved = _reserve(record, listing, agent_key)
        wanted = requirement()
        verify(payment, wanted, in_flight=in_flight)
    except Refused as exc:  # a PaymentRefused, or the agent keys' own refusals (AgentKeyRefused)
        record.status, record.error_code, record.error = Status.REFUSED, exc.code, exc.message
        record.save()
        if reserved:
            _move_ledger(record)
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


def budget_ref(record: X402Payment) -> str:
    """The agent key ledger's reference of the payment the row holds now: the row and the first
    digits of its payload's sha256, so that another payload presented on a refused row's nonce
    (another amount, say) is a reservation of its own, while a retry of the same one is not."""
    return f"x402:{record.pk}:{record.payload_sha256[:12]}"


def _reserve(record: X402Payment, listing: Listing, raw_key: str) -> bool:
    """Check the payment against the payer's agent key and reserve its amount of the key's
    budget: True when reserved; False for a payer with no key (one whose wallet no live key
    holds and who sent none). Raises AgentKeyRefused (`key_required`, `over_daily_cap`, ...)."""
    key = agent_keys.key_for_payment(raw_key, record.payer)
    if key is None:
        return False
    dataset = listing.version.dataset
    owner = dataset.owner.address
    agent_keys.reserve(key, payment_ref=budget_ref(record), amount=int(record.amount),
                       listing_id=int(record.listing_id), publisher=to_checksum_address(owner) if owner else "",
                       category=dataset.category)
    return True


def _await(record: X402Payment) -> X402Payment:
    started = time.monotonic()
    deadline = started + settings.X402_SETTLEMENT_SECONDS
    grace = started + WORKER_GRACE_SECONDS
    while True:
        record = _look(record)
        if record.status == Status.FAILED:
            raise _settlement_failed(record)
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


def _settlement_failed(record: X402Payment) -> PaymentRefused:
    """The answer to a payment whose settlement failed. When its authorization is used on the token
    all the same and no order came of it (someone sent it straight to the token, before or instead
    of the relayer's purchase), the payer was charged: the money sits in the market without an
    order and the stray-transfer handler returns it (orders.strays); the answer says so, never
    "nothing was taken"."""
    reason = record.error or record.error_code
    if record.error_code != PAID_WITHOUT_ORDER and _authorization_used(record):
        X402Payment.objects.filter(pk=record.pk).update(error_code=PAID_WITHOUT_ORDER, updated_at=timezone.now())
        record.error_code = PAID_WITHOUT_ORDER
    if record.error_code == PAID_WITHOUT_ORDER:
        returned = ("They are returned to that wallet automatically once the transfer has the chain's "
                    "confirmations: its returns" if int(record.amount) >= strays.dust() else
                    "That is below the amount returned automatically (STRAY_RETURN_DUST), so it is only recorded: "
                    "the wallet's transfers into the market")
        return PaymentRefused(
            "settlement_failed", f"The payment was not settled as a purchase ({reason}), but its authorization "
            "was used on the token all the same: someone sent it straight to the token, so "
            f"{int(record.amount)} base units went from {record.payer} to the market without an order. {returned} "
            f"are listed at {reverse('my-returns')} and on {reverse('web:library')} (signed in as the wallet). To buy "
            "the version, ask for the resource again and sign a new authorization.", status=402)
    return PaymentRefused("settlement_failed", f"The payment was not settled: {reason}. Nothing was taken from "
                          "the payer: ask for the resource again and sign a new authorization.", status=402)


def _authorization_used(record: X402Payment) -> bool:
    """Whether the row's authorization was sent straight to the token, its amount going to the
    market, by a transaction that is not this market's purchase (`indexer.authorization_pushed`),
    looked for in the PUSH_LOOKBACK_BLOCKS blocks up to the settlement (the head when none was
    mined): the push came after the verification, which found the nonce unused, and ahead of the
    settlement (a push behind a settlement that reverted did not make it revert). A nonce the
    payer cancelled, or spent on an authorization paying someone else, took nothing to the
    market: False. False as well when the chain cannot be asked: the answer then says nothing
    was taken, as the settlement's own failure means."""
    if record.tx_hash and Order.objects.filter(chain_id=record.chain_id, market=record.market, buyer=record.payer,
                                               listing_id=record.listing_id, tx_hash=record.tx_hash).exists():
        return False
    try:
        w3 = get_web3()
        sent = record.action.transaction if record.action else None
        before = None
        if sent is not None and sent.block_number is not None:
            receipt = w3.eth.get_transaction_receipt(sent.mined_hash or sent.tx_hash)
            before = (receipt["blockNumber"], receipt["transactionIndex"])
        last = before[0] if before else w3.eth.block_number
        return authorization_pushed(w3, token=record.token, payer=record.payer, nonce=record.nonce,
                                    market=record.market, amount=int(record.amount),
                                    first=max(0, last - PUSH_LOOKBACK_BLOCKS), last=last, before=before)
    except Exception:
        logger.warning("x402 payment %s: the token's AuthorizationUsed logs could not be read", record.pk,
                       exc_info=True)
        return False


def _poll_seconds(started: float) -> float:
    return POLL_SLOWER[1] if time.monotonic() - started >= POLL_SLOWER[0] else POLL_SECONDS


def _look(record: X402Payment) -> X402Payment:
    """The row as the chain and its action say now: settled from the action (confirmed) or from
    its mined receipt, failed with the action."""
    record.refresh_from_db()
    if record.ledger_pending:
        _repair(record.pk)
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
    """Move the row to settled or failed, once, and the agent key's reservation with it (spent,
    or released)."""
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
        if status == Status.SETTLED and record.order_id is None:  # its OrderCreated not stored: never seen
            logger.warning("x402 payment %s settled in %s without an order id", pk, record.tx_hash)
        _move_ledger(record)


def _timed_out(record: X402Payment) -> None:
    with transaction.atomic():
        record = X402Payment.objects.select_for_update().get(pk=record.pk)
        if record.status != Status.SETTLING:
            return
        record.status = Status.TIMED_OUT
        record.save(update_fields=["status", "updated_at"])
        _move_ledger(record)


def _move_ledger(record: X402Payment) -> None:
    """Move the payer's agent key ledger as the row says now (spent once settled, released once
    refused or failed, held once timed out; nothing for a payer without a key), in a savepoint.
    It never raises: it runs in the operator sender's settlement transaction (through `on_done`),
    and a ledger that fails there must neither undo the settlement nor stop the sender's other
    work. A failure is logged with the payment and flags the row `ledger_pending`, which
    `repair_ledgers` (beat, and a retry's look at the row) moves later."""
    ref = budget_ref(record)
    try:
        with transaction.atomic():
            if record.status == Status.SETTLED:
                agent_keys.spend(ref, chain_id=record.chain_id, tx_hash=record.tx_hash,
                                 order_id=None if record.order_id is None else int(record.order_id))
            elif record.status in (Status.FAILED, Status.REFUSED):
                agent_keys.release(ref)
            elif record.status == Status.TIMED_OUT:
                agent_keys.hold(ref)
        pending = False
    except Exception:
        logger.exception("x402 payment %s (%s): its agent key's ledger could not be moved; it is moved later",
                         record.pk, record.status)
        pending = True
    if record.ledger_pending != pending:
        X402Payment.objects.filter(pk=record.pk).update(ledger_pending=pending)
        record.ledger_pending = pending


def repair_ledgers(*, limit: int = 500) -> int:
    """What a failure left behind, moved again: the agent key ledgers of rows flagged
    `ledger_pending`, and the rows still settling or timed out whose operator action is resolved
    (an `on_done` that failed in the sender). Idempotent; returns the rows whose ledger it moved."""
    moved = 0
    for pk in X402Payment.objects.filter(ledger_pending=True).order_by("pk").values_list("pk", flat=True)[:limit]:
        moved += _repair(pk)
    resolved = (ActionStatus.CONFIRMED, ActionStatus.FAILED, ActionStatus.CANCELLED)
    for action in OperatorAction.objects.filter(
            status__in=resolved, pk__in=X402Payment.objects.filter(
                status__in=(Status.SETTLING, Status.TIMED_OUT), action__isnull=False).values("action_id"))[:limit]:
        on_done(action)
    return moved


def _repair(pk: int) -> bool:
    with transaction.atomic():
        record = X402Payment.objects.select_for_update().get(pk=pk)
        if not record.ledger_pending:
            return False
        _move_ledger(record)
        return not record.ledger_pending


def order_access(record: X402Payment):
    """Whether the settled payment still gives its payer the file: a callable a running stream
    asks again, once the order its settlement made is indexed (on the market deployed now) and not
    refunded in full, or, before the indexer has read the settlement's block (served from its
    receipt), unless a refund was indexed meanwhile. Raises PaymentRefused: 403 `not_bought`
    (refunded in full), 410 `order_gone` (the chain was reset or the market deployed afresh, or
    the indexer read past the block and holds no such order: a reorganisation dropped it)."""
    if record.market != deployed_address(record.chain_id, "DataMarket"):
        raise PaymentRefused("order_gone", "This payment was settled on a market that is no longer this server's "
                             "(it was deployed afresh): nothing is served for it. Ask for the resource again and "
                             "sign a new authorization.", status=410)
    # The cursor is read before the orders: the indexer moves it in the transaction that writes
    # the block's orders, so an order is seen whenever the cursor read was past its block (read
    # the other way round, an order committed between the two reads looked dropped: a 410 seen
    # under load in bench/x402_pay.py).
    indexed = IndexerCursor.objects.filter(chain_id=record.chain_id).values_list("block_number", flat=True).first()
    orders = Order.objects.filter(chain_id=record.chain_id, market=record.market, tx_hash=record.tx_hash,
                                  buyer=record.payer, listing_id=record.listing_id)
    status = orders.values_list("status", flat=True).first()
    if status == Order.Status.REFUNDED:
        raise PaymentRefused("not_bought", "The order this payment made was refunded in full: it no longer gives "
                             "access.", status=403)
    if status is not None:
        return orders.exclude(status=Order.Status.REFUNDED).exists
    if record.error_code == CHAIN_RESET or (indexed is not None and record.block_number is not None
                                            and indexed >= record.block_number):
        raise PaymentRefused("order_gone", "The order this payment made is no longer on the chain (the chain was "
                             "reset, or a reorganisation dropped its transaction): nothing is served for it. Ask for "
                             "the resource again and sign a new authorization.", status=410)
    return lambda: not orders.filter(status=Order.Status.REFUNDED).exists()


def on_chain_reset(sender, chain_id, **kwargs) -> None:
    """chain/ forgets a chain (chain.signals.chain_reset, inside its transaction): its orders are
    deleted, so its settled payments are marked and never served again (`order_access`), and its
    unresolved ones failed, their agent keys' reservations released (what the old chain did is gone
    with it)."""
    X402Payment.objects.filter(chain_id=chain_id, status=Status.SETTLED).update(
        error_code=CHAIN_RESET, error="The chain was reset: the order this payment made went with it.",
        updated_at=timezone.now())
    for pk in X402Payment.objects.filter(chain_id=chain_id, status__in=(Status.SETTLING, Status.TIMED_OUT)) \
            .values_list("pk", flat=True):
        _finish(pk, Status.FAILED, error="the chain was reset")

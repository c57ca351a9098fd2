"""The single operator sender: the only code that sends moderator transactions with the operator key.

Apps queue `OperatorAction` rows in the transaction that decides (see `chain.models`); beat runs
`send_operator_actions` every few seconds and the deciding code also enqueues it at once through the
outbox. A run:

1. takes a PostgreSQL session advisory lock, so that exactly one sender works at a time whichever
   worker or host runs it (a second run returns at once; the lock goes with its connection if a
   worker dies);
2. settles rows left `sent` by an earlier run from their receipts (a transaction the node has
   never heard of is queued again: `setApproval` is idempotent, so sending twice is harmless);
3. cancels older pending rows for a listing that has a newer one (approve then reject: only the
   reject is sent);
4. per kind, checks each pending listing on-chain (`getListing`): a listing whose owner or content
   hash is not what was reviewed, or that does not exist, fails with the reason and is not sent;
   the rest go out in ONE `setApproval(ids, flag)` signed with the operator key, whose hash is
   recorded (`sent`) before it is broadcast;
5. waits for the receipt (bounded) and marks each row confirmed only when the receipt carries its
   `ListingApprovalSet` event, calling the queuing app's `on_done` in the same database
   transaction. A receipt that has not arrived in time is picked up by the next run.

No request ever waits on any of this.
"""
from contextlib import contextmanager
from dataclasses import dataclass, field
import logging

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from eth_utils import is_address, to_checksum_address
from web3.exceptions import (
    ContractLogicError, MismatchedABI, TimeExhausted, TransactionNotFound, Web3RPCError,
)

from .client import operator_account, operator_web3
from .models import OperatorAction
from .services import market as deployed_market

logger = logging.getLogger(__name__)

LOCK_NAME = "chain.operator_sender"
BATCH_SIZE = 200  # listing ids per setApproval transaction
MAX_ATTEMPTS = 5  # broadcasts the node refused before a row is given up
ZERO_ADDRESS = "0x" + "00" * 20

Kind = OperatorAction.Kind
Status = OperatorAction.Status


def receipt_timeout() -> float:
    return float(getattr(settings, "OPERATOR_RECEIPT_TIMEOUT", 30))


@dataclass
class SendReport:
    skipped: str = ""
    transactions: list = field(default_factory=list)  # hashes broadcast by this run
    confirmed: int = 0
    failed: int = 0
    waiting: int = 0  # rows whose receipt had not arrived when the run ended


@contextmanager
def sender_lock():
    """Yield whether this connection got the sender's advisory lock (never waits for it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [LOCK_NAME])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [LOCK_NAME])


def send_operator_actions(*, timeout: float | None = None) -> SendReport:
    """Send what is pending; see the module's docstring. Safe to run at any time, any number of
    times, from any number of processes."""
    report = SendReport()
    if not OperatorAction.objects.filter(status__in=OperatorAction.OPEN).exists():
        report.skipped = "nothing to send"
        return report  # beat's idle runs never touch the chain
    timeout = receipt_timeout() if timeout is None else timeout
    with sender_lock() as acquired:
        if not acquired:
            report.skipped = "another sender is running"
            return report
        w3 = operator_web3()
        chain_id = w3.eth.chain_id
        market = deployed_market(w3)
        if not _settle_sent(w3, market, chain_id, report, timeout):
            return report  # an earlier transaction is still pending: keep the order of sends
        _supersede(chain_id)
        for kind in (Kind.APPROVE, Kind.UNAPPROVE):
            while True:
                batch = _prepare_batch(w3, market, chain_id, kind, report)
                if batch is None:
                    break
                actions, signed = batch
                if signed is None:
                    continue  # every row of that batch failed its checks; look at the next ones
                if not _broadcast_and_settle(w3, market, actions, signed, report, timeout):
                    return report
    return report


def _finish(action: OperatorAction, status: str, *, error: str = "", block_number=None, log_index=None) -> None:
    action.status = status
    action.error = error[:2000]
    if block_number is not None:
        action.block_number = block_number
    action.log_index = log_index
    action.save(update_fields=["status", "error", "block_number", "log_index", "updated_at"])
    if action.on_done and status in (Status.CONFIRMED, Status.FAILED):
        import_string(action.on_done)(action)


def _supersede(chain_id: int) -> None:
    """Keep only the newest pending row per listing: an approval followed by a rejection sends
    only the rejection."""
    with transaction.atomic():
        newest = {}
        pending = (OperatorAction.objects.select_for_update(skip_locked=True)
                   .filter(status=Status.PENDING, chain_id=chain_id).order_by("-id"))
        for action in pending:
            key = int(action.listing_id)
            if key in newest:
                _finish(action, Status.CANCELLED, error=f"superseded by operator action #{newest[key]}")
            else:
                newest[key] = action.pk


def mismatch(market, action: OperatorAction) -> str:
    """Why the listing on-chain is not the one that was reviewed ("" when it is)."""
    if not is_address(action.market) or to_checksum_address(action.market) != market.address:
        return (f"the DataMarket is now at {market.address}, not at {action.market} where listing "
                f"{action.listing_id} was reviewed")
    onchain = market.get_listing(int(action.listing_id))
    if onchain["owner"] == ZERO_ADDRESS:
        return f"listing {action.listing_id} does not exist on-chain"
    if onchain["owner"] != to_checksum_address(action.expected_owner):
        return (f"listing {action.listing_id} is owned on-chain by {onchain['owner']}, not by the reviewed "
                f"owner {to_checksum_address(action.expected_owner)}")
    content_hash = "0x" + bytes(onchain["content_hash"]).hex()
    if content_hash != action.expected_content_hash.lower():
        return (f"listing {action.listing_id} has content hash {content_hash} on-chain, not the reviewed "
                f"version's {action.expected_content_hash.lower()}")
    return ""


def _prepare_batch(w3, market, chain_id, kind, report):
    """Check up to BATCH_SIZE pending rows of `kind`, sign one setApproval for those that pass and
    record them as sent with its hash. Returns None when nothing is pending, (rows, None) when
    all of them failed, else (rows, signed transaction)."""
    operator = operator_account()
    with transaction.atomic():
        actions = list(OperatorAction.objects.select_for_update(skip_locked=True)
                       .filter(status=Status.PENDING, chain_id=chain_id, kind=kind).order_by("id")[:BATCH_SIZE])
        if not actions:
            return None
        ready = []
        for action in actions:
            reason = mismatch(market, action)
            if reason:
                logger.warning("operator action #%s not sent: %s", action.pk, reason)
                _finish(action, Status.FAILED, error=reason)
                report.failed += 1
            else:
                ready.append(action)
        if not ready:
            return [], None
        ids = sorted({int(action.listing_id) for action in ready})
        call = market.contract.functions.setApproval(ids, kind == Kind.APPROVE)
        try:
            tx = call.build_transaction({
                "from": operator.address,
                "nonce": w3.eth.get_transaction_count(operator.address, "pending"),
                "chainId": chain_id,
            })
        except ContractLogicError as exc:  # e.g. the operator lost MODERATOR_ROLE
            for action in ready:
                _finish(action, Status.FAILED, error=f"setApproval would revert: {exc}")
                report.failed += 1
            return [], None
        signed = operator.sign_transaction(tx)
        tx_hash = "0x" + bytes(signed.hash).hex()
        for action in ready:
            action.status = Status.SENT
            action.tx_hash = tx_hash
            action.attempts += 1
            action.error = ""
            action.save(update_fields=["status", "tx_hash", "attempts", "error", "updated_at"])
    return ready, signed


def _broadcast_and_settle(w3, market, actions, signed, report, timeout) -> bool:
    tx_hash = "0x" + bytes(signed.hash).hex()
    try:
        w3.eth.send_raw_transaction(signed.raw_transaction)
    except (ValueError, Web3RPCError) as exc:  # the node refused it (nonce, funds, ...)
        if "already known" not in str(exc):
            _requeue(tx_hash, f"the node refused transaction {tx_hash}: {exc}")
            return False
    except Exception:
        # A network error: the node may or may not have it. The row stays `sent`; the next run
        # finds the transaction or queues the row again.
        logger.warning("broadcasting %s failed; the next run checks it", tx_hash, exc_info=True)
        report.waiting += len(actions)
        return False
    report.transactions.append(tx_hash)
    try:
        receipt = w3.eth.wait_for_transaction_receipt(signed.hash, timeout=timeout, poll_latency=0.2)
    except TimeExhausted:
        report.waiting += len(actions)
        return False
    _settle(market, tx_hash, receipt, report)
    return True


def _requeue(tx_hash: str, reason: str) -> None:
    with transaction.atomic():
        for action in OperatorAction.objects.select_for_update().filter(tx_hash=tx_hash, status=Status.SENT):
            if action.attempts >= MAX_ATTEMPTS:
                _finish(action, Status.FAILED, error=reason)
            else:
                action.status = Status.PENDING
                action.error = reason[:2000]
                action.save(update_fields=["status", "error", "updated_at"])


def _settle_sent(w3, market, chain_id, report, timeout) -> bool:
    """Settle rows an earlier run left `sent`; False while one of their transactions is pending."""
    hashes = sorted(set(OperatorAction.objects.filter(status=Status.SENT, chain_id=chain_id)
                        .values_list("tx_hash", flat=True)))
    for tx_hash in hashes:
        try:
            receipt = w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            try:
                w3.eth.get_transaction(tx_hash)
            except TransactionNotFound:
                _requeue(tx_hash, f"transaction {tx_hash} never reached the chain; sending again")
                continue
            try:
                receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=0.2)
            except TimeExhausted:
                report.waiting += OperatorAction.objects.filter(tx_hash=tx_hash, status=Status.SENT).count()
                return False
        _settle(market, tx_hash, receipt, report)
    return True


def approval_events(market, receipt) -> dict[int, tuple[bool, int]]:
    """listing id -> (approved flag, log index), from the market's ListingApprovalSet logs in a
    receipt (the last one for a listing that appears twice)."""
    event = market.contract.events.ListingApprovalSet()
    seen = {}
    for log in receipt["logs"]:
        if to_checksum_address(log["address"]) != market.address:
            continue
        try:
            args = event.process_log(log)["args"]
        except MismatchedABI:
            continue
        seen[args["listingId"]] = (args["approved"], log["logIndex"])
    return seen


def _settle(market, tx_hash, receipt, report) -> None:
    """From the receipt only: confirmed rows are those whose event the receipt carries."""
    block = receipt["blockNumber"]
    with transaction.atomic():
        actions = list(OperatorAction.objects.select_for_update().filter(tx_hash=tx_hash, status=Status.SENT))
        if receipt["status"] != 1:
            for action in actions:
                _finish(action, Status.FAILED, error=f"transaction {tx_hash} reverted", block_number=block)
                report.failed += 1
            return
        seen = approval_events(market, receipt)
        for action in actions:
            approved, log_index = seen.get(int(action.listing_id), (None, None))
            if approved == (action.kind == Kind.APPROVE):
                _finish(action, Status.CONFIRMED, block_number=block, log_index=log_index)
                report.confirmed += 1
            else:
                _finish(action, Status.FAILED, block_number=block,
                        error=f"the receipt of {tx_hash} has no ListingApprovalSet for listing {action.listing_id}")
                report.failed += 1
    logger.info("operator transaction %s settled in block %s (%d row(s)) at %s", tx_hash, block,
                len(actions), timezone.now().isoformat())

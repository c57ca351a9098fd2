"""The single operator sender: the only code that sends transactions with the operator key.

Apps queue `OperatorAction` rows in the transaction that decides (see `chain.models`): a
moderator's approval, the keeper's matured orders, a buyer's relayed confirmation, an arbiter's
resolution. Beat runs `send_operator_actions` every few seconds and whoever queues also enqueues
it at once through the outbox. A run takes a PostgreSQL session advisory lock, so exactly one
sender works at a time whichever worker or host runs it, and then:

1. **Follows the transactions it has sent** (`OperatorTransaction`, one per nonce):
   - a receipt for any hash signed for the nonce: mined; the row is settled once the chain
     indexer has read past its block (so after `CHAIN_CONFIRMATIONS`) and the block is still
     the chain's: each action is confirmed when the indexer stored its event (for example the
     `ListingApprovalSet` of its listing) in that transaction, else failed with the reason;
   - the node has lost it: the same signed bytes are broadcast again;
   - it is the nonce the chain waits for and has waited `OPERATOR_REPLACE_AFTER` seconds (or
     the node refused it): it is replaced at the same nonce with fees raised by at least 1/4,
     never above `OPERATOR_MAX_FEE_PER_GAS`;
   - the key's nonce is used, in a block with the confirmations, by none of the hashes signed
     for it: nothing of it can be mined any more, so its actions are queued again (at most
     `MAX_ATTEMPTS` times);
   - the chain counts fewer of the key's transactions than were settled here (a node restarted
     from older state): a settled one it lost is broadcast again byte for byte.
   An action is therefore never signed at a second nonce while the first may still be mined.
2. **Cancels superseded approvals**: an approval or clearing is sent only if no newer decision
   about its listing is pending, sent or confirmed.
3. **Sends what is pending**, kind by kind (`KINDS`: relayed buyer actions first, whose
   signatures have deadlines, then x402 settlements, since a request waits on them, at most
   `PURCHASES_PER_PASS` a pass, then the rest), each to its
   kind's contract (the market, or the reward distributor for `propose_root` and `revoke_root`,
   whose pending root must be the action's epoch and root): each row is
   checked (an approval's listing must still have the reviewed owner and content hash, and the
   app that queued it must still want it: settings.CHAIN_APPROVAL_CHECK, the catalog's check that
   the listing's version is still approved; a single
   call is simulated with `eth_call`; an x402 settlement's listing must still cost exactly what
   the payer authorized; arbiter kinds need the operator to hold ARBITER_ROLE; the
   gas, estimated at the fees it will pay, must be under the kind's ceiling; a reward root needs
   a greater epoch than the distributor's last and a balance that covers the new total less what
   was claimed: while it does not, the row stays pending with the reason, not failed), rows of a
   kind
   that batches go out in one call (`setApproval(ids, flag)`, `release(ids)`,
   `returnSurplusBatch(items)`, each item checked against the surplus left and the references
   already answered, since one failing item reverts the whole batch), and the signed
   transaction is recorded with its nonce before it is broadcast. The next nonce is the chain's
   pending count or one above the highest nonce still open here, whichever is higher.
4. Waits (bounded) for the receipts of what it sent, has the indexer read through them when the
   confirmations allow, and settles them as in 1.

After it releases the lock it looks at the queue again, so work queued while it held the lock is
never left for a run that found the lock taken and returned. No request ever waits on any of this
but one: an x402 payment (`marketplace.payments.settlement`) waits, with a limit, for its
`purchase_with_auth` action, and runs this sender itself while it waits.
"""
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
import logging
import time

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.module_loading import import_string
from eth_utils import is_address, to_checksum_address
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound, Web3RPCError

from . import indexer, reverts
from .client import operator_account, operator_web3, read_web3
from .contracts import DataMarket, surplus_reference
from .events import TRANSFER_TOPIC
from .models import ChainEvent, IndexerCursor, OperatorAction, OperatorTransaction
from .services import market as deployed_market, reward_distributor

logger = logging.getLogger(__name__)

LOCK_NAME = "chain.operator_sender"
BATCH_SIZE = 200  # ids per batched call
MAX_ATTEMPTS = 5  # nonces an action may be signed at (a nonce is only given up when the chain used it)
MAX_PASSES = 3  # runs under the lock when work keeps arriving while it is held
FEES_SECONDS = 2  # how long a run keeps the fees it read for its transactions
ZERO_ADDRESS = "0x" + "00" * 20

Kind = OperatorAction.Kind
Status = OperatorAction.Status
TxStatus = OperatorTransaction.Status


@dataclass(frozen=True)
class KindSpec:
    function: str
    events: tuple  # the events (of the kind's contract) that settle an action of this kind
    gas: int  # the most gas one transaction of this kind may use ...
    gas_per_item: int = 0  # ... plus this much per action, for a kind that batches
    batch: bool = False  # many actions in one call
    arbiter: bool = False  # needs ARBITER_ROLE
    contract: str = "DataMarket"  # the contract it calls

    def gas_limit(self, items: int) -> int:
        return self.gas + self.gas_per_item * items


# The gas ceilings are several times what each call uses with USDC-like tokens (a confirmation
# 70k, a release 60k an order, an approval 25k a listing): a buyer's contract wallet or anything
# else that makes a call cost more is refused before it is signed, and a transaction can never
# burn more than its ceiling.
KINDS = {
    # A buyer's relayed confirmation or dispute: its signature has a deadline (and a dispute the
    # order's window), and a buyer relays a few at most (LIMITS["relay"]), so they go first.
    Kind.CONFIRM_BY_SIG: KindSpec("confirmBySig", ("OrderReleased",), gas=300_000),
    Kind.DISPUTE_BY_SIG: KindSpec("disputeBySig", ("OrderDisputed",), gas=200_000),
    # An agent's x402 payment: its request waits for this transaction (the only request that waits
    # on the chain), so it goes before keeper batches and everything else, at most
    # PURCHASES_PER_PASS a pass (a flood of payments cannot starve the other kinds). A USDC-like
    # token's authorization and the order's record take about 150k; an EIP-1271 payer's check
    # adds its own.
    Kind.PURCHASE_WITH_AUTHORIZATION: KindSpec("purchaseWithAuthorization", ("OrderCreated",), gas=400_000),
    Kind.RESOLVE: KindSpec("resolve", ("DisputeResolved",), gas=300_000, arbiter=True),
    Kind.APPROVE: KindSpec("setApproval", ("ListingApprovalSet",), gas=60_000, gas_per_item=40_000, batch=True),
    Kind.UNAPPROVE: KindSpec("setApproval", ("ListingApprovalSet",), gas=60_000, gas_per_item=40_000,
                             batch=True),
    Kind.EXPIRE_DISPUTE: KindSpec("settleExpiredDispute", ("DisputeExpired",), gas=300_000),
    Kind.RELEASE: KindSpec("release", ("OrderReleased",), gas=60_000, gas_per_item=200_000, batch=True),
    Kind.RETURN_SURPLUS: KindSpec("returnSurplusBatch", ("SurplusReturned",), gas=60_000, gas_per_item=150_000,
                                  batch=True, arbiter=True),
    # A revoked root whose RootRevoked a deep reorganisation took (rewards.epochs.revoke_again):
    # sent before a new root, which would otherwise replace it.
    Kind.REVOKE_ROOT: KindSpec("revokePendingRoot", ("RootRevoked",), gas=100_000,
                               contract="RewardDistributor"),
    Kind.PROPOSE_ROOT: KindSpec("proposeRoot", ("RootProposed",), gas=300_000,
                                contract="RewardDistributor"),
    Kind.CREATE_LISTING: KindSpec("createListing", ("ListingCreated",), gas=300_000),
}
RELEASE_BATCH = 100  # orders per release(ids): 20M gas at most, under a block's 30M
PURCHASES_PER_PASS = 20  # x402 settlements one pass sends before it moves on to the other kinds


def receipt_timeout() -> float:
    return float(getattr(settings, "OPERATOR_RECEIPT_TIMEOUT", 30))


def replace_after() -> float:
    return float(getattr(settings, "OPERATOR_REPLACE_AFTER", 120))


def max_fee_cap() -> int:
    """The most the sender bids per unit of gas, replacements included (wei)."""
    return int(getattr(settings, "OPERATOR_MAX_FEE_PER_GAS", 1_000 * 10**9))


class Wait(str):
    """A reason not to send an action yet that is not a failure (the distributor is not funded):
    the row stays pending with it, and a later run checks again."""


class Contracts(dict):
    """The deployed contracts the sender calls, by name, looked up when first needed (a chain
    without a distributor still sends the market's actions), and the fees of the run's
    transactions (`fees`)."""

    def __init__(self, w3, market):
        super().__init__(DataMarket=market)
        self.w3 = w3
        self._fees = None

    def fees(self) -> tuple[int, int]:
        """`fees(w3)`, read again when older than FEES_SECONDS: a run that sends many
        transactions asks the node for the latest block and the tip once, not for each (twice
        the base fee covers several full blocks of increases)."""
        now = time.monotonic()
        if self._fees is None or now - self._fees[0] > FEES_SECONDS:
            self._fees = (now, fees(self.w3))
        return self._fees[1]

    def __missing__(self, name):
        if name != "RewardDistributor":
            raise KeyError(name)
        self[name] = reward_distributor(self.w3)
        return self[name]


class SenderStopped(Exception):
    """The run must end now (its lock was lost, or the chain and this database disagree about a
    nonce); the next run starts over."""


@dataclass
class SendReport:
    skipped: str = ""
    transactions: list = field(default_factory=list)  # hashes of transactions signed by this run
    confirmed: int = 0
    failed: int = 0
    waiting: int = 0  # actions whose transaction was not settled when the run ended
    rebroadcast: int = 0
    replaced: int = 0
    dropped: int = 0
    left: bool = False  # work queued while the lock was held was left for the next run (`passes`)


_holder = {"pid": None}  # the database session that holds the lock, while this process does


@contextmanager
def sender_lock():
    """Yield whether this connection got the sender's advisory lock (never waits for it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s)), pg_backend_pid()", [LOCK_NAME])
        acquired, pid = cursor.fetchone()
    if acquired:
        _holder["pid"] = pid
    try:
        yield acquired
    finally:
        if acquired:
            _holder["pid"] = None
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [LOCK_NAME])
            except DatabaseError:
                pass  # the session is gone, and its lock with it


def _check_lock() -> None:
    """Before anything is broadcast: this process's database session still holds the lock (a
    session that dropped took the lock with it, and another sender may be running)."""
    current = connection.connection.info.backend_pid if connection.connection else None
    if _holder["pid"] is None or current != _holder["pid"]:
        raise SenderStopped("the database session that held the sender's lock is gone")


def has_work() -> bool:
    return (OperatorAction.objects.filter(status__in=OperatorAction.OPEN).exists()
            or OperatorTransaction.objects.filter(status__in=OperatorTransaction.OPEN).exists())


def send_operator_actions(*, timeout: float | None = None, passes: int = MAX_PASSES) -> SendReport:
    """Follow, send and settle; see the module's docstring. Safe to run at any time, any number
    of times, from any number of processes. `passes` bounds the runs under the lock when work
    keeps arriving while it is held: a paid download's request runs one (its client waits on it;
    what others queued meanwhile is theirs to send), and the report's `left` then says that work
    was left, for the caller to hand to a worker."""
    report = SendReport()
    if not has_work():
        report.skipped = "nothing to send"
        return report  # beat's idle runs never touch the chain
    timeout = receipt_timeout() if timeout is None else timeout
    for done in range(1, passes + 1):
        with sender_lock() as acquired:
            if not acquired:
                if done == 1:
                    report.skipped = "another sender is running"
                return report  # the holder looks at the queue again after releasing the lock
            try:
                seen = _run(report, timeout)
            except SenderStopped as exc:
                logger.error("operator sender stopped: %s", exc)
                report.skipped = str(exc)
                return report
        if not OperatorAction.objects.filter(status=Status.PENDING, id__gt=seen).exists():
            break
        report.left = done == passes
    return report


def _run(report: SendReport, timeout: float) -> int:
    """One pass under the lock; returns the highest action id it looked at."""
    w3 = operator_web3()
    chain_id = w3.eth.chain_id
    market = deployed_market(w3)
    contracts = Contracts(w3, market)
    operator = operator_account()
    seen = OperatorAction.objects.filter(chain_id=chain_id).aggregate(top=Max("id"))["top"] or 0
    sent = _follow(w3, market, chain_id, operator, report)  # what it broadcast again
    _supersede(chain_id)
    # Only the kinds with pending rows are looked at (one query, not a transaction per kind);
    # a kind queued from now on is the next pass's.
    pending = set(OperatorAction.objects.filter(chain_id=chain_id, status=Status.PENDING)
                  .order_by().values_list("kind", flat=True).distinct())
    stop = False
    for kind in (kind for kind in KINDS if kind in pending):
        signed = 0
        while not stop and not (kind == Kind.PURCHASE_WITH_AUTHORIZATION and signed >= PURCHASES_PER_PASS):
            signed += 1
            tx = _prepare_batch(w3, contracts, chain_id, operator, kind, report)
            if tx is None:
                break
            if tx is False:
                continue  # every row of that batch failed its checks; look at the next ones
            report.transactions.append(tx.tx_hash)
            if _broadcast(w3, tx, report):
                sent.append(tx)
            else:
                stop = True  # the node refused it or is unreachable: the next run sends it again
        if stop:
            break
    if sent:
        _await(w3, sent, timeout)
        _follow(w3, market, chain_id, operator, report)
    report.waiting = OperatorAction.objects.filter(chain_id=chain_id, status=Status.SENT).count()
    return seen


# ---------------------------------------------------------------------------------------------
# Sending


def _call(market, kind: str, actions: list[OperatorAction]):
    """The contract call that does `actions` (all of `kind`; one unless the kind batches) on
    `market`, the kind's contract (KindSpec.contract)."""
    functions = market.contract.functions
    if kind == Kind.PURCHASE_WITH_AUTHORIZATION:
        (action,) = actions
        return functions.purchaseWithAuthorization(int(action.listing_id), authorization(action.payload))
    if kind == Kind.PROPOSE_ROOT:
        (action,) = actions
        payload = action.payload
        return functions.proposeRoot(int(payload["epoch"]), bytes.fromhex(payload["root"][2:]),
                                     int(payload["total"]))
    if kind == Kind.REVOKE_ROOT:
        return functions.revokePendingRoot()
    if kind == Kind.CREATE_LISTING:
        (action,) = actions
        payload = action.payload
        return functions.createListing(to_checksum_address(payload["token"]), int(payload["price"]),
                                       to_checksum_address(payload["payout"]),
                                       bytes.fromhex(payload["content_hash"][2:]), int(payload["dispute_window"]))
    if kind in (Kind.APPROVE, Kind.UNAPPROVE):
        return functions.setApproval(sorted({int(a.listing_id) for a in actions}), kind == Kind.APPROVE)
    if kind == Kind.RELEASE:
        return functions.release(sorted({int(a.order_id) for a in actions}))
    if kind == Kind.RETURN_SURPLUS:
        return functions.returnSurplusBatch([
            (to_checksum_address(a.payload["token"]), to_checksum_address(a.payload["to"]), int(a.payload["amount"]),
             bytes.fromhex(a.payload["ref"][2:])) for a in actions])
    (action,) = actions
    payload = action.payload
    if kind == Kind.EXPIRE_DISPUTE:
        return functions.settleExpiredDispute(int(action.order_id))
    if kind == Kind.RESOLVE:
        return functions.resolve(int(action.order_id), int(payload["refund_bps"]))
    if kind in (Kind.CONFIRM_BY_SIG, Kind.DISPUTE_BY_SIG):
        function = functions.confirmBySig if kind == Kind.CONFIRM_BY_SIG else functions.disputeBySig
        return function(int(action.order_id), bytes.fromhex(payload["nonce"][2:]), int(payload["deadline"]),
                        bytes.fromhex(payload["signature"][2:]))
    raise ValueError(f"unknown operator action kind {kind!r}")


def calldata(call) -> str:
    """The call's data, encoded once: the simulation, the gas estimate and the transaction use
    these bytes (web3's own `call`, `estimate_gas` and `build_transaction` each encode again,
    looking the function up in the whole ABI every time: most of a settlement's CPU here)."""
    return call._encode_transaction_data()


def authorization(payload: dict) -> tuple:
    """The market's `Authorization` struct from a `purchase_with_auth` action's payload: the
    payer's EIP-3009 TransferWithAuthorization fields (integers as decimal strings, bytes 0x-hex)."""
    return (to_checksum_address(payload["from"]), int(payload["value"]), int(payload["valid_after"]),
            int(payload["valid_before"]), bytes.fromhex(payload["nonce"][2:]),
            bytes.fromhex(payload["signature"][2:]))


def purchase_precheck(market, action: OperatorAction, listing: dict | None = None) -> str:
    """Why an x402 settlement must not be sent: the listing's price (read now, or as `listing`
    was just read) is no longer what the payer authorized (repriced since the request was
    verified). The simulation that follows catches the rest (not for sale, a used nonce, a payer
    who holds a live order)."""
    listing = listing if listing is not None else market.get_listing(int(action.listing_id))
    value = int(action.payload["value"])
    if listing["price"] != value:
        return (f"the price of listing {action.listing_id} is {listing['price']} base units now, not the "
                f"{value} the payer authorized")
    return ""


def mismatch(market, action: OperatorAction) -> str:
    """Why the listing on-chain is not the one that was reviewed ("" when it is)."""
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


def _check(market, operator, action: OperatorAction, spec: KindSpec, roles: dict, read: dict | None = None) -> str:
    """Why `action` must not be sent ("" when it may; a `Wait` when it may later). `market` is the
    kind's contract; `read`, an x402 settlement's reads made at once (`_purchase_reads`)."""
    if not is_address(action.market) or to_checksum_address(action.market) != market.address:
        return (f"the {spec.contract} is now at {market.address}, not at {action.market} where "
                "this action was decided")
    if action.kind == Kind.PURCHASE_WITH_AUTHORIZATION:
        if getattr(settings, "CHAIN_PURCHASE_CHECK", ""):
            reason = import_string(settings.CHAIN_PURCHASE_CHECK)(action)  # e.g. its agent key was revoked
            if reason:
                return reason
        reason = purchase_precheck(market, action, read and read["listing"])
        if reason:
            return reason
    if action.kind == Kind.PROPOSE_ROOT:
        reason = root_precheck(market, action.payload)
        if reason:
            return reason
    if action.kind == Kind.REVOKE_ROOT:
        reason = revoke_precheck(market, action.payload)
        if reason:
            return reason
    if spec.arbiter:
        if "arbiter" not in roles:
            roles["arbiter"] = market.has_role("ARBITER_ROLE", operator.address)
        if not roles["arbiter"]:
            return (f"the operator key {operator.address} does not hold ARBITER_ROLE: the arbiter's wallet "
                    "has to send this")
    if action.kind == Kind.APPROVE and getattr(settings, "CHAIN_APPROVAL_CHECK", ""):
        reason = import_string(settings.CHAIN_APPROVAL_CHECK)(action)  # e.g. its version was rejected since
        if reason:
            return reason
    if action.kind in (Kind.APPROVE, Kind.UNAPPROVE):
        return mismatch(market, action)
    if action.kind == Kind.RETURN_SURPLUS:
        return stray_missing(market.w3, market.address, action) or surplus_precheck(market, action.payload, roles)
    if not spec.batch and read is None:  # `read` holds the same eth_call's answer: it did not revert
        try:
            market.w3.eth.call({"from": operator.address, "to": market.address,
                                "data": calldata(_call(market, action.kind, [action]))})
        except ContractLogicError as exc:
            return f"{spec.function} would revert: {reverts.describe(exc, market.contract.abi)}"
    return ""


def surplus_precheck(market, payload: dict, batch: dict) -> str:
    """Why a surplus return must not join this batch (`returnSurplusBatch` reverts as a whole if
    one item fails): its stray transfer was answered already, on-chain or earlier in the batch, or
    the token's surplus left by the returns before it in the batch is less than its amount.
    `batch` is the batch's scratch (surplus left per token, references taken)."""
    ref, token, amount = payload["ref"].lower(), to_checksum_address(payload["token"]), int(payload["amount"])
    taken = batch.setdefault("refs", set())
    if ref in taken or market.surplus_returned(bytes.fromhex(ref[2:])):
        return f"the stray transfer {ref} was answered already: nothing is returned twice"
    left = batch.setdefault("surplus", {})
    if token not in left:
        left[token] = market.surplus(token)
    if amount > left[token]:
        return (f"the market's surplus of {token} is {left[token]}, less than the {amount} to return (the stray "
                "transfer may have left the chain)")
    left[token] -= amount
    taken.add(ref)
    return ""


def stray_missing(w3, market: str, action: OperatorAction) -> str:
    """Why the stray transfer that the return `action` answers is not on the chain now, with
    `CHAIN_CONFIRMATIONS` ('' when it is): its transaction's receipt, read from the node (not from
    the indexer, which may not have seen a reorganisation yet), must carry a `Transfer` of the
    payload's token and amount from its payer into the market at the position its reference names.
    A return is paid out of the market's surplus, which is other people's money when the transfer
    it answers left the chain."""
    payload = action.payload
    tx_hash = ((action.context or {}).get("stray") or {}).get("tx_hash")
    gone = f"the stray transfer {payload['ref']} it returns is not on the chain (a reorganisation took it)"
    try:
        receipt = w3.eth.get_transaction_receipt(tx_hash) if tx_hash else None
    except TransactionNotFound:
        receipt = None
    if receipt is None or receipt["status"] != 1:
        return gone
    if receipt["blockNumber"] > w3.eth.block_number - settings.CHAIN_CONFIRMATIONS:
        return f"the stray transfer {payload['ref']} it returns has not {settings.CHAIN_CONFIRMATIONS} confirmations"
    token, payer = to_checksum_address(payload["token"]), to_checksum_address(payload["to"])
    amount = int(payload["amount"])
    market_topic = bytes(12) + bytes.fromhex(market[2:])
    positions = Counter()
    for log in receipt["logs"]:
        topics = [bytes(t) for t in log["topics"]]
        value = int.from_bytes(bytes(log["data"]), "big") if len(bytes(log["data"])) == 32 else 0
        if len(topics) != 3 or topics[0] != TRANSFER_TOPIC or topics[2] != market_topic or value == 0:
            continue
        address = to_checksum_address(log["address"])
        position = positions[address]
        positions[address] += 1
        if (address == token and to_checksum_address(topics[1][12:]) == payer and value == amount
                and "0x" + surplus_reference(tx_hash, token, position).hex() == payload["ref"].lower()):
            return ""
    return gone


def root_precheck(distributor, payload: dict) -> str:
    """Why a root must not be proposed now: its epoch is not above the distributor's last
    proposed one (a failure), or the distributor holds less than the new total less what was
    claimed (a `Wait`: the root would promise more than can be paid; it goes once funded)."""
    epoch, total = int(payload["epoch"]), int(payload["total"])
    last = distributor.last_proposed_epoch()
    if last >= epoch:
        return (f"the distributor's last proposed epoch is {last}: epoch {epoch} can no longer be "
                "proposed")
    balance = distributor.token_balance()
    needed = total - distributor.total_claimed() - balance
    if needed > 0:
        return Wait(f"waiting for funding: {needed} more needed (the distributor holds {balance} "
                    f"of its token, the root's total is {total})")
    return ""


def revoke_precheck(distributor, payload: dict) -> str:
    """Why `revokePendingRoot` must not be sent now: the distributor's pending root is not the
    payload's epoch and root (revoked already, replaced, or matured: it is no longer pending)."""
    epoch, root = int(payload["epoch"]), payload["root"].lower()
    # revokePendingRoot revokes whatever is pending when it is mined: never while a later epoch's
    # proposal is signed and not settled (a lost one is broadcast again at its nonce, before this
    # one's), which would make that root the pending one (and replaces this one anyway). One not
    # signed yet goes after this revoke (revokes are sent first).
    later = [a.payload.get("epoch") for a in OperatorAction.objects.filter(
        kind=OperatorAction.Kind.PROPOSE_ROOT, chain_id=settings.CHAIN_ID,
        status=OperatorAction.Status.SENT).only("payload")]
    if any(isinstance(n, int) and n > epoch for n in later):
        return (f"a later epoch's root proposal is in flight: it replaces epoch {epoch}'s root, and a revoke "
                "sent now could revoke it instead")
    pending = distributor.pending_root()
    pending_root = "0x" + bytes(pending.root).hex()
    if pending.epoch != epoch or pending_root != root:
        return (f"epoch {epoch}'s root {root} is not the distributor's pending root (pending: epoch "
                f"{pending.epoch}); it can no longer be revoked")
    return ""


def _next_nonce(w3, chain_id: int, address: str, pending: int | None = None) -> int:
    """The chain's pending count (`pending`, when it was just read), or one above the highest
    nonce still open here: a nonce signed for and not yet settled is never given to other work."""
    top = (OperatorTransaction.objects.filter(chain_id=chain_id, sender=address, status__in=OperatorTransaction.OPEN)
           .aggregate(top=Max("nonce"))["top"])
    chain = pending if pending is not None else w3.eth.get_transaction_count(address, "pending")
    return chain if top is None else max(chain, top + 1)


def _purchase_reads(market, operator, action: OperatorAction, max_fee: int, priority: int) -> dict | None:
    """What sending an x402 settlement reads from the node, asked in one JSON-RPC batch (one round
    trip instead of four, each of which a busy machine makes slow): the listing (the pre-check),
    the eth_call of the call from the operator (the simulation), its gas estimate at the fees it
    will pay, and the operator's pending transaction count. Nothing is decided here: the checks
    apply to these answers as to their own reads. None when the batch fails in any way (a call
    that reverts, a node that takes no batches): the checks then read one by one, which gives the
    failure its own reason."""
    w3 = read_web3()
    reader = DataMarket.shared(w3, market.address)
    call = {"from": operator.address, "to": market.address, "data": calldata(_call(market, action.kind, [action]))}
    try:
        with w3.batch_requests() as batch:
            batch.add(reader.contract.functions.getListing(int(action.listing_id)))
            batch.add(w3.eth.call(call))
            batch.add(w3.eth.estimate_gas({**call, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority}))
            batch.add(w3.eth.get_transaction_count(operator.address, "pending"))
            listing, _, estimate, pending = batch.execute()
    except Exception:
        return None
    return {"listing": DataMarket.listing_terms(listing), "estimate": int(estimate), "pending": int(pending)}


def _prepare_batch(w3, contracts, chain_id, operator, kind, report):
    """Check up to BATCH_SIZE pending rows of `kind` (one unless it batches), sign one
    transaction for those that pass and record it, with the rows marked sent, before anything
    is broadcast. Returns None when nothing is pending, False when all of them failed, else the
    OperatorTransaction."""
    spec = KINDS[kind]
    roles = {}
    market = contracts[spec.contract]
    waited = False
    with transaction.atomic():
        size = (RELEASE_BATCH if kind == Kind.RELEASE else BATCH_SIZE) if spec.batch else 1
        actions = list(OperatorAction.objects.select_for_update(skip_locked=True)
                       .filter(status=Status.PENDING, chain_id=chain_id, kind=kind).order_by("id")[:size])
        if not actions:
            return None
        read = None
        if kind == Kind.PURCHASE_WITH_AUTHORIZATION and spec.contract == "DataMarket":
            read = _purchase_reads(market, operator, actions[0], *contracts.fees())  # one action: no batch
        ready = []
        for action in actions:
            reason = _check(market, operator, action, spec, roles, read)
            if isinstance(reason, Wait):
                waited = True
                if action.error != reason:
                    action.error = reason[:2000]
                    action.save(update_fields=["error", "updated_at"])
                    logger.info("operator action #%s waits: %s", action.pk, reason)
            elif reason:
                logger.warning("operator action #%s not sent: %s", action.pk, reason)
                _finish(action, Status.FAILED, error=reason)
                report.failed += 1
            else:
                ready.append(action)
        if not ready:
            return None if waited else False  # a waiting row is looked at again by the next run
        data = calldata(_call(market, kind, ready))
        max_fee, priority = contracts.fees()
        limit = spec.gas_limit(len(ready))
        try:
            # Priced as it will be sent: a contract that behaves only when the gas price is 0 (a
            # simulation) is seen as it is.
            estimate = read["estimate"] if read is not None else market.w3.eth.estimate_gas({
                "from": operator.address, "to": market.address, "data": data, "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": priority})
        except ContractLogicError as exc:  # e.g. the operator lost MODERATOR_ROLE
            reason = f"{spec.function} would revert: {reverts.describe(exc, market.contract.abi)}"
            return _fail_all(ready, reason, report)
        if estimate > limit:
            return _fail_all(ready, f"{spec.function} would need {estimate:,} gas, more than the {limit:,} "
                             "this action may use", report)
        nonce = _next_nonce(w3, chain_id, operator.address, read and read["pending"])
        built = {"to": market.address, "data": data, "value": 0, "nonce": nonce, "chainId": chain_id,
                 "gas": min(limit, estimate * 5 // 4), "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority,
                 "type": 2}
        signed = operator.sign_transaction(built)
        tx_hash = "0x" + bytes(signed.hash).hex()
        try:
            with transaction.atomic():
                tx = OperatorTransaction.objects.create(
                    chain_id=chain_id, sender=operator.address, nonce=nonce, kind=kind, to=market.address,
                    data=built["data"] if isinstance(built["data"], str) else "0x" + bytes(built["data"]).hex(),
                    gas=built["gas"], max_fee_per_gas=max_fee, max_priority_fee_per_gas=priority,
                    raw="0x" + bytes(signed.raw_transaction).hex(), tx_hash=tx_hash, hashes=[tx_hash])
        except IntegrityError:
            raise SenderStopped(f"nonce {nonce} of {operator.address} is already recorded here, but the chain "
                                "counts it as unused; the next run looks again") from None
        for action in ready:
            action.status, action.transaction, action.tx_hash = Status.SENT, tx, tx_hash
            action.attempts += 1
            action.error = ""
            action.save(update_fields=["status", "transaction", "tx_hash", "attempts", "error", "updated_at"])
    return tx


def _fail_all(actions, reason: str, report: SendReport) -> bool:
    for action in actions:
        _finish(action, Status.FAILED, error=reason)
        report.failed += 1
    return False


def fees(w3) -> tuple[int, int]:
    """(max fee, priority fee) per gas for a transaction sent now: the node's suggested tip and
    twice the latest base fee, within OPERATOR_MAX_FEE_PER_GAS."""
    base = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
    priority = min(int(w3.eth.max_priority_fee), max_fee_cap())
    return min(2 * base + priority, max_fee_cap()), priority


def _broadcast(w3, tx: OperatorTransaction, report: SendReport) -> bool:
    """Send `tx.raw` as it is; True when the node has it. A refusal is recorded on the row, which
    keeps its nonce and bytes for the next run. A surplus return is sent (first, again after a
    reorganisation took it, or repriced) only while every stray transfer it answers is on the
    chain: else its nonce carries a no-op instead (`_void`)."""
    _check_lock()
    if tx.kind == Kind.RETURN_SURPLUS and tx.to != tx.sender:
        market = to_checksum_address(tx.to)
        missing = {action: stray_missing(w3, market, action) for action in tx.actions.filter(status=Status.SENT)}
        if any(missing.values()):
            _void(tx, missing)
    try:
        w3.eth.send_raw_transaction(tx.raw)
    except (ValueError, Web3RPCError) as exc:  # the node refused it (funds, fee, nonce, ...)
        message = str(exc)
        if "already known" not in message and "already imported" not in message:
            tx.error = f"the node refused transaction {tx.tx_hash}: {message}"[:2000]
            tx.save(update_fields=["error", "updated_at"])
            logger.warning("operator transaction at nonce %s: %s", tx.nonce, tx.error)
            return False
    except Exception:
        # A network error: the node may or may not have it; the next run finds out.
        logger.warning("broadcasting %s failed; the next run checks it", tx.tx_hash, exc_info=True)
        return False
    tx.status = TxStatus.PENDING if tx.status == TxStatus.SIGNED else tx.status
    tx.broadcasts += 1
    tx.broadcast_at = timezone.now()
    tx.error = ""
    tx.save(update_fields=["status", "broadcasts", "broadcast_at", "error", "updated_at"])
    return True


def _await(w3, sent: list[OperatorTransaction], timeout: float) -> None:
    """Wait (at most `timeout` in all) for the receipts of `sent`, then have the indexer read
    through the last of their blocks if the confirmations allow it now."""
    deadline = time.monotonic() + timeout
    last = None
    for tx in sent:
        try:
            receipt = w3.eth.wait_for_transaction_receipt(
                tx.tx_hash, timeout=max(0.0, deadline - time.monotonic()), poll_latency=0.2)
        except TimeExhausted:
            return
        last = max(last or 0, receipt["blockNumber"])
    if last is not None:
        catch_up(w3, last, deadline)


def catch_up(w3, block: int, deadline: float) -> bool:
    """Have the indexer read through `block` if `CHAIN_CONFIRMATIONS` allow it by now, waiting for
    a run that holds its lock to finish (until `deadline`, a time.monotonic()). True once read."""
    chain_id = w3.eth.chain_id
    while True:
        cursor = IndexerCursor.objects.filter(chain_id=chain_id).values_list("block_number", flat=True).first()
        if cursor is not None and cursor >= block:
            return True
        if w3.eth.block_number - settings.CHAIN_CONFIRMATIONS < block or time.monotonic() > deadline:
            return False
        try:
            report = indexer.index_chain(w3, through=block)
        except Exception:  # the node failed: the indexer recorded it and backs off
            logger.warning("the indexer could not read through block %s", block, exc_info=True)
            return False
        if report.skipped and not report.skipped.startswith("another run"):
            return False  # backing off, or nothing deployed: a later run settles it
        if report.skipped or (report.through or 0) < block:
            time.sleep(0.05)  # another run holds the indexer's lock: the cursor moves when it ends


# ---------------------------------------------------------------------------------------------
# Following sent transactions


def _receipt(w3, tx: OperatorTransaction):
    for tx_hash in reversed(tx.hashes):
        try:
            return w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            continue
    return None


def _known(w3, tx: OperatorTransaction) -> bool:
    for tx_hash in tx.hashes:
        try:
            w3.eth.get_transaction(tx_hash)
            return True
        except TransactionNotFound:
            continue
    return False


def _follow(w3, market, chain_id, operator, report) -> list[OperatorTransaction]:
    """Settle, rebroadcast, replace or give up each open transaction of the operator key; returns
    those it broadcast again or replaced."""
    again = []
    mined_count = w3.eth.get_transaction_count(operator.address, "latest")
    _reconcile(w3, chain_id, operator.address, mined_count)
    head = w3.eth.block_number
    confirmed_block = max(0, head - settings.CHAIN_CONFIRMATIONS)
    hashes = {}  # block number -> the chain's hash of it, asked once in this look
    for tx in OperatorTransaction.objects.filter(chain_id=chain_id, status__in=OperatorTransaction.OPEN):
        receipt = _receipt(w3, tx)
        if receipt is None and tx.status == TxStatus.MINED:
            _unmine(tx)  # its block left the chain: it is pending again, or lost
        if receipt is not None:
            _mined(tx, receipt)
            _settle(w3, market, tx, report, hashes)
            continue
        # Given up only when the nonce is used in a block with the confirmations: a node that
        # has not seen the receipt yet (one behind a load balancer) gives nothing up.
        if w3.eth.get_transaction_count(tx.sender, confirmed_block) > tx.nonce:
            receipt = _receipt(w3, tx)  # mined between the two reads?
            if receipt is not None:
                _mined(tx, receipt)
                _settle(w3, market, tx, report, hashes)
            else:
                _drop(tx, report)
            continue
        if tx.status == TxStatus.PENDING and not _known(w3, tx):
            if _broadcast(w3, tx, report):
                report.rebroadcast += 1
                again.append(tx)
                logger.info("operator transaction %s at nonce %s was lost by the node; broadcast again",
                            tx.tx_hash, tx.nonce)
            continue
        if tx.status == TxStatus.SIGNED and not _known(w3, tx):
            if _broadcast(w3, tx, report):  # accepted at last
                report.rebroadcast += 1
                again.append(tx)
                continue
        since = tx.broadcast_at or tx.created_at
        # Only the nonce the chain waits for is repriced: one behind it is not underpriced, it waits.
        if tx.nonce == mined_count and (timezone.now() - since).total_seconds() >= replace_after() \
                and "insufficient funds" not in tx.error.lower():
            if _replace(w3, operator, tx, report):
                again.append(tx)
    return again


def _reconcile(w3, chain_id: int, address: str, mined_count: int) -> None:
    """The chain counts fewer transactions of the key than this database settled (a node
    restarted from an older state, a deep reorganisation): a settled transaction it no longer has
    is open again, to be broadcast again byte for byte at its nonce (the contract's state guards
    every kind against a second effect; a surplus return only while the transfers it answers are
    still on the chain, see `_broadcast`), and a dropped row gives its nonce back."""
    for tx in OperatorTransaction.objects.filter(chain_id=chain_id, sender=address, nonce__gte=mined_count,
                                                 status__in=(TxStatus.DONE, TxStatus.DROPPED)):
        if _receipt(w3, tx) is not None:
            continue
        with transaction.atomic():
            if tx.status == TxStatus.DROPPED:
                tx.actions.update(transaction=None)
                tx.delete()
                continue
            reason = f"the chain no longer has transaction {tx.mined_hash} (nonce {tx.nonce}); sent again"
            tx.status, tx.mined_hash, tx.block_hash, tx.block_number = TxStatus.PENDING, "", "", None
            tx.broadcast_at, tx.error = None, reason
            tx.save(update_fields=["status", "mined_hash", "block_hash", "block_number", "broadcast_at", "error",
                                   "updated_at"])
            tx.actions.exclude(status=Status.PENDING).update(status=Status.SENT, error=reason, log_index=None,
                                                             updated_at=timezone.now())
        logger.warning("operator sender: %s", reason)


def _void(tx: OperatorTransaction, missing: dict) -> None:
    """Sign a no-op (0 wei to the operator itself, 21,000 gas) at `tx`'s nonce, with its fees, in
    place of a surplus return one of whose stray transfers left the chain (`missing`: action ->
    why, '' for one still there). The return's bytes are never sent again, so it cannot pay out of
    other people's surplus; the nonce still gets used, so the transactions after it go through.
    An action whose transfer left the chain is cancelled (if the transaction is mined again, the
    indexer makes a new row, with the same reference, and queues its return); the others are
    pending again, for another transaction."""
    operator = operator_account()
    signed = operator.sign_transaction({
        "chainId": tx.chain_id, "nonce": tx.nonce, "to": tx.sender, "data": "0x", "value": 0, "gas": 21_000,
        "maxFeePerGas": int(tx.max_fee_per_gas), "maxPriorityFeePerGas": int(tx.max_priority_fee_per_gas),
        "type": 2})
    tx_hash = "0x" + bytes(signed.hash).hex()
    reason = next(why for why in missing.values() if why)
    with transaction.atomic():
        tx.raw, tx.tx_hash, tx.hashes = "0x" + bytes(signed.raw_transaction).hex(), tx_hash, [*tx.hashes, tx_hash]
        tx.to, tx.data, tx.gas = tx.sender, "0x", 21_000
        tx.error = f"not sent: {reason}; a no-op takes its nonce"[:2000]
        tx.save(update_fields=["raw", "tx_hash", "hashes", "to", "data", "gas", "error", "updated_at"])
        for action, why in missing.items():
            if why:
                _finish(action, Status.CANCELLED, error=why)
            else:
                action.status, action.transaction, action.tx_hash = Status.PENDING, None, ""
                action.error = f"sent again without {reason}"[:2000]
                action.save(update_fields=["status", "transaction", "tx_hash", "error", "updated_at"])
    logger.warning("operator transaction at nonce %s: a no-op instead of its surplus return: %s", tx.nonce, reason)


def _mined(tx: OperatorTransaction, receipt) -> None:
    mined_hash = "0x" + bytes(receipt["transactionHash"]).hex()
    block_hash = "0x" + bytes(receipt["blockHash"]).hex()
    if tx.status == TxStatus.MINED and tx.mined_hash == mined_hash and tx.block_hash == block_hash:
        return
    tx.status, tx.mined_hash, tx.block_hash = TxStatus.MINED, mined_hash, block_hash
    tx.block_number, tx.reverted = receipt["blockNumber"], receipt["status"] != 1
    tx.save(update_fields=["status", "mined_hash", "block_hash", "block_number", "reverted", "updated_at"])
    tx.actions.filter(status=Status.SENT).update(tx_hash=mined_hash, block_number=tx.block_number,
                                                 updated_at=timezone.now())


def _unmine(tx: OperatorTransaction) -> None:
    tx.status, tx.mined_hash, tx.block_hash, tx.block_number = TxStatus.PENDING, "", "", None
    tx.save(update_fields=["status", "mined_hash", "block_hash", "block_number", "updated_at"])


def _settle(w3, market, tx: OperatorTransaction, report: SendReport, hashes: dict | None = None) -> None:
    """Once the indexer has read past the block (with its confirmations) and the block is still
    the chain's: each action is decided by the events the indexer stored for the transaction.
    `hashes` keeps the blocks' hashes asked during one look at the open transactions (the many
    transactions of one run share the indexer's last block, and often their own)."""
    hashes = {} if hashes is None else hashes

    def chain_hash(number):
        if number not in hashes:
            hashes[number] = indexer.block_hash(w3, number)
        return hashes[number]

    if not catch_up(w3, tx.block_number, time.monotonic() + 5):
        return  # not confirmed yet, or the indexer cannot read it now
    if chain_hash(tx.block_number) != tx.block_hash:
        _unmine(tx)
        return
    # The indexer's events are the chain's only if the block it last read is still the chain's
    # (a block's hash commits to every block below it); else it finds the fork on its next run.
    cursor = IndexerCursor.objects.filter(chain_id=tx.chain_id).first()
    if cursor is None or chain_hash(cursor.block_number) != cursor.block_hash:
        return
    # The events of the contract it called (the market, or the distributor for reward roots).
    events = list(ChainEvent.objects.filter(
        chain_id=tx.chain_id, tx_hash=tx.mined_hash, address=to_checksum_address(tx.to),
    ).order_by("log_index"))
    with transaction.atomic():
        tx = OperatorTransaction.objects.select_for_update().get(pk=tx.pk)
        if tx.status != TxStatus.MINED:
            return
        for action in tx.actions.select_for_update().filter(status=Status.SENT):
            if tx.reverted:
                _finish(action, Status.FAILED, error=f"transaction {tx.mined_hash} reverted in block "
                        f"{tx.block_number}", block_number=tx.block_number)
                report.failed += 1
                continue
            status, log_index, error = outcome(action, events)
            _finish(action, status, error=error, block_number=tx.block_number, log_index=log_index)
            if status == Status.CONFIRMED:
                report.confirmed += 1
            elif status == Status.FAILED:
                report.failed += 1
        tx.status = TxStatus.DONE
        tx.save(update_fields=["status", "updated_at"])
    logger.info("operator transaction %s (nonce %s) settled in block %s", tx.mined_hash, tx.nonce, tx.block_number)


def outcome(action: OperatorAction, events: list[ChainEvent]) -> tuple[str, int | None, str]:
    """(status, log index, error) of `action` from its transaction's stored events (of the
    contract it called)."""
    spec = KINDS[action.kind]
    for event in events:
        if event.name not in spec.events:
            continue
        args = event.args
        if action.kind in (Kind.APPROVE, Kind.UNAPPROVE):
            if args["listingId"] == str(int(action.listing_id)) and args["approved"] == (action.kind == Kind.APPROVE):
                return Status.CONFIRMED, event.log_index, ""
        elif action.kind == Kind.PURCHASE_WITH_AUTHORIZATION:
            # The order of that listing and payer made in this transaction.
            if (args["listingId"] == str(int(action.listing_id))
                    and args["buyer"] == to_checksum_address(action.payload["from"])):
                return Status.CONFIRMED, event.log_index, ""
        elif action.kind == Kind.CREATE_LISTING:
            if (args["contentHash"] == action.payload["content_hash"].lower()
                    and args["payout"] == to_checksum_address(action.payload["payout"])):
                return Status.CONFIRMED, event.log_index, ""
        elif action.kind in (Kind.PROPOSE_ROOT, Kind.REVOKE_ROOT):
            payload = action.payload
            epoch, root = str(int(payload["epoch"])), payload["root"].lower()
            if args["epoch"] == epoch and args["root"] == root:
                return Status.CONFIRMED, event.log_index, ""
        elif action.kind == Kind.RETURN_SURPLUS:
            if args["ref"] == action.payload["ref"].lower():
                return Status.CONFIRMED, event.log_index, ""
        elif args.get("orderId") == str(int(action.order_id)):
            return Status.CONFIRMED, event.log_index, ""
    if action.kind == Kind.RELEASE:
        # release(ids) never reverts for one order: a successful batch that did not release this
        # one skipped it (the indexer does not store ReleaseSkipped, which anyone can emit in bulk).
        return (Status.CANCELLED, None,
                f"the market skipped order {action.order_id}: it was no longer open, or not matured")
    if action.kind == Kind.PURCHASE_WITH_AUTHORIZATION:
        target = f"listing {action.listing_id} bought by {action.payload['from']}"
    elif action.listing_id is not None:
        target = f"listing {action.listing_id}"
    elif action.kind == Kind.CREATE_LISTING:
        target = f"a listing of content hash {action.payload['content_hash']}"
    elif action.kind in (Kind.PROPOSE_ROOT, Kind.REVOKE_ROOT):
        target = f"epoch {action.payload['epoch']} with root {action.payload['root']}"
    else:
        target = f"order {action.order_id}"
    return Status.FAILED, None, (f"transaction {action.tx_hash} carried no {' or '.join(spec.events)} for "
                                 f"{target}")


def _drop(tx: OperatorTransaction, report: SendReport) -> None:
    """The chain used `tx`'s nonce for a transaction that is none of ours: its actions are
    pending again (each kind's effect is guarded by the contract's own state, so even a later
    reorganisation that mined both could not pay twice)."""
    reason = (f"the operator key's nonce {tx.nonce} was used by another transaction, so {tx.tx_hash} can no "
              "longer be mined")
    with transaction.atomic():
        tx = OperatorTransaction.objects.select_for_update().get(pk=tx.pk)
        tx.status, tx.error = TxStatus.DROPPED, reason
        tx.save(update_fields=["status", "error", "updated_at"])
        for action in tx.actions.select_for_update().filter(status=Status.SENT):
            if action.attempts >= MAX_ATTEMPTS:
                _finish(action, Status.FAILED, error=reason)
                report.failed += 1
            else:
                action.status, action.error = Status.PENDING, f"{reason}; sending again"
                action.save(update_fields=["status", "error", "updated_at"])
    report.dropped += 1
    logger.warning("operator transaction at nonce %s dropped: %s", tx.nonce, reason)


def replacement_fees(w3, max_fee: int, priority: int) -> tuple[int, int]:
    """(max fee, priority fee) per gas for a transaction that replaces one bidding `max_fee` and
    `priority` at its nonce: both raised by at least a quarter (nodes refuse a replacement that
    bids less than 10 % more, some 12.5 %) and at least what the chain asks now. The caller
    compares them with OPERATOR_MAX_FEE_PER_GAS."""
    base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
    tip = int(w3.eth.max_priority_fee)
    priority = max(priority + priority // 4 + 1, tip)
    return max(max_fee + max_fee // 4 + 1, 2 * base_fee + priority), priority


def _replace(w3, operator, tx: OperatorTransaction, report: SendReport) -> bool:
    """Sign the same call at the same nonce with fees raised by at least a quarter (nodes ask 10 to
    12.5 % of a replacement) and at least what the chain asks now, and broadcast it."""
    try:
        max_fee, priority = replacement_fees(w3, int(tx.max_fee_per_gas), int(tx.max_priority_fee_per_gas))
    except Exception:
        logger.warning("could not read the chain's fees to replace %s", tx.tx_hash, exc_info=True)
        return False
    if max_fee > max_fee_cap() or priority > max_fee:
        message = (f"not replaced: {max_fee:,} wei per gas would be above OPERATOR_MAX_FEE_PER_GAS "
                   f"({max_fee_cap():,})")
        if tx.error != message:
            tx.error = message
            tx.save(update_fields=["error", "updated_at"])
            logger.warning("operator transaction at nonce %s %s", tx.nonce, message)
        return False
    _check_lock()
    signed = operator.sign_transaction({
        "chainId": tx.chain_id, "nonce": tx.nonce, "to": tx.to, "data": tx.data, "value": 0, "gas": tx.gas,
        "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority, "type": 2})
    tx_hash = "0x" + bytes(signed.hash).hex()
    with transaction.atomic():
        tx = OperatorTransaction.objects.select_for_update().get(pk=tx.pk)
        tx.raw, tx.tx_hash = "0x" + bytes(signed.raw_transaction).hex(), tx_hash
        tx.hashes = [*tx.hashes, tx_hash]
        tx.max_fee_per_gas, tx.max_priority_fee_per_gas = max_fee, priority
        tx.replacements += 1
        tx.save(update_fields=["raw", "tx_hash", "hashes", "max_fee_per_gas", "max_priority_fee_per_gas",
                               "replacements", "updated_at"])
        tx.actions.filter(status=Status.SENT).update(tx_hash=tx_hash, updated_at=timezone.now())
    if not _broadcast(w3, tx, report):
        return False
    report.replaced += 1
    logger.info("operator transaction at nonce %s replaced by %s (max fee %s)", tx.nonce, tx_hash, max_fee)
    return True


# ---------------------------------------------------------------------------------------------
# Actions


def _finish(action: OperatorAction, status: str, *, error: str = "", block_number=None, log_index=None) -> None:
    action.status = status
    action.error = error[:2000]
    if block_number is not None:
        action.block_number = block_number
    action.log_index = log_index
    action.save(update_fields=["status", "error", "block_number", "log_index", "updated_at"])
    if action.on_done and status in (Status.CONFIRMED, Status.FAILED):
        # In a savepoint, and never raised: a callback that fails must neither undo this action's
        # settlement (nor the others' in its transaction) nor stop the sender. Its app repairs it
        # (x402 payments: payments.settlement.repair_ledgers, which calls on_done again).
        try:
            with transaction.atomic():
                import_string(action.on_done)(action)
        except Exception:
            logger.exception("operator action #%s: its callback %s failed", action.pk, action.on_done)


def _supersede(chain_id: int) -> None:
    """A pending approval or clearing is sent only if it is the newest decision about its listing
    that is not cancelled or failed: an approval followed by a rejection sends only the
    rejection, and an approval sent again (its nonce was used by another transaction) after a
    newer clearing went out is cancelled, not sent after it."""
    approvals = (Kind.APPROVE, Kind.UNAPPROVE)
    with transaction.atomic():
        pending = list(OperatorAction.objects.select_for_update(skip_locked=True)
                       .filter(status=Status.PENDING, chain_id=chain_id, kind__in=approvals))
        if not pending:
            return
        newest = dict(OperatorAction.objects.filter(
            chain_id=chain_id, kind__in=approvals, listing_id__in={a.listing_id for a in pending},
            status__in=(Status.PENDING, Status.SENT, Status.CONFIRMED))
            .values("listing_id").annotate(top=Max("id")).values_list("listing_id", "top"))
        for action in pending:
            top = newest.get(action.listing_id, action.pk)
            if top > action.pk:
                _finish(action, Status.CANCELLED, error=f"superseded by operator action #{top}")


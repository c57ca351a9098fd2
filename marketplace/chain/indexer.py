"""The chain indexer: the one writer of chain-derived rows.

It reads `eth_getLogs` in block ranges for the contracts this database deployed (the market and
the reward distributor) and, with them, the `Transfer` logs of the market's tokens into or out of
the market; for a transfer into the market that no `OrderCreated` of the same transaction
explains (rare: someone pushed an authorization straight to the token, or sent tokens), also the
token's `AuthorizationUsed` logs of that transaction (`unexplained_transfers`). It stores each log once as a `ChainEvent`, keyed by (chain id, tx hash, log index),
and in the same database transaction calls the handlers that apps registered for those events,
with every new event of theirs from the range, in chain order (apps write rows in bulk). Only
logs emitted by the watched addresses are read: an `OrderCreated` of another contract in the same
transaction is never seen.

It reads up to `CHAIN_CONFIRMATIONS` blocks below the head. Before each range it compares the hash
of the last block it read with the chain; on a mismatch (a reorganisation) it walks back through
the block hashes it kept to the newest one the chain still has, calls the apps' rollback handlers
with the events of the orphaned blocks (they delete what those events made and recompute the
state the surviving events imply), deletes those events, and reads forward again.

A node that refuses a range (too many results, too wide) gets halves of it. One run at a time per
chain (a PostgreSQL advisory lock); a crash leaves the cursor where the last committed range
ended, so a new run resumes there with nothing lost or doubled. While the node is down, runs back
off (the cursor's `retry_at`). chain/ imports no app: apps call `register` and `register_rollback`
from their `AppConfig.ready`.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
import json
import logging
import re

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
import requests
from web3 import Web3
from web3.exceptions import BlockNotFound, Web3RPCError

from .client import check_chain_id, get_web3, redact_rpc_url
from .events import AUTHORIZATION_USED_TOPIC, TRANSFER_TOPIC, checksum, event_types
from .models import ChainEvent, Deployment, IndexedBlock, IndexerCursor

logger = logging.getLogger(__name__)

#: Block hashes kept for finding a reorganisation's common ancestor (range ends and blocks with
#: events): a reorganisation deeper than the oldest of them stops the indexer with an error.
KEEP_BLOCKS = 256
#: The contracts whose every event is read.
WATCHED_CONTRACTS = ("DataMarket", "RewardDistributor")
#: Longest wait between runs while the node does not answer, in seconds.
MAX_BACKOFF = 60
#: Reads of a range in a row that the chain changed under (its head moving between forks, or
#: nodes behind one URL that disagree) before a run gives up until the next one.
MAX_MOVED_READS = 5
#: Events that record no change and that outsiders can emit by the thousand for a little gas, so
#: they are not stored: `release` with one unreleasable order id repeated (a `ReleaseSkipped`
#: each), `claimMany` repeating a claim the distributor cannot pay (a `ClaimSkipped` each).
#: `Transfer` logs of a value of 0 are not stored either (anyone may `transferFrom` 0 between any
#: two addresses, the market included, without an allowance).
NOT_STORED = frozenset({"ReleaseSkipped", "ClaimSkipped"})



@dataclass(frozen=True, slots=True)
class Event:
    """A stored ChainEvent as handlers get it (a plain object: a range of tens of thousands of
    events would spend more on model instances than on everything else)."""

    id: int
    chain_id: int
    block_number: int
    block_hash: str
    tx_hash: str
    tx_index: int
    log_index: int
    address: str
    name: str
    args: dict


EVENT_FIELDS = list(Event.__slots__)
Handler = Callable[[list[Event]], None]
RollbackHandler = Callable[[int, int, list[Event]], None]

_handlers: list[tuple[frozenset[str], Handler]] = []
_rollback_handlers: list[RollbackHandler] = []


def register(handler: Handler, *, events: Iterable[str]) -> Handler:
    """Call `handler(events)` with the new events of these names of every range the indexer
    stores, in chain order, inside the transaction that stores them (an error rolls the whole
    range back, and it is read again on the next run). Handlers run in registration order."""
    names = frozenset(events)
    if not any(h is handler and n == names for n, h in _handlers):
        _handlers.append((names, handler))
    return handler


def register_rollback(handler: RollbackHandler) -> RollbackHandler:
    """Call `handler(chain_id, ancestor_block, orphaned_events)` when a reorganisation orphans
    the blocks after `ancestor_block`, before their events are deleted, in the same transaction:
    delete what those events made and recompute what the surviving events imply."""
    if handler not in _rollback_handlers:
        _rollback_handlers.append(handler)
    return handler


class IndexerError(Exception):
    """Something the indexer cannot get past on its own (said in the message)."""


class ReorgTooDeep(IndexerError):
    pass


@dataclass
class Watch:
    """What the indexer reads on one chain."""

    contracts: dict[str, str]  # checksummed address -> contract name
    market: str | None
    tokens: set[str] = field(default_factory=set)  # checksummed; every token the market ever configured


@dataclass
class IndexReport:
    chain_id: int = 0
    skipped: str = ""  # why nothing was done (another run holds the lock, backing off, ...)
    head: int | None = None
    through: int | None = None  # the cursor at the end
    ranges: int = 0
    events: int = 0
    reorgs: int = 0
    orphaned: int = 0


# ---------------------------------------------------------------------------------------------
# Reading the chain


def _hex(value) -> str:
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


def block_hash(w3: Web3, number: int) -> str | None:
    try:
        return _hex(w3.eth.get_block(number)["hash"])
    except BlockNotFound:
        return None


# How providers word "this range is too big" (geth, Erigon, Alchemy, Infura, QuickNode, Ankr...).
_TOO_BIG = re.compile(r"range|too (?:many|large|wide|big)|more than \d+|exceed|limit|max(?:imum)? (?:is|of)?|"
                      r"timeout|timed out|response size|10000|query returned", re.IGNORECASE)


def _rpc_refused(exc: Exception) -> bool:
    """An answer from the node refusing the range as too big (as opposed to no answer, or another
    error such as a rate limit or a bad parameter, which splitting would only multiply)."""
    if not isinstance(exc, (Web3RPCError, ValueError)) or isinstance(exc, requests.RequestException):
        return False
    message = str(exc)
    return bool(_TOO_BIG.search(message)) and "rate limit" not in message.lower() and "429" not in message


def get_logs(w3: Web3, params: dict, first: int, last: int) -> list[dict]:
    """eth_getLogs over [first, last] as the node answers it (hex strings: web3's formatting of
    each log cost more than everything else the indexer does), split in halves while the node
    refuses the range (too many results, too wide a range: each provider words it differently)."""
    try:
        response = w3.provider.make_request("eth_getLogs", [{**params, "fromBlock": hex(first), "toBlock": hex(last)}])
        if "error" in response:
            raise Web3RPCError(str(response["error"]))
        return response["result"]
    except Exception as exc:
        if not _rpc_refused(exc) or first >= last:
            raise
        middle = (first + last) // 2
        logger.info("indexer: the node refused blocks %d-%d (%s); splitting", first, last, exc)
        return get_logs(w3, params, first, middle) + get_logs(w3, params, middle + 1, last)


def watch(chain_id: int) -> Watch:
    """The watched contracts from this database's deployments, and the tokens the market has
    configured in the events stored so far."""
    deployments = Deployment.objects.filter(chain_id=chain_id, contract__in=WATCHED_CONTRACTS)
    contracts = {checksum(d.address): d.contract for d in deployments}
    market = next((a for a, name in contracts.items() if name == "DataMarket"), None)
    tokens = set()
    if market:
        tokens = {checksum(args["token"]) for args in ChainEvent.objects.filter(
            chain_id=chain_id, address=market, name="TokenConfigured").values_list("args", flat=True)}
    return Watch(contracts, market, tokens)


def _topic_of(address: str) -> str:
    return "0x" + "0" * 24 + address[2:].lower()


_TRANSFER = "0x" + TRANSFER_TOPIC.hex()
_AUTHORIZATION_USED = "0x" + AUTHORIZATION_USED_TOPIC.hex()
ZERO_ADDRESS = "0x" + "00" * 20


def unexplained_transfers(market: str, rows: Iterable[dict]) -> list[dict]:
    """The `Transfer` rows into `market` that no `OrderCreated` of the market in the same
    transaction explains (same buyer, token and amount; one order explains one transfer), in chain
    order: money that reached the market without an order. The token counts: a transfer of another
    token of the same base-unit value must never take a purchase's place (the purchase would then
    look unexplained, and be "returned" out of other people's surplus). Mints (from the zero
    address) and the market's transfers to itself are not money anyone sent. `rows` are ChainEvent
    values (dicts)."""
    orders = Counter()
    into = []
    for row in rows:
        args = row["args"]
        if row["name"] == "OrderCreated" and row["address"] == market:
            orders[(row["tx_hash"], args["buyer"], args["token"], args["amount"])] += 1
        elif row["name"] == "Transfer" and args["to"] == market and args["from"] not in (ZERO_ADDRESS, market):
            into.append(row)
    found = []
    for row in sorted(into, key=lambda r: (r["block_number"], r["log_index"])):
        args = row["args"]
        key = (row["tx_hash"], args["from"], row["address"], args["value"])
        if orders[key] > 0:
            orders[key] -= 1
        else:
            found.append(row)
    return found


def pushed_authorization(transfer: dict, rows: Iterable[dict]) -> bool:
    """Whether the `Transfer` row `transfer` is an EIP-3009 authorization sent straight to the
    token: the log just before it in its transaction is its own token's `AuthorizationUsed` naming
    the transfer's `from` (the token emits the two together). Any other `AuthorizationUsed` of the
    transaction (another token's, or one of the sender's that moved money elsewhere) says nothing
    about this transfer. `rows` are ChainEvent values (dicts) of the transfer's transaction."""
    return any(row["name"] == "AuthorizationUsed" and row["tx_hash"] == transfer["tx_hash"]
               and row["log_index"] == transfer["log_index"] - 1 and row["address"] == transfer["address"]
               and row["args"]["authorizer"] == transfer["args"]["from"] for row in rows)


def authorization_pushed(w3: Web3, *, token: str, payer: str, nonce: str, market: str, amount: int, first: int,
                         last: int, before: tuple[int, int] | None = None) -> bool:
    """Whether the payer's EIP-3009 authorization `nonce` was sent straight to `token`, paying
    `amount` to `market`, in blocks [first, last] (and at a (block, transaction index) ahead of
    `before`, when given): the token's `AuthorizationUsed` of (payer, nonce) followed, as the log
    right after it, by its `Transfer` of that amount from the payer to the market (what
    `pushed_authorization` matches among stored rows). An authorization of the same nonce paying
    someone else or another amount, or a cancelled one, is not this."""
    used = get_logs(w3, {"address": token, "topics": [_AUTHORIZATION_USED, _topic_of(payer), nonce.lower()]},
                    first, last)
    for log in used:
        block = int(log["blockNumber"], 16)
        if before is not None and (block, int(log["transactionIndex"], 16)) >= before:
            continue
        transfers = get_logs(w3, {"address": token, "topics": [_TRANSFER, _topic_of(payer), _topic_of(market)]},
                             block, block)
        if any(t["transactionHash"] == log["transactionHash"] and int(t["logIndex"], 16) == int(log["logIndex"], 16) + 1
               and int(t["data"], 16) == amount for t in transfers):
            return True
    return False


def transfer_positions(market: str, rows: Iterable[dict]) -> dict[tuple[str, int], int]:
    """{(tx hash, log index): n} for the `Transfer` rows into `market`: the n-th (from 0) transfer
    of its token into the market in its transaction, in log order, what a stray transfer's
    reference names (`contracts.surplus_reference`). `rows` are ChainEvent values (dicts) holding
    every stored row of those transactions."""
    into = sorted(((row["tx_hash"], row["address"], row["log_index"]) for row in rows
                   if row["name"] == "Transfer" and row["args"]["to"] == market))
    positions, counts = {}, Counter()
    for tx_hash, token, log_index in into:
        positions[(tx_hash, log_index)] = counts[(tx_hash, token)]
        counts[(tx_hash, token)] += 1
    return positions


def authorizations_used(w3: Web3, chain_id: int, strays: list[dict]) -> list[dict]:
    """The tokens' EIP-3009 `AuthorizationUsed` logs, as ChainEvent rows, in the transactions of
    these unexplained transfers that name a transfer's `from`: one `eth_getLogs` over the blocks of
    those transfers only (an ordinary purchase never costs a request), its authorizers as a topic
    filter."""
    if not strays:
        return []
    tokens = sorted({row["address"] for row in strays})
    authorizers = sorted({_topic_of(row["args"]["from"]) for row in strays})
    first, last = min(r["block_number"] for r in strays), max(r["block_number"] for r in strays)
    logs = get_logs(w3, {"address": tokens, "topics": [_AUTHORIZATION_USED, authorizers]}, first, last)
    wanted = {row["tx_hash"].lower() for row in strays}
    logs = [log for log in logs if log["transactionHash"].lower() in wanted]
    return _decode(chain_id, logs, {t: event_types("EIP3009") for t in tokens})


def read_range(w3: Web3, chain_id: int, watched: Watch, first: int, last: int, parent: str | None = None):
    """(the watched events of blocks [first, last] as rows for ChainEvent in chain order, the hash
    of block `last` they belong to); None when the chain changed while reading: at `last`, or at
    block first - 1 if it is not `parent` any more (the caller checks for a reorganisation and
    reads again). The hash returned is the one checked before and after the read, never a third
    answer that might belong to another fork."""
    before = block_hash(w3, last)
    logs = get_logs(w3, {"address": list(watched.contracts)}, first, last) if watched.contracts else []
    rows = _decode(chain_id, logs, {a: event_types(name) for a, name in watched.contracts.items()})
    tokens = set(watched.tokens)
    tokens |= {row["args"]["token"] for row in rows if row["name"] == "TokenConfigured"}
    if tokens and watched.market:
        transfers = {checksum(t): event_types("ERC20") for t in tokens}
        market = _topic_of(watched.market)
        for topics in ([_TRANSFER, market], [_TRANSFER, None, market]):
            found = get_logs(w3, {"address": sorted(transfers), "topics": topics}, first, last)
            rows += _decode(chain_id, found, transfers)
        rows += authorizations_used(w3, chain_id, unexplained_transfers(watched.market, rows))
    if before is None or block_hash(w3, last) != before:
        return None
    if parent is not None and block_hash(w3, first - 1) != parent:
        return None
    seen = set()
    unique = []
    for row in sorted(rows, key=lambda r: (r["block_number"], r["log_index"])):
        key = (row["tx_hash"], row["log_index"])
        if key not in seen:  # a transfer from the market to itself matches both filters
            seen.add(key)
            unique.append(row)
        if row["block_number"] == last and row["block_hash"] != before:
            return None
    return unique, before


def _decode(chain_id: int, logs: list[dict], types_by_address: dict) -> list[dict]:
    """Raw logs (hex, as the node sends them) of the watched addresses as ChainEvent rows."""
    rows = []
    for log in logs:
        if log.get("removed"):
            continue
        address = checksum(log["address"])
        types = types_by_address.get(address)
        topics = [bytes.fromhex(t[2:]) for t in log["topics"]]
        event_type = types.get(topics[0]) if types and topics else None
        if event_type is None or event_type.name in NOT_STORED:
            continue  # not an event of the watched ABI (or anonymous), or one that records nothing
        try:
            args = event_type.decode(topics, bytes.fromhex(log["data"][2:]))
        except ValueError as exc:
            logger.warning("indexer: skipping a log that does not decode (%s:%s): %s",
                           log["transactionHash"], int(log["logIndex"], 16), exc)
            continue
        if event_type.name == "Transfer" and args["value"] == "0":
            continue  # moves nothing: anyone can emit it
        rows.append({
            "chain_id": chain_id, "block_number": int(log["blockNumber"], 16), "block_hash": log["blockHash"],
            "tx_hash": log["transactionHash"], "tx_index": int(log["transactionIndex"], 16),
            "log_index": int(log["logIndex"], 16), "address": address, "name": event_type.name, "args": args,
        })
    return rows


# ---------------------------------------------------------------------------------------------
# Storing


_COLUMNS = ("chain_id", "block_number", "block_hash", "tx_hash", "tx_index", "log_index", "address", "name", "args")
_STAGE = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS chain_event_stage AS
SELECT {", ".join(_COLUMNS)} FROM chain_chainevent WITH NO DATA
"""
_INSERT = f"""
INSERT INTO chain_chainevent ({", ".join(_COLUMNS)})
SELECT {", ".join(_COLUMNS)} FROM chain_event_stage ORDER BY block_number, log_index
ON CONFLICT (chain_id, tx_hash, log_index) DO NOTHING
RETURNING id, tx_hash, log_index
"""


def _insert(rows: list[dict]) -> list[Event]:
    """COPY the rows into a temporary table, then insert those not stored yet; returns them as
    Events, in chain order (no query back)."""
    with connection.cursor() as cursor:
        cursor.execute(_STAGE)
        cursor.execute("TRUNCATE chain_event_stage")
        pg = cursor.cursor  # psycopg's own, for COPY
        with pg.copy(f"COPY chain_event_stage ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] if c != "args" else json.dumps(row[c]) for c in _COLUMNS])
        cursor.execute(_INSERT)
        ids = {(tx_hash, log_index): pk for pk, tx_hash, log_index in cursor.fetchall()}
    return [Event(id=ids[(row["tx_hash"], row["log_index"])], **row)
            for row in rows if (row["tx_hash"], row["log_index"]) in ids]


def store_range(chain_id: int, rows: list[dict], last: int, last_hash: str) -> list[Event]:
    """In the caller's transaction: insert the range's events, call the handlers with the new
    ones, keep the block hashes and move the cursor to `last`."""
    inserted = _insert(rows) if rows else []
    for names, handler in _handlers:
        mine = [event for event in inserted if event.name in names]
        if mine:
            handler(mine)
    blocks = {row["block_number"]: row["block_hash"] for row in rows}
    blocks[last] = last_hash
    newest = sorted(blocks)[-KEEP_BLOCKS:]
    IndexedBlock.objects.bulk_create(
        [IndexedBlock(chain_id=chain_id, number=n, hash=blocks[n]) for n in newest],
        update_conflicts=True, unique_fields=["chain_id", "number"], update_fields=["hash"])
    keep = (IndexedBlock.objects.filter(chain_id=chain_id).order_by("-number")
            .values_list("number", flat=True)[KEEP_BLOCKS - 1:KEEP_BLOCKS].first())
    if keep is not None:
        IndexedBlock.objects.filter(chain_id=chain_id, number__lt=keep).delete()
    IndexerCursor.objects.filter(chain_id=chain_id).update(
        block_number=last, block_hash=last_hash, failures=0, error="", retry_at=None, updated_at=timezone.now())
    return inserted


def rewind(w3: Web3, chain_id: int) -> tuple[int, int]:
    """After a reorganisation: find the newest kept block the chain still has, roll back every
    event after it (rollback handlers first) and move the cursor there. Returns (ancestor block,
    events orphaned). Raises ReorgTooDeep when no kept block is on the chain any more."""
    ancestor = None
    for block in IndexedBlock.objects.filter(chain_id=chain_id).order_by("-number"):
        if block_hash(w3, block.number) == block.hash:
            ancestor = block
            break
    if ancestor is None:
        raise ReorgTooDeep(
            f"chain {chain_id} reorganised deeper than the {KEEP_BLOCKS} block hashes the indexer keeps: "
            "none of them is on the chain any more. Reset the chain-derived rows "
            "('manage.py deploy_contracts --forget-chain') or raise CHAIN_CONFIRMATIONS."
        )
    with transaction.atomic():
        IndexerCursor.objects.select_for_update().get(chain_id=chain_id)
        orphaned = [Event(**row) for row in ChainEvent.objects.filter(
            chain_id=chain_id, block_number__gt=ancestor.number).order_by("block_number", "log_index").values(
            *EVENT_FIELDS)]
        for handler in _rollback_handlers:
            handler(chain_id, ancestor.number, orphaned)
        ChainEvent.objects.filter(chain_id=chain_id, block_number__gt=ancestor.number).delete()
        IndexedBlock.objects.filter(chain_id=chain_id, number__gt=ancestor.number).delete()
        IndexerCursor.objects.filter(chain_id=chain_id).update(
            block_number=ancestor.number, block_hash=ancestor.hash, updated_at=timezone.now())
    logger.warning("indexer: chain %d reorganised; rolled back %d event(s) after block %d",
                   chain_id, len(orphaned), ancestor.number)
    return ancestor.number, len(orphaned)


def start_cursor(w3: Web3, chain_id: int) -> IndexerCursor | None:
    """The cursor, created just below the first watched deployment's block; None while nothing
    is deployed."""
    cursor = IndexerCursor.objects.filter(chain_id=chain_id).first()
    if cursor is not None:
        return cursor
    first = (Deployment.objects.filter(chain_id=chain_id, contract__in=WATCHED_CONTRACTS)
             .order_by("block_number").values_list("block_number", flat=True).first())
    if first is None:
        return None
    number = max(first - 1, 0)
    found = block_hash(w3, number)
    if found is None:
        raise IndexerError(f"block {number} of chain {chain_id} is missing: is CHAIN_RPC_URL the right node?")
    with transaction.atomic():
        cursor, created = IndexerCursor.objects.get_or_create(
            chain_id=chain_id, defaults={"block_number": number, "block_hash": found})
        if created:
            IndexedBlock.objects.update_or_create(chain_id=chain_id, number=number, defaults={"hash": found})
    return cursor


# ---------------------------------------------------------------------------------------------
# Running


@contextmanager
def indexer_lock(chain_id: int):
    """True while this process holds the chain's indexer lock (a session advisory lock), False
    when another run holds it."""
    key = f"chain.indexer:{chain_id}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [key])
        held = cursor.fetchone()[0]
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])


def index_chain(w3: Web3 | None = None, *, through: int | None = None, confirmations: int | None = None,
                range_size: int | None = None, max_ranges: int | None = None) -> IndexReport:
    """Read the chain forward from the cursor to `CHAIN_CONFIRMATIONS` below the head (or to
    `through`, if lower), range by range, each range stored with its handlers in one
    transaction. Returns what it did; another run holding the lock, or a back-off after
    failures, make it return at once (`skipped`)."""
    chain_id = settings.CHAIN_ID
    report = IndexReport(chain_id=chain_id)
    confirmations = settings.CHAIN_CONFIRMATIONS if confirmations is None else confirmations
    range_size = range_size or settings.CHAIN_LOG_RANGE
    w3 = w3 or get_web3()
    with indexer_lock(chain_id) as held:
        if not held:
            report.skipped = "another run holds the indexer lock"
            return report
        cursor = IndexerCursor.objects.filter(chain_id=chain_id).first()
        if cursor and cursor.retry_at and cursor.retry_at > timezone.now():
            report.skipped = f"backing off until {cursor.retry_at.isoformat()} ({cursor.error})"
            return report
        try:
            _run(w3, chain_id, report, confirmations, range_size, through, max_ranges)
        except (requests.RequestException, Web3RPCError, OSError) as exc:
            _failed(chain_id, exc)
            raise
    return report


def _run(w3, chain_id, report, confirmations, range_size, through, max_ranges):
    check_chain_id(w3)  # WrongChain: never mix another chain's events into this one's
    cursor = start_cursor(w3, chain_id)
    if cursor is None:
        report.skipped = "no contracts deployed on this chain"
        return
    watched = watch(chain_id)
    moved = 0
    while max_ranges is None or report.ranges < max_ranges:
        report.head = w3.eth.block_number
        target = report.head - confirmations
        if through is not None:
            target = min(target, through)
        cursor.refresh_from_db()
        report.through = cursor.block_number
        if cursor.block_number >= target:
            if block_hash(w3, cursor.block_number) != cursor.block_hash:
                _rewound(w3, chain_id, report)
                continue
            break
        if block_hash(w3, cursor.block_number) != cursor.block_hash:
            _rewound(w3, chain_id, report)
            continue
        last = min(target, cursor.block_number + range_size)
        read = read_range(w3, chain_id, watched, cursor.block_number + 1, last, cursor.block_hash)
        if read is None:  # the chain moved under the read: check for a reorganisation and read again
            moved += 1
            if moved >= MAX_MOVED_READS:
                report.skipped = f"the chain changed under {moved} reads in a row; the next run reads again"
                return
            continue
        rows, last_hash = read
        moved = 0
        with transaction.atomic():
            locked = IndexerCursor.objects.select_for_update().get(chain_id=chain_id)
            if locked.block_number != cursor.block_number:
                raise IndexerError("the indexer's cursor moved under a run holding the lock")
            inserted = store_range(chain_id, rows, last, last_hash)
        if any(row["name"] == "TokenConfigured" for row in rows):
            watched = watch(chain_id)
        report.ranges += 1
        report.events += len(inserted)
        report.through = last


def _rewound(w3, chain_id, report):
    _ancestor, orphaned = rewind(w3, chain_id)
    report.reorgs += 1
    report.orphaned += orphaned


def _failed(chain_id: int, exc: Exception) -> None:
    """Record a run that the node failed, and when the next may try (doubling up to MAX_BACKOFF)."""
    cursor = IndexerCursor.objects.filter(chain_id=chain_id).first()
    if cursor is None:
        return
    failures = cursor.failures + 1
    delay = min(MAX_BACKOFF, 2 ** min(failures - 1, 10))
    IndexerCursor.objects.filter(chain_id=chain_id).update(
        failures=failures, error=redact_rpc_url(f"{type(exc).__name__}: {exc}")[:2000],
        retry_at=timezone.now() + timedelta(seconds=delay), updated_at=timezone.now())

"""Money that reaches the market without an order: each token transfer into the market that no
`OrderCreated` of its transaction explains, attributed per log by the indexer's handler.

- A pushed authorization (the log just before the transfer is its own token's EIP-3009
  `AuthorizationUsed` naming the transfer's `from`: someone sent a payer's x402 authorization
  straight to the token) goes
  back to that payer, by the transfer's own value, answering the transfer's reference (each is
  answered once on-chain): queued for the operator sender (`return_surplus`, batched through
  `returnSurplusBatch`) when the operator key holds ARBITER_ROLE, else listed for the arbiter's
  wallet on the console's returns page. Below `STRAY_RETURN_DUST` it is only recorded.
- Mints are not money anyone sent, and are skipped.
- Any other transfer waits for an arbiter's review (the console's returns page).

The indexer reads blocks only once they have `CHAIN_CONFIRMATIONS`, so a return is queued once
its transfer has them. Returns are never computed from the market's balance less its escrow: only
from each transfer's value. `SurplusReturned` marks a row returned (whoever sent it); a
reorganisation that drops a stray transfer deletes its row and cancels a return not sent yet, and
one that drops the return puts the row back where it was.
"""
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from eth_utils import to_checksum_address

from marketplace.chain.contracts import DataMarket, surplus_reference
from marketplace.chain.indexer import (
    EVENT_FIELDS, Event, pushed_authorization, transfer_positions, unexplained_transfers,
)
from marketplace.chain.models import ChainEvent, OperatorAction
from marketplace.chain.services import deployed_address

from .models import StrayTransfer

Status = StrayTransfer.Status
#: The most returns one transaction prepared for the arbiter's wallet carries.
WALLET_BATCH = 100


def dust() -> int:
    """The smallest amount returned automatically, in base units (below it: recorded as dust)."""
    return int(settings.STRAY_RETURN_DUST)


def _market(chain_id: int) -> str | None:
    address = deployed_address(chain_id, "DataMarket")
    return to_checksum_address(address) if address else None


def _row(event: Event) -> dict:
    return {"tx_hash": event.tx_hash, "log_index": event.log_index, "block_number": event.block_number,
            "name": event.name, "address": event.address, "args": event.args}


def on_transfers(events: list[Event]) -> None:
    """The indexer's handler for a range's new `Transfer` and `OrderCreated` events (in its
    transaction): each transfer into the market that its transaction's
    `OrderCreated` events do not explain becomes a `StrayTransfer`, and the pushed authorizations
    above the dust threshold are returned. Ordinary purchases are explained by the range's own
    events, with no query."""
    chain_id = events[0].chain_id
    market = _market(chain_id)
    if market is None:
        return
    candidates = unexplained_transfers(market, [_row(e) for e in events if e.name in ("Transfer", "OrderCreated")])
    if not candidates:
        return
    # The candidates' transactions as stored (by the indexer, in this same transaction: a block's
    # logs are always read in one range), so a transfer seen again is judged as the first time.
    into = {(r["tx_hash"], r["log_index"]) for r in candidates}
    siblings = list(ChainEvent.objects.filter(
        chain_id=chain_id, tx_hash__in={tx for tx, _ in into},
        name__in=("OrderCreated", "Transfer", "AuthorizationUsed")).values(*EVENT_FIELDS))
    strays = [row for row in unexplained_transfers(market, siblings) if (row["tx_hash"], row["log_index"]) in into]
    known = set(StrayTransfer.objects.filter(
        chain_id=chain_id, tx_hash__in={r["tx_hash"] for r in strays}).values_list("tx_hash", "log_index"))
    strays = [r for r in strays if (r["tx_hash"], r["log_index"]) not in known]
    if not strays:
        return
    positions = transfer_positions(market, siblings)
    rows = []
    for r in strays:
        args = r["args"]
        pushed = pushed_authorization(r, siblings)
        amount = int(args["value"])
        rows.append(StrayTransfer(
            chain_id=chain_id, market=market, token=r["address"], payer=args["from"], amount=amount,
            kind=StrayTransfer.Kind.AUTHORIZATION if pushed else StrayTransfer.Kind.PLAIN,
            status=(Status.REVIEW if not pushed else Status.DUST if amount < dust() else Status.RETURNING),
            ref="0x" + surplus_reference(r["tx_hash"], r["address"], positions[(r["tx_hash"], r["log_index"])]).hex(),
            tx_hash=r["tx_hash"],
            log_index=r["log_index"], block_number=r["block_number"]))
    returning = [row for row in rows if row.status == Status.RETURNING]
    if returning:
        queue_returns(returning)
    StrayTransfer.objects.bulk_create(rows)


def queue_returns(rows: list[StrayTransfer]) -> None:
    """Queue each row's return for the operator sender when the operator key holds ARBITER_ROLE
    (the rows keep their action), else leave it for the arbiter's wallet. Rows not saved yet."""
    from marketplace.outbox.services import enqueue

    from .admin import operator_is_arbiter

    if not operator_is_arbiter():
        for row in rows:
            row.status = Status.ARBITER
        return
    actions = OperatorAction.objects.bulk_create([OperatorAction(
        kind=OperatorAction.Kind.RETURN_SURPLUS, chain_id=row.chain_id, market=row.market,
        payload={"token": row.token, "to": row.payer, "amount": str(int(row.amount)), "ref": row.ref},
        on_done="marketplace.orders.strays.on_return_done",
        context={"stray": {"tx_hash": row.tx_hash, "log_index": row.log_index}}, created_by="indexer")
        for row in rows])
    for row, action in zip(rows, actions):
        row.status, row.action = Status.RETURNING, action
    enqueue("chain.send_operator_actions")


def on_returned(events: list[Event]) -> None:
    """The indexer's handler for `SurplusReturned`: the stray transfer it answers is returned,
    with the return's transaction (sent by the operator or from the arbiter's wallet)."""
    for event in events:
        StrayTransfer.objects.filter(chain_id=event.chain_id, market=event.address, ref=event.args["ref"]).update(
            status=Status.RETURNED, return_tx_hash=event.tx_hash, return_block=event.block_number, error="",
            updated_at=timezone.now())


def on_return_done(action: OperatorAction) -> None:
    """The operator sender settled a return (in its transaction). Confirmed: the indexer has
    already marked the row returned from its `SurplusReturned`. Failed: the row waits for the
    arbiter's wallet when the operator lost ARBITER_ROLE, else it says why (an arbiter may retry the
    action from the console's failed actions)."""
    if action.status != OperatorAction.Status.FAILED:
        return
    stray = (action.context or {}).get("stray") or {}
    rows = StrayTransfer.objects.filter(chain_id=action.chain_id, market=action.market, ref=action.payload.get("ref"),
                                        status=Status.RETURNING)
    if stray:
        rows = rows.filter(tx_hash=stray.get("tx_hash"), log_index=stray.get("log_index"))
    lost_role = "ARBITER_ROLE" in action.error
    rows.update(status=Status.ARBITER if lost_role else Status.FAILED, error=action.error[:2000],
                updated_at=timezone.now())


def on_rollback(chain_id: int, ancestor: int, orphaned: list[Event]) -> None:
    """A stray transfer of an orphaned block was never made: its row goes and a return not sent
    yet is cancelled (one already sent would revert for want of surplus, or answers a transfer
    the chain may mine again). A return of an orphaned block is not made any more: its row is
    back where it was before it."""
    gone = StrayTransfer.objects.filter(chain_id=chain_id, block_number__gt=ancestor)
    OperatorAction.objects.filter(pk__in=gone.exclude(action=None).values("action"),
                                  status=OperatorAction.Status.PENDING).update(
        status=OperatorAction.Status.CANCELLED, updated_at=timezone.now(),
        error="the stray transfer it returns left the chain in a reorganisation")
    gone.delete()
    undone = StrayTransfer.objects.filter(chain_id=chain_id, return_block__gt=ancestor)
    undone.filter(action=None).update(status=Status.ARBITER, return_tx_hash="", return_block=None,
                                      updated_at=timezone.now())
    undone.exclude(action=None).update(status=Status.RETURNING, return_tx_hash="", return_block=None,
                                       updated_at=timezone.now())


# Reads -----------------------------------------------------------------------------------------


def of_payer(address: str):
    """The money `address` sent to the market without an order, newest first."""
    return StrayTransfer.objects.filter(payer=address).order_by("-block_number", "-log_index")


def for_arbiter(chain_id: int, *, payer: str | None = None, kind: str | None = None) -> dict:
    """The console's returns page: pushed authorizations waiting for the arbiter's wallet (with the
    one `returnSurplusBatch` transaction that returns them), plain transfers to review, failed
    returns, and the latest returns; only `payer`'s, and of `kind`, when given."""
    market = _market(chain_id)
    mine = StrayTransfer.objects.filter(chain_id=chain_id, market=market).order_by("block_number", "log_index")
    if payer:
        mine = mine.filter(payer=payer)
    if kind:
        mine = mine.filter(kind=kind)
    waiting = list(mine.filter(status=Status.ARBITER)[:WALLET_BATCH])
    return {
        "waiting": waiting, "prepared": prepared_transaction(waiting),
        "review": list(mine.filter(Q(status=Status.REVIEW) | Q(status=Status.FAILED))[:500]),
        "recent": list(mine.filter(status__in=(Status.RETURNED, Status.RETURNING, Status.DUST))
                       .order_by("-block_number", "-log_index")[:50]),
    }


def prepared_transaction(rows: list[StrayTransfer]) -> dict | None:
    """The arbiter's `returnSurplusBatch` transaction returning these rows (None: none)."""
    if not rows:
        return None
    from marketplace.chain.client import get_web3

    market = DataMarket(get_web3(), rows[0].market)
    items = [(row.token, row.payer, int(row.amount), bytes.fromhex(row.ref[2:])) for row in rows]
    return {"from": settings.CHAIN_ARBITER or None, "to": rows[0].market, "chainId": hex(rows[0].chain_id),
            "data": market.contract.encode_abi("returnSurplusBatch", args=[items]), "value": "0x0"}

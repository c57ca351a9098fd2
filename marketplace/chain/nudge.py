"""The nudge: a page that sent a transaction posts its hash, and the chain indexer reads through
that transaction's block now instead of at beat's next run.

`mined(tx_hash)` reads the receipt (its block, its status, the confirmations so far);
`read_through(nudge)` then runs the indexer through that block once it has
`CHAIN_CONFIRMATIONS + 1` blocks, in order and with the same handlers as any other run, so the
caller answers from the rows the handlers wrote (an order, a listing), or with 202 and the
confirmations so far. Nothing here writes a row of its own. Used by `POST /api/v1/purchases`
(orders) and the listing endpoints (catalog); chain/ imports no app.
"""
from dataclasses import dataclass, replace
import logging

from django.conf import settings
from requests import RequestException
from web3 import Web3
from web3.exceptions import TransactionNotFound

from . import indexer
from .client import get_web3, redact_rpc_url
from .models import IndexerCursor

logger = logging.getLogger(__name__)


class NotMined(Exception):
    """The node does not know the transaction: not mined yet, or never sent."""


class NodeDown(Exception):
    """The node did not answer, or the indexer could not read through the block (it recorded why
    and backs off)."""


@dataclass(frozen=True)
class Nudge:
    tx_hash: str  # lower case
    block_number: int
    succeeded: bool  # the receipt's status
    confirmations: int  # blocks on top of the transaction's, its own included
    needed: int  # CHAIN_CONFIRMATIONS + 1
    read: bool = False  # the indexer has stored every event through the transaction's block

    @property
    def confirmed(self) -> bool:
        return self.confirmations >= self.needed

    @property
    def progress(self) -> dict:
        """The 202 body while the block waits for its confirmations."""
        return {"confirmations": max(self.confirmations, 0), "needed": self.needed}


def mined(tx_hash: str, *, w3: Web3 | None = None) -> Nudge:
    """The transaction's receipt as a Nudge (not read yet). Raises NotMined, NodeDown."""
    w3 = w3 or get_web3()
    tx_hash = tx_hash.lower()
    try:
        receipt = w3.eth.get_transaction_receipt(tx_hash)
        head = w3.eth.block_number
    except TransactionNotFound:
        raise NotMined(tx_hash) from None
    except (RequestException, OSError) as exc:
        logger.warning("nudge: the node did not answer for %s: %s", tx_hash,
                       redact_rpc_url(str(exc)))
        raise NodeDown(tx_hash) from None
    block = receipt["blockNumber"]
    return Nudge(tx_hash=tx_hash, block_number=block, succeeded=receipt["status"] == 1,
                 confirmations=head - block + 1, needed=settings.CHAIN_CONFIRMATIONS + 1)


def read_through(nudge: Nudge, *, w3: Web3 | None = None) -> Nudge:
    """Run the indexer through the nudge's block if it has its confirmations; returns the nudge
    with `read` saying whether the stored events now reach that block (a run that another one
    holding the lock skipped may leave it behind: ask again). Each run first checks the cursor's
    block hash, so what it answers from is on the chain the node has now. Raises NodeDown."""
    if not nudge.confirmed:
        return nudge
    try:
        indexer.index_chain(w3 or get_web3(), through=nudge.block_number)
    except Exception as exc:  # the node (recorded on the cursor, with its back-off), or the indexer
        logger.warning("nudge: the indexer did not read through block %d: %s: %s",
                       nudge.block_number, type(exc).__name__, redact_rpc_url(str(exc)))
        raise NodeDown(nudge.tx_hash) from None
    cursor = (IndexerCursor.objects.filter(chain_id=settings.CHAIN_ID)
              .values_list("block_number", flat=True).first())
    return replace(nudge, read=cursor is not None and cursor >= nudge.block_number)


def catch_up(tx_hash: str, *, w3: Web3 | None = None) -> Nudge:
    """`mined` then `read_through`, on one connection to the node."""
    w3 = w3 or get_web3()
    return read_through(mined(tx_hash, w3=w3), w3=w3)

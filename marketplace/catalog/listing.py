"""On-chain listings of dataset versions: the wallet transactions that list a version, change
its price or stop and resume its sale, and the answers to the transaction hashes its owner posts.

The chain indexer's handlers (`catalog.handlers`) are the only writers of listing rows. The owner's
page gets a transaction for the wallet (`prepare_listing`, `prepare_listing_update`,
`prepare_listing_active`), the wallet sends it, and the page posts its hash: `listing_created`,
`listing_updated` and `listing_active_set` nudge the indexer through that transaction's block
(`chain.nudge`: in order, after the confirmations, through the same handlers as beat's runs) and
answer from the rows the handlers wrote, or with the refusal the page shows (a failed transaction,
a transaction that listed nothing, a listing of another file, owner or token, another version's
listing). While the block waits for its confirmations they answer `waiting` (202 in the API).

The operator sender calls `on_operator_action` once an approval or clearing the catalog queued is
settled; the indexer's ListingApprovalSet handler marks the listing and its dataset.
"""
from dataclasses import dataclass, field
import logging
import re

from django.conf import settings
from eth_utils import to_checksum_address
import requests

from marketplace.chain import nudge
from marketplace.chain.client import get_web3, redact_rpc_url, rpc_endpoint
from marketplace.chain.constants import max_price
from marketplace.chain.contracts import DataMarket
from marketplace.chain.indexer import EVENT_FIELDS, Event
from marketplace.chain.models import ChainEvent, OperatorAction
from marketplace.chain.services import deployed_address

from . import handlers
from .models import Dataset, DatasetVersion, Listing

logger = logging.getLogger(__name__)

TX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
DEFAULT_DISPUTE_WINDOW = 3 * 24 * 3600  # seconds; settings.DEFAULT_DISPUTE_WINDOW overrides
CREATE_LISTING = "createListing"
UPDATE_LISTING = "updateListing"
SET_LISTING_ACTIVE = "setListingActive"


class ListingError(Exception):
    """A refusal the API shows as it is: a stable code, a message for people, an HTTP status."""

    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def dispute_window() -> int:
    """The window prepared listings get: the default, never below the market's minimum (a
    shorter one would make createListing revert)."""
    default = int(getattr(settings, "DEFAULT_DISPUTE_WINDOW", DEFAULT_DISPUTE_WINDOW))
    return max(default, settings.MARKET_MIN_DISPUTE_WINDOW)


def _market_address(chain_id: int) -> str:
    address = deployed_address(chain_id, "DataMarket")
    if address is None:
        raise ListingError("market_not_deployed", f"No DataMarket is deployed on chain {chain_id}.",
                           status=503)
    return address


def _market(chain_id: int) -> DataMarket:
    return DataMarket(get_web3(), _market_address(chain_id))  # sends nothing to the node


def _require_wallet(dataset: Dataset) -> None:
    if not dataset.owner.address:
        raise ListingError("no_wallet", "The dataset's owner has no wallet address to list from.")


def _wallet_transaction(market: DataMarket, sender: str, function: str, args: list) -> dict:
    """`eth_sendTransaction` parameters calling `function(*args)` on the market, and its ABI."""
    fragment = next(item for item in market.contract.abi
                    if item.get("type") == "function" and item.get("name") == function)
    return {
        "abi": [fragment],
        "transaction": {"from": sender, "to": market.address, "data": market.contract.encode_abi(function, args=args),
                        "value": "0x0", "chainId": hex(settings.CHAIN_ID)},
    }


def _chain_unavailable(exc=None) -> ListingError:
    """The refusal when the node fails: the detail (redacted) goes to the log, never to the
    client, since CHAIN_RPC_URL may hold a provider's key (chain.nudge logs its own)."""
    if exc is not None:
        logger.warning("chain node %s did not answer: %s: %s", rpc_endpoint(), type(exc).__name__,
                       redact_rpc_url(str(exc)))
    return ListingError("chain_unavailable", "The chain node did not answer; try again in a "
                        "moment.", status=503)


def prepare_listing(version: DatasetVersion) -> dict:
    """What the publisher's wallet sends to list `version`: `eth_sendTransaction` with `to` and
    `data` (from the owner's address), plus the decoded terms to show before signing."""
    dataset = version.dataset
    chain_id = settings.CHAIN_ID
    _require_wallet(dataset)
    if version.listings.filter(chain_id=chain_id).exists():
        raise ListingError("already_listed", f"Version {version.number} is already listed on-chain.", status=409)
    market = _market(chain_id)
    owner = dataset.owner.address
    payout = to_checksum_address(dataset.payout_address or owner)
    args = [to_checksum_address(version.token), int(version.price), payout, version.content_hash, dispute_window()]
    return {
        "chain_id": chain_id,
        "market": market.address,
        "from": owner,
        "token": args[0],
        "price": str(args[1]),
        "payout": payout,
        "content_hash": version.content_hash,
        "dispute_window": args[4],
        "function": "createListing(address,uint256,address,bytes32,uint32)",
        **_wallet_transaction(market, owner, CREATE_LISTING, args),
    }


def _linked_listing(version: DatasetVersion, chain_id: int) -> Listing:
    listing = version.listings.filter(chain_id=chain_id).order_by("-block_number").first()
    if listing is None:
        raise ListingError("not_listed", f"Version {version.number} is not listed on-chain yet: list it first.",
                           status=409)
    return listing


def prepare_listing_update(version: DatasetVersion, *, price: int | None = None, payout: str | None = None) -> dict:
    """What the owner's wallet sends to change the price and/or payout address of `version`'s
    listing: `updateListing(listingId, price, payout)`. The contract takes both, so whichever is
    not given keeps its current on-chain value (read from the chain, the source of truth, which
    also proves the listing still exists and is the owner's). Raises ListingError."""
    dataset = version.dataset
    _require_wallet(dataset)
    chain_id = settings.CHAIN_ID
    listing = _linked_listing(version, chain_id)
    if price is not None and not 0 < price <= max_price():  # DataMarket.MAX_PRICE, from its artifact
        raise ListingError("invalid_price", f"The price must be above 0 and at most {max_price()} base units.")
    if payout is not None and int(payout, 16) == 0:
        raise ListingError("invalid_payout", "The payout address must not be the zero address.")
    market = _market(chain_id)
    try:
        current = market.get_listing(int(listing.listing_id))
    except (requests.RequestException, OSError) as exc:
        raise _chain_unavailable(exc) from None
    owner = to_checksum_address(dataset.owner.address)
    if int(current["owner"], 16) == 0:
        raise ListingError("unknown_listing", f"Listing #{listing.listing_id} does not exist on the chain (was the "
                           "chain reset?): list the version again.", status=409)
    if current["owner"] != owner:
        raise ListingError("not_listing_owner", f"Listing #{listing.listing_id} is owned on-chain by "
                           f"{current['owner']}, not by the dataset's owner {owner}.", status=409)
    new_price = int(current["price"]) if price is None else int(price)
    new_payout = current["payout"] if payout is None else to_checksum_address(payout)
    if new_price == current["price"] and new_payout == current["payout"]:
        raise ListingError("no_change", "The listing already has this price and payout address.")
    args = [int(listing.listing_id), new_price, new_payout]
    return {
        "chain_id": chain_id,
        "market": market.address,
        "from": owner,
        "listing_id": str(listing.listing_id),
        "price": str(new_price),
        "payout": new_payout,
        "current": {"price": str(current["price"]), "payout": current["payout"]},
        "function": "updateListing(uint256,uint256,address)",
        **_wallet_transaction(market, owner, UPDATE_LISTING, args),
    }


def prepare_listing_active(version: DatasetVersion, *, active: bool) -> dict:
    """What the owner's wallet sends to stop (or resume) selling `version`:
    `setListingActive(listingId, active)`. Stopping applies as soon as the chain has it; nothing
    public is shown that was not approved, so neither waits for a moderator."""
    dataset = version.dataset
    _require_wallet(dataset)
    chain_id = settings.CHAIN_ID
    listing = _linked_listing(version, chain_id)
    market = _market(chain_id)
    owner = to_checksum_address(dataset.owner.address)
    return {
        "chain_id": chain_id,
        "market": market.address,
        "from": owner,
        "listing_id": str(listing.listing_id),
        "active": active,
        "function": "setListingActive(uint256,bool)",
        **_wallet_transaction(market, owner, SET_LISTING_ACTIVE, [int(listing.listing_id), active]),
    }


# The owner's posted transactions -------------------------------------------------------------


@dataclass
class Answer:
    """What a transaction the owner posted did to a version's listing, as the indexer's handlers
    wrote it; only `waiting` (the confirmations so far) while its block waits for them."""

    listing: Listing | None = None
    updates: list = field(default_factory=list)  # the transaction's ListingUpdate rows
    created: bool = False  # the rows were written while this request caught the indexer up
    waiting: nudge.Nudge | None = None


def _mined(tx_hash: str, *, w3=None) -> nudge.Nudge:
    """The transaction's receipt (its status is the caller's to check), or a ListingError saying
    why not: a malformed hash, not mined yet (409), the node down (503)."""
    if not isinstance(tx_hash, str) or not TX_HASH.match(tx_hash):
        raise ListingError("invalid_tx_hash", "Give the transaction's hash (0x and 64 hex digits).")
    try:
        return nudge.mined(tx_hash, w3=w3)
    except nudge.NotMined:
        raise ListingError("not_mined", "The transaction is not mined yet (or unknown to the "
                           "chain); try again in a few seconds.", status=409) from None
    except nudge.NodeDown:
        raise _chain_unavailable() from None


def _read_through(mined: nudge.Nudge, *, w3=None) -> nudge.Nudge:
    try:
        return nudge.read_through(mined, w3=w3)
    except nudge.NodeDown:
        raise _chain_unavailable() from None


def _failed(mined: nudge.Nudge, what: str) -> ListingError:
    return ListingError("transaction_failed", f"Transaction {mined.tx_hash} failed on-chain; it "
                        f"{what}.")


def _events(chain_id: int, tx_hash: str, name: str) -> list[Event]:
    """The `name` events the deployed market emitted in the transaction, as the indexer stored
    them (a look-alike event of any other contract is never stored)."""
    rows = ChainEvent.objects.filter(chain_id=chain_id, tx_hash=tx_hash.lower(), name=name,
                                     address=_market_address(chain_id))
    return [Event(**row) for row in rows.order_by("log_index").values(*EVENT_FIELDS)]


def listing_created(version: DatasetVersion, tx_hash: str) -> Answer:
    """`POST .../listing`: the listing that the owner's createListing transaction `tx_hash`
    created for `version`, once the indexer has read its block. Raises ListingError."""
    _require_wallet(version.dataset)
    chain_id = settings.CHAIN_ID
    _market_address(chain_id)
    mined = _mined(tx_hash)
    if not mined.succeeded:
        raise _failed(mined, "created no listing")
    known = Listing.objects.filter(chain_id=chain_id, tx_hash=mined.tx_hash).exists()
    mined = _read_through(mined)
    if not mined.read:
        return Answer(waiting=mined)
    return Answer(listing_of(version, mined.tx_hash), created=not known)


def listing_of(version: DatasetVersion, tx_hash: str) -> Listing:
    """`version`'s listing created by transaction `tx_hash`, from the events the indexer stored
    (the caller had it read through the transaction's block). A listing the handler could not
    tell the version of (several of the owner's versions have that file, or the version was
    uploaded after the listing) is linked to `version` now, with the handler's checks. Raises
    ListingError saying why it is not `version`'s listing."""
    chain_id = settings.CHAIN_ID
    tx_hash = tx_hash.lower()
    linked = Listing.objects.filter(chain_id=chain_id, version=version, tx_hash=tx_hash).first()
    if linked is not None:
        return linked
    created = _events(chain_id, tx_hash, "ListingCreated")
    if not created:
        raise ListingError("no_listing", f"Transaction {tx_hash} created no listing on the "
                           f"DataMarket at {_market_address(chain_id)}.")
    # A contract wallet may create several listings in one transaction: take the version's.
    matching = [e for e in created
                if e.args["contentHash"].lower() == version.content_hash.lower()]
    if not matching:
        raise ListingError("content_hash_mismatch", f"The listing's content hash "
                           f"{created[0].args['contentHash']} is not version {version.number}'s "
                           f"{version.content_hash}: list this version's file.")
    event = matching[0]
    args, owner = event.args, to_checksum_address(version.dataset.owner.address)
    refused = handlers.refusal(version, event)
    if refused == "not_dataset_owner":
        raise ListingError(refused, f"The listing is owned by {args['owner']}, not by the "
                           f"dataset's owner {owner}: list it from the owner's wallet.")
    if refused == "token_mismatch":
        raise ListingError(refused, f"The listing's token {args['token']} is not version "
                           f"{version.number}'s {to_checksum_address(version.token)}: list it in "
                           "that token.")
    if refused == "token_not_allowed":
        raise ListingError(refused, f"The listing's token {args['token']} is not accepted by the "
                           "market.")
    listing = Listing.objects.filter(chain_id=chain_id, listing_id=int(args["listingId"])).first()
    if listing is None:
        other = version.listings.filter(chain_id=chain_id).first()
        if other is not None:
            raise ListingError("already_listed", f"Version {version.number} is already listed "
                               f"on-chain as #{other.listing_id}; a version has one listing.",
                               status=409)
        listing = handlers.link(version, event)
        if listing is None:
            raise ListingError("listing_changed", f"Listing #{args['listingId']} changed on the "
                               "chain meanwhile (a reorganisation?): post the transaction again.",
                               status=409)
    if listing.version_id != version.pk:
        raise ListingError("already_linked", "This listing is already linked to another dataset "
                           "version.", status=409)
    return listing


def _posted_change(version: DatasetVersion, tx_hash: str):
    """(the version's listing, the mined transaction) of a change the owner posted; raises
    ListingError for a transaction not mined or failed, or a version not listed."""
    _require_wallet(version.dataset)
    mined = _mined(tx_hash)
    listing = _linked_listing(version, settings.CHAIN_ID)
    if not mined.succeeded:
        raise _failed(mined, "changed no listing")
    return listing, mined


def listing_updated(version: DatasetVersion, tx_hash: str) -> Answer:
    """`POST .../listing/update`: the price and payout that the owner's updateListing transaction
    `tx_hash` set on `version`'s listing, once the indexer has read its block (the listing carries
    the terms of its latest event on the chain, so an older transaction posted late rolls nothing
    back). Raises ListingError."""
    listing, mined = _posted_change(version, tx_hash)
    known = listing.updates.filter(tx_hash=mined.tx_hash).exists()
    mined = _read_through(mined)
    if not mined.read:
        return Answer(waiting=mined)
    updated = _events(settings.CHAIN_ID, mined.tx_hash, "ListingUpdated")
    if not updated:
        raise ListingError("no_listing_update", f"Transaction {mined.tx_hash} updated no listing "
                           f"on the DataMarket at {_market_address(settings.CHAIN_ID)}.")
    if not any(int(e.args["listingId"]) == listing.listing_id for e in updated):
        raise ListingError("listing_mismatch", f"Transaction {mined.tx_hash} updated listing "
                           f"#{updated[0].args['listingId']}, not version {version.number}'s "
                           f"listing #{listing.listing_id}.")
    listing = _linked_listing(version, settings.CHAIN_ID)  # as the handlers left it
    updates = list(listing.updates.filter(tx_hash=mined.tx_hash).order_by("log_index"))
    return Answer(listing, updates, created=bool(updates) and not known)


def listing_active_set(version: DatasetVersion, tx_hash: str) -> Answer:
    """`POST .../listing/active`: `version`'s listing once the indexer has read the owner's
    setListingActive transaction `tx_hash` (its active flag is the chain's latest, so an older
    transaction posted late rolls nothing back). Raises ListingError."""
    listing, mined = _posted_change(version, tx_hash)
    mined = _read_through(mined)
    if not mined.read:
        return Answer(waiting=mined)
    changed = _events(settings.CHAIN_ID, mined.tx_hash, "ListingActiveSet")
    if not any(int(e.args["listingId"]) == listing.listing_id for e in changed):
        raise ListingError("no_active_change", f"Transaction {mined.tx_hash} did not start or stop "
                           f"selling version {version.number}'s listing #{listing.listing_id}.")
    return Answer(_linked_listing(version, settings.CHAIN_ID))


def on_operator_action(action: OperatorAction) -> None:
    """Called by the operator sender, in its transaction, once an approval or clearing the catalog
    queued (services.approve_listings, clear_listing_approvals) is settled. The indexer's
    ListingApprovalSet handler marks the listing and its dataset from the event itself
    (catalog.handlers, which reads the action's intent); what is left here is to say when one
    failed: its listing stays as the chain has it, and the moderator's decision is not carried
    out until it is queued again."""
    if action.status != OperatorAction.Status.CONFIRMED:
        logger.warning("operator action #%s (%s, %s) for listing %s %s: %s", action.pk,
                       action.kind, (action.context or {}).get("intent"), action.listing_id,
                       action.status, action.error)


def unapproved_version(action, *, by_listing_id: bool = False) -> str:
    """Why approval `action` must not put its listing on sale: the listing's version is no longer
    approved, e.g. a moderator rejected it after the approval was queued or failed ("" when it
    is approved, or no listing is known). The listing is the one the catalog named in the
    action's context (services._queue_operator_action), or with `by_listing_id` the one of its
    listing id when the context names none. The operator sender asks this before it signs an
    approval (settings CHAIN_APPROVAL_CHECK), the console before it retries one."""
    listing_pk = (action.context or {}).get("listing")
    versions = DatasetVersion.objects.only("number", "review")
    by_id = versions.filter(listings__chain_id=action.chain_id, listings__listing_id=action.listing_id)
    if listing_pk is not None:
        # A listing row a reorganisation dropped and the indexer linked again has a new pk.
        version = versions.filter(listings__pk=listing_pk).first() or by_id.first()
        if version is None:
            return f"its listing {action.listing_id} is no longer linked to a version here: it is not put on sale"
    elif by_listing_id and action.listing_id is not None:
        version = by_id.first()
    else:
        return ""
    if version is None or version.review == DatasetVersion.Review.APPROVED:
        return ""
    state = "rejected" if version.review == DatasetVersion.Review.REJECTED else "waiting for review"
    return (f"version {version.number} of the dataset is {state}, not approved: its listing {action.listing_id} "
            "is not put on sale")

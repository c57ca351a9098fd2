"""On-chain listings of dataset versions, read from transaction receipts and getListing.

THE INDEXER'S TO REPLACE. Until the chain indexer exists, the places where the database learns
about listings from the chain live here and nowhere else (no log polling):

- `link_listing_from_receipt(version, tx_hash)`: the publisher's `createListing` transaction,
  read from its receipt, its terms from `getListing` (the indexer will handle `ListingCreated`);
- `mirror_listing_update_from_receipt(version, tx_hash)`: the owner's `updateListing`
  transaction (new price and payout), read from its receipt (`ListingUpdated`);
- `mirror_listing_active_from_receipt(version, tx_hash)`: the owner's `setListingActive`
  transaction (`ListingActiveSet`);
- `on_operator_action(action)`: the operator sender's `setApproval` receipt (`ListingApprovalSet`);
- `refresh_listing(listing)`: every term, read with `getListing`.

Each group of terms (price and payout, the active flag, the approved flag) remembers where on the
chain it was last seen (`chain_position`), so a receipt posted late never rolls a newer term back.
They only ever write what the chain says. `prepare_listing`, `prepare_listing_update` and
`prepare_listing_active` build the wallet's transactions and stay when the indexer comes.
"""
from dataclasses import dataclass
import logging
import re

from django.conf import settings
from django.db import IntegrityError, transaction
from eth_utils import to_checksum_address
import requests
from web3.exceptions import MismatchedABI, TransactionNotFound

from marketplace.chain.client import get_web3, redact_rpc_url, rpc_endpoint
from marketplace.chain.constants import max_price
from marketplace.chain.contracts import DataMarket
from marketplace.chain.models import OperatorAction
from marketplace.chain.services import deployed_address

from . import revisions
from .models import Dataset, DatasetVersion, Listing, ListingUpdate

logger = logging.getLogger(__name__)

TX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
DEFAULT_DISPUTE_WINDOW = 3 * 24 * 3600  # seconds; settings.DEFAULT_DISPUTE_WINDOW overrides
CREATE_LISTING = "createListing"
UPDATE_LISTING = "updateListing"
SET_LISTING_ACTIVE = "setListingActive"
ZERO_ADDRESS = "0x" + "00" * 20
LOGS_PER_BLOCK = 2**20  # chain positions: a block's logs, then reads made at its end


def chain_position(block: int, log_index: int | None = None) -> int:
    """Where on the chain something was seen, as one comparable number: an event at (block, log
    index), or a getListing read at a block (which sees the end of that block, after its logs)."""
    return block * LOGS_PER_BLOCK + (LOGS_PER_BLOCK - 1 if log_index is None else log_index)


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


def _market(chain_id: int) -> DataMarket:
    address = deployed_address(chain_id, "DataMarket")
    if address is None:
        raise ListingError("market_not_deployed", f"No DataMarket is deployed on chain {chain_id}.", status=503)
    return DataMarket(get_web3(), address)  # building it sends nothing to the node


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


def _chain_unavailable(exc) -> ListingError:
    """The refusal when the node fails: the detail (redacted) goes to the log, never to the
    client, since CHAIN_RPC_URL may hold a provider's key."""
    logger.warning("chain node %s did not answer: %s: %s", rpc_endpoint(), type(exc).__name__, redact_rpc_url(str(exc)))
    return ListingError("chain_unavailable", "The chain node did not answer; try again in a moment.", status=503)


def _receipt(tx_hash: str):
    """(chain id, market, receipt) of a mined transaction (its status is the caller's to check),
    or a ListingError saying why not: a malformed hash, not mined yet (409), the node down (503)."""
    if not isinstance(tx_hash, str) or not TX_HASH.match(tx_hash):
        raise ListingError("invalid_tx_hash", "Give the transaction's hash (0x and 64 hex digits).")
    w3 = get_web3()
    try:
        chain_id = w3.eth.chain_id
        market = _market(chain_id)
        receipt = w3.eth.get_transaction_receipt(tx_hash)
    except TransactionNotFound:
        raise ListingError("not_mined", "The transaction is not mined yet (or unknown to the chain); "
                           "try again in a few seconds.", status=409) from None
    except (requests.RequestException, OSError) as exc:
        raise _chain_unavailable(exc) from None
    return chain_id, market, receipt


def _market_events(market: DataMarket, receipt, event_name: str) -> list:
    """(log, args) of each `event_name` log the deployed market itself emitted in `receipt`."""
    event = getattr(market.contract.events, event_name)()
    found = []
    for log in receipt["logs"]:
        if to_checksum_address(log["address"]) != market.address:
            continue  # a look-alike event from any other contract proves nothing
        try:
            found.append((log, event.process_log(log)["args"]))
        except MismatchedABI:
            continue
    return found


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


@dataclass
class LinkResult:
    listing: Listing
    created: bool


def link_listing_from_receipt(version: DatasetVersion, tx_hash: str) -> LinkResult:
    """Link `version` to the listing that transaction `tx_hash` created, from its receipt.

    The indexer of a later issue replaces this (it will see `ListingCreated` itself); until then
    this is the only code that creates `Listing` rows. Only a `ListingCreated` log emitted by the
    deployed DataMarket counts; the listing must be owned by the dataset's owner, carry the
    version's content hash and be priced in the version's token, which the market allows. Idempotent on (tx_hash,
    log_index). Moves the dataset to pending review (a listed dataset stays listed while its new
    version waits for approval). Raises ListingError (409 while the transaction is not mined).
    """
    dataset = version.dataset
    _require_wallet(dataset)
    chain_id, market, receipt = _receipt(tx_hash)
    tx_hash = tx_hash.lower()
    if receipt["status"] != 1:
        raise ListingError("transaction_failed", f"Transaction {tx_hash} failed on-chain; it created no listing.")

    created = _market_events(market, receipt, "ListingCreated")
    if not created:
        raise ListingError("no_listing", f"Transaction {tx_hash} created no listing on the DataMarket at "
                           f"{market.address}.")
    # A contract wallet may create several listings in one transaction: take the version's.
    matching = [(log, args) for log, args in created
                if "0x" + bytes(args["contentHash"]).hex() == version.content_hash.lower()]
    if not matching:
        found = "0x" + bytes(created[0][1]["contentHash"]).hex()
        raise ListingError("content_hash_mismatch", f"The listing's content hash {found} is not version "
                           f"{version.number}'s {version.content_hash}: list this version's file.")
    log, args = matching[0]
    owner = to_checksum_address(dataset.owner.address)
    if args["owner"] != owner:
        raise ListingError("not_dataset_owner", f"The listing is owned by {args['owner']}, not by the dataset's "
                           f"owner {owner}: list it from the owner's wallet.")
    if args["token"] != to_checksum_address(version.token):
        # The page, the API and search show the version's token beside the listing's price: a
        # listing in another token would charge buyers in a currency they were not shown.
        raise ListingError("token_mismatch", f"The listing's token {args['token']} is not version "
                           f"{version.number}'s {to_checksum_address(version.token)}: list it in that token.")
    if not _token_allowed(market, args["token"]):
        raise ListingError("token_not_allowed", f"The listing's token {args['token']} is not accepted by the market.")
    block, current = _read_listing(market, args["listingId"])
    if current["owner"] != owner or "0x" + bytes(current["content_hash"]).hex() != version.content_hash.lower():
        raise ListingError("listing_changed", f"Listing #{args['listingId']} on the chain is no longer this "
                           "version's (was the chain reset?): list the version again.", status=409)

    seen = chain_position(block)
    fields = dict(
        chain_id=chain_id, listing_id=args["listingId"], version=version, owner=args["owner"],
        token=args["token"], price=current["price"], payout=current["payout"],
        dispute_window=current["dispute_window"], active=current["active"], approved=current["approved"],
        tx_hash=tx_hash, log_index=log["logIndex"], block_number=receipt["blockNumber"],
        price_seen_at=seen, active_seen_at=seen, approved_seen_at=seen,
    )
    with transaction.atomic():
        locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
        existing = Listing.objects.filter(tx_hash=tx_hash, log_index=log["logIndex"]).first()
        was_created = False
        if existing is None:
            other = version.listings.filter(chain_id=chain_id).first()
            if other is not None:
                raise ListingError("already_listed", f"Version {version.number} is already listed on-chain as "
                                   f"#{other.listing_id}; a version has one listing.", status=409)
            try:
                with transaction.atomic():
                    existing, was_created = Listing.objects.create(**fields), True
            except IntegrityError:  # the same listing id linked at the same moment
                existing = Listing.objects.filter(chain_id=chain_id, listing_id=args["listingId"]).first()
        if existing is None or existing.version_id != version.pk:
            raise ListingError("already_linked", "This listing is already linked to another dataset version.",
                               status=409)
        # Only a listing seen for the first time goes to review: re-posting an old transaction of a
        # rejected or delisted dataset changes nothing.
        if was_created:
            if locked.status in (Dataset.Status.DRAFT, Dataset.Status.REJECTED, Dataset.Status.DELISTED):
                locked.status = Dataset.Status.PENDING_REVIEW
                locked.save(update_fields=["status", "updated_at"])
            revisions.submit_version(version, existing, by=dataset.owner)
        dataset.status = locked.status
    return LinkResult(existing, was_created)


def _token_allowed(market: DataMarket, token: str) -> bool:
    """Whether the market accepts `token`, as the chain says now. Raises ListingError."""
    try:
        allowed, _ = market.token_config(token)
    except (requests.RequestException, OSError) as exc:
        raise _chain_unavailable(exc) from None
    return allowed


def _read_listing(market: DataMarket, listing_id: int) -> tuple[int, dict]:
    """getListing at the latest block: (that block, the listing's terms). Raises ListingError."""
    try:
        block = market.w3.eth.block_number
        return block, market.get_listing(int(listing_id), block=block)
    except (requests.RequestException, OSError) as exc:
        raise _chain_unavailable(exc) from None


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


@dataclass
class MirrorResult:
    listing: Listing
    updates: list  # the ListingUpdate rows of the transaction
    created: bool  # whether any of them is new


def mirror_listing_update_from_receipt(version: DatasetVersion, tx_hash: str) -> MirrorResult:
    """Mirror the price and payout that transaction `tx_hash` set on `version`'s listing, from its
    receipt.

    The indexer of a later issue replaces this (it will see `ListingUpdated` itself). Only a
    `ListingUpdated` log emitted by the deployed DataMarket for this version's listing counts (the
    contract lets only the listing's owner emit it). Each event is stored once, keyed by (tx_hash,
    log_index); the listing then carries the terms of its latest event by (block, log index), so a
    replayed or late older transaction never rolls a newer price back. Updating the listing row
    fires the search change-log trigger, so search sees the new price within a sync pass.
    Raises ListingError (409 while the transaction is not mined).
    """
    dataset = version.dataset
    _require_wallet(dataset)
    chain_id, market, receipt = _receipt(tx_hash)
    tx_hash = tx_hash.lower()
    listing = _linked_listing(version, chain_id)
    if receipt["status"] != 1:
        raise ListingError("transaction_failed", f"Transaction {tx_hash} failed on-chain; it changed no listing.")
    updated = _market_events(market, receipt, "ListingUpdated")
    if not updated:
        raise ListingError("no_listing_update", f"Transaction {tx_hash} updated no listing on the DataMarket at "
                           f"{market.address}.")
    mine = [(log, args) for log, args in updated if args["listingId"] == int(listing.listing_id)]
    if not mine:
        raise ListingError("listing_mismatch", f"Transaction {tx_hash} updated listing #{updated[0][1]['listingId']}, "
                           f"not version {version.number}'s listing #{listing.listing_id}.")
    with transaction.atomic():
        listing = Listing.objects.select_for_update().get(pk=listing.pk)
        rows, created = [], False
        for log, args in mine:
            row, was_created = ListingUpdate.objects.get_or_create(
                tx_hash=tx_hash, log_index=log["logIndex"],
                defaults=dict(listing=listing, price=args["price"], payout=args["payout"],
                              block_number=receipt["blockNumber"]),
            )
            rows.append(row)
            created = created or was_created
        latest = listing.updates.order_by("-block_number", "-log_index").first()
        seen = chain_position(latest.block_number, latest.log_index)
        if seen > listing.price_seen_at:
            listing.price, listing.payout, listing.price_seen_at = latest.price, latest.payout, seen
            listing.save(update_fields=["price", "payout", "price_seen_at"])
    return MirrorResult(listing, rows, created)


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


def mirror_listing_active_from_receipt(version: DatasetVersion, tx_hash: str) -> Listing:
    """Mirror the active flag that transaction `tx_hash` set on `version`'s listing, from the
    receipt's `ListingActiveSet` (only the deployed market's, for this listing; the contract lets
    only its owner emit it). The newest by chain position wins. Raises ListingError."""
    dataset = version.dataset
    _require_wallet(dataset)
    chain_id, market, receipt = _receipt(tx_hash)
    tx_hash = tx_hash.lower()
    listing = _linked_listing(version, chain_id)
    if receipt["status"] != 1:
        raise ListingError("transaction_failed", f"Transaction {tx_hash} failed on-chain; it changed no listing.")
    mine = [(log, args) for log, args in _market_events(market, receipt, "ListingActiveSet")
            if args["listingId"] == int(listing.listing_id)]
    if not mine:
        raise ListingError("no_active_change", f"Transaction {tx_hash} did not start or stop selling "
                           f"version {version.number}'s listing #{listing.listing_id}.")
    log, args = mine[-1]
    with transaction.atomic():
        listing = Listing.objects.select_for_update().get(pk=listing.pk)
        seen = chain_position(receipt["blockNumber"], log["logIndex"])
        if seen > listing.active_seen_at:
            listing.active, listing.active_seen_at = args["active"], seen
            listing.save(update_fields=["active", "active_seen_at"])
    return listing


def refresh_listing(listing: Listing) -> Listing:
    """Every term of `listing` as getListing reads it now (a term seen later on the chain than this
    read is kept). Raises ListingError when the node is down or the listing is gone."""
    market = _market(listing.chain_id)
    block, current = _read_listing(market, int(listing.listing_id))
    if int(current["owner"], 16) == 0:
        raise ListingError("unknown_listing", f"Listing #{listing.listing_id} does not exist on the chain (was the "
                           "chain reset?): list the version again.", status=409)
    seen = chain_position(block)
    with transaction.atomic():
        listing = Listing.objects.select_for_update().get(pk=listing.pk)
        fields = []
        if seen > listing.price_seen_at:
            listing.price, listing.payout, listing.price_seen_at = current["price"], current["payout"], seen
            fields += ["price", "payout", "price_seen_at"]
        if seen > listing.active_seen_at:
            listing.active, listing.active_seen_at = current["active"], seen
            fields += ["active", "active_seen_at"]
        if seen > listing.approved_seen_at:
            listing.approved, listing.approved_seen_at = current["approved"], seen
            fields += ["approved", "approved_seen_at"]
        if listing.dispute_window != current["dispute_window"]:
            listing.dispute_window = current["dispute_window"]
            fields.append("dispute_window")
        if fields:
            listing.save(update_fields=fields)
    return listing


def on_operator_action(action: OperatorAction) -> None:
    """Called by the operator sender, in its transaction, once `action` is settled from a receipt.
    A confirmed approval marks the listing approved and the dataset listed (if still pending
    review and a moderator has approved its text; otherwise the moderator's approval of the version
    lists it); a confirmed clearing marks it unapproved and, for a delisting, the dataset delisted.
    (The indexer's `ListingApprovalSet` handler replaces this.)"""
    if action.status != OperatorAction.Status.CONFIRMED:
        logger.warning("operator action #%s for listing %s %s: %s", action.pk, action.listing_id,
                       action.status, action.error)
        return
    listing = (Listing.objects.select_for_update()
               .filter(chain_id=action.chain_id, listing_id=action.listing_id).select_related("version").first())
    if listing is None:
        return
    approved = action.kind == OperatorAction.Kind.APPROVE
    # Ordered by its log within the block: an approval and a clearing mined in one block settle
    # in either order, and the later log wins.
    seen = chain_position(action.block_number or 0, action.log_index)
    if seen < listing.approved_seen_at:
        return  # the chain has already been seen later than this receipt
    listing.approved, listing.approved_seen_at = approved, seen
    listing.save(update_fields=["approved", "approved_seen_at"])
    dataset = Dataset.objects.select_for_update().get(pk=listing.version.dataset_id)
    if approved and dataset.status == Dataset.Status.PENDING_REVIEW and revisions.is_published(dataset):
        dataset.status = Dataset.Status.LISTED
    elif not approved and action.context.get("intent") == "delist" and dataset.status in (
        Dataset.Status.LISTED, Dataset.Status.PENDING_REVIEW
    ) and not Listing.objects.filter(version__dataset=dataset, approved=True).exists():
        dataset.status = Dataset.Status.DELISTED
        # What was submitted while the delisting was on its way cannot be approved any more.
        revisions.close_open(dataset, moderator=None, reason="The dataset was delisted.")
    else:
        return
    dataset.save(update_fields=["status", "updated_at"])

"""On-chain listings of dataset versions, read from transaction receipts.

THE INDEXER'S TO REPLACE. Until the chain indexer exists, the two places where the database learns
about listings from the chain live here and nowhere else:

- `link_listing_from_receipt(version, tx_hash)`: the publisher's `createListing` transaction,
  read from its receipt (the indexer will handle `ListingCreated` instead);
- `mirror_listing_update_from_receipt(version, tx_hash)`: the owner's `updateListing`
  transaction (new price and payout), read from its receipt (the indexer will handle
  `ListingUpdated` instead);
- `on_operator_action(action)`: the operator sender's `setApproval` receipt (the indexer will
  handle `ListingApprovalSet` instead).

They only ever write what a receipt says. `prepare_listing` and `prepare_listing_update` build the
wallet's transactions and stay when the indexer comes.
"""
from dataclasses import dataclass
import logging
import re

from django.conf import settings
from django.db import IntegrityError, transaction
from eth_utils import to_checksum_address
import requests
from web3.exceptions import MismatchedABI, TransactionNotFound

from marketplace.chain.client import get_web3
from marketplace.chain.contracts import DataMarket
from marketplace.chain.models import OperatorAction
from marketplace.chain.services import deployed_address

from .models import Dataset, DatasetVersion, Listing, ListingUpdate

logger = logging.getLogger(__name__)

TX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
DEFAULT_DISPUTE_WINDOW = 3 * 24 * 3600  # seconds; settings.DEFAULT_DISPUTE_WINDOW overrides
CREATE_LISTING = "createListing"
UPDATE_LISTING = "updateListing"
MAX_PRICE = 2**88 - 1  # DataMarket.MAX_PRICE (prices are stored as uint88 on-chain)
ZERO_ADDRESS = "0x" + "00" * 20


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
        raise ListingError("chain_unavailable", f"The chain node did not answer: {exc}", status=503) from None
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
    version's content hash and be priced in an allow-listed token. Idempotent on (tx_hash,
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
    allowed, _ = market.token_config(args["token"])
    if not allowed:
        raise ListingError("token_not_allowed", f"The listing's token {args['token']} is not accepted by the market.")

    fields = dict(
        chain_id=chain_id, listing_id=args["listingId"], version=version, owner=args["owner"],
        token=args["token"], price=args["price"], payout=args["payout"], tx_hash=tx_hash,
        log_index=log["logIndex"], block_number=receipt["blockNumber"],
    )
    with transaction.atomic():
        existing = Listing.objects.filter(tx_hash=tx_hash, log_index=log["logIndex"]).first()
        if existing is None:
            try:
                with transaction.atomic():
                    existing, was_created = Listing.objects.create(**fields), True
            except IntegrityError:  # a concurrent link of the same event, or the same listing id
                existing = Listing.objects.filter(chain_id=chain_id, listing_id=args["listingId"]).first()
                was_created = False
        else:
            was_created = False
        if existing is None or existing.version_id != version.pk:
            raise ListingError("already_linked", "This listing is already linked to another dataset version.",
                               status=409)
        locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
        if locked.status in (Dataset.Status.DRAFT, Dataset.Status.REJECTED, Dataset.Status.DELISTED):
            locked.status = Dataset.Status.PENDING_REVIEW
            locked.save(update_fields=["status", "updated_at"])
        dataset.status = locked.status
    return LinkResult(existing, was_created)


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
    if price is not None and not 0 < price <= MAX_PRICE:
        raise ListingError("invalid_price", f"The price must be above 0 and at most {MAX_PRICE} base units.")
    if payout is not None and int(payout, 16) == 0:
        raise ListingError("invalid_payout", "The payout address must not be the zero address.")
    market = _market(chain_id)
    try:
        current = market.get_listing(int(listing.listing_id))
    except (requests.RequestException, OSError) as exc:
        raise ListingError("chain_unavailable", f"The chain node did not answer: {exc}", status=503) from None
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
        if (listing.price, listing.payout) != (latest.price, latest.payout):
            listing.price, listing.payout = latest.price, latest.payout
            listing.save(update_fields=["price", "payout"])
    return MirrorResult(listing, rows, created)


def on_operator_action(action: OperatorAction) -> None:
    """Called by the operator sender, in its transaction, once `action` is settled from a receipt.
    A confirmed approval marks the listing approved and the dataset listed (if still pending
    review); a confirmed clearing marks it unapproved and, for a delisting, the dataset delisted.
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
    listing.approved = approved
    listing.save(update_fields=["approved"])
    dataset = Dataset.objects.select_for_update().get(pk=listing.version.dataset_id)
    if approved and dataset.status == Dataset.Status.PENDING_REVIEW:
        dataset.status = Dataset.Status.LISTED
    elif not approved and action.context.get("intent") == "delist" and dataset.status in (
        Dataset.Status.LISTED, Dataset.Status.PENDING_REVIEW
    ) and not Listing.objects.filter(version__dataset=dataset, approved=True).exists():
        dataset.status = Dataset.Status.DELISTED
    else:
        return
    dataset.save(update_fields=["status", "updated_at"])

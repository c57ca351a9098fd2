"""The indexer's handlers for rewards: community revenue from the market's settlements, and the
distributor's root events and claims; with their rollback after a reorganisation.

- `OrderReleased` / `DisputeResolved` paying the distributor (the listing's payout) is a
  community sale: a `CommunityRevenue` row, counted by the next epoch that closes. A purchase is
  never revenue (it can still be refunded).
- `RootProposed` of the epoch and root the close stored moves the epoch to `proposed`, with its
  `validAt`; `RootReplaced`, `RootRevoked` and `RootSuspended` set its root status.
- `Claimed`: a `RewardClaim` (what a wallet has claimed so far is the largest cumulative amount).
"""
import logging

from datetime import datetime, timezone

from django.db.models import Q

from marketplace.chain.indexer import Event
from marketplace.chain.models import ChainEvent
from marketplace.chain.services import deployed_address

from .models import CommunityRevenue, Epoch, RewardClaim, RootEvent

SALE_EVENTS = ("OrderReleased", "DisputeResolved")
ROOT_EVENTS = ("RootProposed", "RootReplaced", "RootRevoked", "RootSuspended")
CLAIM_EVENTS = ("Claimed",)
STATUS_OF = {
    "RootProposed": Epoch.RootStatus.PROPOSED,
    "RootReplaced": Epoch.RootStatus.REPLACED,
    "RootRevoked": Epoch.RootStatus.REVOKED,
    "RootSuspended": Epoch.RootStatus.SUSPENDED,
}

logger = logging.getLogger(__name__)


def _distributor(chain_id: int) -> str | None:
    return deployed_address(chain_id, "RewardDistributor")


def _payout(event: Event) -> str | None:
    """Who a settlement paid: `OrderReleased` says; for `DisputeResolved`, the listing's payout
    as its latest ListingCreated or ListingUpdated before the event set it."""
    if "payout" in event.args:
        return event.args["payout"]
    latest = (
        ChainEvent.objects.filter(
            chain_id=event.chain_id,
            address=event.address,
            name__in=("ListingCreated", "ListingUpdated"),
            args__listingId=event.args["listingId"],
        )
        .filter(
            Q(block_number__lt=event.block_number)
            | Q(block_number=event.block_number, log_index__lt=event.log_index)
        )
        .order_by("-block_number", "-log_index")
        .values_list("args", flat=True)
        .first()
    )
    return latest.get("payout") if latest else None


def _listing_token(event: Event) -> str | None:
    """The token of the settled order's listing, as its ListingCreated named it (a listing's token
    never changes)."""
    created = (ChainEvent.objects.filter(chain_id=event.chain_id, address=event.address, name="ListingCreated",
                                         args__listingId=event.args["listingId"])
               .values_list("args", flat=True).first())
    return created.get("token") if created else None


def _order_tx_hash(event: Event) -> str:
    """The transaction of the settled order's OrderCreated (with the order id, what names the
    order: after a reorganisation another purchase may take the id), the latest before the event;
    the event's own transaction when none was indexed."""
    created = (
        ChainEvent.objects.filter(
            chain_id=event.chain_id,
            address=event.address,
            name="OrderCreated",
            args__orderId=event.args["orderId"],
        )
        .filter(
            Q(block_number__lt=event.block_number)
            | Q(block_number=event.block_number, log_index__lt=event.log_index)
        )
        .order_by("-block_number", "-log_index")
        .values_list("tx_hash", flat=True)
        .first()
    )
    return created or event.tx_hash


def _reward_token(chain_id: int) -> str | None:
    """The token the distributor was deployed to pay in (the deployment's TestUSDC)."""
    return deployed_address(chain_id, "TestUSDC")


def on_sale_events(events: list[Event]) -> None:
    """Settlements that paid the distributor, in the token it pays rewards in, become community
    revenue rows (a listing in another token paying the distributor is not revenue: the amount
    would be counted in the wrong units, and no root can pay it out). One row per order: a payout
    stored already (counted, and kept, before a reorganisation deeper than the confirmations
    re-mined it under another transaction or log index) is not stored again."""
    from marketplace.catalog.models import Listing

    distributor = _distributor(events[0].chain_id)
    if distributor is None:
        return
    reward_token = _reward_token(events[0].chain_id)
    rows = []
    for event in events:
        owner_amount = int(event.args["ownerAmount"])
        if owner_amount <= 0 or _payout(event) != distributor:
            continue
        token = _listing_token(event)
        if token != reward_token:
            logger.warning("a settlement paid the distributor in token %s, not the reward token %s: not revenue "
                           "(order %s)", token, reward_token, event.args["orderId"])
            continue
        listing = Listing.objects.filter(
            chain_id=event.chain_id, listing_id=int(event.args["listingId"])
        ).first()
        rows.append(
            CommunityRevenue(
                chain_id=event.chain_id,
                tx_hash=event.tx_hash,
                log_index=event.log_index,
                block_number=event.block_number,
                market=event.address,
                order_id=int(event.args["orderId"]),
                order_tx_hash=_order_tx_hash(event),
                listing_id=int(event.args["listingId"]),
                buyer=event.args["buyer"],
                amount=owner_amount,
                version_id=listing.version_id if listing else None,
            )
        )
    CommunityRevenue.objects.bulk_create(rows, ignore_conflicts=True)


def _time(seconds) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc)


def apply_root_event(epoch: Epoch, name: str, args: dict, tx_hash: str) -> None:
    """Move `epoch` as one of its root events says (the events of its root only)."""
    if name == "RootProposed":
        epoch.root_status, epoch.valid_at, epoch.proposed_tx = (
            STATUS_OF[name],
            _time(args["validAt"]),
            tx_hash,
        )
        if epoch.state in (Epoch.State.SCORED, Epoch.State.QUEUED):
            epoch.state = Epoch.State.PROPOSED
        epoch.waiting = ""
    else:
        epoch.root_status = STATUS_OF[name]
        if name == "RootRevoked" and epoch.revoked_back_in_id is not None:
            epoch.waiting = ""  # revoked again after a reorganisation took its RootRevoked


def on_root_events(events: list[Event]) -> None:
    RootEvent.objects.bulk_create(
        [
            RootEvent(
                chain_id=e.chain_id,
                tx_hash=e.tx_hash,
                log_index=e.log_index,
                block_number=e.block_number,
                name=e.name,
                epoch=int(e.args["epoch"]),
                root=e.args["root"],
                total=int(e.args["total"]) if "total" in e.args else None,
                valid_at=_time(e.args["validAt"]) if "validAt" in e.args else None,
            )
            for e in events
        ]
    )
    epochs = {
        e.number: e
        for e in Epoch.objects.select_for_update().filter(
            number__in={int(e.args["epoch"]) for e in events}
        )
    }
    for event in events:
        epoch = epochs.get(int(event.args["epoch"]))
        if epoch is not None and epoch.root and event.args["root"] == epoch.root.lower():
            apply_root_event(epoch, event.name, event.args, event.tx_hash)
    for epoch in epochs.values():
        epoch.save(
            update_fields=[
                "root_status",
                "valid_at",
                "proposed_tx",
                "state",
                "waiting",
                "updated_at",
            ]
        )


def on_claim_events(events: list[Event]) -> None:
    RewardClaim.objects.bulk_create(
        [
            RewardClaim(
                chain_id=e.chain_id,
                tx_hash=e.tx_hash,
                log_index=e.log_index,
                block_number=e.block_number,
                account=e.args["account"],
                epoch=int(e.args["epoch"]),
                amount=int(e.args["amount"]),
                cumulative=int(e.args["cumulativeAmount"]),
            )
            for e in events
        ]
    )


def on_rollback(chain_id: int, ancestor: int, orphaned: list[Event]) -> None:
    """Revenue not counted yet, root events and claims of orphaned blocks go; the epochs whose
    root events went get their status again from the surviving ones. Revenue an epoch already
    counted stays (its amounts are in a stored tree); the same order's payout re-mined on the new
    chain finds its row and is not counted again (`on_sale_events`)."""
    CommunityRevenue.objects.filter(
        chain_id=chain_id, block_number__gt=ancestor, counted_in__isnull=True
    ).delete()
    RewardClaim.objects.filter(chain_id=chain_id, block_number__gt=ancestor).delete()
    touched = set(
        RootEvent.objects.filter(chain_id=chain_id, block_number__gt=ancestor).values_list(
            "epoch", flat=True
        )
    )
    RootEvent.objects.filter(chain_id=chain_id, block_number__gt=ancestor).delete()
    for epoch in Epoch.objects.select_for_update().filter(number__in=touched):
        epoch.root_status, epoch.valid_at, epoch.proposed_tx = Epoch.RootStatus.NONE, None, ""
        if epoch.state in (Epoch.State.PROPOSED, Epoch.State.MATURED) and epoch.revoked_back_in_id is None:
            # The close queues its root again if the action failed (never a root that was revoked
            # and whose amounts went back to a pool).
            epoch.state = Epoch.State.QUEUED
        for event in RootEvent.objects.filter(
            chain_id=chain_id, epoch=epoch.number, root=epoch.root.lower()
        ).order_by("block_number", "log_index"):
            args = {"validAt": int(event.valid_at.timestamp())} if event.valid_at else {}
            apply_root_event(epoch, event.name, args, event.tx_hash)
        epoch.save()


def on_chain_reset(sender, chain_id, **kwargs):
    """A wiped dev chain took the distributor with it: its root events, claims and uncounted
    revenue go; epochs waiting for or holding a root there are scored again for the new one
    (their stored trees and amounts stay, and the next root carries every cumulative amount)."""
    RootEvent.objects.filter(chain_id=chain_id).delete()
    RewardClaim.objects.filter(chain_id=chain_id).delete()
    CommunityRevenue.objects.filter(chain_id=chain_id, counted_in__isnull=True).delete()
    # Not a root that was revoked and whose amounts went back to a pool: it is never proposed again.
    Epoch.objects.filter(
        state__in=(Epoch.State.QUEUED, Epoch.State.PROPOSED), revoked_back_in__isnull=True
    ).update(state=Epoch.State.SCORED, action=None, funding_tx="", funding_raw="", waiting="")
    Epoch.objects.exclude(root_status=Epoch.RootStatus.NONE).update(
        root_status=Epoch.RootStatus.NONE, valid_at=None, proposed_tx=""
    )

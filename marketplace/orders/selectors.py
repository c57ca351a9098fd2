"""Reads of orders."""
from .models import Order


def paid_orders(buyer: str, chain_id: int, listing_ids):
    """The buyer's orders of these listings that give access (all but refunded in full)."""
    return Order.objects.filter(chain_id=chain_id, buyer=buyer, listing_id__in=list(listing_ids)).exclude(
        status=Order.Status.REFUNDED)


def has_paid(buyer: str, version) -> bool:
    """Whether `buyer` (checksummed) holds an order of one of the version's listings that gives
    access, as the indexer has read the chain."""
    listings = list(version.listings.values_list("chain_id", "listing_id"))
    return any(paid_orders(buyer, chain_id, [listing_id]).exists() for chain_id, listing_id in listings)

"""Reads of orders."""
from .models import Order


def paid_orders(buyer: str, chain_id: int, listing_ids):
    """The buyer's orders of these listings on the chain's current market that give access (all
    but refunded in full). Listing ids start over with a new market: an order of an old one never
    counts for a listing of the new one."""
    from marketplace.chain.services import deployed_address

    return Order.objects.filter(chain_id=chain_id, market=deployed_address(chain_id, "DataMarket"), buyer=buyer,
                                listing_id__in=list(listing_ids)).exclude(status=Order.Status.REFUNDED)


def with_versions(orders) -> list[tuple]:
    """(order, version or None) for each order: the version its listing is linked to, if any."""
    from marketplace.catalog.models import Listing

    orders = list(orders)
    keys = {(o.chain_id, o.listing_id) for o in orders}
    listings = {(l.chain_id, l.listing_id): l.version for l in Listing.objects.select_related("version__dataset").filter(
        chain_id__in={c for c, _ in keys}, listing_id__in={i for _, i in keys})}
    return [(o, listings.get((o.chain_id, o.listing_id))) for o in orders]


def library(buyer: str):
    """The buyer's orders, newest first, with what they bought."""
    return with_versions(Order.objects.filter(buyer=buyer).order_by("-block_number", "-log_index"))


def sales(owner):
    """The orders of the owner's listings, newest first."""
    from marketplace.catalog.models import Listing

    mine = Listing.objects.filter(version__dataset__owner=owner).values_list("chain_id", "listing_id")
    keys = list(mine)
    if not keys:
        return []
    query = Order.objects.none()
    for chain_id in {c for c, _ in keys}:
        query = query | Order.objects.filter(chain_id=chain_id, listing_id__in=[i for c, i in keys if c == chain_id])
    return with_versions(query.order_by("-block_number", "-log_index"))

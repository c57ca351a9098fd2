"""Reads of orders."""
from .models import Order


def paid_orders(buyer: str, chain_id: int, listing_ids):
    """The buyer's orders of these listings on the chain's current market that give access (all
    but refunded in full). Listing ids start over with a new market: an order of an old one never
    counts for a listing of the new one."""
    return Order.objects.filter(chain_id=chain_id, market=_current_market(chain_id), buyer=buyer,
                                listing_id__in=list(listing_ids)).exclude(status=Order.Status.REFUNDED)


def touched_by(chain_id: int, tx_hash: str) -> list:
    """The orders a transaction made, or whose latest change it was (a confirmation, a dispute)."""
    from django.db.models import Q

    made_or_moved = Q(tx_hash=tx_hash) | Q(settled_tx_hash=tx_hash)
    return list(Order.objects.filter(made_or_moved, chain_id=chain_id))


def _current_market(chain_id: int) -> str | None:
    from marketplace.chain.services import deployed_address

    return deployed_address(chain_id, "DataMarket")


def with_versions(orders) -> list[tuple]:
    """(order, version or None) for each order: the version its listing is linked to, if any.
    Listings are those of each chain's current market, so an order of an older market (whose
    listing ids started over) is linked to nothing."""
    from marketplace.catalog.models import Listing

    orders = list(orders)
    markets = {c: _current_market(c) for c in {o.chain_id for o in orders}}
    keys = {(o.chain_id, o.listing_id) for o in orders if o.market == markets[o.chain_id]}
    listings = {(l.chain_id, l.listing_id): l.version for l in Listing.objects.select_related("version__dataset").filter(
        chain_id__in={c for c, _ in keys}, listing_id__in={i for _, i in keys})}
    return [(o, listings.get((o.chain_id, o.listing_id)) if o.market == markets[o.chain_id] else None)
            for o in orders]


def library(buyer: str):
    """The buyer's orders, newest first, with what they bought."""
    return with_versions(Order.objects.filter(buyer=buyer).order_by("-block_number", "-log_index"))


def sales(owner):
    """The orders of the owner's listings (on each chain's current market), newest first."""
    from marketplace.catalog.models import Listing

    mine = Listing.objects.filter(version__dataset__owner=owner).values_list("chain_id", "listing_id")
    keys = list(mine)
    if not keys:
        return []
    query = Order.objects.none()
    for chain_id in {c for c, _ in keys}:
        query = query | Order.objects.filter(chain_id=chain_id, market=_current_market(chain_id),
                                             listing_id__in=[i for c, i in keys if c == chain_id])
    return with_versions(query.order_by("-block_number", "-log_index"))


def current_order(chain_id: int, order_id: int):
    """The order `order_id` of the chain's current market, or None."""
    return Order.objects.filter(chain_id=chain_id, market=_current_market(chain_id), order_id=order_id).first()


def party(address: str, order) -> str | None:
    """"buyer" or "seller" (the owner of the order's listing) for `address`, else None. Listings
    are those of the chain's current market: nobody is the seller of an older market's order."""
    from marketplace.catalog.models import Listing

    if not address:
        return None
    if address == order.buyer:
        return "buyer"
    if order.market != _current_market(order.chain_id):
        return None
    listings = Listing.objects.filter(chain_id=order.chain_id, listing_id=order.listing_id)
    if listings.filter(owner=address).exists():
        return "seller"
    return None


def statement_key(order) -> tuple:
    """What names an order's statements: its chain, market, id and OrderCreated transaction (an
    order id a reorganisation gave to another order starts with no statements)."""
    return (order.chain_id, order.market, int(order.order_id), order.tx_hash)


def statements(orders) -> dict:
    """{statement_key(order): [statements, oldest first]} for these orders."""
    from .models import DisputeStatement

    orders = list(orders)
    found = {}
    if not orders:
        return found
    rows = DisputeStatement.objects.filter(chain_id__in={o.chain_id for o in orders},
                                           market__in={o.market for o in orders},
                                           order_id__in={o.order_id for o in orders},
                                           order_tx_hash__in={o.tx_hash for o in orders})
    for row in rows.order_by("created_at", "id"):
        found.setdefault((row.chain_id, row.market, int(row.order_id), row.order_tx_hash), []).append(row)
    return found


def credit_balances(account: str, chain_id: int) -> list[dict]:
    """The account's credits on the chain's current market, by token: what failed transfers
    left it ({token, credited, withdrawn, balance}, in base units), with a balance or not."""
    from django.db.models import Q, Sum

    from .models import CreditEntry

    market = _current_market(chain_id)
    credited, withdrawn = Q(kind=CreditEntry.Kind.CREDITED), Q(kind=CreditEntry.Kind.WITHDRAWN)
    rows = (CreditEntry.objects.filter(account=account, chain_id=chain_id, market=market)
            .values("token").order_by("token")
            .annotate(credited=Sum("amount", filter=credited, default=0),
                      withdrawn=Sum("amount", filter=withdrawn, default=0)))
    return [{**row, "credited": int(row["credited"]), "withdrawn": int(row["withdrawn"]),
             "balance": int(row["credited"]) - int(row["withdrawn"])} for row in rows]


def credit_entries(account: str, chain_id: int):
    """The account's credit entries on the chain's current market, newest first."""
    from .models import CreditEntry

    return (CreditEntry.objects.filter(account=account, chain_id=chain_id, market=_current_market(chain_id))
            .order_by("-block_number", "-log_index"))

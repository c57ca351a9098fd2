"""Writers of the rows users make about orders: dispute statements (the buyer's statement and
the listing owner's answer). Orders themselves are written by the indexer's handlers only."""
from django.db import IntegrityError, transaction

from . import selectors
from .models import DisputeStatement, Order

MAX_STATEMENT_LENGTH = 4000


class StatementRefused(Exception):
    """A refusal with a stable code, a message for people and an HTTP status."""

    def __init__(self, code: str, message: str, status: int):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def post_statement(*, address: str, order: Order, text: str) -> DisputeStatement:
    """The statement of `address` on `order`: the buyer's, or the listing owner's answer. Only
    while the order is disputed (as the indexer read it), once per party; never edited."""
    role = selectors.party(address, order)
    if role is None:
        raise StatementRefused("not_a_party", "Only the order's buyer and the listing's owner may "
                               "write about its dispute.", status=403)
    if order.status != Order.Status.DISPUTED:
        state = order.get_status_display().lower()
        raise StatementRefused("not_disputed", f"Order {order.order_id} is not disputed (it is "
                               f"{state}): statements are taken while a dispute is open.",
                               status=409)
    try:
        with transaction.atomic():
            return DisputeStatement.objects.create(
                chain_id=order.chain_id, market=order.market, order_id=order.order_id,
                order_tx_hash=order.tx_hash, role=role,
                author=address, text=text)
    except IntegrityError:
        said = "your statement" if role == DisputeStatement.Role.BUYER else "your answer"
        raise StatementRefused("already_stated", f"You already gave {said} on this dispute; it "
                               "cannot be changed.", status=409) from None

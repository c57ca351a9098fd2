"""Migrations of the rewards app run on a database that holds the data they change."""
from datetime import datetime, timezone as dt_timezone

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("rewards", "0009_binding_event_database_clock")]
MARKET = "0x" + "11" * 20


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_0010_keeps_one_row_per_order_the_earliest_counted():
    """Rows stored before 0010 naming one order twice (its payout re-mined under another
    transaction after a deep reorganisation) would make the constraint fail: the earliest counted
    row of each order is kept, the others go, and the migration completes."""
    apps = _migrate(BEFORE)
    try:
        Epoch = apps.get_model("rewards", "Epoch")
        Revenue = apps.get_model("rewards", "CommunityRevenue")
        ChainEvent = apps.get_model("chain", "ChainEvent")
        t = datetime(2026, 1, 1, tzinfo=dt_timezone.utc)
        one = Epoch.objects.create(number=1, starts_at=t, ends_at=t, state="matured")
        two = Epoch.objects.create(number=2, starts_at=t, ends_at=t, state="matured")

        def event(tx, log, name, block, **args):
            ChainEvent.objects.create(chain_id=31337, block_number=block, block_hash="0x" + "00" * 32, tx_hash=tx,
                                      tx_index=0, log_index=log, address=MARKET, name=name, args=args)

        def row(tx, log, block, order, counted=None, amount=100):
            event(tx, log, "OrderReleased", block, orderId=str(order))
            return Revenue.objects.create(chain_id=31337, tx_hash=tx, log_index=log, block_number=block,
                                          order_id=order, listing_id=1, buyer=MARKET, amount=amount,
                                          counted_in=counted).pk

        event("0xc1", 0, "OrderCreated", 1, orderId="7")
        event("0xc2", 0, "OrderCreated", 1, orderId="8")
        event("0xc3", 0, "OrderCreated", 1, orderId="9")
        # Order 7: counted twice (epochs 2 and 1) and once not counted: epoch 1's row stays.
        late = row("0xa1", 0, 5, 7, counted=two)
        early = row("0xa2", 1, 9, 7, counted=one)
        row("0xa3", 0, 12, 7)
        # Order 8: never counted, twice: the earliest stays. Order 9: once, untouched.
        first8 = row("0xb1", 0, 3, 8)
        row("0xb2", 0, 4, 8)
        nine = row("0xd1", 0, 3, 9, counted=two)
        assert Revenue.objects.count() == 6 and late
    finally:
        apps = _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    Revenue = apps.get_model("rewards", "CommunityRevenue")
    assert sorted(Revenue.objects.values_list("pk", flat=True)) == sorted([early, first8, nine])
    assert set(Revenue.objects.values_list("order_tx_hash", flat=True)) == {"0xc1", "0xc2", "0xc3"}

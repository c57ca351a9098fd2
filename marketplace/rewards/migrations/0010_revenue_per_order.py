import logging

from django.db import migrations, models

logger = logging.getLogger(__name__)


def fill_order(apps, schema_editor):
    """Rows written before this migration: the market from their event, the order's OrderCreated
    transaction from the indexed events (or the row's own transaction when it is gone, which
    keeps the rows apart)."""
    CommunityRevenue = apps.get_model("rewards", "CommunityRevenue")
    ChainEvent = apps.get_model("chain", "ChainEvent")
    for row in CommunityRevenue.objects.filter(order_tx_hash=""):
        event = ChainEvent.objects.filter(chain_id=row.chain_id, tx_hash=row.tx_hash,
                                          log_index=row.log_index).first()
        created = None
        if event is not None:
            row.market = event.address
            created = (ChainEvent.objects.filter(chain_id=row.chain_id, address=event.address,
                                                 name="OrderCreated", args__orderId=event.args["orderId"],
                                                 block_number__lte=event.block_number)
                       .order_by("-block_number", "-log_index").first())
        row.order_tx_hash = created.tx_hash if created is not None else row.tx_hash
        row.save(update_fields=["market", "order_tx_hash"])


def drop_duplicate_orders(apps, schema_editor):
    """One row per order before the constraint is added: rows stored before this migration may
    name the same order twice (its payout re-mined under another transaction or log index after
    a reorganisation deeper than the confirmations, the double count this migration ends), and
    AddConstraint would fail on them. Per order the earliest counted row is kept (the smallest
    counting epoch, then block, log index, id; an order with no counted row keeps its earliest
    row). The others are deleted: one not counted yet would otherwise be counted a second time;
    one already counted was paid twice in a stored tree, which cannot be undone here (its amount
    stays in that epoch's `revenue_in` and the leaves); only its row goes, and each deleted row is
    written to the log."""
    CommunityRevenue = apps.get_model("rewards", "CommunityRevenue")
    seen = set()
    rows = (CommunityRevenue.objects.order_by("chain_id", "market", "order_id", "order_tx_hash",
                                               models.F("counted_in__number").asc(nulls_last=True),
                                               "block_number", "log_index", "id")
            .values_list("id", "chain_id", "market", "order_id", "order_tx_hash", "tx_hash", "log_index",
                         "counted_in__number"))
    doomed = []
    for pk, chain_id, market, order_id, order_tx_hash, tx_hash, log_index, counted in rows:
        key = (chain_id, market, order_id, order_tx_hash)
        if key in seen:
            doomed.append(pk)
            logger.warning("community revenue row %s (order %s of %s, event %s:%s, counted in epoch %s) duplicates "
                           "an earlier row of its order: deleted", pk, order_id, market, tx_hash, log_index, counted)
        seen.add(key)
    CommunityRevenue.objects.filter(pk__in=doomed).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("chain", "0007_operator_action_propose_root"),
        ("rewards", "0009_binding_event_database_clock"),
    ]

    operations = [
        migrations.AddField(
            model_name="communityrevenue",
            name="market",
            field=models.CharField(default="", help_text="The DataMarket that paid (checksummed)", max_length=42),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="communityrevenue",
            name="order_tx_hash",
            field=models.CharField(default="", help_text="The order's OrderCreated transaction", max_length=66),
            preserve_default=False,
        ),
        migrations.RunPython(fill_order, migrations.RunPython.noop),
        migrations.RunPython(drop_duplicate_orders, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="communityrevenue",
            constraint=models.UniqueConstraint(
                fields=("chain_id", "market", "order_id", "order_tx_hash"), name="community_revenue_per_order"
            ),
        ),
    ]

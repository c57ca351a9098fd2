from django.db import migrations, models


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
        migrations.AddConstraint(
            model_name="communityrevenue",
            constraint=models.UniqueConstraint(
                fields=("chain_id", "market", "order_id", "order_tx_hash"), name="community_revenue_per_order"
            ),
        ),
    ]

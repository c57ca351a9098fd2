from django.db import migrations, models


def fill_order_tx(apps, schema_editor):
    """Statements written before this migration name the order that has their id now."""
    Order = apps.get_model("orders", "Order")
    DisputeStatement = apps.get_model("orders", "DisputeStatement")
    for statement in DisputeStatement.objects.filter(order_tx_hash=""):
        order = Order.objects.filter(chain_id=statement.chain_id, market=statement.market,
                                     order_id=statement.order_id).first()
        if order is not None:
            statement.order_tx_hash = order.tx_hash
            statement.save(update_fields=["order_tx_hash"])


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0004_resolve_dispute_permission'),
    ]

    operations = [
        migrations.AddField(
            model_name='disputestatement',
            name='order_tx_hash',
            field=models.CharField(default='', help_text="The order's OrderCreated transaction", max_length=66),
            preserve_default=False,
        ),
        migrations.RunPython(fill_order_tx, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name='disputestatement',
            name='one_statement_per_party',
        ),
        migrations.AddConstraint(
            model_name='disputestatement',
            constraint=models.UniqueConstraint(fields=('chain_id', 'market', 'order_id', 'order_tx_hash', 'role'), name='one_statement_per_party'),
        ),
    ]

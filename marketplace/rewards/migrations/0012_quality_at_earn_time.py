from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("rewards", "0011_credit_counted_by_epoch"),
    ]

    operations = [
        migrations.AddField(
            model_name="flag",
            name="quality_penalty_bps",
            field=models.PositiveIntegerField(
                default=0, help_text="What the flag took off its device's quality; given back if it is cleared"),
        ),
        migrations.AddField(
            model_name="workcredit",
            name="quality_bps",
            field=models.PositiveIntegerField(
                default=10_000, help_text="The device's quality when it earned them: what scoring weighs the points by"),
            preserve_default=False,
        ),
        # Credits written before: the device's quality now is the best that is known.
        migrations.RunSQL(
            "UPDATE rewards_workcredit c SET quality_bps = d.quality_bps FROM rewards_device d WHERE d.id = c.device_id",
            migrations.RunSQL.noop,
        ),
    ]

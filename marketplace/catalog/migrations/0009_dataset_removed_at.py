# A dataset removed for legal reasons (catalog.removal): its files are refused until it is restored.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0008_listings_from_the_indexer'),
    ]

    operations = [
        migrations.AddField(
            model_name='dataset',
            name='removed_at',
            field=models.DateTimeField(blank=True, help_text='When a moderator removed it for legal reasons: delisted, its files refused to everyone (451) and its sample and statistics purged, until it is restored (catalog.removal)', null=True),
        ),
    ]

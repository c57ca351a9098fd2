import django.contrib.postgres.fields
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='RequestLog',
            fields=[
                ('key', models.CharField(max_length=200, primary_key=True, serialize=False)),
                ('hits', django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), help_text='Unix times of the requests in the last period', size=None)),
                ('expires_at', models.DateTimeField(help_text='When every hit is older than the period')),
            ],
        ),
        migrations.CreateModel(
            name='StorageReservation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('wallet', models.CharField(db_index=True, max_length=200)),
                ('ip', models.CharField(db_index=True, max_length=200)),
                ('size', models.BigIntegerField()),
                ('host', models.CharField(help_text='The web host whose disk the upload is written to', max_length=255)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('expires_at', models.DateTimeField(db_index=True)),
            ],
        ),
        migrations.CreateModel(
            name='StorageUsage',
            fields=[
                ('scope', models.CharField(max_length=200, primary_key=True, serialize=False)),
                ('used', models.BigIntegerField(default=0)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
        ),
            # See RequestLog: no WAL, and free room in each page for in-place (HOT) updates.
        migrations.RunSQL("ALTER TABLE limits_requestlog SET UNLOGGED, SET (fillfactor = 50)",
                          "ALTER TABLE limits_requestlog SET LOGGED, RESET (fillfactor)"),
    ]

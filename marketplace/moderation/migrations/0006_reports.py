"""Reports and notices (docs/moderation.md, "Reports and notices")."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('moderation', '0005_review_claims'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Report',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('target_type', models.CharField(choices=[('dataset', 'Dataset'), ('publisher', 'Publisher')], max_length=20)),
                ('target_id', models.CharField(help_text="A dataset's id, or a publisher's checksummed address", max_length=200)),
                ('source', models.CharField(choices=[('user', 'Signed-in report'), ('notice', 'Public notice')], max_length=10)),
                ('notifier_name', models.CharField(blank=True, max_length=120)),
                ('notifier_email', models.CharField(blank=True, max_length=254)),
                ('law', models.CharField(blank=True, help_text='The law or policy invoked', max_length=300)),
                ('target_text', models.CharField(blank=True, help_text='The target as the notifier wrote it', max_length=500)),
                ('reason', models.CharField(help_text='A code of policy.REASONS', max_length=40)),
                ('evidence', models.TextField()),
                ('token_hash', models.CharField(blank=True, help_text="sha256 of a notice's reference token (the token itself is not kept)", max_length=64, null=True, unique=True)),
                ('status', models.CharField(choices=[('open', 'Open'), ('closed', 'Closed')], default='open', max_length=10)),
                ('outcome', models.CharField(blank=True, choices=[('no_action', 'No action taken'), ('delisted', 'Dataset delisted'), ('other', 'Other action')], max_length=20)),
                ('statement', models.TextField(blank=True, help_text="The outcome in the moderator's words, shown to the reporter")),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('closed_at', models.DateTimeField(blank=True, null=True)),
                ('closed_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('reporter', models.ForeignKey(blank=True, help_text='Who reported it, when signed in', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='reports', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'indexes': [models.Index(fields=['target_type', 'target_id', '-id'], name='report_target_id'), models.Index(condition=models.Q(('status', 'open')), fields=['-created_at'], name='report_open_created')],
                'constraints': [models.UniqueConstraint(condition=models.Q(('source', 'user'), ('status', 'open')), fields=('reporter', 'target_type', 'target_id'), name='report_one_open_per_reporter'), models.CheckConstraint(condition=models.Q(models.Q(('closed_at__isnull', True), ('outcome', ''), ('status', 'open')), models.Q(('closed_at__isnull', False), ('status', 'closed'), models.Q(('outcome', ''), _negated=True)), _connector='OR'), name='report_closed_has_outcome')],
            },
        ),
    ]

# Appeals and counter-notices (moderation.appeals).

from django.conf import settings
from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0009_dataset_removed_at'),
        ('moderation', '0006_reports'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Appeal',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('appeal', 'Appeal'), ('counter_notice', 'Counter-notice')], default='appeal', max_length=20)),
                ('entry_id', models.BigIntegerField(help_text='The audit entry of the decision appealed (no foreign key)')),
                ('decision', models.CharField(help_text="That entry's action, e.g. dataset.remove", max_length=40)),
                ('decided_by_id', models.BigIntegerField(blank=True, help_text="The user id of who took the decision (not this appeal's)", null=True)),
                ('statement', models.TextField(help_text="The publisher's statement")),
                ('status', models.CharField(choices=[('open', 'Waiting for a moderator'), ('upheld', 'Upheld: the decision stands'), ('reversed', 'Reversed: the decision was undone')], db_index=True, default='open', max_length=20)),
                ('answer', models.TextField(blank=True, help_text="The statement of the appeal's decision")),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('decided_at', models.DateTimeField(blank=True, null=True)),
                ('dataset', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='appeals', to='catalog.dataset')),
                ('moderator', models.ForeignKey(blank=True, help_text='Who decided the appeal', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('publisher', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='appeals', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['created_at', 'id'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('status', 'open')), fields=('dataset',), name='one_open_appeal_per_dataset')],
            },
        ),
    ]

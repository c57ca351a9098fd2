"""The two moderation roles as Django groups, with the permissions their work in the admin needs
(until the moderation console does all of it): moderators review datasets and decide contributor
flags; arbiters resolve disputes. Both read the audit log. (Being staff is still what lets a
person into the admin at all.)"""
from django.db import migrations

ROLES = {
    "moderator": [
        ("catalog", "view_dataset"), ("catalog", "change_dataset"),
        ("catalog", "view_datasetrevision"), ("catalog", "change_datasetrevision"),
        ("catalog", "view_listing"),
        ("rewards", "view_flag"), ("rewards", "change_flag"), ("rewards", "view_heldamount"),
        ("moderation", "view_auditentry"),
    ],
    "arbiter": [
        ("orders", "view_order"), ("orders", "resolve_dispute"), ("orders", "view_disputestatement"),
        ("orders", "view_download"), ("orders", "view_creditentry"),
        ("moderation", "view_auditentry"),
    ],
}


def make_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally made after every migration has run (post_migrate): make them now.
    for label in ("catalog", "rewards", "orders", "moderation"):
        config = apps.get_app_config(label)
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codename in wanted:
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("moderation", "0002_audit_append_only"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("catalog", "0008_listings_from_the_indexer"),
        ("rewards", "0013_revoked_roots"),
        ("orders", "0005_statement_order_tx"),
    ]
    operations = [migrations.RunPython(make_groups, remove_groups)]

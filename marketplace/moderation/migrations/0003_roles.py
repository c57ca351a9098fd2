"""The two moderation roles as Django groups, with their permissions (roles.ROLE_PERMISSIONS)."""
from django.db import migrations


def make_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    from marketplace.moderation.roles import ensure_groups

    # Permissions are normally made after every migration has run (post_migrate): make them now.
    for label in ("catalog", "rewards", "orders", "moderation"):
        config = apps.get_app_config(label)
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None
    ensure_groups(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["moderator", "arbiter"]).delete()


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

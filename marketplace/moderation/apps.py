from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "marketplace.moderation"
    label = "moderation"
    verbose_name = "Moderation"

    def ready(self):
        from django.db.models.signals import post_migrate

        from . import actions, disputes, receivers  # noqa: F401  (record the catalog's, rewards' and orders' events)
        from .roles import ensure_groups_after_migrate

        post_migrate.connect(ensure_groups_after_migrate, sender=self, dispatch_uid="moderation.ensure_groups")

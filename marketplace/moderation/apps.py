from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "marketplace.moderation"
    label = "moderation"
    verbose_name = "Moderation"

    def ready(self):
        from . import receivers  # noqa: F401  (records the catalog's and rewards' decisions)

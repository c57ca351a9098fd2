from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "marketplace.catalog"
    label = "catalog"
    verbose_name = "Catalog"

    def ready(self):
        from . import signals  # noqa: F401  (connects the chain_reset receiver)

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "marketplace.catalog"
    label = "catalog"
    verbose_name = "Catalog"

    def ready(self):
        from marketplace.chain import indexer

        from . import handlers, signals  # noqa: F401  (signals connects the chain_reset receiver)

        indexer.register(handlers.on_listing_events, events=handlers.LISTING_EVENTS)
        indexer.register_rollback(handlers.on_rollback)

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "marketplace.orders"
    label = "orders"
    verbose_name = "Orders"

    def ready(self):
        from marketplace.chain import indexer

        from . import handlers, signals  # noqa: F401  (signals connects the chain_reset receiver)

        indexer.register(handlers.on_order_events, events=handlers.ORDER_EVENTS)
        indexer.register(handlers.on_credit_events, events=handlers.CREDIT_EVENTS)
        indexer.register_rollback(handlers.on_rollback)

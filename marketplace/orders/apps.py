from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "marketplace.orders"
    label = "orders"
    verbose_name = "Orders"

    def ready(self):
        from marketplace.chain import indexer

        from . import handlers, signals, strays  # noqa: F401  (signals connects the chain_reset receiver)

        indexer.register(handlers.on_order_events, events=handlers.ORDER_EVENTS)
        indexer.register(handlers.on_credit_events, events=handlers.CREDIT_EVENTS)
        indexer.register_rollback(handlers.on_rollback)
        # Transfers into the market that no order explains (orders/strays.py).
        indexer.register(strays.on_transfers, events=["Transfer", "OrderCreated"])
        indexer.register(strays.on_returned, events=["SurplusReturned"])
        indexer.register_rollback(strays.on_rollback)

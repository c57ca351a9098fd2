from django.apps import AppConfig


class RewardsConfig(AppConfig):
    name = "marketplace.rewards"
    label = "rewards"
    verbose_name = "Contributions and rewards"

    def ready(self):
        from marketplace.chain import indexer
        from marketplace.chain.signals import chain_reset

        from . import handlers

        indexer.register(handlers.on_sale_events, events=handlers.SALE_EVENTS)
        indexer.register(handlers.on_root_events, events=handlers.ROOT_EVENTS)
        indexer.register(handlers.on_claim_events, events=handlers.CLAIM_EVENTS)
        indexer.register_rollback(handlers.on_rollback)
        chain_reset.connect(handlers.on_chain_reset, dispatch_uid="rewards.on_chain_reset")

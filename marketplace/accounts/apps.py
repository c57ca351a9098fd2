from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "marketplace.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from marketplace.chain import indexer
        from marketplace.chain.signals import chain_reset

        from . import agent_keys

        # Refund shares of orders agents paid for with a key go back to the key's budget.
        indexer.register(agent_keys.on_refund_events, events=agent_keys.REFUND_EVENTS)
        indexer.register_rollback(agent_keys.on_rollback)
        chain_reset.connect(agent_keys.on_chain_reset, dispatch_uid="accounts.agent_keys.on_chain_reset")

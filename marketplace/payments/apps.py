from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "marketplace.payments"
    label = "payments"
    verbose_name = "Agent payments (x402)"

    def ready(self):
        from marketplace.chain.signals import chain_reset

        from . import settlement

        # A chain that is reset takes its orders: its settled payments are served no more.
        chain_reset.connect(settlement.on_chain_reset, dispatch_uid="payments.settlement.on_chain_reset")

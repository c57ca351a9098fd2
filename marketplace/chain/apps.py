from django.apps import AppConfig


class ChainConfig(AppConfig):
    name = "marketplace.chain"
    label = "chain"
    verbose_name = "Chain"

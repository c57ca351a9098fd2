from django.apps import AppConfig


class LimitsConfig(AppConfig):
    name = "marketplace.limits"
    label = "limits"
    verbose_name = "Limits"

    def ready(self):
        # A mistyped rate in the environment stops the start with a message, not the first request.
        from .services import configured_rates

        configured_rates()

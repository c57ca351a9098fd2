from django.apps import AppConfig


class LimitsConfig(AppConfig):
    name = "marketplace.limits"
    label = "limits"
    verbose_name = "Limits"

    def ready(self):
        # A mistyped rate or Redis URL stops the start with a message, not the first request.
        from .services import check_configuration

        check_configuration()

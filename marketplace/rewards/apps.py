from django.apps import AppConfig


class RewardsConfig(AppConfig):
    name = "marketplace.rewards"
    label = "rewards"
    verbose_name = "Contributions and rewards"

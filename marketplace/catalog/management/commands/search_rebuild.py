from django.core.management.base import BaseCommand

from marketplace.catalog.indexing import SearchSync


class Command(BaseCommand):
    help = "Rebuild this host's search index from PostgreSQL and swap it in."

    def handle(self, *args, **options):
        count = SearchSync().rebuild()
        self.stdout.write(f"Search index rebuilt: {count} datasets.")

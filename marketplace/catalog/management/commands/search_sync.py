import gc
import signal
import time

from django.core.management.base import BaseCommand
from django.db import OperationalError, close_old_connections

from marketplace.catalog.indexing import SearchSync


class Command(BaseCommand):
    help = "Keep this host's search index current (the one writer per host; runs until stopped)."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between passes")
        parser.add_argument("--once", action="store_true", help="one pass, then exit")

    def handle(self, *args, interval, once, **options):
        sync = SearchSync()
        gc.freeze()  # what is loaded by now lives as long as the process: a quick exit (celery.py)
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
        passes = 0
        while not stopping:
            try:
                touched = sync.sync_once()
                if touched:
                    self.stdout.write(f"search: {touched} dataset(s) updated")
                passes += 1
                if passes % 7200 == 0:
                    sync.prune()
            except OperationalError as exc:  # the database is down: wait and try again
                self.stderr.write(f"search: database unavailable ({exc.__class__.__name__}); retrying")
                close_old_connections()
                time.sleep(2)
            if once:
                break
            time.sleep(interval)

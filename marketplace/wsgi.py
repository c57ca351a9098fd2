"""WSGI entry point (gunicorn marketplace.wsgi)."""
import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
application = get_wsgi_application()

# Load the URLs, and through them every view's imports, now rather than in the first request
# (about a second): a worker that gunicorn starts or restarts then answers its first request as
# fast as the rest. (The search index is opened by the first search: an index opened before
# gunicorn forks, with --preload, would not survive the fork.)
get_resolver().url_patterns

# What is loaded now lives as long as the process: leave it out of the garbage collector's full
# passes, which otherwise walked all of it (about 250,000 objects, 70 ms of a request that
# happened to trigger one, more under load).
gc.collect()
gc.freeze()

"""The Celery application; tasks are discovered in each installed app's tasks.py."""
import os

from celery import Celery

from marketplace import broker

broker.register()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

app = Celery("marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Publishing happens inside requests: each broker socket operation gives up after this long, so
# a broker that is down or hung costs a request about a second (the outbox sends the rest later).
PUBLISH_TIMEOUT = 1.0


def publish_connection():
    """A broker connection for publishing from a request or a health check."""
    options = {"max_retries": 0}  # one attempt; the outbox sweep is the retry
    if app.conf.broker_url.startswith(("redis://", "rediss://")):
        options.update(socket_timeout=PUBLISH_TIMEOUT, socket_connect_timeout=PUBLISH_TIMEOUT)
    return app.connection_for_write(connect_timeout=PUBLISH_TIMEOUT, transport_options=options)

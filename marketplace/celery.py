"""The Celery application; tasks are discovered in each installed app's tasks.py."""
import gc
import os

from celery import Celery, signals

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


@signals.worker_ready.connect
@signals.beat_init.connect
def freeze_startup_objects(**_):
    """Everything imported by now lives as long as the worker (or beat): moved out of the
    collector's reach, the full collection at interpreter exit takes milliseconds instead of
    about a second of a warm shutdown (a process manager kills what is not gone in 5 s)."""
    gc.freeze()

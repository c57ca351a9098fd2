"""Work enqueued through the outbox survives a broker outage: a request never waits more than
about a second on a dead broker, and the periodic sweep delivers the message to a real worker
once the broker is back."""
import time

from django.db import transaction
import pytest

from marketplace.outbox import services
from marketplace.outbox.models import OutboxMessage, WorkerHeartbeat
from tests.conftest import wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_enqueued_task_runs_on_the_worker(celery_worker):
    with transaction.atomic():
        message = services.enqueue("outbox.worker_heartbeat")
    message.refresh_from_db()
    assert message.published_at is not None
    assert wait_until(lambda: WorkerHeartbeat.objects.filter(worker__startswith="test-worker@").exists()), (
        celery_worker.output()
    )


def test_broker_down_costs_about_a_second_and_the_sweep_delivers_later(
    celery_worker, point_broker_at, broken_broker_url
):
    working_url = celery_worker.broker_url
    point_broker_at(broken_broker_url)
    started = time.monotonic()
    with transaction.atomic():
        message = services.enqueue("outbox.worker_heartbeat")
    elapsed = time.monotonic() - started
    message.refresh_from_db()
    assert message.published_at is None
    assert message.attempts == 1 and "Error" in message.last_error
    assert elapsed < 2, f"enqueue waited {elapsed:.1f} s on a broken broker"

    point_broker_at(working_url)
    assert services.publish_pending(older_than=services.SWEEP_AFTER) == 0, "too fresh for the sweep"
    OutboxMessage.objects.filter(pk=message.pk).update(created_at=message.created_at - services.SWEEP_AFTER)
    assert services.sweep() == 1
    message.refresh_from_db()
    assert message.published_at is not None
    assert wait_until(lambda: WorkerHeartbeat.objects.exists()), celery_worker.output()


def test_nothing_is_published_for_a_rolled_back_transaction(broker):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            services.enqueue("outbox.worker_heartbeat")
            raise RuntimeError("the request failed")
    assert not OutboxMessage.objects.exists()

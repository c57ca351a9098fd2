"""The default broker (kombu's SQLAlchemy transport on our PostgreSQL) ends its wait for tasks
as soon as the worker is asked to stop, instead of Celery's 2 s wait, taken once more after the
stop: a warm shutdown with nothing running took 3-5 s, and honcho kills what is not gone in 5."""
import socket
import threading
import time

from celery.worker import state as worker_state
from django.db import connection
from kombu import Connection, Queue
import pytest

from marketplace.broker import PolledSQLTransport
from marketplace.env import sqlalchemy_url


@pytest.fixture
def sql_broker(broker):
    """The default broker on the test database, even when CELERY_BROKER_URL names another."""
    return "sqla+" + sqlalchemy_url(connection.settings_dict)


@pytest.fixture
def stop_flag():
    yield
    worker_state.should_stop = None
    worker_state.should_terminate = None


def consuming(connection):
    queue = Queue("test-broker-stop", channel=connection.default_channel)
    queue.declare()
    consumer = connection.Consumer([queue], callbacks=[lambda body, message: message.ack()])
    consumer.consume()
    return consumer


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("flag", ["should_stop", "should_terminate"])
def test_the_wait_for_tasks_ends_once_the_worker_is_stopping(sql_broker, stop_flag, flag):
    with Connection(sql_broker) as connection:
        assert isinstance(connection.transport, PolledSQLTransport)
        consumer = consuming(connection)
        # A warm stop sets should_stop to 0 (EX_OK), which is false: the flag is read as Celery does.
        threading.Timer(0.3, setattr, (worker_state, flag, 0 if flag == "should_stop" else True)).start()
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            connection.drain_events(timeout=60)
        assert time.monotonic() - started < 30, "the wait ran to its timeout"
        consumer.cancel()


@pytest.mark.django_db(transaction=True)
def test_a_task_message_is_still_delivered(sql_broker):
    with Connection(sql_broker) as connection:
        received = []
        queue = Queue("test-broker-deliver", channel=connection.default_channel)
        queue.declare()
        consumer = connection.Consumer([queue], callbacks=[lambda body, message: (received.append(body), message.ack())])
        consumer.consume()
        threading.Timer(0.3, lambda: connection.clone().Producer().publish({"n": 1}, routing_key=queue.name)).start()
        connection.drain_events(timeout=30)
        assert received == [{"n": 1}]
        consumer.cancel()

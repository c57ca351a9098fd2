"""The close as beat runs it: the `rewards.close_epochs` task in a real Celery worker (sent twice
at once) scores the ended epoch, queues one root, the worker's operator sender proposes it, and a
later run matures it once the chain's time passes its validAt."""

from datetime import timedelta
import os
import time

from eth_account import Account
import pytest

from marketplace.chain import indexer
from marketplace.chain.models import ChainEvent, OperatorAction
from marketplace.rewards.models import Epoch
from tests.conftest import wait_until
from tests.integration.test_epochs import credit, device, first_window

pytestmark = [pytest.mark.chain, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_the_worker_closes_proposes_and_matures_an_epoch_once(chain, celery_worker):
    from marketplace.celery import app

    epoch = first_window(hours_ago=1)
    for points in (2, 3):
        credit(device(Account.create().address), points, epoch.starts_at + timedelta(minutes=1))
    chain.token.mint(
        chain.distributor.address, 1_000 * 10**6
    )  # no treasury key in the worker: funded by hand
    app.send_task("rewards.close_epochs")
    app.send_task("rewards.close_epochs")

    def proposed():
        indexer.index_chain(chain.w3)
        return Epoch.objects.filter(number=1, state=Epoch.State.PROPOSED).exists()

    assert wait_until(proposed, timeout=90), celery_worker.output()
    assert OperatorAction.objects.filter(kind="propose_root").count() == 1
    one = Epoch.objects.get(number=1)
    assert [e.args["root"] for e in ChainEvent.objects.filter(name="RootProposed")] == [one.root]

    chain.advance(chain.distributor.root_delay() + 1)
    indexer.index_chain(chain.w3)  # an epoch matures by the indexed chain's time
    app.send_task("rewards.close_epochs")
    assert wait_until(
        lambda: Epoch.objects.get(number=1).state == Epoch.State.MATURED, timeout=60
    ), celery_worker.output()
    assert chain.distributor.current_root().root == bytes.fromhex(one.root[2:])


def start_worker(queue_name):
    """A Celery worker of this test's own, consuming only `queue_name` (so that killing it leaves
    the session's worker alone)."""
    import os
    import subprocess
    import sys

    from django.db import connection

    from marketplace.celery import app
    from tests.conftest import ROOT, database_url

    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": app.conf.broker_url,
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "marketplace",
            "worker",
            "--pool",
            "solo",
            "-Q",
            queue_name,
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"{queue_name}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def close_lock_holder():
    from django.db import connection

    from marketplace.rewards import epochs

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objid = hashtext(%s)::oid",
            [epochs.LOCK_NAME],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def test_a_worker_killed_during_the_close_leaves_nothing_and_the_next_run_stores_the_root():
    import signal

    from marketplace.celery import app
    from marketplace.rewards import epochs
    from marketplace.rewards.models import EpochLeaf
    from tests.integration.test_epochs import wallet

    epoch = first_window(hours_ago=1)
    for points in range(1, 4):
        credit(device(wallet()), points, epoch.starts_at + timedelta(minutes=1))
    # An earlier epoch's 300,000 leaves make the close's tree take seconds.
    earlier = Epoch.objects.create(
        number=0,
        starts_at=epoch.starts_at - timedelta(hours=1),
        ends_at=epoch.starts_at,
        state=Epoch.State.MATURED,
        root="0x" + "11" * 32,
        leaves=300_000,
    )
    from django.db import connection

    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            "COPY rewards_epochleaf (epoch_id, wallet, cumulative, node) FROM STDIN"
        ) as copy,
    ):
        for i in range(300_000):
            copy.write_row((earlier.pk, "0x" + f"{i + 1:040x}", 1_000 + i, i))
    worker = start_worker("epoch-kill-test")
    try:
        app.send_task("rewards.close_epochs", queue="epoch-kill-test")
        assert wait_until(close_lock_holder, timeout=60), "the worker never started the close"
        time.sleep(1.0)  # inside the scoring transaction
        assert close_lock_holder() is not None
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    assert wait_until(
        lambda: close_lock_holder() is None, timeout=30
    )  # its session ended: rolled back
    one = Epoch.objects.get(number=1)
    assert one.state == Epoch.State.OPEN and one.root == ""
    assert not EpochLeaf.objects.filter(epoch=one).exists()

    assert epochs.score_next() == 1
    one.refresh_from_db()
    assert one.state == Epoch.State.SCORED and one.leaves == 300_003
    assert EpochLeaf.objects.filter(epoch=one).count() == 300_003

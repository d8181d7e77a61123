"""The network guard reaches the Python processes the tests start (tests/netguard/sitecustomize.py)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netguard.loopback_guard import MESSAGE

CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).sendall(b'ok')"


def child(args: list[str], log: Path, **env: str) -> subprocess.CompletedProcess:
    """A Python child with the tests' environment; its refusals go to ``log``, not to the session's
    log (which would fail this test for a refusal it asked for)."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CCNET_TEST_NETGUARD_LOG": str(log), **env})


@pytest.mark.parametrize("host", ["192.0.2.1", "example.com"])
def test_a_child_may_not_reach_another_host(tmp_path, host):
    log = tmp_path / "refused.log"
    run = child(["-c", CONNECT, host, "80"], log)
    assert run.returncode == 1 and f"ConnectionRefusedError: {MESSAGE.format(host=host)}" in run.stderr, run.stderr
    assert log.read_text() == f"socket.getaddrinfo {host}\n"


def test_a_child_may_reach_loopback(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(30)
        port = server.getsockname()[1]
        run = child(["-c", CONNECT, "127.0.0.1", str(port)], tmp_path / "refused.log")
        assert run.returncode == 0, run.stderr
        connection, _ = server.accept()
        with connection:
            assert connection.recv(2) == b"ok"
    assert not (tmp_path / "refused.log").exists()


def test_a_shadowed_sitecustomize_still_runs(tmp_path):
    """A Debian or virtualenv sitecustomize further down the path runs, and the guard stays on."""
    (tmp_path / "sitecustomize.py").write_text("import sys; sys.stderr.write('shadowed one ran\\n')\n")
    run = child(["-c", CONNECT, "192.0.2.1", "80"], tmp_path / "refused.log",
                PYTHONPATH=os.pathsep.join([os.environ["PYTHONPATH"], str(tmp_path)]))
    assert run.stderr.startswith("shadowed one ran\n") and MESSAGE.format(host="192.0.2.1") in run.stderr

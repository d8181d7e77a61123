"""Test-wide guards: no test may reach a non-loopback host; Gradio and HF stay offline."""
from __future__ import annotations

import ipaddress
import os
import socket
import sys

import numpy as np
import pytest
from PIL import Image

from ccnet.app.explorer import Explorer
from tests.helpers import tiny_checkpoint

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

BLOCKED: list[str] = []
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host)
    if host in LOOPBACK_NAMES or host == "":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _network_guard(event: str, args: tuple) -> None:
    """Refuse any lookup or connection to a host that is not loopback (kept trivial on purpose)."""
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event == "socket.connect" and isinstance(args[1], tuple):
        sock = args[0]
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        host = args[1][0]
    else:
        return
    if not _is_loopback(host):
        BLOCKED.append(f"{event} {host}")
        raise ConnectionRefusedError(f"tests may not reach the network: {host}")


sys.addaudithook(_network_guard)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random CCNet saved with classes, palette, config and protocol in its meta."""
    return tiny_checkpoint(tmp_path_factory.mktemp("models") / "tiny.pt")


@pytest.fixture()
def explorer(checkpoint):
    """A fresh app Explorer on the tiny checkpoint, on the CPU."""
    return Explorer(str(checkpoint), device="cpu")


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """A 96 x 64 random RGB image file."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("images") / "scene.png"
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(autouse=True)
def _no_network_reached():
    """Fail the test that tried (even if it swallowed the refusal)."""
    before = len(BLOCKED)
    yield
    assert BLOCKED[before:] == [], f"non-loopback network access: {BLOCKED[before:]}"

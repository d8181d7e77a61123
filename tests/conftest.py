"""Test-wide guards: no test, nor any Python process a test starts, may reach a non-loopback host;
Gradio and HF stay offline."""
from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ccnet.app.explorer import Explorer
from tests.helpers import tiny_checkpoint
from tests.netguard.loopback_guard import install

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

BLOCKED: list[str] = []
install(BLOCKED.append)

# Every Python child of the tests (CLI runs, bench, `python app.py`) loads tests/netguard/sitecustomize.py,
# which installs the same guard and appends its refusals to CHILD_LOG.
NETGUARD = Path(__file__).parent / "netguard"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), os.environ.get("PYTHONPATH")]))
_handle, _log = tempfile.mkstemp(prefix="ccnet-netguard-", suffix=".log")
os.close(_handle)
CHILD_LOG = Path(_log)
atexit.register(CHILD_LOG.unlink, missing_ok=True)
os.environ["CCNET_TEST_NETGUARD_LOG"] = str(CHILD_LOG)


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
    """Fail the test that tried, or whose child process tried (even if the refusal was swallowed)."""
    before, child_before = len(BLOCKED), CHILD_LOG.stat().st_size
    yield
    assert BLOCKED[before:] == [], f"non-loopback network access: {BLOCKED[before:]}"
    children = CHILD_LOG.read_bytes()[child_before:].decode(errors="replace").splitlines()
    assert children == [], f"non-loopback network access in a child process: {children}"

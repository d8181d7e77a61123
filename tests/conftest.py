"""Test-wide guards: no test, nor any Python process a test starts, may reach a non-loopback host;
Gradio and HF stay offline."""
from __future__ import annotations

import atexit
import gc
import os
import tempfile
from pathlib import Path

# One OpenMP thread per test process (and, inherited, per child): on a small machine a second thread
# mostly spin-waits, costing CPU that a parallel worker or the served app under test needs. Set before
# torch loads; a test that measures threads sets its own.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
from PIL import Image

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
    from tests.helpers import tiny_checkpoint  # here, not at the top: xdist's controller never loads torch

    return tiny_checkpoint(tmp_path_factory.mktemp("models") / "tiny.pt")


@pytest.fixture()
def explorer(checkpoint):
    """A fresh app Explorer on the tiny checkpoint, on the CPU."""
    from ccnet.app.explorer import Explorer

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


# The slow rooms: real browsers and served apps, ONNX export, torchrun, training, subprocesses that
# measure memory. Everything else is `quick` (python -m pytest -m quick: the subset to run while working).
# Listed heaviest first (their share of a run, docs/development.md), the rooms that mostly wait (WAITING)
# between rooms that compute: the tests run in this order, so the parallel workers take the long rooms
# first and the ~1,200 quick tests even out their ends.
SLOW = ("tests/inference/test_export.py", "tests/tools/test_stage_bench.py", "tests/nn/test_attention3d_export.py",
        "tests/e2e/test_first_screen.py", "tests/e2e/test_browser.py", "tests/e2e/test_video_viewer.py",
        "tests/experiments/test_distributed.py", "tests/app/test_disk.py", "tests/experiments/test_train.py",
        "tests/e2e/test_hostile_clients.py", "tests/app/test_allocator.py", "tests/app/test_body_limit.py",
        "tests/experiments/test_video_train.py", "tests/e2e/test_app_api.py", "tests/inference/test_decode_budget.py",
        "tests/inference/test_metadata.py", "tests/inference/test_reduced_decoding.py",
        "tests/app/test_zerogpu.py", "tests/e2e/")
# Rooms that mostly wait (servers started as processes, sweeps, slow bodies): each runs on one worker, its
# place in SLOW between rooms that compute, so that the other worker's computing fills its waits.
WAITING = ("tests/app/test_disk.py", "tests/e2e/test_hostile_clients.py", "tests/app/test_body_limit.py")
CHEAP_SHARED = {"checkpoint", "picture"}  # module fixtures cheap enough to build on every worker
# Fixtures too costly to build on both workers (tests/e2e/conftest.py: the room of the served app and
# its browser): the tests that use one run on one worker, one after another, in a group named after it.
SHARED_ROOMS = ("live_app",)
# Modules whose tests trace ONNX graphs run on one worker: a process's first export pays about 2 s of the
# exporter's set-up (its op registry, onnxscript's imports) that later ones do not.
ONNX_EXPORTS = ("tests/inference/test_export.py", "tests/nn/test_attention3d_export.py",
                "tests/tools/test_stage_bench.py")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Mark the quick subset; keep the tests that share an expensive fixture (a served app and its
    browser, an export, a training run) on one parallel worker, so that it is built once."""
    items.sort(key=_room_rank)  # stable: a module's tests keep their order
    for item in items:
        path = item.nodeid.split("::")[0]
        if not path.startswith(SLOW):
            item.add_marker(pytest.mark.quick)
        definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        room = next((name for name in SHARED_ROOMS if name in getattr(item, "fixturenames", ())), None)
        if path in ONNX_EXPORTS:
            item.add_marker(pytest.mark.xdist_group("onnx-exports"))
        elif room:
            item.add_marker(pytest.mark.xdist_group(room))
        elif path in WAITING or any(defs[-1].scope == "module" for name, defs in definitions.items()
                                    if name not in CHEAP_SHARED):
            item.add_marker(pytest.mark.xdist_group(path))


def _room_rank(item: pytest.Item) -> int:
    """The item's place in SLOW (the quick tests after every slow room)."""
    path = item.nodeid.split("::")[0]
    return next((rank for rank, room in enumerate(SLOW) if path.startswith(room)), len(SLOW))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """Keep the garbage collector's full passes rare in a test process, whose heap holds up to a
    million objects (torch, Gradio, traced graphs): what start-up and collection made is frozen out
    of its reach (pytest's five passes at the end walk only what the tests made), and a full pass
    waits for 1000 younger ones, not 10: at 100, what the tests keep (the exporter's op registry,
    traced graphs) still made 19 full passes a worker (3.8 s); at 1000, 14 (1.7 s), most of them asked
    for (pytest's, the exporter's), with the same peak memory (2.2 to 2.6 GiB)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1000)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    """At a test process's end, one full pass reaches what the tests left (pytest still reports what
    their finalisers raise), and the survivors are frozen: pytest's five passes after this hook and the
    interpreter's at exit then walk nothing twice. They took 2 s of each worker's last 4.6 s."""
    gc.collect()
    gc.freeze()

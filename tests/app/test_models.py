"""A released model's download never holds up the views' queue: the view that needs it starts it in
the background and is told to retry in one line; a second view is told at once; one download per
model; a failed one is reported to the view and remembered; models on disk load inline."""
from __future__ import annotations

import threading
import time

import pytest

from ccnet.app.explorer import Explorer
from ccnet.app.models import ModelStore
from ccnet.errors import CCNetError, DownloadError
from ccnet.project import DEMOS
from ccnet.weights import presets
from ccnet.weights.load import load_file

PRESET = "ccnet_r50-d8_512x1024_80k_cityscapes"


class SlowDownload:
    """A loader whose download of the preset ends when the test says so."""

    def __init__(self, checkpoint, fail: bool = False) -> None:
        self.checkpoint, self.fail = checkpoint, fail
        self.release, self.calls = threading.Event(), []

    def __call__(self, name, progress=None):
        self.calls.append(name)
        if name != PRESET:
            return load_file(self.checkpoint, name=name)
        if self.fail:
            raise DownloadError(f"cannot download {name} from http://127.0.0.1:1/", f"cannot download {name} now")
        assert self.release.wait(30)
        return load_file(self.checkpoint, protocol=presets.get(name).protocol, name=name)


def test_a_view_starts_the_download_and_is_told_to_retry_without_waiting_for_it(checkpoint):
    loader = SlowDownload(checkpoint)
    store = ModelStore("default", "cpu", None, loader)
    start = time.perf_counter()
    with pytest.raises(CCNetError, match=rf"^{PRESET} is being downloaded \(about \d+ MB\); retry in a minute$"):
        store.ready(PRESET, wait_s=0.3)
    assert time.perf_counter() - start < 4.0  # the download itself waits for the test (30 s)
    start = time.perf_counter()
    with pytest.raises(CCNetError, match="retry in a minute"):
        store.ready(PRESET, wait_s=5.0)  # a download already under way: no wait at all
    assert time.perf_counter() - start < 4.0  # (a wait would take the 5 s)
    loader.release.set()
    deadline = time.monotonic() + 30
    while not store.loaded(PRESET) and time.monotonic() < deadline:
        time.sleep(0.05)
    store.ready(PRESET)  # loaded: returns at once
    assert loader.calls == [PRESET]  # one download, however many views asked


def test_a_failed_download_reaches_the_view_that_started_it_and_is_remembered(checkpoint):
    loader = SlowDownload(checkpoint, fail=True)
    store = ModelStore("default", "cpu", None, loader)
    for _ in range(3):
        with pytest.raises(DownloadError, match=f"cannot download {PRESET}"):
            store.ready(PRESET, wait_s=5.0)
    assert loader.calls == [PRESET]  # the next attempt waits for the backoff


def test_models_on_disk_load_inline(checkpoint):
    loader = SlowDownload(checkpoint)
    store = ModelStore("default", "cpu", None, loader)
    store.ready("default:rcca_r1")
    assert store.loaded("default:rcca_r1") and loader.calls == ["default:rcca_r1"]


def test_the_explorer_refuses_a_view_of_a_model_still_downloading_and_serves_the_rest(checkpoint):
    loader = SlowDownload(checkpoint)
    explorer = Explorer("default", device="cpu", loader=loader)
    explorer.models.restrict(["default", PRESET])
    with pytest.raises(CCNetError, match="retry in a minute"):
        explorer.models.ready(PRESET, wait_s=0.0)
    start = time.perf_counter()
    with pytest.raises(CCNetError, match="retry in a minute"):
        explorer.analyse(DEMOS / "street_seed1_car.png", PRESET)
    assert time.perf_counter() - start < 0.5
    assert explorer.analyse(DEMOS / "street_seed1_car.png").model == "default"
    loader.release.set()


def test_released_models_are_unloaded_least_recently_used_first_within_the_memory_budget(checkpoint, monkeypatch):
    from ccnet import limits

    others = [name for name in presets.presets() if name != PRESET][:2]

    def loader(name, progress=None):
        return load_file(checkpoint, protocol=presets.get(name).protocol if name in presets.presets() else None,
                         name=name)

    monkeypatch.setattr("ccnet.weights.download.prune_cache", lambda *args, **kwargs: [])
    store = ModelStore("default", "cpu", None, loader)
    tiny = sum(t.numel() * t.element_size() for t in [*store.model("default")[0].net.parameters(),
                                                          *store.model("default")[0].net.buffers()])
    monkeypatch.setattr(limits, "MODEL_MEMORY_MB", 2.5 * tiny / limits.MiB)  # room for two released models
    store.model(PRESET)
    store.model(others[0])
    store.model(PRESET)  # used again: now the most recent
    store.model(others[1])
    assert [store.loaded(name) for name in (PRESET, *others)] == [True, False, True]
    assert store.loaded("default")  # the start-up model is never unloaded
    monkeypatch.setattr(limits, "MODEL_MEMORY_MB", 0)  # even then, the model just loaded stays
    store.model(others[0])
    assert [store.loaded(name) for name in (PRESET, *others)] == [False, True, False]


def test_the_checkpoint_cache_keeps_within_its_budget_the_least_recently_used_going_first(tmp_path, monkeypatch):
    import os

    from ccnet.weights.download import prune_cache

    monkeypatch.setenv("CCNET_CACHE", str(tmp_path))
    files = []
    for i, name in enumerate(("old.pth", "middle.pth", "recent.pth")):
        files.append(tmp_path / name)
        files[-1].write_bytes(b"x" * 1000)
        os.utime(files[-1], (1_000_000 + i, 1_000_000 + i))
    (tmp_path / ".partial.pth.part").write_bytes(b"x" * 5000)  # a download in progress is not the cache's
    assert prune_cache(3000, room_for=1000, keep=frozenset({"old.pth"})) == [files[1]]
    assert prune_cache(3000) == []
    assert prune_cache(1500, room_for=0) == [files[0]]

"""The allocator modes change what a forward pass pays for memory: with freed memory kept, a
pass run again is not page-faulted in again, in the app's worker threads too; with glibc's
defaults it is; an idle server gives the kept memory back. Each case runs in a fresh process, as
the server sets it up, so that no mode outlives its test."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccnet.app.server.allocator import use_allocator

ROOT = Path(__file__).resolve().parents[2]
glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the modes are glibc's (Linux)")

# In a new thread (as a Gradio worker would), runs ten rounds of a pass that makes and frees two
# 96 MiB tensors, then prints the smallest share of their pages a round faulted in from the fifth
# on. (The kept heap takes a few rounds to settle, at times more: each 64-byte-aligned request is a
# little larger than the chunk the last one freed, until freed neighbours merge.)
FEWEST_FAULTS = """
import resource, threading
import torch
from ccnet.app.server.allocator import use_allocator_from_environment
mode = use_allocator_from_environment()
faults = []
def work():
    for _ in range(10):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.empty(24 * 2**20).fill_(1.0)
        y = x * 2
        del x, y
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
thread = threading.Thread(target=work)
thread.start(); thread.join()
print(mode, min(faults[4:]) / (2 * 24 * 2**20 * 4 / 4096))
"""

# Keeps 512 MiB freed, then asks IdleRelease to look: busy (nothing given back), idle (given
# back), idle again (nothing new), and idle after another 512 MiB was kept (given back again).
# Prints the resident MiB after each step.
IDLE_RELEASE = """
import torch
from ccnet.app.server.allocator import IdleRelease, held_bytes, use_allocator, _resident_bytes
assert use_allocator("kept")
def keep():
    x = torch.ones(64 * 2**20)
    y = x * 2
    del x, y
    assert held_bytes() >= 500 * 2**20
mib = lambda: round(_resident_bytes() / 2**20)
keep(); steps = [mib()]
steps += [IdleRelease(busy_share=-1.0).check(), mib()]  # every interval counts as busy
idle = IdleRelease(busy_share=1e9)
steps += [idle.check(), mib(), idle.check(), mib()]
keep(); steps += [mib(), idle.check(), mib()]
print(*steps)
"""

# The release thread, started, gives 512 MiB back by itself within 10 s; prints the MiB before and after.
RELEASE_THREAD = """
import time, torch
from ccnet.app.server.allocator import IdleRelease, use_allocator, _resident_bytes
assert use_allocator("kept")
x = torch.ones(128 * 2**20); del x
kept = _resident_bytes() / 2**20
releaser = IdleRelease(idle_s=0.05, busy_share=1e9).start()
deadline = time.monotonic() + 10
while _resident_bytes() / 2**20 > kept - 400 and time.monotonic() < deadline:
    time.sleep(0.05)
releaser.stop()
print(round(kept), round(_resident_bytes() / 2**20))
"""


def _run(code: str, allocator: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CCNET_ALLOCATOR"}
    if allocator is not None:
        env["CCNET_ALLOCATOR"] = allocator
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def _huge_pages_setting() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "never"
    return text[text.index("[") + 1:text.index("]")]


@glibc_only
def test_kept_memory_is_not_faulted_in_again_and_glibcs_default_is():
    kept = _run(FEWEST_FAULTS, "kept")
    mode, share = kept.stdout.split()
    assert mode == "kept" and float(share) < 0.05, kept.stderr
    for setting in (None, "system"):  # glibc's defaults unless asked: the opt-in is off by default
        system = _run(FEWEST_FAULTS, setting)
        mode, share = system.stdout.split()
        assert mode == "system", system.stderr
        if _huge_pages_setting() != "always":  # else the kernel faults glibc's fresh maps in 2 MiB at a time
            assert float(share) > 0.9


@glibc_only
def test_an_unknown_mode_in_the_environment_warns_and_keeps_glibcs_defaults():
    run = _run(FEWEST_FAULTS, "jemalloc")
    assert run.returncode == 0 and run.stdout.split()[0] == "system"
    assert "CCNET_ALLOCATOR='jemalloc' is not one of kept, system" in run.stderr


def test_a_mode_must_be_named_right():
    with pytest.raises(ValueError, match="kept"):
        use_allocator("fast")


@glibc_only
def test_an_idle_process_gives_the_kept_memory_back_a_busy_one_keeps_it_and_new_peaks_count_again():
    run = _run(IDLE_RELEASE)
    assert run.returncode == 0, run.stderr
    kept, busy_released, busy_mib, released, idle_mib, again, again_mib, kept2, released2, idle2_mib = (
        run.stdout.split())
    assert busy_released == "False" and int(busy_mib) > int(kept) - 50
    assert released == "True" and int(idle_mib) < int(kept) - 400
    assert again == "False" and int(again_mib) < int(kept) - 400  # nothing new to give back
    assert int(kept2) > int(idle_mib) + 400 and released2 == "True" and int(idle2_mib) < int(kept2) - 400


@glibc_only
def test_the_release_thread_looks_by_itself_until_stopped():
    run = _run(RELEASE_THREAD)
    kept, after = (int(v) for v in run.stdout.split())
    assert after < kept - 400, run.stderr


def test_the_idle_release_gives_back_only_when_idle_and_holding_and_grown(monkeypatch):
    """Its rule, with the process's CPU time, glibc's held bytes and the resident size given: it
    trims when the process used at most `busy_share` of a core since the last look AND glibc holds
    more than `hold_bytes` freed AND resident memory grew more than `hold_bytes` past the last release."""
    from ccnet.app.server import allocator

    trims, clock, cpu = [], [0.0], [0.0]
    state = {"held": 0, "resident": 0}
    from types import SimpleNamespace

    monkeypatch.setattr(allocator, "_glibc", lambda: SimpleNamespace(malloc_trim=trims.append))
    monkeypatch.setattr(allocator, "_cpu_seconds", lambda: cpu[0])
    monkeypatch.setattr(allocator, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(allocator, "held_bytes", lambda: state["held"])
    monkeypatch.setattr(allocator, "_resident_bytes", lambda: state["resident"])
    release = allocator.IdleRelease(idle_s=30, busy_share=0.25, hold_bytes=100)

    def look(cpu_used: float, held: int, resident: int) -> bool:
        clock[0] += 30
        cpu[0] += cpu_used
        state.update(held=held, resident=resident)
        return release.check()

    assert look(7.5, 1000, 1000) is True  # exactly a quarter of a core: idle
    assert look(7.6, 1000, 1000) is False  # busier than that
    assert look(0, 100, 1000) is False  # glibc holds no more than hold_bytes
    assert look(0, 1000, 1100) is False  # resident grew only hold_bytes since the last release (1000)
    assert look(0, 1000, 1101) is True
    assert trims == [0, 0]

"""The allocator modes change what a forward pass pays for memory: with freed memory kept, a
pass run again is not page-faulted in again, in the app's worker threads too; with glibc's
defaults it is. Each case runs in a fresh process, as the entry points set it up."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ccnet.inference.allocator import use_allocator

ROOT = Path(__file__).resolve().parents[2]
glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the modes are glibc's (Linux)")

# In a new thread (as a Gradio worker would), runs ten rounds of a pass that makes and frees two
# 96 MiB tensors, then prints the smallest share of their pages a round faulted in from the fifth
# on. (The kept heap takes a few rounds to settle, at times more: each 64-byte-aligned request is a
# little larger than the chunk the last one freed, until freed neighbours merge.)
FEWEST_FAULTS = """
import resource, threading
import torch
from ccnet.inference.allocator import use_allocator_from_environment
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


def _run(code: str, allocator: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CCNET_ALLOCATOR"}
    if allocator is not None:
        env["CCNET_ALLOCATOR"] = allocator
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def _transparent_huge_pages() -> bool:
    try:
        return "[never]" not in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


@glibc_only
def test_kept_memory_is_not_faulted_in_again_and_glibcs_default_is():
    kept = _run(FEWEST_FAULTS, None)  # the default
    system = _run(FEWEST_FAULTS, "system")
    mode, share = kept.stdout.split()
    assert mode == "retain" and float(share) < 0.05, kept.stderr
    mode, share = system.stdout.split()
    assert mode == "system" and float(share) > 0.9, system.stderr


@glibc_only
@pytest.mark.skipif(not _transparent_huge_pages(), reason="the kernel's transparent huge pages are off")
def test_huge_pages_fault_in_2_mib_at_a_time():
    run = _run(FEWEST_FAULTS, "hugepages")
    mode, share = run.stdout.split()
    assert mode == "hugepages" and float(share) < 0.05, run.stderr  # 4 KiB pages would fault in all of them


@glibc_only
def test_an_unknown_mode_in_the_environment_warns_and_keeps_glibcs_defaults():
    run = _run(FEWEST_FAULTS, "jemalloc")
    assert run.returncode == 0 and run.stdout.split()[0] == "system"
    assert "CCNET_ALLOCATOR='jemalloc' is not one of retain, hugepages, system" in run.stderr


def test_a_mode_must_be_named_right():
    with pytest.raises(ValueError, match="retain"):
        use_allocator("fast")


def _resident_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@glibc_only
def test_an_idle_process_gives_the_kept_memory_back_and_a_busy_one_keeps_it():
    import torch

    from ccnet.inference.allocator import IdleRelease, held_bytes

    use_allocator("retain")
    try:
        x = torch.ones(64 * 2**20)
        y = x * 2
        del x, y  # 512 MiB freed, kept
        assert held_bytes() >= 500 * 2**20
        kept = _resident_mib()
        busy = IdleRelease(busy_share=-1.0)  # every interval counts as busy
        assert not busy.check() and _resident_mib() > kept - 50
        idle = IdleRelease(busy_share=1e9)
        assert idle.check() and _resident_mib() < kept - 400
        assert not idle.check()  # nothing new to give back until the process works again
    finally:
        use_allocator("system")


@glibc_only
def test_the_release_thread_looks_by_itself_until_stopped():
    import torch

    from ccnet.inference.allocator import IdleRelease

    use_allocator("retain")
    releaser = IdleRelease(idle_s=0.05, busy_share=1e9)
    try:
        x = torch.ones(64 * 2**20)
        del x
        kept = _resident_mib()
        releaser.start()
        deadline = time.monotonic() + 10
        while _resident_mib() > kept - 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _resident_mib() < kept - 200
    finally:
        releaser.stop()
        use_allocator("system")

"""glibc's allocator set for large, short-lived tensors: memory a forward pass frees is kept for the next.

By default glibc serves every allocation over its mmap threshold (adaptive, at most 32 MiB) with a
fresh mapping and unmaps it on free, so each feature map of a forward pass is page-faulted in
again: about 300,000 faults (1.2 GiB) per R50-D8 pass at 512x1024, at ~1.2 us each on a virtual
machine. Serving everything from one heap that is never trimmed removes them (R50-D8 0.85x, the
criss-cross block 0.7x, in one process; docs/performance.md). One arena, so that the web app's
worker threads share that heap: a thread's own arena maps anything over 64 MiB afresh. The price:
the process keeps its peak memory between requests instead of returning it.

Used by the entry points (`python -m ccnet`, `python app.py`), not on import: it is a process-wide
choice. CCNET_ALLOCATOR=system keeps glibc's defaults; other C libraries are left alone.
CCNET_ALLOCATOR=hugepages keeps them too but has PyTorch back its large tensors with 2 MiB pages
(THP_MEM_ALLOC_ENABLE): 512 times fewer faults, memory given back on free, so no held peak, where
the kernel's transparent huge pages are on; slower than "retain" in the measurements.
"""
from __future__ import annotations

import ctypes
import os
import sys

ENV = "CCNET_ALLOCATOR"
MODES = ("retain", "hugepages", "system")
# mallopt(3) parameters and glibc's defaults for the two this module switches back
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
SYSTEM_TRIM_THRESHOLD, SYSTEM_MMAP_MAX = 128 * 1024, 65536
NEVER_TRIM = 2**31 - 1  # mallopt takes an int

_mode = "system"


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "gnu_get_libc_version") else None  # musl has no such mallopt options


def use_allocator(mode: str) -> bool:
    """Switch the process to ``mode`` (one of MODES); returns whether it took effect.

    Call it first thing in an entry point: the one-arena limit of "retain" binds threads that have
    not yet made an arena of their own, and PyTorch reads THP_MEM_ALLOC_ENABLE at its first
    allocation. "system" gives the held memory back (malloc_trim) and restores glibc's thresholds;
    benchmarks switch between "system" and "retain".
    """
    global _mode
    if mode not in MODES:
        raise ValueError(f"allocator mode must be one of {MODES}, not {mode!r}")
    if mode == "hugepages":
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    libc = _glibc()
    retain = mode == "retain"
    if libc is None:
        return False
    taken = all((
        libc.mallopt(M_MMAP_MAX, 0 if retain else SYSTEM_MMAP_MAX),
        libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM if retain else SYSTEM_TRIM_THRESHOLD),
        libc.mallopt(M_ARENA_MAX, 1) if retain else 1,
    ))
    if not retain:
        libc.malloc_trim(0)
    if taken:
        _mode = mode
    return bool(taken)


def allocator_mode() -> str:
    """One of MODES: what this process runs with, for benchmark reports."""
    return _mode


def use_allocator_from_environment() -> str:
    """The entry points' call: CCNET_ALLOCATOR (default "retain"), applied; returns the mode in effect."""
    wanted = os.environ.get(ENV, "retain").strip().lower() or "retain"
    if wanted not in MODES:
        print(f"warning: {ENV}={wanted!r} is not one of {', '.join(MODES)}; using glibc's defaults", file=sys.stderr)
        wanted = "system"
    use_allocator(wanted)
    return allocator_mode()

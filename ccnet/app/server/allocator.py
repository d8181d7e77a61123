"""An opt-in for the served app: glibc set to keep the memory a forward pass frees for the next.

By default glibc serves every allocation over its mmap threshold (adaptive, at most 32 MiB) with a
fresh mapping and unmaps it on free, so each feature map of a forward pass is page-faulted in
again: about 300,000 faults (1.2 GiB) per R50-D8 pass at 512x1024, ~1 us each on a virtual
machine. Serving everything from one heap that is never trimmed removes them (docs/performance.md
gives what that buys). One arena, so that the web app's worker threads share that heap: a
thread's own arena maps anything over 64 MiB afresh. The price: the process keeps its peak memory
between requests instead of returning it; the server gives it back once idle (IdleRelease).

Off by default everywhere: `CCNET_ALLOCATOR=kept python app.py` turns it on, when the server
starts (main(), not on import: it is a process-wide choice). Other C libraries are left alone.
"""
from __future__ import annotations

import ctypes
import logging
import os
import resource
import sys
import threading
import time

ENV = "CCNET_ALLOCATOR"
MODES = ("kept", "system")
# mallopt(3) parameters. glibc adapts its thresholds until one is set by hand; switching back from
# "kept" sets where they settle in a warmed-up process (mmap threshold at its 32 MiB cap, trim
# threshold twice that), so that a benchmark's "system" runs are those of a process on its second pass.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -3, -4, -8
SETTLED_MMAP_THRESHOLD, SETTLED_TRIM_THRESHOLD, SYSTEM_MMAP_MAX = 32 * 2**20, 64 * 2**20, 65536
NEVER_TRIM = -1  # mallopt(3): -1 disables trimming

_mode = "system"
_libc: list[ctypes.CDLL | None] = []  # found once
log = logging.getLogger(__name__)


def _glibc() -> ctypes.CDLL | None:
    if not _libc:
        libc = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
        _libc.append(libc if hasattr(libc, "gnu_get_libc_version") else None)  # musl has no such mallopt
    return _libc[0]


def use_allocator(mode: str) -> bool:
    """Switch the process to ``mode`` (one of MODES); returns whether it took effect.

    Call it when the server starts, before other threads allocate: the one-arena limit of "kept"
    binds threads that have not yet made an arena of their own. Switching from "kept" to "system"
    gives the held memory back
    (malloc_trim) and sets glibc's settled thresholds (the one-arena limit stays, which a
    single-threaded benchmark does not see); benchmarks switch between the two.
    """
    global _mode
    if mode not in MODES:
        raise ValueError(f"allocator mode must be one of {MODES}, not {mode!r}")
    libc = _glibc()
    if libc is None:
        return False
    if mode == "kept":
        taken = all([libc.mallopt(M_MMAP_MAX, 0), libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM),
                     libc.mallopt(M_ARENA_MAX, 1)])
    else:  # back from "kept" (else glibc's adaptive settings are in force already)
        taken = _mode != "kept" or _settle(libc)
    if taken:
        _mode = mode
    return taken


def _settle(libc: ctypes.CDLL) -> bool:
    taken = all([libc.mallopt(M_MMAP_MAX, SYSTEM_MMAP_MAX), libc.mallopt(M_MMAP_THRESHOLD, SETTLED_MMAP_THRESHOLD),
                 libc.mallopt(M_TRIM_THRESHOLD, SETTLED_TRIM_THRESHOLD)])
    libc.malloc_trim(0)
    return taken


def allocator_mode() -> str:
    """One of MODES: what this process runs with, for benchmark reports."""
    return _mode


def use_allocator_from_environment() -> str:
    """The server's call at start: CCNET_ALLOCATOR (default "system"), applied; returns the mode in effect."""
    wanted = os.environ.get(ENV, "system").strip().lower() or "system"
    if wanted not in MODES:
        print(f"warning: {ENV}={wanted!r} is not one of {', '.join(MODES)}; using glibc's defaults", file=sys.stderr)
        wanted = "system"
    use_allocator(wanted)
    return allocator_mode()


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def held_bytes() -> int:
    """Free memory glibc holds in its heaps (mallinfo2's fordblks); 0 where that is unknown."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return 0
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().fordblks)


class IdleRelease:
    """Gives the memory "kept" keeps back to the OS once the process has been idle for a while.

    A server under load keeps the speed (each run reuses what the last one freed); one that has
    served a large image and then waits does not hold that peak. Idle means the process used less
    than ``busy_share`` of one core since the last look, so no request needs a hook: a served
    Gradio app uses about 7 % between requests here, a network run 100-200 %.
    """

    def __init__(self, idle_s: float = 30.0, busy_share: float = 0.25, hold_bytes: int = 64 * 2**20) -> None:
        self.idle_s, self.busy_share, self.hold_bytes = idle_s, busy_share, hold_bytes
        self._cpu, self._wall = _cpu_seconds(), time.monotonic()
        self._floor = 0  # resident bytes after the last release
        self._stop = threading.Event()

    def check(self) -> bool:
        """One look: release (malloc_trim) if the process was idle since the last look and both the
        freed memory glibc holds and the resident memory above the last release's exceed
        ``hold_bytes`` (freed bytes stay counted after a release, resident ones do not); returns
        whether it released."""
        cpu, wall = _cpu_seconds(), time.monotonic()
        idle = cpu - self._cpu <= self.busy_share * (wall - self._wall)
        self._cpu, self._wall = cpu, wall
        libc = _glibc()
        if not idle or libc is None:
            return False
        held = held_bytes()
        if held <= self.hold_bytes or _resident_bytes() <= self._floor + self.hold_bytes:
            return False
        libc.malloc_trim(0)
        self._floor = _resident_bytes()
        log.info("idle: gave back up to %.0f MiB of freed memory", held / 2**20)
        return True

    def start(self) -> IdleRelease:
        """Look every ``idle_s`` seconds in a daemon thread, until stop()."""
        threading.Thread(target=self._loop, daemon=True, name="idle-release").start()
        return self

    def stop(self) -> None:
        """End the thread at its next look (a server's shutdown)."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.idle_s):
            try:
                self.check()
            except Exception:  # a failed look must not end the looking
                log.exception("idle memory release failed")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

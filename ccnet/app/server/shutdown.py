"""Stopping the served app on SIGINT or SIGTERM: the server is closed, the app's files are removed,
and the process exits within a few seconds even if a thread hangs.

Why: Gradio's server thread ignores signals; SIGTERM (what a host sends to stop a container) killed
the process outright, leaving every upload and result behind, and SIGINT waited on worker threads.
The process ends with os._exit once the files are gone: a daemon thread still inside PyTorch (the
examples' warm-up, a network run) makes the interpreter's own finalisation abort ("terminate called
without an active exception", exit status -6).
What starts registers how to stop it as soon as it runs, so a signal that comes while the app is
still starting (the server already answering, the launch not yet returned) closes the server before
the files go: with one stop returned at the end, such a signal left the server writing into a folder
being removed, and the folder behind.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from types import FrameType
from typing import NoReturn

from ccnet import limits

log = logging.getLogger("ccnet.app")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve_until_signal(start: Callable[[ExitStack], None], cleanup: Callable[[], None],
                       grace_s: float = limits.FORCED_EXIT_S) -> NoReturn:
    """Run ``start(stops)``, which registers on ``stops`` how to stop each part it starts as soon as it
    has started it, and wait for SIGINT or SIGTERM, also during start-up; then stop what was
    registered (last first), ``cleanup`` and end the process (status 0). Further signals are ignored
    meanwhile; if stopping takes over ``grace_s`` seconds, it cleans up and ends (status 1). An
    exception from ``start`` (e.g. SystemExit for a bad model) is raised after the cleanup. The log
    says when ``start`` has returned."""
    for number in SIGNALS:
        signal.signal(number, _interrupt)
    stops = ExitStack()
    try:
        start(stops)
        log.info("serving; SIGINT or SIGTERM stops the server")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        log.info("signal received: stopping the server")
    finally:
        for number in SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        watchdog = threading.Timer(grace_s, _force_exit, args=(cleanup,))
        watchdog.daemon = True
        watchdog.start()
        try:
            stops.close()
        finally:
            cleanup()
    _end(0)


def _interrupt(number: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def _force_exit(cleanup: Callable[[], None]) -> NoReturn:
    """Stopping hangs (e.g. on a connection that does not close): end the process anyway."""
    log.warning("the server did not stop within the grace period; exiting now")
    cleanup()
    _end(1)


def _end(status: int) -> NoReturn:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

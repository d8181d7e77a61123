"""Run at start-up by every Python process the tests start: tests/conftest.py puts this folder first
on PYTHONPATH. Installs the loopback-only guard; each refusal is also appended to the file named
by $CCNET_TEST_NETGUARD_LOG, so that the test that started the child fails even if the child
swallowed the error. A sitecustomize this one shadows (Debian's, a virtualenv's) still runs."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

from loopback_guard import install

LOG = "CCNET_TEST_NETGUARD_LOG"
HERE = os.path.dirname(os.path.realpath(__file__))


def _record(line: str) -> None:
    path = os.environ.get(LOG)
    if path:
        with open(path, "a") as log:
            log.write(line + "\n")


def _run_the_shadowed_sitecustomize() -> None:
    """The next sitecustomize on sys.path after this folder, run as Python would have run it."""
    rest = [entry for entry in sys.path if os.path.realpath(entry or os.curdir) != HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


install(_record)
_run_the_shadowed_sitecustomize()

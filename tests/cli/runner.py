"""The command line run two ways: in this process (`main(argv)` with stdout and stderr captured, the
fast default: no second torch import) and, where being a real process is the point, as
`python -m ccnet` in a subprocess. Both answer a CompletedProcess, so a test reads the same either way."""
from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import torch

from ccnet.cli import main
from ccnet.project import ROOT


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m ccnet *args` in this process: exit code, stdout and stderr as a subprocess's would be.

    An uncaught exception propagates (a subprocess would print a traceback, which the tests forbid);
    the thread count a command sets (bench, train) is put back for the tests that follow."""
    out, err, threads = io.StringIO(), io.StringIO(), torch.get_num_threads()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as stop:  # argparse's usage errors and --help
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        finally:
            torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["python", "-m", "ccnet", *args], code, out.getvalue(), err.getvalue())


def run_cli_process(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m ccnet *args` as its own process, from the project's root."""
    return subprocess.run([sys.executable, "-m", "ccnet", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)

"""The command line, `python -m ccnet COMMAND`: every command is listed here, each defined in
the module of its group; every user error is one line on stderr and exit code 2.

    predict, attention      segment an image; export one pixel's attention maps   (cli/run.py)
    zoo, fetch, export      the released checkpoints; download one; ONNX export   (cli/models.py)
    train, evaluate,        the experiments that reproduce the results: training,  (cli/experiments.py)
    ablation                mIoU, every head variant on one budget
    bench                   the paper's cost table measured here                  (cli/bench.py)

The maintainers' instruments (load test, hostile clients, stage/viewer/upload benches, domain
calibration, cue probes, the family's assembly, the demo scenes) are scripts beside the package:
`python -m tools.NAME --help`.
"""
from __future__ import annotations

import argparse
import sys

from ccnet.cli import bench, experiments, models, run
from ccnet.cli.common import printable
from ccnet.errors import CCNetError

COMMAND_GROUPS = (run, models, experiments, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ccnet", description="CCNet Explorer command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CCNetError as err:
        print(printable(f"error: {err}"), file=sys.stderr)
        return 2
    except OSError as err:  # e.g. an output folder that does not exist
        print(printable(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": ")), file=sys.stderr)
        return 2

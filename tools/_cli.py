"""What every maintainer's script shares: `python -m tools.NAME ...` runs its main, a CCNetError is
one line on stderr and exit status 2, as on the package's command line."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import torch

from ccnet.cli.common import printable
from ccnet.cli.outputs import checked_output, write_text
from ccnet.errors import CCNetError
from ccnet.experiments.bench import load_average, machine_info


def run(parser: argparse.ArgumentParser, command: Callable[[argparse.Namespace], int],
        argv: list[str] | None = None) -> int:
    args = parser.parse_args(argv)
    try:
        return command(args)
    except CCNetError as err:
        print(printable(f"error: {err}"), file=sys.stderr)
        return 2


def bench_main(tool: str, doc: str, key: str, measure: Callable[[int], object], table: Callable[[object], str],
               argv: list[str] | None = None, repeats: int = 3) -> int:
    """A benchmark script's command line: `--repeats`, `--threads`, `--json`; the report holds the
    command, the machine (with its load average at start and end) and the measurement under `key`."""
    parser = argparse.ArgumentParser(prog=f"python -m tools.{tool}", description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs per case")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--json", help="also write the results to this JSON file")

    def bench(args: argparse.Namespace) -> int:
        json_out = checked_output(args.json, "--json", (".json",))
        torch.set_num_threads(args.threads)
        report = {"command": " ".join([f"python -m tools.{tool}", *sys.argv[1:]]),
                  "machine": machine_info(torch.device("cpu")), key: measure(args.repeats)}
        report["machine"]["load_average_at_end"] = load_average()
        print(table(report[key]))
        if json_out:
            write_text(json_out, json.dumps(report, indent=2) + "\n")
        return 0

    return run(parser, bench, argv)

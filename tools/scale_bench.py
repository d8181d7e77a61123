"""`python -m tools.scale_bench`: what torchrun evaluation gains on this machine's CPUs.

Runs ``python -m ccnet evaluate --synthetic N --model default`` as one process with torch's default
threads, one process with one thread, and under torchrun as 2 processes of one thread (torchrun's
own default when OMP_NUM_THREADS is unset) and of two threads; the configurations alternate over
``--repeats`` rounds. Each run's ``seconds`` (from the evaluate JSON: the scoring and the reduction,
not the start of Python, torch and the model), its wall time and the load average before it go to
``--out`` with the medians and speed-ups (assets/scale_cpu.json, docs/scale.md).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tools.ports import free_port

CONFIGS = {  # name: (processes, OMP_NUM_THREADS or None for torch's default)
    "one_process_default_threads": (1, None),
    "one_process_1_thread": (1, "1"),
    "torchrun_2_processes_1_thread": (2, "1"),
    "torchrun_2_processes_2_threads": (2, "2"),  # without OMP_NUM_THREADS torchrun itself sets 1 per process
}


def load_average() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def command(processes: int, evaluate: list[str]) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "ccnet", *evaluate]
    port = free_port()  # for the rendezvous, on loopback
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
            "127.0.0.1", "--master_port", str(port), "--local_addr", "127.0.0.1", "-m", "ccnet", *evaluate]


def environment(threads: str | None) -> dict[str, str]:
    """This environment with OMP_NUM_THREADS set to ``threads`` (None: unset); gloo on loopback."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return {**env, "GLOO_SOCKET_IFNAME": "lo", **({"OMP_NUM_THREADS": threads} if threads else {})}


def run_once(processes: int, threads: str | None, evaluate: list[str]) -> dict:
    env = environment(threads)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        load, start = load_average(), time.perf_counter()
        subprocess.run(command(processes, [*evaluate, "--json", str(out)]), env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        result = json.loads(out.read_text())
    return {"seconds": result["seconds"], "wall": round(wall, 3), "loadavg_before": load, "miou": result["miou"]}


def default_threads() -> int:
    probe = [sys.executable, "-c", "import torch; print(torch.get_num_threads())"]
    return int(subprocess.run(probe, env=environment(None), capture_output=True, text=True, check=True).stdout)


def measure(scenes: int, repeats: int) -> dict:
    evaluate = ["evaluate", "--model", "default", "--device", "cpu", "--synthetic", str(scenes)]
    runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    for _ in range(repeats):
        for name, (processes, threads) in CONFIGS.items():
            runs[name].append(run_once(processes, threads, evaluate))
            print(name, runs[name][-1], file=sys.stderr, flush=True)
    configs = {name: {"processes": CONFIGS[name][0], "omp_num_threads": CONFIGS[name][1], "runs": rs,
                      "median_seconds": statistics.median(r["seconds"] for r in rs),
                      "median_wall": statistics.median(r["wall"] for r in rs)} for name, rs in runs.items()}
    base = configs["one_process_default_threads"]
    return {
        "command": "python -m ccnet " + " ".join(evaluate), "repeats": repeats, "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "default_threads": default_threads(), "configs": configs,
        "speedup_over_one_process_default_threads": {
            name: {"seconds": round(base["median_seconds"] / c["median_seconds"], 3),
                   "wall": round(base["median_wall"] / c["median_wall"], 3)} for name, c in configs.items()},
        "loadavg_after": load_average(),
        "same_miou": len({r["miou"] for rs in runs.values() for r in rs}) == 1,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.scale_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("assets/scale_cpu.json"))
    args = parser.parse_args(argv)
    report = measure(args.scenes, args.repeats)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["speedup_over_one_process_default_threads"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

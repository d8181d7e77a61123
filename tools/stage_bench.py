"""`python -m tools.stage_bench`: where a whole model's time goes, against what the machine can do.

For each stage (backbone stem and layers, the head's convs, the criss-cross steps, the classifier
and the final resize) its FLOPs (``torch.utils.flop_counter``) and its time (forward hooks, median
over runs), the achieved GFLOP/s, and the machine's GEMM peak: a large fp32 ``torch.mm`` at the
same thread count, in the same process. Then the inference paths side by side (eager, BatchNorm
folded + channels-last, the same with freed memory kept by glibc's allocator, onnxruntime), each
against the previous one, with the logits' deviation.
"""
from __future__ import annotations

import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ccnet.app.server.allocator import allocator_mode, use_allocator
from ccnet.nn.cost import time_ms
from ccnet.nn.model import EMBEDDED_CONFIG, CCNet, CCNetConfig
from ccnet.nn.optimize import optimize_for_inference
from tools._cli import bench_main

# stage name -> the modules whose forward makes it up (attention: every recurrence step)
STAGES = {
    "stem": ("backbone.stem", "backbone.maxpool"),
    "layer1": ("backbone.layer1",), "layer2": ("backbone.layer2",),
    "layer3": ("backbone.layer3",), "layer4": ("backbone.layer4",),
    "head conv in": ("decode_head.convs.0",), "attention": ("decode_head.cca",),
    "head conv out": ("decode_head.convs.1",), "concat conv": ("decode_head.conv_cat",),
    "classifier": ("decode_head.conv_seg",),
}
GEMM_SIDE = 4096
RETAINED = "+ freed memory kept"  # the default path under the allocator mode of ccnet/app/server/allocator.py


def gemm_peak(repeats: int = 5, side: int = GEMM_SIDE) -> float:
    """GFLOP/s of the best of `repeats` fp32 (side x side) @ (side x side) products.

    Into one output buffer: a fresh 64 MiB result would be page-faulted in on every product under
    glibc's default allocator (about 7 % of the time here), and the peak is the GEMM's own speed."""
    product = _gemm(side)
    product()  # warm-up
    best = min(_seconds(product) for _ in range(repeats))
    return 2 * side**3 / best / 1e9


def _gemm(side: int) -> Callable[[], torch.Tensor]:
    a, b, out = torch.randn(side, side), torch.randn(side, side), torch.empty(side, side)
    return lambda: torch.mm(a, b, out=out)


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stage_flops(net: CCNet, x: torch.Tensor) -> dict[str, float]:
    """FLOPs per stage of one forward plus the logits' resize to the input size."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        logits = net(x)
        F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)
    counts, root = counter.get_flop_counts(), type(net).__name__
    flops = {stage: float(sum(sum(counts.get(f"{root}.{m}", {}).values()) for m in modules))
             for stage, modules in STAGES.items()}
    flops["resize"] = 0.0  # bilinear interpolation has no FLOP formula in the counter
    flops["total"] = float(sum(counts.get("Global", {}).values()))
    return flops


def stage_times(net: CCNet, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds per stage (hooks around each stage's modules), the resize and the total."""
    runs: list[dict[str, float]] = []
    current: dict[str, float] = defaultdict(float)
    starts: dict[str, float] = {}
    handles = []
    for stage, modules in STAGES.items():
        for name in modules:
            module = net.get_submodule(name)
            handles.append(module.register_forward_pre_hook(
                lambda _m, _a, key=name: starts.__setitem__(key, time.perf_counter())))
            handles.append(module.register_forward_hook(
                lambda _m, _a, _o, key=name, stage=stage: current.__setitem__(
                    stage, current[stage] + time.perf_counter() - starts[key])))
    try:
        for _ in range(repeats + 1):  # the first run warms up and is dropped
            current.clear()
            start = time.perf_counter()
            with torch.inference_mode():
                logits = net(x)
                resize_start = time.perf_counter()
                F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)
            end = time.perf_counter()
            staged = sum(current.values()) + end - resize_start
            runs.append({**current, "resize": end - resize_start, "other": end - start - staged, "total": end - start})
    finally:
        for handle in handles:
            handle.remove()
    runs = runs[1:]
    return {key: statistics.median(run.get(key, 0.0) for run in runs) for key in runs[0]}


def stage_rows(name: str, net: CCNet, x: torch.Tensor, repeats: int) -> list[dict]:
    flops, times = stage_flops(net, x), stage_times(net, x, repeats)
    rows = []
    for stage in [*STAGES, "resize", "other", "total"]:
        seconds, work = times.get(stage, 0.0), flops.get(stage, 0.0)
        rate = work / seconds / 1e9 if seconds > 0 else 0.0
        rows.append({"model": name, "stage": stage, "gflops": work / 1e9, "ms": seconds * 1000, "gflop_per_s": rate})
    return rows


def build(name: str) -> CCNet:
    """A random-weight model (time does not depend on the weights) with a non-zero gamma, so that
    the attention's output matters in the logits the paths are compared on."""
    torch.manual_seed(0)
    config = EMBEDDED_CONFIG if name == "embedded" else CCNetConfig(depth=int(name[1:].split("-")[0]))
    net = CCNet(config).eval()
    with torch.no_grad():
        net.decode_head.cca.gamma.scale.fill_(0.5)
    return net


def paths(net: CCNet, x: torch.Tensor, repeats: int, total_flops: float) -> list[dict]:
    """Each inference path against the previous one, same input, runs interleaved: median seconds,
    achieved GFLOP/s, the logits' deviation from eager, and ``of_round_gemm``: the median over
    rounds of the path's GFLOP/s over that round's GEMM's (the peak-sized ``torch.mm`` timed in the
    same round), which follows the machine's drift where the run's best peak cannot."""
    from ccnet.inference.export import ExportGraph
    from ccnet.inference.predictor import Protocol
    from ccnet.inference.runtime import exported_predictor

    image = x * 58 + 120  # the graph takes 0-255 RGB and normalises itself
    reference = ExportGraph(net, Protocol(), attention_impl="fast")  # the PyTorch path the Predictor runs
    optimized = optimize_for_inference(reference.net)
    session = exported_predictor(net, Protocol(), threads=torch.get_num_threads()).session

    def torch_path(model: torch.nn.Module) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.inference_mode():
                return model(image)[0]
        return run

    optimized_graph = ExportGraph(net, Protocol(), attention_impl="fast")
    optimized_graph.net = optimized
    cases = {"eager": torch_path(reference), "bn folded + channels-last": torch_path(optimized_graph),
             RETAINED: torch_path(optimized_graph),
             "onnxruntime": lambda: torch.from_numpy(session.run(None, {"image": image.numpy()})[0])}
    entry_mode = allocator_mode()
    glibc = use_allocator(entry_mode)
    if not glibc:  # the allocator's modes do not exist here
        del cases[RETAINED]
    with_defaults = list(cases)[:list(cases).index(RETAINED)] if glibc else []

    def prepare(case: str) -> None:
        """The paths before RETAINED run with glibc's defaults, the others with freed memory kept,
        after one untimed pass when the mode switches: the state of a server's second request."""
        wanted = "system" if case in with_defaults else "kept"
        if allocator_mode() != wanted:
            use_allocator(wanted)
            if case in cases:
                cases[case]()

    outputs = {}
    for case, run in cases.items():  # also the warm-up
        if glibc:
            prepare(case)
        outputs[case] = run()
    expected = outputs["eager"]
    errors = {case: float((out - expected).abs().max() / expected.abs().max()) for case, out in outputs.items()}
    del outputs
    # Interleaved, so that a drifting machine weighs on every path alike; a GEMM of the peak's size
    # runs in each round too, so each run can also be set against what the machine did just then.
    gemm = _gemm(GEMM_SIDE)
    gemm()  # warm-up
    times = time_ms({**cases, "gemm": gemm}, repeats, warmup=False, prepare=prepare if glibc else None)
    use_allocator(entry_mode)
    return _path_rows(list(cases), times, errors, total_flops)


def _path_rows(cases: list[str], times: dict[str, list[float]], errors: dict[str, float],
               total_flops: float) -> list[dict]:
    gemm_flops = 2 * GEMM_SIDE**3
    rows, previous = [], None
    for case in cases:
        median, error = statistics.median(times[case]) / 1000, errors[case]
        paired = statistics.median(total_flops * g / (t * gemm_flops) for t, g in zip(times[case], times["gemm"]))
        rows.append({"path": case, "median_s": median, "vs_previous": median / previous if previous else 1.0,
                     "vs_eager": median / rows[0]["median_s"] if rows else 1.0, "rel_error": error,
                     "gflop_per_s": total_flops / median / 1e9, "of_round_gemm": paired})
        previous = median
    return rows


def bench_stages(repeats: int = 3, size: tuple[int, int] = (512, 1024),
                 models: tuple[str, ...] = ("embedded", "R50-D8")) -> dict:
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    report: dict = {"size": list(size), "gemm_peaks_gflop_per_s": [], "stages": [], "paths": {},
                    "peak_rule": "of_peak divides by the largest GEMM peak measured in the run (conservative)"}
    for name in models:  # the peak is measured before each model and at the end: the machine drifts
        report["gemm_peaks_gflop_per_s"].append(gemm_peak())
        net = build(name)
        report["stages"] += stage_rows(name, net, x, repeats)
        total = next(r["gflops"] for r in report["stages"][::-1] if r["stage"] == "total") * 1e9
        report["paths"][name] = paths(net, x, repeats, total)
    report["gemm_peaks_gflop_per_s"].append(gemm_peak())
    peak = report["gemm_peak_gflop_per_s"] = max(report["gemm_peaks_gflop_per_s"])
    for row in [*report["stages"], *(r for rows in report["paths"].values() for r in rows)]:
        row["of_peak"] = row["gflop_per_s"] / peak
    return report


def format_stage_tables(report: dict) -> str:
    height, width = report["size"]
    peaks = ", ".join(f"{p:.0f}" for p in report["gemm_peaks_gflop_per_s"])
    lines = [f"Stages at 1x3x{height}x{width} (fp32 GEMM peak {report['gemm_peak_gflop_per_s']:.0f} GFLOP/s: the "
             f"largest of {peaks}, measured before each model and at the end)",
             f"{'model':<10}{'stage':<30}{'GFLOP':>9}{'ms':>10}{'GFLOP/s':>9}{'of peak':>9}"]
    for r in report["stages"]:
        lines.append(f"{r['model']:<10}{r['stage']:<30}{r['gflops']:>9.2f}{r['ms']:>10.1f}"
                     f"{r['gflop_per_s']:>9.1f}{100 * r['of_peak']:>8.0f}%")
    for name, rows in report["paths"].items():
        lines += ["", f"{name}: inference paths (logits at the input size)",
                  f"{'path':<28}{'median s':>10}{'x previous':>12}{'x eager':>9}{'rel. error':>12}"
                  f"{'GFLOP/s':>9}{'of peak':>9}{'of round GEMM':>15}"]
        lines += [f"{r['path']:<28}{r['median_s']:>10.3f}{r['vs_previous']:>12.2f}{r['vs_eager']:>9.2f}"
                  f"{r['rel_error']:>12.1e}{r['gflop_per_s']:>9.1f}{100 * r['of_peak']:>8.0f}%"
                  f"{100 * r['of_round_gemm']:>14.0f}%" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return bench_main("stage_bench", __doc__, "stages", bench_stages, format_stage_tables, argv)


if __name__ == "__main__":
    sys.exit(main())

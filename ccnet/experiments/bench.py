"""`python -m ccnet bench [attention|model|all]`: measured costs, printed as a table and saved as JSON.

attention: RCCA (R=2) fast path against the einsum reference (same module, same weights, runs
interleaved in one process), inference and training (forward + backward), inference again on a
channels-last input (the layout the model's default path feeds the block), the non-local block
beside them, and FLOPs counted by FlopCounterMode. model: the R50-D8 CCNet and the small
embedded config at 512x1024, eager against ``optimize_for_inference``.
"""
from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from ccnet.errors import CCNetError
from ccnet.nn.cost import (
    DEFAULT_BUDGET,
    METHODS,
    analytic_attention_bytes,
    build_block,
    count_flops,
    formula_flops,
    make_input,
    measure_peak_memory,
    run_steps,
    time_ms,
)

MODEL_SIZE = (512, 1024)
# Figures of the CCNet paper (its GPU memory and FLOPs comparison) for RCCA R=2 and the non-local block on 1x512x97x97.
PAPER = {"rcca2": {"gflops": 16.5, "memory_mb": 127}, "nonlocal": {"gflops": 108, "memory_mb": 1411}}


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'97x97,64x128' -> [(97, 97), (64, 128)]."""
    sizes = []
    for part in text.split(","):
        try:
            h, w = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise CCNetError(f"bad size {part!r} in --sizes: expected HxW, e.g. 97x97,64x128") from None
        if h < 1 or w < 1:
            raise CCNetError(f"bad size {part!r} in --sizes: both sides must be at least 1")
        sizes.append((h, w))
    return sizes


def _row(name: str, impl: str, times: list[float], peak: int, **extra: object) -> dict:
    return {
        "case": name, "impl": impl, "median_ms": statistics.median(times), "min_ms": min(times),
        "max_ms": max(times), "runs": len(times), "peak_bytes": peak, **extra,
    }


def _rel_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30))


def _measure(cases: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, tuple]:
    """Per mode ("inference/...", "training/..."; names without one form one group): the peak
    memory of each case (its profiled run doubles as the warm-up), then timings interleaved run by
    run within the mode.

    Inference runs alternate with inference runs only: a training case between two of them (up to
    1 GiB allocated and freed) slowed the next inference runs unevenly, by a fifth for the fast
    path against a sixth for the einsum formulas in one A/B, which is not what a model sees.
    """
    groups: dict[str, dict[str, Callable[[], object]]] = {}
    for name, fn in cases.items():
        groups.setdefault(name.partition("/")[0] if "/" in name else "", {})[name] = fn
    measured = {}
    for group in groups.values():
        peaks = {name: measure_peak_memory(fn, device) for name, fn in group.items()}
        times = time_ms(group, repeats, device, warmup=False)
        measured |= {name: (times[name], peaks[name]) for name in group}
    return {name: measured[name] for name in cases}


def _ratio_rows(measured: dict[str, tuple]) -> list[dict]:
    """One row per (mode, implementation) with time and memory against the reference, and
    non-local's memory against the fast path."""
    rows = []
    for mode in ("inference", "training"):
        for impl in ("reference", "fast", "nonlocal", "reference_nhwc", "fast_nhwc"):
            if f"{mode}/{impl}" not in measured:
                continue
            # a channels-last input is compared with the reference on the same input
            ref_times, ref_peak = measured[f"{mode}/reference" + ("_nhwc" if impl.endswith("_nhwc") else "")]
            times, peak = measured[f"{mode}/{impl}"]
            rows.append(_row(
                mode, impl, times, peak,
                time_vs_reference=statistics.median(times) / statistics.median(ref_times),
                memory_vs_reference=peak / ref_peak,
            ))
        if f"{mode}/nonlocal" in measured:
            row = next(r for r in rows if r["case"] == mode and r["impl"] == "nonlocal")
            row["memory_vs_fast"] = measured[f"{mode}/nonlocal"][1] / measured[f"{mode}/fast"][1]
    return rows


def _fast_errors(cases: dict[str, Callable], names: list[str]) -> tuple[float, float]:
    """Accuracy of the fast path against the reference on the same weights: output, and the worst
    gradient. The key bias gets no gradient in exact arithmetic (softmax ignores a per-query
    constant), so it is skipped."""
    out_error = _rel_error(cases["inference/fast"](), cases["inference/reference"]())
    grad_error = max(_rel_error(a, b) for name, a, b in zip(names, cases["training/fast"](),
                                                          cases["training/reference"]()) if name != "key_conv.bias")
    return out_error, grad_error


def bench_attention(channels: int, h: int, w: int, device: torch.device, repeats: int,
                    budget: int = DEFAULT_BUDGET) -> dict:
    """RCCA (R=2) reference vs fast, inference and training, beside the non-local block."""
    cca, steps = build_block("rcca2", channels)
    cca.to(device)
    x = make_input(channels, h, w, device)
    x_nhwc = x.contiguous(memory_format=torch.channels_last)  # the layout the model's default path feeds
    x_train = x.clone().requires_grad_()
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(7)).to(device)

    def infer(block: torch.nn.Module, impl: str | None = None, n: int = steps,
              inputs: torch.Tensor = x) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            if impl:
                block.impl = impl
            with torch.no_grad():
                return run_steps(block, inputs, n)
        return run

    def train(block: torch.nn.Module, impl: str | None = None, n: int = steps) -> Callable[[], list[torch.Tensor]]:
        def run() -> list[torch.Tensor]:
            if impl:
                block.impl = impl
            out = run_steps(block, x_train, n)  # held during backward, as the next layer would hold it
            out.backward(grad)
            grads = [x_train.grad] + [p.grad for p in block.parameters()]
            # reset here, not at the start: freeing the last run's gradients inside the measured
            # call would lower the baseline its peak memory is counted from
            x_train.grad = None
            block.zero_grad(set_to_none=True)
            return grads
        return run

    cases = {
        "inference/reference": infer(cca, "reference"), "inference/fast": infer(cca, "fast"),
        "training/reference": train(cca, "reference"), "training/fast": train(cca, "fast"),
        "inference/reference_nhwc": infer(cca, "reference", inputs=x_nhwc),
        "inference/fast_nhwc": infer(cca, "fast", inputs=x_nhwc),
    }
    nonlocal_skipped = analytic_attention_bytes("nonlocal", h, w) > budget
    if not nonlocal_skipped:
        nl, _ = build_block("nonlocal", channels)
        nl.to(device)
        cases |= {"inference/nonlocal": infer(nl, n=1), "training/nonlocal": train(nl, n=1)}
    measured = _measure(cases, repeats, device)

    out_error, grad_error = _fast_errors(cases, ["x"] + [n for n, _ in cca.named_parameters()])
    flops = {m: count_flops(m, channels, h, w) for m in METHODS}
    return {
        "size": [h, w], "channels": channels, "recurrence": steps, "rows": _ratio_rows(measured),
        "fast_output_rel_error": out_error, "fast_grad_rel_error": grad_error,
        "flops": flops, "flops_formula": {m: formula_flops(m, channels, h, w) for m in flops},
        "rcca2_fewer_flops_than_nonlocal": 1 - flops["rcca2"] / flops["nonlocal"],
        "analytic_bytes": {m: analytic_attention_bytes(m, h, w) for m in METHODS},
        "nonlocal_skipped": nonlocal_skipped,
    }


def bench_model(device: torch.device, repeats: int, size: tuple[int, int] = MODEL_SIZE) -> list[dict]:
    """Eager vs optimized inference of the R50-D8 CCNet and of the embedded config."""
    from ccnet.nn.model import EMBEDDED_CONFIG, CCNet, CCNetConfig
    from ccnet.nn.optimize import optimize_for_inference

    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    rows = []
    for name, config in (("R50-D8", CCNetConfig()), ("embedded", EMBEDDED_CONFIG)):
        torch.manual_seed(0)
        eager = CCNet(config).eval().to(device)
        with torch.no_grad():
            eager.decode_head.cca.gamma.scale.fill_(0.5)
        optimized = optimize_for_inference(eager)

        def run(net: torch.nn.Module, mode: Callable = torch.no_grad) -> Callable[[], torch.Tensor]:
            def forward() -> torch.Tensor:
                with mode():
                    return net(x)
            return forward

        cases = {"eager": run(eager), "optimized": run(optimized, torch.inference_mode)}
        measured = _measure(cases, repeats, device)
        error = _rel_error(cases["optimized"](), cases["eager"]())
        eager_times, eager_peak = measured["eager"]
        for impl, (times, peak) in measured.items():
            rows.append(_row(
                name, impl, times, peak, size=list(size),
                time_vs_reference=statistics.median(times) / statistics.median(eager_times),
                memory_vs_reference=peak / eager_peak, rel_error=error if impl == "optimized" else 0.0,
            ))
    return rows


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def format_tables(report: dict) -> str:
    """The report as fixed-width text tables."""
    head = f"{'case':<22}{'impl':<15}{'median ms':>10}{'min-max ms':>18}{'runs':>5}{'x ref':>7}" \
           f"{'peak MiB':>10}{'x ref':>7}"
    lines = []
    for block in report.get("attention", []):
        h, w = block["size"]
        lines += ["", f"Attention, 1x{block['channels']}x{h}x{w}, RCCA R={block['recurrence']} "
                      f"(reference = einsum formulas, same weights)", head]
        for r in block["rows"]:
            lines.append(f"{r['case']:<22}{r['impl']:<15}{r['median_ms']:>10.1f}"
                         f"{r['min_ms']:>9.1f}-{r['max_ms']:<8.1f}{r['runs']:>5}{r['time_vs_reference']:>7.2f}"
                         f"{_mib(r['peak_bytes']):>10}{r['memory_vs_reference']:>7.2f}"
                         + (f"   non-local / fast memory: {r['memory_vs_fast']:.1f}x" if "memory_vs_fast" in r else ""))
        f = block["flops"]
        lines.append(f"GFLOPs (FlopCounterMode): rcca1 {f['rcca1'] / 1e9:.3g}, rcca2 {f['rcca2'] / 1e9:.3g}, "
                     f"non-local {f['nonlocal'] / 1e9:.3g}"
                     f" -> RCCA R=2 {100 * block['rcca2_fewer_flops_than_nonlocal']:.1f}% fewer")
        a = block["analytic_bytes"]
        lines.append(f"attention maps: CCA step {_mib(a['rcca1'])} MiB, non-local {_mib(a['nonlocal'])} MiB; "
                     f"fast vs reference: output rel. error {block['fast_output_rel_error']:.1e}, "
                     f"gradients {block['fast_grad_rel_error']:.1e}")
    if report.get("model"):
        size = report["model"][0]["size"]
        lines += ["", f"Whole model, 1x3x{size[0]}x{size[1]}, inference (optimized = BN folded + channels_last"
                      " + inference_mode)", head.replace("case", "model")]
        for r in report["model"]:
            lines.append(f"{r['case']:<22}{r['impl']:<15}{r['median_ms']:>10.1f}"
                         f"{r['min_ms']:>9.1f}-{r['max_ms']:<8.1f}{r['runs']:>5}{r['time_vs_reference']:>7.2f}"
                         f"{_mib(r['peak_bytes']):>10}{r['memory_vs_reference']:>7.2f}"
                         + (f"   logits rel. error {r['rel_error']:.1e}" if r["impl"] == "optimized" else ""))
    m = report.get("machine", {})
    if m.get("load_average_at_start") is not None:
        loads = (m["load_average_at_start"], m["load_average_at_end"])
        shared = f" (above {m['threads']}: other processes shared the CPU)" if max(loads) > m["threads"] else ""
        lines += ["", f"{m.get('cpu', m.get('device'))}, {m['threads']} threads of {m['cpu_count']} CPUs; "
                      f"1-min load average {loads[0]:.1f} at start, {loads[1]:.1f} at end{shared}"]
    return "\n".join(lines).lstrip("\n")


def load_average() -> float | None:
    """The 1-minute load average: above the thread count, other processes shared the CPU."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def machine_info(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
            "threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "load_average_at_start": load_average()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        try:
            model = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line)
            info["cpu"] = model.split(":", 1)[1].strip()
        except (OSError, StopIteration):
            pass
    return info

"""What an attention block costs on a given feature size: map bytes, FLOPs, peak memory, time.

Pure functions for the web app and ``python -m ccnet bench``. Methods (the variants table's
``cost_method``, ccnet/nn/variants.py): ``rcca1``, ``rcca2`` and ``rcca3`` (criss-cross attention
applied R = 1, 2 or 3 times with shared weights, as in CCHead) and ``nonlocal`` (the paper's
comparison). Inputs and weights come from a fixed seed,
with gamma non-zero so that the attention is really computed.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ccnet.errors import CCNetError
from ccnet.nn.attention import CrissCrossAttention, NonLocal2d
from ccnet.nn.variants import IMAGE_HEADS

BY_METHOD = {head.cost_method: head for head in IMAGE_HEADS if head.cost_method}  # the heads table's rows
METHODS = tuple(BY_METHOD)  # rcca1, rcca2, rcca3, nonlocal
METHOD_LABELS = {head.cost_method: head.label for head in IMAGE_HEADS if head.cost_method}
DEFAULT_BUDGET = 2 << 30  # bytes one non-local map may take before it is only estimated
SEED = 0
GAMMA = 0.5


def _steps(method: str) -> int:
    """Attention steps a method runs, as its row in the heads table says (R for rccaR, 1 for non-local)."""
    if method not in BY_METHOD:
        raise CCNetError(f"unknown attention method {method!r}: use one of {', '.join(METHODS)}")
    return BY_METHOD[method].steps


def _non_local(method: str) -> bool:
    """Whether a method's block attends from every cell to every cell (its row's kind)."""
    return BY_METHOD[method].kind == "non-local" if method in BY_METHOD else False


def analytic_attention_bytes(method: str, h: int, w: int, dtype_bytes: int = 4, recurrence: int | None = None) -> int:
    """Bytes of the attention maps one forward makes for a batch of one.

    Criss-cross: N * (H + W - 1) weights per step (the paper's count; the stored (H, W, H + W)
    layout adds one always-zero entry per cell), times the number of steps (``recurrence``,
    by default the R of ``rccaR``). Non-local: one N * N map. N = H * W.
    """
    steps = _steps(method) if recurrence is None else recurrence
    cells = h * w
    per_step = cells * cells if _non_local(method) else cells * (h + w - 1)
    return per_step * dtype_bytes * (1 if _non_local(method) else steps)


def formula_flops(method: str, channels: int, h: int, w: int) -> int:
    """Closed-form FLOPs of one forward (the paper's cost analysis, two per multiply-add, bias adds not counted).

    Per step: the three 1x1 convs 2N * C * (C/8 + C/8 + C), affinity 2N * S * C/8 and aggregation
    2N * S * C, where S = H + W - 1 for criss-cross and S = N for non-local.
    """
    cells, reduced = h * w, channels // 8
    support = cells if _non_local(method) else h + w - 1
    per_step = 2 * cells * channels * (2 * reduced + channels) + 2 * cells * support * (reduced + channels)
    return per_step * _steps(method)


def build_block(method: str, channels: int) -> tuple[nn.Module, int]:
    """The block of ``method`` with seeded random weights and gamma = 0.5, and its step count."""
    steps = _steps(method)
    torch.manual_seed(SEED)
    block = NonLocal2d(channels) if _non_local(method) else CrissCrossAttention(channels)
    with torch.no_grad():
        block.gamma.scale.fill_(GAMMA)
    return block.eval(), steps


def make_input(channels: int, h: int, w: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """A seeded (1, C, H, W) fp32 feature."""
    generator = torch.Generator().manual_seed(SEED + 1)
    return torch.randn(1, channels, h, w, generator=generator).to(device)


def run_steps(block: nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
    """Apply the block ``steps`` times with shared weights (RCCA)."""
    for _ in range(steps):
        x = block(x)
    return x


def count_flops(method: str, channels: int, h: int, w: int, device: str | torch.device = "meta") -> int:
    """FLOPs of one forward of the block, counted by FlopCounterMode (matmuls and convs).

    By default on the meta device: the same code runs on shapes only, so nothing is computed
    or allocated, not even a non-local N x N map.
    """
    block, steps = build_block(method, channels)
    block.to(device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        run_steps(block, torch.zeros(1, channels, h, w, device=device), steps)
    return int(counter.get_total_flops())


def measure_peak_memory(fn: Callable[[], object], device: str | torch.device = "cpu") -> int:
    """Peak bytes allocated by ``fn`` above what was allocated when it started.

    CPU: the allocator events of torch.profiler (profile_memory=True), summed in time order;
    the peak of that running sum is the memory ``fn`` added (its tensors, not the interpreter's).
    CUDA: max_memory_allocated after reset_peak_memory_stats, minus the memory in use before.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [
        e for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    current = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):  # sorted() is stable for equal times
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def time_ms(fns: dict[str, Callable[[], object]], repeats: int, device: str | torch.device = "cpu",
            warmup: bool = True, prepare: Callable[[str], object] | None = None) -> dict[str, list[float]]:
    """Wall times in ms of each function (after one warm-up run unless ``warmup`` is False),
    runs interleaved so that a noisy machine affects all of them alike. ``prepare(name)``, if
    given, runs untimed before each run of a function (e.g. to switch the allocator's mode)."""
    device = torch.device(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times: dict[str, list[float]] = {name: [] for name in fns}
    for name, fn in fns.items() if warmup else ():
        if prepare:
            prepare(name)
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            if prepare:
                prepare(name)
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def measure_cost(method: str, channels: int, h: int, w: int, device: str | torch.device = "cpu",
                 repeats: int = 3, budget_bytes: int = DEFAULT_BUDGET) -> dict:
    """One method's cost: measure_costs for one method."""
    return measure_costs((method,), channels, h, w, device, repeats, budget_bytes)[method]


def measure_costs(methods: tuple[str, ...], channels: int, h: int, w: int, device: str | torch.device = "cpu",
                  repeats: int = 3, budget_bytes: int = DEFAULT_BUDGET) -> dict[str, dict]:
    """Inference cost of one forward of each method on a (1, channels, h, w) feature, their runs
    interleaved so that a busy machine (the app analysing an image meanwhile) slows all alike.

    Each result holds method, memory_bytes (measured peak), analytic_bytes, flops (counted), time_ms
    (median) and estimated. A non-local block whose N x N map would exceed ``budget_bytes`` is
    not run: memory_bytes is then the analytic figure (flops are counted on shapes alone), time_ms is None,
    ``estimated`` is True and ``reason`` says why.
    """
    results, forwards = {}, {}
    x = make_input(channels, h, w, device)
    for method in methods:
        analytic = analytic_attention_bytes(method, h, w)
        results[method] = {"method": method, "channels": channels, "size": [h, w], "analytic_bytes": analytic,
                           "flops": count_flops(method, channels, h, w)}
        if _non_local(method) and analytic > budget_bytes:
            results[method].update(
                memory_bytes=analytic, time_ms=None, estimated=True,
                reason=f"the {h * w}x{h * w} non-local map needs {analytic / 2**20:.0f} MiB, over the "
                       f"{budget_bytes / 2**20:.0f} MiB budget: not run, memory is the map's analytic size")
            continue
        forwards[method] = _forward(method, channels, x, device)
    times = time_ms(forwards, repeats, device)
    for method, forward in forwards.items():
        results[method].update(memory_bytes=measure_peak_memory(forward, device),
                               time_ms=statistics.median(times[method]), estimated=False)
    return results


def _forward(method: str, channels: int, x: torch.Tensor, device: str | torch.device) -> Callable[[], None]:
    """One inference forward of ``method``'s block on ``x``."""
    block, steps = build_block(method, channels)
    block = block.to(device)

    def forward() -> None:
        with torch.no_grad():
            run_steps(block, x, steps)

    return forward

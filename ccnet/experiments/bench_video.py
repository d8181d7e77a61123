"""`python -m ccnet bench video`: 3D criss-cross attention against the space-time non-local block on a
clip feature (C, T, H, W), as T grows: peak memory, time and FLOPs of one inference forward.

The criss-cross block runs R = 2 (the paper's head) and R = 3 (the steps that reach the whole clip)
times with shared weights; the non-local block runs once. Measured with the 2D bench's helpers
(ccnet.nn.cost: the profiler's allocator events for the peak, interleaved timed runs after a
warm-up); FLOPs counted by FlopCounterMode on the meta device and given by the closed form of
ccnet.nn.cost3d. A non-local block whose (THW)² map would pass the budget is not run: its memory
is the map's analytic size and its time is left out, and the row says ``estimated``.
"""
from __future__ import annotations

import statistics

import torch
from torch.utils.flop_counter import FlopCounterMode

from ccnet.nn.attention3d import CrissCrossAttention3d
from ccnet.nn.cost import DEFAULT_BUDGET, GAMMA, SEED, measure_peak_memory, run_steps, time_ms
from ccnet.nn.cost3d import analytic_attention3d_bytes, formula_flops3d
from ccnet.nn.nonlocal3d import NonLocal3d

VIDEO_SIZE = (90, 120)  # CamVid's 720 x 960 frames at output stride 8
VIDEO_FRAMES = (1, 2, 5, 10)
CASES = (("cca3d", 2), ("cca3d", 3), ("nonlocal3d", 1))  # (method, steps)


def _block(method: str, channels: int, device: torch.device | str) -> torch.nn.Module:
    """The block with seeded weights and gamma = 0.5 (so the attention is really computed)."""
    torch.manual_seed(SEED)
    block = CrissCrossAttention3d(channels) if method == "cca3d" else NonLocal3d(channels)
    with torch.no_grad():
        block.gamma.scale.fill_(GAMMA)
    return block.eval().to(device)


def counted_flops(method: str, steps: int, channels: int, frames: int, height: int, width: int) -> int:
    """FLOPs of ``steps`` forwards counted on shapes alone (meta device: nothing computed or allocated)."""
    block = _block(method, channels, "meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        run_steps(block, torch.zeros(1, channels, frames, height, width, device="meta"), steps)
    return int(counter.get_total_flops())


def bench_clip(channels: int, frames: int, height: int, width: int, device: torch.device, repeats: int,
               budget: int = DEFAULT_BUDGET) -> list[dict]:
    """One row per case on a (1, C, T, H, W) feature."""
    generator = torch.Generator().manual_seed(SEED + 1)
    x = torch.randn(1, channels, frames, height, width, generator=generator).to(device)
    rows, runs = [], {}
    for method, steps in CASES:
        analytic = analytic_attention3d_bytes(method, frames, height, width, steps=steps)
        row = {"method": method, "steps": steps, "frames": frames, "size": [height, width], "channels": channels,
               "analytic_bytes": analytic, "flops": counted_flops(method, steps, channels, frames, height, width),
               "flops_formula": formula_flops3d(method, channels, frames, height, width, steps)}
        if method == "nonlocal3d" and analytic > budget:
            rows.append({**row, "peak_bytes": analytic, "median_ms": None, "estimated": True,
                         "reason": f"the {frames * height * width:,}² map needs {analytic / 2**30:.1f} GiB, over the "
                                   f"{budget / 2**30:.0f} GiB budget: not run, memory is the map's analytic size"})
            continue
        block = _block(method, channels, device)

        def forward(block: torch.nn.Module = block, steps: int = steps) -> None:
            with torch.no_grad():
                run_steps(block, x, steps)

        runs[(method, steps)] = forward
        rows.append({**row, "peak_bytes": measure_peak_memory(forward, device), "estimated": False})
    times = time_ms({f"{m} R={s}": fn for (m, s), fn in runs.items()}, repeats, device, warmup=False)
    for row in rows:
        measured = times.get(f"{row['method']} R={row['steps']}")
        if measured:
            row.update(median_ms=statistics.median(measured), min_ms=min(measured), max_ms=max(measured),
                       runs=len(measured))
    return rows


def bench_video(channels: int, frames: list[int], size: tuple[int, int], device: torch.device, repeats: int,
                budget: int = DEFAULT_BUDGET) -> list[dict]:
    """``bench_clip`` for every clip length."""
    return [row for t in frames for row in bench_clip(channels, t, *size, device, repeats, budget)]


def format_video_table(rows: list[dict]) -> str:
    """The rows as a fixed-width table (estimated figures marked ``*``)."""
    if not rows:
        return ""
    height, width = rows[0]["size"]
    lines = [f"Video attention, 1x{rows[0]['channels']}xTx{height}x{width} (inference; * = estimated, not run)",
             f"{'T':>3} {'block':<22}{'median ms':>11}{'peak MiB':>11}{'maps MiB':>10}{'GFLOPs':>9}{'formula':>9}"]
    for r in rows:
        name = f"3D criss-cross, R = {r['steps']}" if r["method"] == "cca3d" else "space-time non-local"
        ms = "*" if r["median_ms"] is None else f"{r['median_ms']:.0f}"
        peak = f"{r['peak_bytes'] / 2**20:.0f}" + ("*" if r["estimated"] else "")
        lines.append(f"{r['frames']:>3} {name:<22}{ms:>11}{peak:>11}{r['analytic_bytes'] / 2**20:>10.0f}"
                     f"{r['flops'] / 1e9:>9.1f}{r['flops_formula'] / 1e9:>9.1f}")
    return "\n".join(lines)

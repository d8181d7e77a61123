"""What the video viewer receives once per (model, clip), so that hovering any frame draws every
frame's maps with no server round trip; and the cost strip of a clip.

Each step's weights go as every position's three lines (T + h + w values, the layout of
CrissCrossAttention3d's `return_attention`: [time | column | row]), 8-bit log-quantised below the
position's own maximum exactly as the image viewer's crosses (ccnet.app.browser_maps: within
REL_ERROR of the weight, or FLOOR of the position's maximum). The page composes the steps itself
(M = e_u A_R ... A_1, as ccnet.nn.attention_maps3d.composed_map). Past the budget (a space-time
non-local head's (T·h·w)² map, or a clip too long) nothing is sent and a pin asks the server.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from ccnet.app.analysis import Display
from ccnet.app.browser_maps import (
    BUDGET_BYTES,
    DECADES,
    FLOOR,
    LEVELS,
    REL_ERROR,
    _b64,
    _colormaps,
    _data_url,
    quantise,
)
from ccnet.app.video import ClipAnalysis, display_frames
from ccnet.app.video_links import VIEWS
from ccnet.inference.video import ClipPixelAttention
from ccnet.nn import cost3d
from ccnet.project import ASSETS
from ccnet.viz.pictures import palette_image

DISPLAY_SIDE = 512  # the frames the page draws under the maps: at most this long (the panels are smaller)
BENCH_FILE = ASSETS / "bench_video_cpu.json"
CAMVID_FRAMES = 5  # the bench row the strip quotes: CamVid-like clips, 5 frames of 90 x 120 cells
PAPER_GRID = (5, 97, 97)  # the image paper's 97 x 97 cells over 5 frames


def head_bytes(analysis: ClipAnalysis) -> int:
    """Bytes of the quantised maps: one byte a line entry and four a position's scale, per step; a
    non-local head's dense (N, N) matrix."""
    frames, height, width = analysis.grid
    positions = frames * height * width
    if analysis.kind == "non-local-3d":
        return positions * (positions + 4)
    return analysis.steps * positions * (frames + height + width + 4)


def in_browser(analysis: ClipAnalysis, budget: int = BUDGET_BYTES) -> bool:
    """Whether the page gets this clip's maps (else a pin asks the server for its position's)."""
    return analysis.kind == "criss-cross-3d" and head_bytes(analysis) <= budget


def panels(kind: str, steps: int) -> list[list[str]]:
    """The viewer's rows, [view, title]: the segmentation, each step, the map after all steps."""
    segmentation = [["segmentation", "segmentation"]]
    if kind == "non-local-3d":
        return [*segmentation, ["composed", "non-local · the whole clip in one step"]]
    lines = [[f"step{s}", f"step {s} · time line, column and row"] for s in range(1, steps + 1)]
    whole = "composed · the whole clip" if steps >= 3 else f"composed · after {steps} steps (not the whole clip)"
    return [*segmentation, *lines, ["composed", whole]]


def viewer_value(analysis: ClipAnalysis, data_url: str, budget: int = BUDGET_BYTES) -> dict:
    """What the viewer component holds (Gradio keeps it in the session): a few hundred bytes that
    describe the analysis and name the URL of its page data."""
    defaults = Display()
    return {"model": analysis.model, "kind": analysis.kind, "size": list(analysis.size), "grid": list(analysis.grid),
            "steps": analysis.steps, "panels": panels(analysis.kind, analysis.steps), "data": data_url,
            "bytes": head_bytes(analysis), "budget": budget, "maps": in_browser(analysis, budget),
            "defaults": defaults.for_page(),
            "views": list(VIEWS)}


def page_data(analysis: ClipAnalysis, classes: tuple[str, ...], palette: tuple[tuple[int, int, int], ...],
              channels: int, budget: int = BUDGET_BYTES) -> dict:
    """Everything the page draws a clip from: each frame (at most DISPLAY_SIDE long) and its
    segmentation, the classes, the colormaps, the cost strip and, within the budget, the quantised
    weights of every step (`codes`, `scales`: base64 uint8 and float32)."""
    frames, masks = display_frames(analysis, DISPLAY_SIDE)
    data = {"frames": [_data_url(frame) for frame in frames],
            "masks": [_data_url(palette_image(mask, palette), "PNG") for mask in masks],
            "classes": list(classes), "palette": [list(rgb) for rgb in palette], "colormaps": _colormaps(),
            "decades": DECADES, "levels": LEVELS, "rel_error": REL_ERROR, "floor": FLOOR,
            "cost": cost_strip(analysis.grid, channels, analysis.steps)}
    if in_browser(analysis, budget):
        quantised = [quantise(step.numpy()) for step in analysis.attention]
        data["codes"] = [_b64(codes.tobytes()) for codes, _ in quantised]
        data["scales"] = [_b64(scales.astype("<f4").tobytes()) for _, scales in quantised]
    return data


def pinned_maps(maps: ClipPixelAttention) -> dict:
    """One position's exact maps for the page when it holds no weights (over the budget)."""
    return {"cell": list(maps.cell), "steps": [_b64(m.astype("<f4").tobytes()) for m in maps.steps],
            "composed": _b64(maps.composed.astype("<f4").tobytes())}


def cost_strip(grid: tuple[int, int, int], channels: int, steps: int) -> dict:
    """3D criss-cross against a space-time non-local block for this clip: the maps' analytic bytes
    and FLOPs at its grid (ccnet.nn.cost3d), the measured bench at CamVid's size and the analytic
    figures at 5 x 97 x 97, each with where it comes from."""
    frames, height, width = grid
    step = cost3d.analytic_attention3d_bytes("cca3d", frames, height, width)
    here = {"grid": list(grid), "channels": channels, "steps": steps, "step_bytes": step,
            "criss_cross_bytes": step * steps,
            "nonlocal_bytes": cost3d.analytic_attention3d_bytes("nonlocal3d", frames, height, width),
            "criss_cross_flops": cost3d.formula_flops3d("cca3d", channels, frames, height, width, steps),
            "nonlocal_flops": cost3d.formula_flops3d("nonlocal3d", channels, frames, height, width),
            "source": f"analytic, at this clip's {frames}×{height}×{width} positions: a criss-cross step stores "
                      f"T·h·w·(T+h+w) weights, the non-local block (T·h·w)², fp32; FLOPs at the head's {channels} "
                      "channels (ccnet/nn/cost3d.py)"}
    strip = {"here": here, "paper": {
        "grid": list(PAPER_GRID), "step_bytes": cost3d.analytic_attention3d_bytes("cca3d", *PAPER_GRID),
        "nonlocal_bytes": cost3d.analytic_attention3d_bytes("nonlocal3d", *PAPER_GRID),
        "source": "analytic: 5 frames of the image paper's 97×97 cells (ccnet/nn/cost3d.py)"}}
    measured = camvid_bench()
    if measured:
        strip["camvid"] = measured
    return strip


@functools.lru_cache(maxsize=1)
def camvid_bench(path: Path = BENCH_FILE) -> dict | None:
    """The shipped bench's figures at CamVid's size (T = 5, 90 x 120 cells, 512 channels): 3D
    criss-cross R = 3 and the space-time non-local block (estimated: it did not fit)."""
    try:
        report = json.loads(Path(path).read_text())
        rows = {(row["method"], row["steps"]): row for row in report["video"] if row["frames"] == CAMVID_FRAMES}
        criss, non_local, machine = rows[("cca3d", 3)], rows[("nonlocal3d", 1)], report["machine"]
    except (OSError, ValueError, KeyError):
        return None
    return {"grid": [CAMVID_FRAMES, *criss["size"]], "channels": criss["channels"],
            "criss_cross": {k: criss.get(k) for k in ("median_ms", "peak_bytes", "flops", "analytic_bytes")},
            "nonlocal": {k: non_local.get(k) for k in ("median_ms", "peak_bytes", "flops", "analytic_bytes",
                                                       "estimated", "reason")},
            "source": f"measured: `{report['command']}` on this project's {machine['cpu']} CPU, "
                      f"{machine['threads']} thread, load average {machine['load_average_at_start']:.1f} at the start "
                      f"and {machine['load_average_at_end']:.1f} at the end ({Path(path).name}); the non-local row is "
                      "its map's analytic size, not run (over the bench's 2 GiB budget)"}

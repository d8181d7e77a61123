"""What the in-browser attention viewer receives once per (model, image), so that hovering draws
every map with no server round trip.

Each step's weights are sent as each cell's cross only (h + w values per cell, the layout of
CrissCrossAttention's `return_attention`), quantised to 8 bits on a log scale below the cell's
own maximum: code 0 is a weight under DECADES decades below that maximum, codes 1..255 cover the
DECADES decades above it. A decoded weight is within REL_ERROR of the true weight (relative), or
within FLOOR times the cell's maximum for the smallest ones: the faint cross that a log view
shows survives, which a linear 8-bit code would round to zero. The page composes the steps
itself (M = A_R ... A_1, as `ccnet.nn.attention_maps.composed_map`). Beyond BUDGET_BYTES the maps are
not sent and a click asks the server instead.
"""
from __future__ import annotations

import base64
import io
from functools import cache

import numpy as np
from PIL import Image

from ccnet.app.analysis import Analysis, Display
from ccnet.inference.explain import PixelAttention
from ccnet.viz.pictures import COLORMAPS, colormap, palette_image

DECADES = 5
LEVELS = 255  # codes 1..255
STEP_DECADES = DECADES / (LEVELS - 1)  # log10 spacing of two neighbouring codes
REL_ERROR = 10 ** (STEP_DECADES / 2) - 1  # half a code step, relative: about 2.3 %
FLOOR = 10.0 ** -DECADES  # weights below FLOOR x the cell's maximum decode to 0
BUDGET_BYTES = 4 << 20  # the quantised maps of one image, e.g. a 64 x 128 grid with R = 2 (3.1 MB)


def quantise(attention: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, h + w) float weights -> (codes uint8 of the same shape, each cell's maximum float32)."""
    weights = np.asarray(attention, dtype=np.float64)
    scales = weights.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        decades = np.log10(weights / np.where(scales > 0, scales, 1.0))  # <= 0
    codes = np.rint((decades + DECADES) / STEP_DECADES) + 1
    codes = np.where(decades >= -DECADES, np.clip(codes, 1, LEVELS), 0)
    return codes.astype(np.uint8), scales[..., 0].astype(np.float32)


def dequantise(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The weights the page decodes: the inverse of `quantise` up to its error bound."""
    values = scales[..., None].astype(np.float64) * 10.0 ** ((codes.astype(np.float64) - 1) * STEP_DECADES - DECADES)
    return np.where(codes > 0, values, 0.0).astype(np.float32)


def error_bound(weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Per-weight bound on |decoded - true|: REL_ERROR of the weight, or FLOOR of its cell's maximum."""
    return np.maximum(REL_ERROR * np.asarray(weights), FLOOR * scales[..., None]) * (1 + 1e-6)


def payload_bytes(grid: tuple[int, int], steps: int) -> int:
    """Size of the quantised maps: one byte per cross entry and four per cell scale, per step."""
    cells = grid[0] * grid[1]
    return steps * cells * (grid[0] + grid[1] + 4)


@cache
def _colormaps() -> dict[str, str]:
    """Every colormap's 256 x RGB lookup table, base64 (the same for every image: made once)."""
    return {name: _b64(colormap(name).tobytes()) for name in COLORMAPS}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _data_url(picture: np.ndarray | Image.Image, fmt: str = "JPEG") -> str:
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=88)
    else:
        image.save(buffer, "PNG", compress_level=6)
    return f"data:image/{fmt.lower()};base64,{_b64(buffer.getvalue())}"


def pinned_maps(maps: PixelAttention) -> dict:
    """One cell's exact maps for the page when it holds no weights (over the budget)."""
    return {"cell": list(maps.cell), "steps": [_b64(m.astype("<f4").tobytes()) for m in maps.steps],
            "composed": _b64(maps.composed.astype("<f4").tobytes())}


def panels(kind: str, steps: int) -> list[list[str]]:
    """The viewer's panels, [view, title], for a head of this kind (ccnet/nn/variants.py) and steps:
    the titles say what each panel shows."""
    segmentation = [["segmentation", "segmentation"]]
    if kind == "none":
        return segmentation
    if kind == "non-local":
        return [*segmentation, ["composed", "non-local · the whole image in one step"]]
    crosses = [[f"step{s}", f"step {s} · its row and column"] for s in range(1, steps + 1)]
    whole = "composed = step 1, its row and column only" if steps == 1 else "composed · the whole image"
    return [*segmentation, *crosses, ["composed", whole]]


def in_browser(analysis: Analysis, budget: int = BUDGET_BYTES) -> bool:
    """Whether the page gets this analysis' maps (else a pin asks the server for its cell's)."""
    return analysis.kind == "criss-cross" and payload_bytes(analysis.grid, len(analysis.attention)) <= budget


def viewer_value(analysis: Analysis, data_url: str, budget: int = BUDGET_BYTES) -> dict:
    """What the viewer component holds (and Gradio keeps in the session): a few hundred bytes that
    describe the analysis and the URL of its page data (page_data), which the page fetches."""
    height, width = analysis.size
    steps = len(analysis.attention)
    defaults = Display()
    return {"model": analysis.model, "kind": analysis.kind, "size": [height, width],
            "defaults": {"cmap": defaults.cmap, "scale": defaults.scale, "clip": defaults.clip},
            "panels": panels(analysis.kind, steps), "grid": list(analysis.grid), "steps": steps,
            "data": data_url, "bytes": payload_bytes(analysis.grid, steps), "budget": budget,
            "maps": in_browser(analysis, budget)}


def page_data(analysis: Analysis, classes: tuple[str, ...], palette: tuple[tuple[int, int, int], ...],
              budget: int = BUDGET_BYTES) -> dict:
    """Everything the page draws this analysis from: the image, the segmentation, the classes, the
    colormaps and, within the budget, every cell's quantised cross of every step. A non-local
    head's dense maps (h·w weights per cell) are not sent: a pin asks the server for its cell's."""
    data = {"image": _data_url(analysis.image), "mask": _data_url(palette_image(analysis.mask, palette), "PNG"),
            "classes": list(classes), "palette": [list(rgb) for rgb in palette], "colormaps": _colormaps(),
            "decades": DECADES, "levels": LEVELS, "rel_error": REL_ERROR, "floor": FLOOR}
    if in_browser(analysis, budget):
        quantised = [quantise(step.numpy()) for step in analysis.attention]
        data["codes"] = [_b64(codes.tobytes()) for codes, _ in quantised]
        data["scales"] = [_b64(scales.astype("<f4").tobytes()) for _, scales in quantised]
    return data

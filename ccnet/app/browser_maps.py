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
from ccnet.app.links import VIEWS
from ccnet.inference.explain import PixelAttention
from ccnet.viz.pictures import COLORMAPS, colormap, palette_image
from ccnet.weights import family

DECADES = 5
LEVELS = 255  # codes 1..255
STEP_DECADES = DECADES / (LEVELS - 1)  # log10 spacing of two neighbouring codes
REL_ERROR = 10 ** (STEP_DECADES / 2) - 1  # half a code step, relative: about 2.3 %
FLOOR = 10.0 ** -DECADES  # weights below FLOOR x the cell's maximum decode to 0
BUDGET_BYTES = 4 << 20  # the quantised maps of one image, e.g. a 64 x 128 grid with R = 2 (3.1 MB)


def quantise(attention: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., L) float weights, one distribution per row (a cell's cross, or a non-local matrix's row)
    -> (codes uint8 of the same shape, each row's maximum float32)."""
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


def head_bytes(analysis: Analysis) -> int:
    """The bytes of one head's quantised maps: its crosses, or its dense (N, N) matrix (one byte
    a weight and four a row's scale); none without attention."""
    cells = analysis.grid[0] * analysis.grid[1]
    if analysis.kind == "non-local":
        return cells * (cells + 4)
    return payload_bytes(analysis.grid, len(analysis.attention)) if analysis.kind == "criss-cross" else 0


def in_browser(analysis: Analysis, budget: int = BUDGET_BYTES) -> bool:
    """Whether the page gets this analysis' maps (else a pin asks the server for its cell's)."""
    return analysis.kind != "none" and head_bytes(analysis) <= budget


def viewer_value(analysis: Analysis, data_url: str, budget: int = BUDGET_BYTES) -> dict:
    """What the viewer component holds (and Gradio keeps in the session): a few hundred bytes that
    describe the analysis and the URL of its page data (page_data), which the page fetches."""
    height, width = analysis.size
    steps = len(analysis.attention)
    defaults = Display()
    return {"model": analysis.model, "kind": analysis.kind, "size": [height, width],
            "defaults": defaults.for_page(),
            "views": list(VIEWS), "panels": panels(analysis.kind, steps), "grid": list(analysis.grid), "steps": steps,
            "data": data_url, "bytes": payload_bytes(analysis.grid, steps), "budget": budget,
            "maps": in_browser(analysis, budget)}


def page_data(heads: dict[str, Analysis], own: str, classes: tuple[str, ...],
              palette: tuple[tuple[int, int, int], ...], budget: int = BUDGET_BYTES, extra: dict | None = None) -> dict:
    """Everything the page draws an image from: the image, the classes, the colormaps and, for each
    head shown side by side (`heads`, the shown one `own` first in priority), its segmentation, its
    confidence and, within the budget, its quantised maps: every cell's cross of every step, or a
    non-local head's dense (N, N) matrix. Past the budget a head's maps stay on the server (a pin
    asks for its cell's). `extra` is added as it is (the cost strip, the cue panel's cells)."""
    data = {"image": _data_url(heads[own].image), "classes": list(classes), "palette": [list(rgb) for rgb in palette],
            "colormaps": _colormaps(), "decades": DECADES, "levels": LEVELS, "rel_error": REL_ERROR, "floor": FLOOR,
            "own": own, "heads": [], **(extra or {})}
    left = budget - (head_bytes(heads[own]) if heads[own].kind != "none" else 0)  # the shown head's maps first
    for name, analysis in heads.items():
        head = {"name": name, "label": family.head_label(name), "kind": analysis.kind,
                "steps": len(analysis.attention), "reach": reach_text(analysis.kind, len(analysis.attention)),
                "mask": _data_url(palette_image(analysis.mask, palette), "PNG"),
                "confidence": _data_url(np.rint(analysis.confidence.astype(np.float32) * 255).astype(np.uint8), "PNG")}
        if analysis.kind != "none" and (name == own and left >= 0 or name != own and head_bytes(analysis) <= left):
            left -= 0 if name == own else head_bytes(analysis)
            head.update(_quantised(analysis))
        data["heads"].append(head)
    return data


def reach_text(kind: str, steps: int) -> str:
    """What a head's attention can reach from one cell, in a few words."""
    if kind == "none":
        return "its neighbourhood only"
    if kind == "non-local":
        return "every cell in one step"
    return "its row and column only" if steps == 1 else f"the whole image in {steps} steps"


def _quantised(analysis: Analysis) -> dict:
    """A head's maps as the page decodes them: `codes` and `scales` per step (crosses), or `dense`."""
    if analysis.kind == "non-local":
        codes, scales = quantise(analysis.dense.numpy())
        return {"dense": {"codes": _b64(codes.tobytes()), "scales": _b64(scales.astype("<f4").tobytes())}}
    quantised = [quantise(step.numpy()) for step in analysis.attention]
    return {"codes": [_b64(codes.tobytes()) for codes, _ in quantised],
            "scales": [_b64(scales.astype("<f4").tobytes()) for _, scales in quantised]}

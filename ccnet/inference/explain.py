"""Where a clicked pixel looks: its feature cell, per-step maps and the composed map."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ccnet.errors import CCNetError
from ccnet.inference.agreement import nonlocal_map
from ccnet.inference.geometry import cell_of
from ccnet.inference.predictor import Prediction
from ccnet.nn.attention_maps import composed_map, step_map


@dataclass
class PixelAttention:
    """Dense (h, w) float32 maps of one query cell: one per recurrence step, and their composition."""

    grid: tuple[int, int]
    cell: tuple[int, int]
    steps: list[np.ndarray]
    composed: np.ndarray

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        out = {"grid": np.asarray(self.grid, np.int64), "cell": np.asarray(self.cell, np.int64)}
        out.update({f"step{i + 1}": m for i, m in enumerate(self.steps)})
        out["composed"] = self.composed
        return out


def attention_at(attention: list, grid: tuple[int, int], image_size: tuple[int, int],
                 x: int, y: int) -> PixelAttention:
    """Per-step and composed maps of the cell under pixel (x, y), from per-step (h, w, h + w) weights."""
    if not attention:
        raise CCNetError("this model has no criss-cross attention to show")
    row, col = cell_of(x, y, image_size, grid)
    steps = [step_map(a, row, col).numpy().astype(np.float32) for a in attention]
    composed = composed_map(attention, row, col).numpy().astype(np.float32)
    return PixelAttention(grid, (row, col), steps, composed)


def pixel_attention(kind: str, attention: list, grid: tuple[int, int], image_size: tuple[int, int],
                    x: int, y: int) -> PixelAttention:
    """The maps of the cell under pixel (x, y) by the head's kind: criss-cross steps and their
    composition; a non-local block's one map (its row of the (N, N) weights, no steps)."""
    if kind == "criss-cross":
        return attention_at(attention, grid, image_size, x, y)
    if kind == "non-local":
        cell = cell_of(x, y, image_size, grid)
        return PixelAttention(grid, cell, [], nonlocal_map(attention[0], *cell, grid))
    if kind == "none":
        raise CCNetError("this model's head has no attention to show: it sees each pixel's neighbourhood only")
    raise CCNetError(f"a {kind} head attends over a clip's frames: use explain_clip_pixel")


def explain_pixel(prediction: Prediction, x: int, y: int) -> PixelAttention:
    """Per-step and composed attention maps of the cell under pixel (x, y) of a prediction (a
    non-local head's one map as the composed one, with no steps)."""
    return pixel_attention(prediction.kind, prediction.attention, prediction.grid, prediction.image_size, x, y)

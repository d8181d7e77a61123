"""Closed-form cost of 3D criss-cross attention on a clip against a space-time non-local block.

The formulas count what each block computes, as ``ccnet.nn.cost`` does for images (the CCNet
paper's cost analysis, extended from a cross to a position's three lines). On a (C, T, H, W)
feature with N = T·H·W positions, each position of a criss-cross step attends to the
T + H + W - 2 distinct positions on its time line, column and row; a non-local block attends to
all N. Per step that is:

- weights: N·(T + H + W) stored floats for criss-cross (the (T, H, W, T + H + W) layout, whose
  masked time and column centre entries are exactly 0), N·N for non-local;
- FLOPs (two per multiply-add, bias adds not counted): the three 1x1 projections
  2N·C·(C/8 + C/8 + C), the energies 2N·S·C/8 and the aggregation 2N·S·C, with
  S = T + H + W - 2 for criss-cross and S = N for non-local.

At T = 5, H = W = 97 (N = 47,045): 9.36 M weights (37 MB in fp32) per criss-cross step against
2.21 G (8.85 GB) for the non-local map.
"""
from __future__ import annotations

from ccnet.errors import CCNetError
from ccnet.nn.variants import VIDEO_HEADS

METHODS3D = tuple(dict.fromkeys(head.cost_method for head in VIDEO_HEADS))  # cca3d, nonlocal3d: the table's


def attention3d_floats(frames: int, height: int, width: int) -> int:
    """Floats of one criss-cross step's stored weights on a clip: T·H·W·(T + H + W)."""
    return frames * height * width * (frames + height + width)


def nonlocal3d_floats(frames: int, height: int, width: int) -> int:
    """Floats of a space-time non-local block's map: (T·H·W)²."""
    return (frames * height * width) ** 2


def analytic_attention3d_bytes(method: str, frames: int, height: int, width: int, dtype_bytes: int = 4,
                               steps: int = 1) -> int:
    """Bytes of the attention maps one forward makes for one clip: ``steps`` criss-cross steps or one non-local map."""
    if method == "cca3d":
        return attention3d_floats(frames, height, width) * dtype_bytes * steps
    if method == "nonlocal3d":
        return nonlocal3d_floats(frames, height, width) * dtype_bytes
    raise CCNetError(f"unknown 3D attention method {method!r}: use one of {', '.join(METHODS3D)}")


def formula_flops3d(method: str, channels: int, frames: int, height: int, width: int, steps: int = 1) -> int:
    """Closed-form FLOPs of one forward on a (1, C, T, H, W) clip (formulas in this module's docstring)."""
    if method not in METHODS3D:
        raise CCNetError(f"unknown 3D attention method {method!r}: use one of {', '.join(METHODS3D)}")
    cells, reduced = frames * height * width, channels // 8
    support = cells if method == "nonlocal3d" else frames + height + width - 2
    per_step = 2 * cells * channels * (2 * reduced + channels) + 2 * cells * support * (reduced + channels)
    return per_step * (1 if method == "nonlocal3d" else steps)

"""The one home of the pixel <-> feature-cell rule and the output stride.

CCNet's feature grid is the input at output stride 8 (ResNetV1c-D8): an H x W input gives an
h x w = ceil(H/8) x ceil(W/8) grid. Pixel (x, y) of an H x W image belongs to cell
[y*h//H, x*w//W]; cell r of an axis therefore holds the pixels p with p*count//size == r.
"""
from __future__ import annotations

import numpy as np

from ccnet.errors import CCNetError

STRIDE = 8


def grid_size(height: int, width: int, stride: int = STRIDE) -> tuple[int, int]:
    """(h, w) of the feature grid of an H x W input: ceil(H / stride), ceil(W / stride)."""
    return -(-height // stride), -(-width // stride)


def axis_cell(position: int, count: int, size: int) -> int:
    """The cell (0..count-1) of a pixel position (0..size-1) along one axis."""
    return position * count // size


def cell_of(x: int, y: int, image_size: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    """The (row, col) feature cell holding pixel (x, y) of an H x W image: [y*h//H, x*w//W]."""
    height, width = image_size
    if not (0 <= x < width and 0 <= y < height):
        raise CCNetError(f"pixel ({x}, {y}) is outside the {width}x{height} image")
    return axis_cell(y, grid[0], height), axis_cell(x, grid[1], width)


def cell_bounds(count: int, size: int) -> np.ndarray:
    """First pixel of each cell along one axis (plus the end): the inverse of `axis_cell`."""
    return -(-np.arange(count + 1) * size // count)


def cell_centre(row: int, col: int, grid: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """(x, y) pixel at the middle of a feature cell, so a click there selects that very cell."""
    ys, xs = cell_bounds(grid[0], size[0]), cell_bounds(grid[1], size[1])
    return int((xs[col] + xs[col + 1] - 1) // 2), int((ys[row] + ys[row + 1] - 1) // 2)


def box_cells(box: tuple[int, int, int, int], image_size: tuple[int, int],
              grid: tuple[int, int]) -> tuple[int, int, int, int]:
    """The feature cells a half-open pixel box (x0, y0, x1, y1) covers: inclusive
    (top, bottom, left, right) on an (h, w) grid."""
    (x0, y0, x1, y1), (height, width), (h, w) = box, image_size, grid
    return (axis_cell(y0, h, height), axis_cell(y1 - 1, h, height),
            axis_cell(x0, w, width), axis_cell(x1 - 1, w, width))

"""How two attention maps of the same query cell agree (criss-cross composed against non-local),
and how much of a map lies on the query's own criss-cross path.

Maps are (h, w) distributions over the feature grid (each sums to 1).
"""
from __future__ import annotations

import numpy as np
from torch import Tensor


def nonlocal_map(attention: Tensor, row: int, col: int, grid: tuple[int, int]) -> np.ndarray:
    """The non-local block's weights of query cell (row, col): its row of the (N, N) matrix as (h, w)."""
    height, width = grid
    return attention[row * width + col].reshape(height, width).float().numpy()


def top_cells(grid_map: np.ndarray, k: int) -> set[tuple[int, int]]:
    """The k largest cells (ties broken by position, as np.argsort's stable order)."""
    flat = np.argsort(-grid_map.ravel(), kind="stable")[:k]
    return {(int(i) // grid_map.shape[1], int(i) % grid_map.shape[1]) for i in flat}


def topk_overlap(a: np.ndarray, b: np.ndarray, k: int = 5) -> float:
    """Share of the k largest cells the two maps have in common (0 to 1)."""
    return len(top_cells(a, k) & top_cells(b, k)) / k


def js_divergence(a: np.ndarray, b: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits: 0 for equal maps, 1 for maps with disjoint support."""
    p, q = (np.asarray(m, np.float64).ravel() / np.sum(m) for m in (a, b))
    mid = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        keep = x > 0
        return float(np.sum(x[keep] * np.log2(x[keep] / mid[keep])))

    return max(0.0, (kl(p) + kl(q)) / 2)


def on_cross_share(grid_map: np.ndarray, row: int, col: int) -> float:
    """The weight on the query's own row and column (the centre counted once)."""
    return float(grid_map[row].sum() + grid_map[:, col].sum() - grid_map[row, col])


def mean_on_cross_share(matrix: np.ndarray, grid: tuple[int, int]) -> float:
    """The on-cross share averaged over every query cell of an (N, N) row-stochastic matrix.

    Read as (h, w, h, w): query (i, j)'s column is [i, j, :, j], its row [i, j, i, :], its centre
    [i, j, i, j]; diagonal views, so no (N, N) mask is built beside the matrix.
    """
    cells = np.asarray(matrix).reshape(*grid, *grid)
    column, row, centre = (np.einsum(spec, cells) for spec in ("ijrj->ij", "ijis->ij", "ijij->ij"))
    return float((column + row - centre).mean())


def agreement(criss_cross: np.ndarray, non_local: np.ndarray, cell: tuple[int, int], k: int = 5) -> dict:
    """The figures `attention --compare nonlocal` and the API report for one query cell."""
    row, col = cell
    return {
        "topk": k, "topk_overlap": topk_overlap(criss_cross, non_local, k),
        "js_divergence_bits": round(js_divergence(criss_cross, non_local), 6),
        "on_cross_share": {"criss_cross": round(on_cross_share(criss_cross, row, col), 6),
                           "nonlocal": round(on_cross_share(non_local, row, col), 6)},
        "top_cell": {name: list(next(iter(top_cells(m, 1)))) for name, m in
                     (("criss_cross", criss_cross), ("nonlocal", non_local))},
    }

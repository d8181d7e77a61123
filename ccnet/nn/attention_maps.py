"""Reading criss-cross weights: what one cell looks at, after one step and after all of them.

The weights are (H, W, H + W) per step, in the layout of ``ccnet.nn.attention``'s docstring. The
maps are dense (H, W) images; none of these functions forms the N x N matrix except
``dense_matrix``, which exists for tests and small grids.
"""
from __future__ import annotations

import torch
from torch import Tensor


def step_map(attn: Tensor, row: int, col: int) -> Tensor:
    """Dense (H, W) map of the weights cell (row, col) gives its cross; attn is (H, W, H + W)."""
    height, width = attn.shape[:2]
    dense = attn.new_zeros(height, width)
    dense[:, col] = attn[row, col, :height]
    dense[row, :] += attn[row, col, height:]
    return dense


def propagate(mass: Tensor, attn: Tensor) -> Tensor:
    """One step of a row vector through an attention matrix: out(p) = sum_v mass(v) A[v, p].

    ``mass`` is (H, W); ``attn`` is (H, W, H + W). Works without forming the N x N matrix.
    """
    height = attn.shape[0]
    out = torch.einsum("ij,ijr->rj", mass, attn[..., :height])
    return out + torch.einsum("ij,ijs->is", mass, attn[..., height:])


def composed_map(attns: list[Tensor], row: int, col: int) -> Tensor:
    """Effective full-image weights after all steps: M(p) = sum_v A_R[u, v] ... A_1[., p].

    ``attns`` holds the per-step (H, W, H + W) weights in the order the steps ran.
    """
    mass = torch.zeros(attns[0].shape[:2], dtype=attns[0].dtype, device=attns[0].device)
    mass[row, col] = 1.0
    for attn in reversed(attns):
        mass = propagate(mass, attn)
    return mass


def dense_matrix(attn: Tensor) -> Tensor:
    """The explicit (N, N) row-stochastic matrix of one step, N = H * W (for tests and small grids)."""
    height, width = attn.shape[:2]
    rows = [step_map(attn, i, j).flatten() for i in range(height) for j in range(width)]
    return torch.stack(rows)

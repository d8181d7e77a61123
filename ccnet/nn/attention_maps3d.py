"""Reading 3D criss-cross weights: what one position of a clip looks at, after one step and after all.

The weights of one clip are (T, H, W, T + H + W) per step, in the layout of ``ccnet.nn.attention3d``
(``[time | column | row]``). A position is a (t, h, w) tuple; maps are dense (T, H, W) tensors.
Only ``dense_matrix`` forms the (THW x THW) matrix; it exists for tests and small clips.
"""
from __future__ import annotations

import torch
from torch import Tensor

Position = tuple[int, int, int]


def line_indices(frames: int, height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """(T, H, W, T + H + W) flat indices t·HW + h·W + w of the position each weight entry names."""
    t = torch.arange(frames, device=device).view(frames, 1, 1, 1)
    h = torch.arange(height, device=device).view(1, height, 1, 1)
    w = torch.arange(width, device=device).view(1, 1, width, 1)
    s, i, j = (torch.arange(n, device=device).view(1, 1, 1, n) for n in (frames, height, width))
    shape = (frames, height, width)
    time = (s * height + h) * width + w  # (s, h, w)
    col = (t * height + i) * width + w  # (t, i, w)
    row = (t * height + h) * width + j  # (t, h, j)
    return torch.cat([time.expand(*shape, frames), col.expand(*shape, height), row.expand(*shape, width)], dim=-1)


def propagate(mass: Tensor, attn: Tensor) -> Tensor:
    """One step of a row vector through a step's matrix: out(p) = sum_u mass(u) A[u, p].

    ``mass`` is (T, H, W), ``attn`` (T, H, W, T + H + W); the THW x THW matrix is not formed.
    """
    index = line_indices(*attn.shape[:3], device=attn.device)
    out = mass.new_zeros(mass.numel())
    return out.index_add_(0, index.flatten(), (mass.unsqueeze(-1) * attn).flatten()).view(mass.shape)


def step_map(attn: Tensor, position: Position) -> Tensor:
    """Dense (T, H, W) map of the weights ``position`` gives at one step; attn is (T, H, W, T + H + W)."""
    mass = attn.new_zeros(attn.shape[:3])
    mass[position] = 1.0
    return propagate(mass, attn)


def composed_map(attns: list[Tensor], position: Position) -> Tensor:
    """Effective clip-wide weights after all steps, M = e_u A_R ... A_1 (as ``attention_maps.composed_map``).

    ``attns`` holds the per-step (T, H, W, T + H + W) weights in the order the steps ran.
    """
    mass = attns[0].new_zeros(attns[0].shape[:3])
    mass[position] = 1.0
    for attn in reversed(attns):
        mass = propagate(mass, attn)
    return mass


def dense_matrix(attn: Tensor) -> Tensor:
    """The explicit (N, N) row-stochastic matrix of one step, N = T·H·W (for tests and small clips)."""
    frames, height, width, lines = attn.shape
    cells = frames * height * width
    index = line_indices(frames, height, width, device=attn.device).reshape(cells, lines)
    return attn.new_zeros(cells, cells).scatter_add_(1, index, attn.reshape(cells, lines))


def reach(frames: int, height: int, width: int, steps: int, position: Position) -> list[Tensor]:
    """The support after each of ``steps`` steps: boolean (T, H, W) masks of the positions that can
    carry weight from ``position`` (every weight on a line can be non-zero; this is the support,
    not the weights). Each step spreads the support along the time line, column and row of every
    position in it, so step r covers the positions that differ from ``position`` in at most r of t, h, w.
    """
    support = torch.zeros(frames, height, width, dtype=torch.bool)
    support[position] = True
    out = []
    for _ in range(steps):
        support = support.any(0, keepdim=True) | support.any(1, keepdim=True) | support.any(2, keepdim=True)
        out.append(support)
    return out

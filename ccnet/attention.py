"""Criss-cross attention (CCNet) and the non-local block it is compared with.

Attention layout used everywhere in this project (the same as mmcv's op):
``attn[b, i, j, :H]`` are the weights query cell (i, j) gives to the cells (r, j) of its column,
``attn[b, i, j, H:]`` the weights it gives to the cells (i, c) of its row. The centre appears in
both halves but its column entry is always exactly 0, so it is counted once and each
``attn[b, i, j]`` is a probability distribution over the H + W - 1 cells of the cross.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Scale(nn.Module):
    """A learnable scalar, stored as ``scale`` (0-dim) like mmcv's ``Scale`` so keys match."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale.to(x.dtype)


def stable_softmax(energy: Tensor) -> Tensor:
    """Softmax over the last dim, computed in fp32 for fp16/bf16 inputs, returned in their dtype."""
    if energy.dtype in (torch.float16, torch.bfloat16):
        return F.softmax(energy.float(), dim=-1).to(energy.dtype)
    return F.softmax(energy, dim=-1)


def criss_cross_weights(query: Tensor, key: Tensor) -> Tensor:
    """Softmax over each cell's cross: (B, C', H, W) x 2 -> (B, H, W, H + W).

    One joint softmax over column and row energies, no 1/sqrt(d) scaling, the centre's
    column entry masked to -inf so the centre is counted once (in the row half).
    """
    height = query.shape[2]
    energy_col = torch.einsum("bcij,bcrj->bijr", query, key)
    energy_row = torch.einsum("bcij,bcis->bijs", query, key)
    centre = torch.eye(height, dtype=torch.bool, device=query.device).view(1, height, 1, height)
    energy_col = energy_col.masked_fill(centre, float("-inf"))
    energy = torch.cat([energy_col, energy_row], dim=-1)
    return stable_softmax(energy)


def criss_cross_aggregate(attn: Tensor, value: Tensor) -> Tensor:
    """Weighted sum of the values on each cell's cross: (B,H,W,H+W), (B,C,H,W) -> (B,C,H,W)."""
    height = value.shape[2]
    out_col = torch.einsum("bijr,bcrj->bcij", attn[..., :height], value)
    out_row = torch.einsum("bijs,bcis->bcij", attn[..., height:], value)
    return out_col + out_row


class CrissCrossAttention(nn.Module):
    """One criss-cross attention step; its ``state_dict`` is mmseg's ``decode_head.cca.*``.

    ``forward(x, return_attention=True)`` also returns the weights it used, shape
    (B, H, W, H + W) in the layout of this module's docstring; a fresh module is the
    identity because gamma starts at 0, as in the paper.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.query_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.key_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.value_conv = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = Scale(0.0)

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        attn = criss_cross_weights(self.query_conv(x), self.key_conv(x))
        out = self.gamma(criss_cross_aggregate(attn, self.value_conv(x))) + x
        return (out, attn) if return_attention else out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # Checkpoints released in 2020 store the scale as `gamma` with shape [1].
        legacy = prefix + "gamma"
        if legacy in state_dict:
            state_dict[prefix + "gamma.scale"] = state_dict.pop(legacy).reshape(())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class NonLocal2d(nn.Module):
    """The non-local block of the paper's comparison (§6): q/k C->C/8, v C->C, softmax over all N."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.query_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.key_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.value_conv = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = Scale(0.0)

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        batch, channels, height, width = x.shape
        query = self.query_conv(x).flatten(2)  # B, C', N
        key = self.key_conv(x).flatten(2)
        value = self.value_conv(x).flatten(2)  # B, C, N
        attn = stable_softmax(torch.bmm(query.transpose(1, 2), key))  # B, N, N
        out = torch.bmm(value, attn.transpose(1, 2)).view(batch, channels, height, width)
        out = self.gamma(out) + x
        return (out, attn) if return_attention else out


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

"""Criss-cross attention over a clip (the video version of the TPAMI CCNet paper).

Input (B, C, T, H, W). Position u = (t, h, w) attends to its time line (s, h, w), its column
(t, i, w) and its row (t, h, j): T + H + W - 2 distinct positions, the centre counted once. The
energies q_u · k_v (no 1/sqrt(d) scaling) of all of them go through one softmax, and the output is
``gamma · sum_v A_uv v_v + x``. q, k and v are the 2D block's 1x1 convs applied to each of the B·T
frames (a 1x1 Conv2d on the frames is a 1x1x1 Conv3d), so a 2D block's ``state_dict`` loads as is.

Weights layout, (B, T, H, W, T + H + W), ``[time | column | row]``: ``attn[b, t, h, w, s]`` is the
weight u = (t, h, w) gives to (s, h, w), ``attn[..., T + i]`` the one it gives to (t, i, w) and
``attn[..., T + H + j]`` the one it gives to (t, h, j). The centre appears in all three parts; its
time entry (s = t) and its column entry (i = h) are masked to exactly 0, so it is counted once, in
the row part, and every position's weights sum to 1. With T = 1 the time part is one masked entry
and ``attn[..., 1:]`` is the 2D block's (B, H, W, H + W) layout: the block is the 2D block.

Three computations of the same numbers, picked by ``CrissCrossAttention3d.impl``: ``"fast"``
(``ccnet.nn.attention3d_fast``: GEMMs on channels-last views, memory-lean autograd),
``"reference"`` (the einsum formulas below) and ``"export"`` (MatMul, Where and Softmax only, the
formulation ONNX export uses, with dynamic T, H and W).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccnet.nn.attention import AttentionProjections, stable_softmax, upgrade_legacy_gamma
from ccnet.nn.attention3d_fast import criss_cross_fast3d


def frame_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A 2D conv applied to each frame of a clip: (B, C, T, H, W) -> (B, C_out, T, H, W)."""
    batch, channels, frames, height, width = x.shape
    out = conv(x.transpose(1, 2).reshape(batch * frames, channels, height, width))
    return out.reshape(batch, frames, out.shape[1], height, width).transpose(1, 2)


# ---- the einsum formulas (the reference path) ---------------------------------------------------

def cross_energy3d(query: Tensor, key: Tensor) -> Tensor:
    """Unmasked energies q_u · k_v over each position's three lines: (B, C', T, H, W) x 2 ->
    (B, T, H, W, T + H + W), ``[time | column | row]``."""
    energy_time = torch.einsum("bcthw,bcshw->bthws", query, key)
    energy_col = torch.einsum("bcthw,bctiw->bthwi", query, key)
    energy_row = torch.einsum("bcthw,bcthj->bthwj", query, key)
    return torch.cat([energy_time, energy_col, energy_row], dim=-1)


def mask_centre3d(energy: Tensor) -> Tensor:
    """The centre's time entry (s = t) and column entry (i = h) set to -inf: it stays in the row part."""
    frames, height = energy.shape[1], energy.shape[2]
    centre = torch.zeros(energy.shape[1:], dtype=torch.bool, device=energy.device)
    centre[..., :frames] |= torch.eye(frames, dtype=torch.bool, device=energy.device).view(frames, 1, 1, frames)
    centre[..., frames:frames + height] |= torch.eye(height, dtype=torch.bool, device=energy.device).view(
        1, height, 1, height)
    return energy.masked_fill(centre, float("-inf"))


def criss_cross_weights3d(query: Tensor, key: Tensor) -> Tensor:
    """One softmax over each position's T + H + W - 2 positions: (B, C', T, H, W) x 2 -> (B, T, H, W, T + H + W)."""
    return stable_softmax(mask_centre3d(cross_energy3d(query, key)))


def criss_cross_aggregate3d(attn: Tensor, value: Tensor) -> Tensor:
    """Weighted sum of the values on each position's lines: (B, T, H, W, T+H+W), (B, C, T, H, W) -> (B, C, T, H, W)."""
    frames, height = value.shape[2], value.shape[3]
    out = torch.einsum("bthws,bcshw->bcthw", attn[..., :frames], value)
    out = out + torch.einsum("bthwi,bctiw->bcthw", attn[..., frames:frames + height], value)
    return out + torch.einsum("bthwj,bcthj->bcthw", attn[..., frames + height:], value)


# ---- the export formulation: MatMul, Transpose, Where, Softmax ----------------------------------

def cross_weights_matmul3d(query: Tensor, key: Tensor) -> Tensor:
    """``criss_cross_weights3d`` with batched matrix products and an ``arange`` comparison for the
    mask (no eye, no diag), so that it exports with dynamic T, H and W."""
    frames, height = query.shape[2], query.shape[3]
    q, k = query.permute(0, 2, 3, 4, 1), key.permute(0, 2, 3, 4, 1)  # B, T, H, W, C'
    # time lines: per (h, w) a (T, C') x (C', S) product
    energy_time = torch.matmul(q.permute(0, 2, 3, 1, 4), k.permute(0, 2, 3, 4, 1)).permute(0, 3, 1, 2, 4)
    # columns: per (t, w) an (H, C') x (C', I) product
    energy_col = torch.matmul(q.permute(0, 1, 3, 2, 4), k.permute(0, 1, 3, 4, 2)).permute(0, 1, 3, 2, 4)
    # rows: per (t, h) a (W, C') x (C', J) product
    energy_row = torch.matmul(q, k.permute(0, 1, 2, 4, 3))
    times, rows = torch.arange(frames, device=query.device), torch.arange(height, device=query.device)
    time_centre = times.view(1, -1, 1, 1, 1) == times.view(1, 1, 1, 1, -1)  # s == t
    col_centre = rows.view(1, 1, -1, 1, 1) == rows.view(1, 1, 1, 1, -1)  # i == h
    energy_time = torch.where(time_centre, torch.full_like(energy_time, float("-inf")), energy_time)
    energy_col = torch.where(col_centre, torch.full_like(energy_col, float("-inf")), energy_col)
    return F.softmax(torch.cat([energy_time, energy_col, energy_row], dim=-1), dim=-1)


def cross_aggregate_matmul3d(attn: Tensor, value: Tensor) -> Tensor:
    """``criss_cross_aggregate3d`` with batched matrix products:
    (B, T, H, W, T + H + W), (B, C, T, H, W) -> (B, C, T, H, W)."""
    frames, height = value.shape[2], value.shape[3]
    v = value.permute(0, 2, 3, 4, 1)  # B, T, H, W, C
    time = torch.matmul(attn[..., :frames].permute(0, 2, 3, 1, 4), v.permute(0, 2, 3, 1, 4))  # B, H, W, T, C
    col = torch.matmul(attn[..., frames:frames + height].permute(0, 1, 3, 2, 4), v.permute(0, 1, 3, 2, 4))  # B,T,W,H,C
    row = torch.matmul(attn[..., frames + height:], v)  # B, T, H, W, C
    return (time.permute(0, 4, 3, 1, 2) + col.permute(0, 4, 1, 3, 2) + row.permute(0, 4, 1, 2, 3))


class CrissCrossAttention3d(AttentionProjections):
    """One criss-cross attention step over a clip (B, C, T, H, W); the same parameters as
    ``CrissCrossAttention`` (``query_conv``, ``key_conv``, ``value_conv``, ``gamma.scale``), applied
    to each frame, so the 2D block's ``state_dict`` loads unchanged (also its legacy ``gamma``).

    ``forward(x, return_attention=True)`` also returns the weights, (B, T, H, W, T + H + W) in the
    layout of this module's docstring. ``impl`` picks the computation, as on the 2D block:
    ``"fast"`` (default; memory-lean GEMMs, detached weights, a channels-last-3d output unless
    autocast promotes the residual), ``"reference"`` (the einsum formulas) or ``"export"`` (the
    MatMul formulation ONNX export uses). All give the same outputs, gradients and weights; fp16
    and bf16 run their softmax in fp32.
    """

    impl = "fast"

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if x.dim() != 5:
            raise ValueError(f"CrissCrossAttention3d takes (B, C, T, H, W) clips, got shape {tuple(x.shape)}")
        if self.impl == "reference":
            out, attn = self.forward_reference(x)
        elif self.impl == "fast":
            out, attn = self.forward_fast(x)
        elif self.impl == "export":
            out, attn = self.forward_export(x)
        else:
            raise ValueError(f"impl must be 'fast', 'reference' or 'export', got {self.impl!r}")
        return (out, attn) if return_attention else out

    def forward_reference(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The einsum formulas: (output, weights)."""
        attn = criss_cross_weights3d(frame_conv(self.query_conv, x), frame_conv(self.key_conv, x))
        return self.gamma(criss_cross_aggregate3d(attn, frame_conv(self.value_conv, x))) + x, attn

    def forward_export(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The MatMul formulation (ONNX export): (output, weights)."""
        attn = cross_weights_matmul3d(frame_conv(self.query_conv, x), frame_conv(self.key_conv, x))
        return self.gamma(cross_aggregate_matmul3d(attn, frame_conv(self.value_conv, x))) + x, attn

    def forward_fast(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The GEMM implementation: (output, detached weights); autocast-aware like the convs."""
        device = x.device.type
        autocast = torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)
        dtype = torch.get_autocast_dtype(device) if autocast else x.dtype
        q, k, v = self.query_conv, self.key_conv, self.value_conv
        args = (
            torch.cat([q.weight, k.weight]).flatten(1), torch.cat([q.bias, k.bias]),
            v.weight.flatten(1), v.bias, self.gamma.scale,
        )
        return criss_cross_fast3d(x, *(a.to(dtype) for a in args))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        upgrade_legacy_gamma(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

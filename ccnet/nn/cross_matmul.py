"""Criss-cross attention written with MatMul, Transpose, Where and Softmax only: the formulation
that ONNX export uses (``CrissCrossAttention.impl = "export"``).

The authors' code cannot be exported (its ``torch.diag``/``torch.eye`` mask stops the TorchScript
exporter) and mmdeploy lists CCNet as unsupported. Here the centre mask is a comparison of two
``arange`` vectors, which exports with dynamic H and W, and the einsums are batched matrix
products, which every ONNX runtime runs. Same numbers as ``criss_cross_weights`` and
``criss_cross_aggregate`` (tests/nn check it), same layout: (B, H, W, H + W), column half first.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cross_weights_matmul(query: Tensor, key: Tensor) -> Tensor:
    """Softmax over each cell's cross, (B, C', H, W) x 2 -> (B, H, W, H + W), centre counted once."""
    height = query.shape[2]
    q_cols = query.permute(0, 3, 2, 1)  # B, W, H, C': per column j, the (i, c) matrix
    energy_col = torch.matmul(q_cols, key.permute(0, 3, 1, 2)).permute(0, 2, 1, 3)  # B, H(i), W(j), H(r)
    energy_row = torch.matmul(query.permute(0, 2, 3, 1), key.permute(0, 2, 1, 3))  # B, H(i), W(j), W(s)
    rows = torch.arange(height, device=query.device)
    centre = (rows.view(1, -1, 1, 1) == rows.view(1, 1, 1, -1))  # r == i
    energy_col = torch.where(centre, torch.full_like(energy_col, float("-inf")), energy_col)
    return F.softmax(torch.cat([energy_col, energy_row], dim=-1), dim=-1)


def cross_aggregate_matmul(attn: Tensor, value: Tensor) -> Tensor:
    """Weighted sum of the values on each cell's cross: (B, H, W, H + W), (B, C, H, W) -> (B, C, H, W)."""
    height = value.shape[2]
    col = torch.matmul(attn[..., :height].permute(0, 2, 1, 3), value.permute(0, 3, 2, 1))  # B, W, H(i), C
    row = torch.matmul(attn[..., height:], value.permute(0, 2, 3, 1))  # B, H, W(j), C
    return col.permute(0, 3, 2, 1) + row.permute(0, 3, 1, 2)

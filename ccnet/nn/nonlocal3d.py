"""The space-time non-local block: every position of a clip attends to every other, one softmax over
all N = T·H·W of them. It is the 3D criss-cross block's comparison, as NonLocal2d is the 2D one's.

Why it is NonLocal2d on a reshaped clip: the projections are 1x1 convs, so they act on each position
alone, and a (B, C, T, H, W) clip viewed as a (B, C, T·H, W) image lists its positions in the order
t·HW + h·W + w (that of ccnet.nn.attention_maps3d). One code path, the same parameters
(``query_conv``, ``key_conv``, ``value_conv``, ``gamma.scale``): a 2D block's state dict loads, and
with T = 1 the block is the 2D block.
"""
from __future__ import annotations

from torch import Tensor

from ccnet.nn.attention import NonLocal2d


class NonLocal3d(NonLocal2d):
    """Non-local attention over a clip (B, C, T, H, W); ``forward(x, return_attention=True)`` also
    returns the (B, N, N) weights, N = T·H·W, rows and columns in the order t·HW + h·W + w."""

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if x.dim() != 5:
            raise ValueError(f"NonLocal3d takes (B, C, T, H, W) clips, got shape {tuple(x.shape)}")
        batch, channels, frames, height, width = x.shape
        out = super().forward(x.reshape(batch, channels, frames * height, width), return_attention)
        out, attn = out if return_attention else (out, None)
        out = out.reshape(batch, channels, frames, height, width)
        return (out, attn) if return_attention else out

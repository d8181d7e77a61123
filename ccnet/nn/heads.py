"""CCHead (the RCCA decode head) and the FCN auxiliary head, with mmseg's module names."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ccnet.nn.attention import CrissCrossAttention, NonLocal2d
from ccnet.nn.variants import variant_of


class ConvModule(nn.Sequential):
    """Conv3x3 (no bias) + BN + activation, keys ``conv.*`` and ``bn.*`` like mmcv's ConvModule."""

    def __init__(self, in_ch: int, out_ch: int, leaky: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        # The authors' InPlace-ABN applies LeakyReLU(0.01) after its norms; mmseg uses ReLU.
        self.activate = nn.LeakyReLU(0.01, inplace=True) if leaky else nn.ReLU(inplace=True)


class CCHead(nn.Module):
    """convs.0 -> attention x R (shared weights) -> convs.1 -> conv_cat([x, out]) -> conv_seg.

    ``attention`` selects the block between the convs: ``cca`` (the paper), ``nonlocal``
    (its comparison) or ``none`` (the plain baseline head), so ablations share all other code.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        recurrence: int = 2,
        attention: str = "cca",
        dropout: float = 0.1,
        leaky: bool = False,
    ) -> None:
        super().__init__()
        self.variant = variant_of(attention, recurrence)  # ccnet/nn/variants.py: one row per head
        self.recurrence = self.variant.steps
        self.attention = attention
        self.convs = nn.Sequential(ConvModule(in_channels, channels, leaky), ConvModule(channels, channels, leaky))
        if attention == "cca":
            self.cca = CrissCrossAttention(channels)
        elif attention == "nonlocal":
            self.nl = NonLocal2d(channels)
        self.conv_cat = ConvModule(in_channels + channels, channels, leaky)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def attention_block(self) -> nn.Module | None:
        return getattr(self, {"cca": "cca", "nonlocal": "nl"}.get(self.attention, ""), None)

    def forward(self, x: Tensor, return_attention: bool = False) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Returns (logits, features before the classifier, per-step attention weights or [])."""
        out = self.convs[0](x)
        block = self.attention_block()
        attentions: list[Tensor] = []
        for _ in range(self.recurrence):
            if return_attention:
                out, attn = block(out, return_attention=True)
                attentions.append(attn)
            else:
                out = block(out)
        out = self.convs[1](out)
        features = self.conv_cat(torch.cat([x, out], dim=1))
        return self.conv_seg(self.dropout(features)), features, attentions


class FCNAuxHead(nn.Module):
    """The auxiliary head on layer3: one ConvModule, dropout, conv_seg (loss weight 0.4)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout: float = 0.1,
                 leaky: bool = False) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvModule(in_channels, channels, leaky))
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_seg(self.dropout(self.convs(x)))

"""The video CCNet: the image backbone on every frame of a clip, then one head over the whole clip.

Why it is built this way (the TPAMI CCNet paper's video model): the backbone has no reason to
change for video, so any image checkpoint's backbone runs on the frames, batched; the head keeps
CCHead's structure and parameter names, with the 3D block (``CrissCrossAttention3d`` or
``NonLocal3d``) in place of the 2D one and its convs applied to each frame. So an image CCNet's
state dict loads as it is, and with T = 1 the video network is the image network.

A head is a row of the variants table (ccnet/nn/variants.py): a video row attends over the clip;
an image row is the image head run on each frame (the per-frame baseline), whose criss-cross
weights are returned in the clip layout with a zero time part, as a 3D step that never looks
along time.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ccnet.nn.attention3d import CrissCrossAttention3d
from ccnet.nn.backbone import ResNetV1c
from ccnet.nn.heads import CCHead
from ccnet.nn.model import CCNet, CCNetConfig
from ccnet.nn.nonlocal3d import NonLocal3d
from ccnet.nn.variants import HeadVariant, clip_variant


def to_frames(x: Tensor) -> Tensor:
    """(B, C, T, H, W) -> (B·T, C, H, W), the frames in clip order."""
    batch, channels, frames, height, width = x.shape
    return x.transpose(1, 2).reshape(batch * frames, channels, height, width)


def to_clip(x: Tensor, frames: int) -> Tensor:
    """(B·T, C, H, W) -> (B, C, T, H, W), a view of the frames."""
    return x.reshape(-1, frames, *x.shape[1:]).transpose(1, 2)


def per_frame_weights(attn: Tensor, frames: int, kind: str) -> Tensor:
    """One per-frame step's weights in a clip's layout: criss-cross (B·T, H, W, H + W) -> (B, T, H, W,
    T + H + W) with the time part 0 (ccnet.nn.attention3d's layout), non-local (B·T, N, N) -> (B, T, N, N)."""
    if kind != "criss-cross":
        return attn.reshape(-1, frames, *attn.shape[1:])
    height, width = attn.shape[1:3]
    out = attn.new_zeros(attn.shape[0] // frames, frames, height, width, frames + height + width)
    out[..., frames:] = attn.reshape(-1, frames, height, width, height + width)
    return out


class ClipHead(CCHead):
    """CCHead on a clip feature (B, C, T, h, w): convs.0 per frame -> attention x R -> convs.1 per
    frame -> conv_cat([x, out]) -> conv_seg, the attention a 3D block for a video row and the 2D
    block on each frame for an image row. Same modules and parameter names as CCHead."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, head: HeadVariant,
                 dropout: float = 0.1, leaky: bool = False) -> None:
        super().__init__(in_channels, channels, num_classes, head.recurrence, head.attention, dropout, leaky)
        self.variant, self.recurrence = head, head.steps
        if head.video and head.attention == "cca":
            self.cca = CrissCrossAttention3d(channels)
        elif head.video and head.attention == "nonlocal":
            self.nl = NonLocal3d(channels)

    def forward(self, x: Tensor, return_attention: bool = False) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Returns (logits (B, K, T, h, w), features of the frames (B·T, C, h, w), per-step weights)."""
        frames, over_clip = x.shape[2], self.variant.video
        flat = to_frames(x)
        out = self.convs[0](flat)
        out = to_clip(out, frames) if over_clip else out
        block = self.attention_block()
        attentions: list[Tensor] = []
        for _ in range(self.recurrence):
            if return_attention:
                out, attn = block(out, return_attention=True)
                attentions.append(attn if over_clip else per_frame_weights(attn, frames, self.variant.kind))
            else:
                out = block(out)
        out = self.convs[1](to_frames(out) if over_clip else out)
        features = self.conv_cat(torch.cat([flat, out], dim=1))
        return to_clip(self.conv_seg(self.dropout(features)), frames), features, attentions


class VideoCCNet(nn.Module):
    """Segments clips (B, 3, T, H, W): ``forward`` returns logits (B, K, T, H/8, W/8), with
    ``return_attention`` also each step's weights (criss-cross: (B, T, h, w, T + h + w); space-time
    non-local: (B, N, N), N = T·h·w; per-frame non-local: (B, T, h·w, h·w))."""

    def __init__(self, config: CCNetConfig, head: HeadVariant) -> None:
        super().__init__()
        self.config = config
        self.backbone = ResNetV1c(
            config.depth, config.stem_channels, config.base_channels, config.contract_dilation, config.maxpool_ceil
        )
        self.decode_head = ClipHead(self.backbone.out_channels[3], config.head_channels, config.num_classes, head,
                                    leaky=config.leaky_head)

    @property
    def head_variant(self) -> HeadVariant:
        """Its head's row of the variants table."""
        return self.decode_head.variant

    @classmethod
    def from_image(cls, net: CCNet, per_frame: bool = False) -> VideoCCNet:
        """An image CCNet's weights in a video network: its head over the clip (the 3D block with the
        same steps), or with ``per_frame`` on each frame. The auxiliary head is left out (training only)."""
        head = net.head_variant if per_frame else clip_variant(net.head_variant)
        video = cls(net.config, head)
        video.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("auxiliary_head.")})
        return video.train(net.training)

    def forward(self, clip: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        if clip.dim() != 5:
            raise ValueError(f"VideoCCNet takes (B, 3, T, H, W) clips, got shape {tuple(clip.shape)}")
        feature = to_clip(self.backbone(to_frames(clip))[3], clip.shape[2])
        logits, _, attentions = self.decode_head(feature, return_attention)
        return (logits, attentions) if return_attention else logits

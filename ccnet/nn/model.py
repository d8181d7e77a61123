"""CCNet = ResNetV1c-D8 backbone + CCHead (+ FCN auxiliary head), built from a small config.

The architecture of a released checkpoint is read from its state dict (depth from the number
of layer3 blocks, widths and classes from tensor shapes), so nothing has to be declared by hand.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

from torch import Tensor, nn

from ccnet.nn.backbone import BLOCKS_PER_DEPTH, ResNetV1c
from ccnet.nn.heads import CCHead, FCNAuxHead
from ccnet.nn.variants import HeadVariant


@dataclass(frozen=True)
class CCNetConfig:
    """Everything that fixes the tensor shapes and the forward computation of a CCNet."""

    num_classes: int = 19
    depth: int = 50
    stem_channels: tuple[int, int, int] = (32, 32, 64)
    base_channels: int = 64
    head_channels: int = 512
    aux_channels: int = 256
    recurrence: int = 2
    attention: str = "cca"
    auxiliary: bool = True
    contract_dilation: bool = True
    maxpool_ceil: bool = False
    leaky_head: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CCNetConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "stem_channels" in values:
            values["stem_channels"] = tuple(values["stem_channels"])
        return cls(**values)


# The embedded default model (assets/ccnet_default.pt): the same CCNet code as the released models
# with a narrow ResNetV1c-18-D8, for the 11 classes of the synthetic street scenes.
EMBEDDED_CONFIG = CCNetConfig(
    num_classes=11, depth=18, stem_channels=(16, 16, 32), base_channels=16, head_channels=64, aux_channels=32,
)


class CCNet(nn.Module):
    """Segmentation network; ``forward`` returns logits at 1/8 of the input size."""

    def __init__(self, config: CCNetConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ResNetV1c(
            config.depth, config.stem_channels, config.base_channels, config.contract_dilation, config.maxpool_ceil
        )
        c3, c4 = self.backbone.out_channels[2:]
        self.decode_head = CCHead(
            c4, config.head_channels, config.num_classes, config.recurrence, config.attention,
            leaky=config.leaky_head,
        )
        if config.auxiliary:
            self.auxiliary_head = FCNAuxHead(c3, config.aux_channels, config.num_classes, leaky=config.leaky_head)

    @property
    def head_variant(self) -> HeadVariant:
        """Its decode head's row of the variants table (ccnet/nn/variants.py)."""
        return self.decode_head.variant

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits (B, K, H/8, W/8); with ``return_attention`` also the per-step weights."""
        logits, _, attentions = self.decode_head(self.backbone(x)[3], return_attention)
        return (logits, attentions) if return_attention else logits

    def forward_train(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        """(decode logits, auxiliary logits or None, head features) for the training losses."""
        feats = self.backbone(x)
        logits, features, _ = self.decode_head(feats[3])
        aux = self.auxiliary_head(feats[2]) if self.config.auxiliary else None
        return logits, aux, features


def config_from_state_dict(state_dict: dict[str, Tensor], **overrides: object) -> CCNetConfig:
    """Infer depth, widths, classes and attention kind from an mmseg-layout state dict."""
    layer3 = {int(m.group(1)) for k in state_dict if (m := re.match(r"backbone\.layer3\.(\d+)\.", k))}
    bottleneck = any(k.startswith("backbone.layer1.0.conv3.") for k in state_dict)
    depth = next(
        (d for d, blocks in BLOCKS_PER_DEPTH.items() if blocks[2] == len(layer3) and (d >= 50) == bottleneck),
        None,
    )
    if depth is None:
        raise ValueError(f"cannot infer the ResNet depth: layer3 has {len(layer3)} blocks")
    try:
        stem = tuple(int(state_dict[f"backbone.stem.{i}.weight"].shape[0]) for i in (0, 3, 6))
        base = int(state_dict["backbone.layer1.0.conv1.weight"].shape[0])
        head = int(state_dict["decode_head.convs.0.conv.weight"].shape[0])
        classes = int(state_dict["decode_head.conv_seg.weight"].shape[0])
    except KeyError as err:
        raise ValueError(f"not a CCNet state dict in mmseg layout: missing key {err.args[0]}") from None
    attention = "cca" if any(k.startswith("decode_head.cca.") for k in state_dict) else (
        "nonlocal" if any(k.startswith("decode_head.nl.") for k in state_dict) else "none"
    )
    aux_key = "auxiliary_head.convs.0.conv.weight"
    values = dict(
        num_classes=classes, depth=depth, stem_channels=stem, base_channels=base, head_channels=head,
        attention=attention, auxiliary=aux_key in state_dict,
        aux_channels=int(state_dict[aux_key].shape[0]) if aux_key in state_dict else 256,
    )
    values.update(overrides)
    return CCNetConfig(**values)

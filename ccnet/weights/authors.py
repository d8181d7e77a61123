"""The CCNet authors' own checkpoints (speedinghzl/CCNet) converted to this project's CCNet.

Their network (speedinghzl/CCNet, the authors' release) is a ResNet-101 with a 3->64->64->128 stem and a ceil-mode
max-pool, dilation 2 / 4 on EVERY block of layer3 / layer4, an RCCA head and a 'dsn' auxiliary
head. Every norm is InPlace-ABN, which scales by |weight| + eps even at inference: the weights
are rewritten so a plain BatchNorm computes the same. Head and dsn norms are followed by
LeakyReLU(0.01) (``leaky_head``); the backbone's by ReLU, as in any ResNet.

Key mapping (theirs -> ours):
  conv1/bn1, conv2/bn2, conv3/bn3         -> backbone.stem.0/1, .3/4, .6/7
  layerN.*                                -> backbone.layerN.* (same names)
  head.conva.0/1, head.convb.0/1          -> decode_head.convs.0.conv/bn, .convs.1.conv/bn
  head.cca.* (gamma [1])                  -> decode_head.cca.* (gamma.scale [])
  head.bottleneck.0/1 (conv 3x3, ABN)     -> decode_head.conv_cat.conv/bn; .2 is Dropout2d
  head.bottleneck.3 (1x1 classifier)      -> decode_head.conv_seg
  dsn.0/1 (conv 3x3 WITH bias, ABN)       -> auxiliary_head.convs.0.conv/bn (bias folded); .3 -> conv_seg
Their head concatenates [backbone feature, RCCA output] in that order, as mmseg's CCHead does.
"""
from __future__ import annotations

import re

import torch
from torch import Tensor

from ccnet.inference.predictor import Protocol
from ccnet.nn.attention import upgrade_legacy_gamma
from ccnet.nn.backbone import BLOCKS_PER_DEPTH
from ccnet.nn.model import CCNetConfig

ABN_EPS = 1e-5
SOURCE = "speedinghzl/CCNet"

# Their test script: BGR input minus the Caffe means (no std), sliding 769 crops with stride
# ceil(769 * 2/3) = 513, full-resolution Cityscapes (no resize), bilinear with align_corners=True.
# (It zero-pads a window smaller than 769; mmseg's slide, used here, does not: only images
# under 769 px on a side are affected, never Cityscapes' 1024x2048.)
AUTHORS_PROTOCOL = Protocol(
    mean=(104.00698793, 116.66876762, 122.67891434),
    std=(1.0, 1.0, 1.0),
    bgr=True,
    test_resize=None,
    mode="slide",
    crop=(769, 769),
    stride=(513, 513),
    align_corners=True,
)

PREFIXES = (  # their module prefix -> ours; the first match wins
    (r"conv([123])\.", lambda m: f"backbone.stem.{3 * (int(m.group(1)) - 1)}."),
    (r"bn([123])\.", lambda m: f"backbone.stem.{3 * (int(m.group(1)) - 1) + 1}."),
    (r"(layer[1-4]\.)", lambda m: f"backbone.{m.group(1)}"),
    (r"head\.conva\.0\.", "decode_head.convs.0.conv."),
    (r"head\.conva\.1\.", "decode_head.convs.0.bn."),
    (r"head\.convb\.0\.", "decode_head.convs.1.conv."),
    (r"head\.convb\.1\.", "decode_head.convs.1.bn."),
    (r"head\.cca\.", "decode_head.cca."),
    (r"head\.bottleneck\.0\.", "decode_head.conv_cat.conv."),
    (r"head\.bottleneck\.1\.", "decode_head.conv_cat.bn."),
    (r"head\.bottleneck\.3\.", "decode_head.conv_seg."),
    (r"dsn\.0\.", "auxiliary_head.convs.0.conv."),
    (r"dsn\.1\.", "auxiliary_head.convs.0.bn."),
    (r"dsn\.3\.", "auxiliary_head.conv_seg."),
)


def is_authors_layout(state_dict: dict[str, Tensor]) -> bool:
    """Their files are bare state dicts with a top-level stem conv and an RCCA ``head.conva``."""
    return "conv1.weight" in state_dict and "head.conva.0.weight" in state_dict


def config_for(state_dict: dict[str, Tensor], recurrence: int = 2) -> CCNetConfig:
    """Their architecture as a CCNetConfig; widths and classes read from the tensor shapes.

    The file does not record the recurrence; their released Cityscapes models use R=2.
    """
    layer3 = {int(m.group(1)) for k in state_dict if (m := re.match(r"layer3\.(\d+)\.", k))}
    depth = next((d for d, blocks in BLOCKS_PER_DEPTH.items() if d >= 50 and blocks[2] == len(layer3)), 101)
    return CCNetConfig(
        num_classes=int(state_dict["head.bottleneck.3.weight"].shape[0]),
        depth=depth,
        stem_channels=tuple(int(state_dict[f"conv{i}.weight"].shape[0]) for i in (1, 2, 3)),
        base_channels=int(state_dict["layer1.0.conv1.weight"].shape[0]),
        head_channels=int(state_dict["head.conva.0.weight"].shape[0]),
        aux_channels=int(state_dict["dsn.0.weight"].shape[0]) if "dsn.0.weight" in state_dict else 256,
        recurrence=recurrence,
        auxiliary="dsn.0.weight" in state_dict,
        contract_dilation=False,
        maxpool_ceil=True,
        leaky_head=True,
    )


def convert(state_dict: dict[str, Tensor], recurrence: int = 2) -> tuple[dict[str, Tensor], dict]:
    """(state dict in this project's layout, meta with the config and the authors' protocol).

    Keys that match no rule are passed through unchanged, so the strict fit check names them.
    ``recurrence`` is not in the file: pass 1 for their R=1 release.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        out[_rename(key)] = value
    norms = {k.removesuffix(".running_var") for k in out if k.endswith(".running_var")}
    for prefix in norms:
        # InPlace-ABN normalises with scale |w| + eps: store that as a plain BatchNorm weight.
        out[prefix + ".weight"] = out[prefix + ".weight"].abs() + ABN_EPS
        out.setdefault(prefix + ".num_batches_tracked", torch.tensor(0, dtype=torch.long))
    upgrade_legacy_gamma(out, "decode_head.cca.")
    aux_bias = out.pop("auxiliary_head.convs.0.conv.bias", None)
    if aux_bias is not None:
        # Our auxiliary ConvModule has no conv bias. BN(conv(x) + b) with running statistics equals
        # BN(conv(x)) with running_mean - b, so folding the bias there is exact at inference.
        out["auxiliary_head.convs.0.bn.running_mean"] = out["auxiliary_head.convs.0.bn.running_mean"] - aux_bias
    meta = {
        "ccnet_config": config_for(state_dict, recurrence).to_dict(),
        "protocol": AUTHORS_PROTOCOL.to_dict(),
        "source": SOURCE,
    }
    return out, meta


def _rename(key: str) -> str:
    for pattern, target in PREFIXES:
        match = re.match(pattern, key)
        if match:
            new = target(match) if callable(target) else target
            return new + key[match.end():]
    return key

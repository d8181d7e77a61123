"""Inference-only rewrites of a CCNet that keep its outputs: BatchNorm folded into the convs,
channels-last memory format. Measured by ``python -m ccnet bench model``."""
from __future__ import annotations

import copy

import torch
from torch import nn


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d into the Conv2d registered just before it, in place.

    In every ccnet module (stem, blocks, downsample, ConvModule) a BatchNorm2d registered right
    after a Conv2d of matching width is applied to that conv's output, so the pair becomes one
    conv with a bias and the norm an Identity: one pass over each feature map fewer. The state
    dict changes (no ``bn.*`` keys), so fold a copy, never a model you still want to save.
    """
    for parent in model.modules():
        children = list(parent.named_children())
        for (_, conv), (bn_name, bn) in zip(children, children[1:]):
            if (
                isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                and conv.out_channels == bn.num_features and bn.track_running_stats
            ):
                _fold_pair(conv, bn)
                setattr(parent, bn_name, nn.Identity())
    return model


@torch.no_grad()
def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else torch.rsqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
    bias = conv.bias * scale + shift if conv.bias is not None else shift
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias)


def _channels_last_input(_module: nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


def optimize_for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """An eval-mode copy of ``model`` with BatchNorm folded and (by default) channels-last.

    Same ``forward`` (logits, optionally the attention weights) and the same outputs up to
    float rounding; the input is converted to channels-last by a forward pre-hook, so callers
    pass ordinary NCHW tensors. For inference only: the copy has no BatchNorm to train.
    """
    optimized = fold_batchnorm(copy.deepcopy(model).eval())
    return channels_last_inputs(optimized) if channels_last else optimized


def channels_last_inputs(module: nn.Module) -> nn.Module:
    """``module`` in place with channels-last weights and a forward pre-hook that makes its (4D)
    input channels-last, so callers pass ordinary NCHW tensors (a video network's backbone on its
    frames, when the network's own input is a 5D clip)."""
    module.to(memory_format=torch.channels_last)
    module.register_forward_pre_hook(_channels_last_input)
    return module


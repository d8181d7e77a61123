"""optimize_for_inference: BatchNorm folding and channels-last keep a CCNet's outputs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ccnet.nn.optimize import fold_batchnorm, optimize_for_inference
from tests.helpers import TINY, tiny_model


def randomize_norms(model: nn.Module) -> nn.Module:
    """Non-trivial BN affine parameters, so that folding them is really tested."""
    torch.manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


@pytest.mark.parametrize("channels_last", [False, True])
def test_optimized_model_gives_the_same_logits_and_attention(channels_last):
    model = randomize_norms(tiny_model())
    x = torch.randn(2, 3, 67, 93)
    with torch.no_grad():
        ref, ref_attn = model(x, return_attention=True)
        optimized = optimize_for_inference(model, channels_last=channels_last)
        out, attn = optimized(x, return_attention=True)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for a, b in zip(attn, ref_attn):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in optimized.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_fold_batchnorm_folds_every_norm_of_a_ccnet():
    model = fold_batchnorm(tiny_model(config=TINY))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(m.bias is not None for m in model.backbone.modules() if isinstance(m, nn.Conv2d))


def test_a_folded_pair_equals_the_conv_then_the_norm_to_float64_rounding():
    """eps counts: with running variances near eps, folding without it would be off by ~1e-3."""
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, bias=True).double(), nn.BatchNorm2d(4, eps=1e-3).double().eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.002, 0.01)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    with torch.no_grad():
        expected = bn(conv(x))
        folded = fold_batchnorm(nn.Sequential(conv, bn))
        got = folded(x)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)

"""The export formulation of criss-cross attention equals the einsum formulas and the fast path."""
from __future__ import annotations

import pytest
import torch

from ccnet.nn.attention import CrissCrossAttention, criss_cross_aggregate, criss_cross_weights
from ccnet.nn.cross_matmul import cross_aggregate_matmul, cross_weights_matmul


@pytest.mark.parametrize("height, width", [(1, 5), (7, 11), (13, 4)])
def test_matmul_weights_and_aggregation_equal_the_einsum_formulas(height, width):
    generator = torch.Generator().manual_seed(height * 100 + width)
    query, key = (torch.randn(2, 4, height, width, generator=generator) for _ in range(2))
    value = torch.randn(2, 6, height, width, generator=generator)
    weights = cross_weights_matmul(query, key)
    torch.testing.assert_close(weights, criss_cross_weights(query, key), rtol=1e-6, atol=1e-7)
    assert torch.all(weights[..., :height].diagonal(dim1=1, dim2=3) == 0)  # the centre counted once
    torch.testing.assert_close(cross_aggregate_matmul(weights, value), criss_cross_aggregate(weights, value),
                               rtol=1e-5, atol=1e-6)


def test_the_export_impl_gives_the_fast_paths_output_and_weights():
    torch.manual_seed(0)
    block = CrissCrossAttention(32).eval()
    block.gamma.scale.data.fill_(0.7)
    x = torch.randn(1, 32, 9, 14)
    with torch.no_grad():
        fast = block(x, return_attention=True)
        block.impl = "export"
        exported = block(x, return_attention=True)
    for got, expected in zip(exported, fast):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)

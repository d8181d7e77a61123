"""The non-local map of a cell equals a dense softmax computed by hand from the block's weights;
the agreement figures on hand-made maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ccnet.inference.agreement import (
    agreement,
    js_divergence,
    mean_on_cross_share,
    nonlocal_map,
    on_cross_share,
    topk_overlap,
)
from ccnet.nn.attention import NonLocal2d


def test_the_non_local_map_is_the_softmax_of_the_cells_dot_products():
    torch.manual_seed(0)
    block = NonLocal2d(16).eval()
    x = torch.randn(1, 16, 5, 7)
    with torch.no_grad():
        _, attention = block(x, return_attention=True)
    q = block.query_conv.weight[:, :, 0, 0].detach().numpy().astype(np.float64)
    k = block.key_conv.weight[:, :, 0, 0].detach().numpy().astype(np.float64)
    qb, kb = block.query_conv.bias.detach().numpy(), block.key_conv.bias.detach().numpy()
    features = x[0].numpy().astype(np.float64)
    for row, col in [(0, 0), (2, 3), (4, 6)]:
        query = q @ features[:, row, col] + qb
        energy = np.array([[query @ (k @ features[:, r, c] + kb) for c in range(7)] for r in range(5)])
        expected = np.exp(energy - energy.max())
        expected /= expected.sum()
        np.testing.assert_allclose(nonlocal_map(attention[0], row, col, (5, 7)), expected, rtol=1e-4, atol=1e-7)


def test_agreement_of_equal_and_of_disjoint_maps():
    a = np.zeros((4, 6))
    a[1, 2], a[3, 5] = 0.75, 0.25
    b = np.zeros((4, 6))
    b[0, 0], b[2, 4] = 0.5, 0.5
    assert js_divergence(a, a) == 0 and topk_overlap(a, a, 2) == 1
    assert js_divergence(a, b) == pytest.approx(1.0) and topk_overlap(a, b, 2) == 0
    half = (a + b) / 2  # mid = (a + half) / 2: 0.5625, 0.1875, 0.125, 0.125 on the four cells
    kl_a = 0.75 * np.log2(0.75 / 0.5625) + 0.25 * np.log2(0.25 / 0.1875)
    kl_half = 0.375 * np.log2(0.375 / 0.5625) + 0.125 * np.log2(0.125 / 0.1875) + 2 * 0.25 * np.log2(0.25 / 0.125)
    assert js_divergence(a, half) == pytest.approx((kl_a + kl_half) / 2)


def test_on_cross_share_counts_the_row_and_column_once():
    grid_map = np.full((3, 4), 1 / 12)
    assert on_cross_share(grid_map, 1, 2) == pytest.approx(6 / 12)  # 4 in the row + 3 in the column - centre
    figures = agreement(grid_map, grid_map, (1, 2), k=3)
    assert figures["topk_overlap"] == 1 and figures["js_divergence_bits"] == 0
    assert figures["on_cross_share"] == {"criss_cross": 0.5, "nonlocal": 0.5}


def test_the_image_average_on_cross_share_equals_the_per_cell_one_averaged():
    rng = np.random.default_rng(0)
    matrix = rng.random((12, 12))
    matrix /= matrix.sum(axis=1, keepdims=True)
    expected = np.mean([on_cross_share(matrix[u].reshape(3, 4), u // 4, u % 4) for u in range(12)])
    assert mean_on_cross_share(matrix, (3, 4)) == pytest.approx(expected)


def test_agreement_of_two_different_maps_worked_out_by_hand():
    """a = .5 .3 .2 / 0 0 0 and b = 0 .3 .2 / .5 0 0: top-2 {(0,0), (0,1)} against {(1,0), (0,1)},
    overlap 1/2; the mixture .25 .3 .2 .25: KL(a||m) = KL(b||m) = .5 log2(2) = .5 bit, so JS = .5;
    at cell (1, 2): a has .2 on its row and column, b .5 + .2 = .7."""
    a = np.array([[0.5, 0.3, 0.2], [0.0, 0.0, 0.0]])
    b = np.array([[0.0, 0.3, 0.2], [0.5, 0.0, 0.0]])
    figures = agreement(a, b, (1, 2), k=2)
    assert figures["topk_overlap"] == 0.5 and figures["js_divergence_bits"] == pytest.approx(0.5)
    assert figures["on_cross_share"] == {"criss_cross": pytest.approx(0.2), "nonlocal": pytest.approx(0.7)}
    assert figures["top_cell"] == {"criss_cross": [0, 0], "nonlocal": [1, 0]}
    assert js_divergence(b, a) == pytest.approx(0.5) and topk_overlap(b, a, 2) == 0.5

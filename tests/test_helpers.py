"""The attention references of tests/helpers.py against tiny examples worked out by hand, so that the
tests comparing the product with them rest on arithmetic, not on the product itself."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ccnet.nn.attention_maps import composed_map, dense_matrix, step_map
from ccnet.viz.pictures import topk
from tests.helpers import composed_reference, dense_from_crosses, step_reference, topk_reference


def self_weights(h: int, w: int) -> np.ndarray:
    """(h, w, h + w) weights where every cell keeps all its weight (its row entry h + c)."""
    attn = np.zeros((h, w, h + w))
    for r in range(h):
        for c in range(w):
            attn[r, c, h + c] = 1.0
    return attn


def two_by_three() -> np.ndarray:
    """A 2 x 3 grid: cell (0, 1) and cell (1, 2) spread their weight, the others keep it."""
    attn = self_weights(2, 3)
    # (0, 1): column (0,1)=0 (centre), (1,1)=0.4; row (0,0)=0.1, (0,1)=0.3, (0,2)=0.2
    attn[0, 1] = [0.0, 0.4, 0.1, 0.3, 0.2]
    # (1, 2): column (0,2)=0.5, (1,2)=0 (centre); row (1,0)=0.25, (1,1)=0, (1,2)=0.25
    attn[1, 2] = [0.5, 0.0, 0.25, 0.0, 0.25]
    return attn


def test_one_step_is_read_from_the_cross_layout_by_hand():
    attn = two_by_three()
    by_hand = {(0, 1): [[0.1, 0.3, 0.2], [0.0, 0.4, 0.0]], (1, 2): [[0.0, 0.0, 0.5], [0.25, 0.0, 0.25]],
               (1, 0): [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]}
    matrix = np.eye(6)
    matrix[1] = np.ravel(by_hand[0, 1])
    matrix[5] = np.ravel(by_hand[1, 2])
    np.testing.assert_array_equal(dense_from_crosses(attn), matrix)
    for (row, col), grid_map in by_hand.items():
        np.testing.assert_array_equal(step_reference(attn, row, col), grid_map)
        np.testing.assert_allclose(step_map(torch.from_numpy(attn), row, col).numpy(), grid_map)
    np.testing.assert_allclose(dense_matrix(torch.from_numpy(attn)).numpy(), matrix)


def two_steps_on_two_by_two() -> list[np.ndarray]:
    """Cells a=(0,0), b=(0,1), c=(1,0), d=(1,1); entries [column r=0, column r=1, row c=0, row c=1].

    Step 1: a keeps 1/2 and takes 1/2 from c (its column); d keeps 1/2 and takes 1/2 from b.
    Step 2: a keeps 1/2 and takes 1/2 from b (its row). Every other cell keeps its own value."""
    first, second = self_weights(2, 2), self_weights(2, 2)
    first[0, 0] = [0.0, 0.5, 0.5, 0.0]
    first[1, 1] = [0.5, 0.0, 0.0, 0.5]
    second[0, 0] = [0.0, 0.0, 0.5, 0.5]
    return [first, second]


def test_composition_follows_the_features_through_both_steps_by_hand():
    """After step 1, y1(a) = (x_a + x_c)/2 and y1(b) = x_b; after step 2, y2(a) = (y1(a) + y1(b))/2
    = x_a/4 + x_b/2 + x_c/4. The opposite order (A_1 A_2) would give x_a/4 + x_b/4 + x_c/2."""
    steps = two_steps_on_two_by_two()
    composed_a = [[0.25, 0.5], [0.25, 0.0]]
    # y2(d) = y1(d) = (x_d + x_b)/2
    composed_d = [[0.0, 0.5], [0.0, 0.5]]
    for (row, col), grid_map in (((0, 0), composed_a), ((1, 1), composed_d)):
        np.testing.assert_allclose(composed_reference(steps, row, col), grid_map)
        np.testing.assert_allclose(composed_map([torch.from_numpy(s) for s in steps], row, col).numpy(), grid_map)
    np.testing.assert_allclose(composed_reference(steps[::-1], 0, 0), [[0.25, 0.25], [0.5, 0.0]])


@pytest.mark.parametrize("k, expected", [
    (4, [(0, 1, 0.3), (1, 0, 0.3), (0, 2, 0.2), (0, 0, 0.1)]),  # equal weights: the lower index first
    (0, []),
    (9, [(0, 1, 0.3), (1, 0, 0.3), (0, 2, 0.2), (0, 0, 0.1), (1, 2, 0.1), (1, 1, 0.0)]),
])
def test_top_k_by_hand(k, expected):
    grid_map = np.array([[0.1, 0.3, 0.2], [0.3, 0.0, 0.1]])
    assert topk_reference(grid_map, k) == expected
    assert topk(grid_map, k) == expected

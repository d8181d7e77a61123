"""Reading 3D criss-cross weights: the dense matrix, step and composed maps against float64
references built position by position from the layout, the reach of R steps on a 3x4x5 clip, and
the analytic cost against the 2D formulas and a FLOP count."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ccnet.errors import CCNetError
from ccnet.nn.attention3d import CrissCrossAttention3d
from ccnet.nn.attention_maps3d import composed_map, dense_matrix, reach, step_map
from ccnet.nn.cost import formula_flops
from ccnet.nn.cost3d import analytic_attention3d_bytes, attention3d_floats, formula_flops3d, nonlocal3d_floats

SIZE = (3, 4, 5)


def dense_reference(attn: torch.Tensor) -> np.ndarray:
    """(N, N) float64 matrix of one step from the layout, one entry at a time: row t·HW + h·W + w
    gets attn[t, h, w, s] at (s, h, w), attn[.., T + i] at (t, i, w) and attn[.., T + H + j] at (t, h, j)."""
    attn = np.asarray(attn, dtype=np.float64)
    frames, height, width = attn.shape[:3]

    def flat(t: int, h: int, w: int) -> int:
        return (t * height + h) * width + w

    dense = np.zeros((frames * height * width,) * 2)
    for t, h, w in itertools.product(range(frames), range(height), range(width)):
        u = flat(t, h, w)
        for s in range(frames):
            dense[u, flat(s, h, w)] += attn[t, h, w, s]
        for i in range(height):
            dense[u, flat(t, i, w)] += attn[t, h, w, frames + i]
        for j in range(width):
            dense[u, flat(t, h, j)] += attn[t, h, w, frames + height + j]
    return dense


def clip_weights(steps: int, seed: int = 0) -> list[torch.Tensor]:
    """Per-step (T, H, W, T + H + W) float64 weights of one clip from a block run ``steps`` times."""
    torch.manual_seed(seed)
    block = CrissCrossAttention3d(16).double()
    with torch.no_grad():
        block.gamma.scale.fill_(0.8)
        x, attns = torch.randn(1, 16, *SIZE, dtype=torch.float64), []
        for _ in range(steps):
            x, attn = block(x, return_attention=True)
            attns.append(attn[0])
    return attns


def test_the_dense_matrix_and_step_maps_equal_the_reference():
    (attn,) = clip_weights(1)
    dense = dense_reference(attn)
    torch.testing.assert_close(dense_matrix(attn), torch.from_numpy(dense), rtol=0, atol=1e-15)
    np.testing.assert_allclose(dense.sum(1), 1, atol=1e-12)
    for position in [(0, 0, 0), (1, 2, 3), (2, 3, 4)]:
        flat = np.ravel_multi_index(position, SIZE)
        got = step_map(attn, position)
        np.testing.assert_allclose(got.numpy(), dense[flat].reshape(SIZE), rtol=0, atol=1e-15)
        assert int((got > 0).sum()) == sum(SIZE) - 2


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_the_composed_map_equals_the_dense_matrix_product(steps):
    attns = clip_weights(steps)
    product = np.eye(np.prod(SIZE))
    for attn in attns:  # A_R @ ... @ A_1: the last step's matrix on the left
        product = dense_reference(attn) @ product
    for position in [(0, 0, 0), (1, 2, 3), (2, 1, 4)]:
        composed = composed_map(attns, position)
        expected = product[np.ravel_multi_index(position, SIZE)].reshape(SIZE)
        np.testing.assert_allclose(composed.numpy(), expected, rtol=1e-12, atol=1e-15)
        assert composed.sum().item() == pytest.approx(1.0)
        np.testing.assert_array_equal(composed.numpy() > 0, reach(*SIZE, steps, position)[-1].numpy())


def test_reach_on_a_3x4x5_clip_is_10_then_36_then_all_60():
    for position in itertools.product(*(range(n) for n in SIZE)):
        counts = [int(support.sum()) for support in reach(*SIZE, 3, position)]
        assert counts == [10, 36, 60], (position, counts)


def test_reach_is_the_support_of_powers_of_the_line_graph():
    """Independent of ``reach``'s code: u and p share a line when they differ in at most one of t, h, w."""
    cells = list(itertools.product(*(range(n) for n in SIZE)))
    adjacency = np.array([[sum(a != b for a, b in zip(u, p)) <= 1 for p in cells] for u in cells], dtype=np.int64)
    power = np.eye(len(cells), dtype=np.int64)
    position = (1, 2, 3)
    supports = reach(*SIZE, 4, position)
    for support in supports:
        power = np.minimum(power @ adjacency, 1)
        np.testing.assert_array_equal(support.numpy().ravel(), power[cells.index(position)] > 0)


def test_analytic_cost_at_five_frames_of_97x97():
    assert attention3d_floats(5, 97, 97) == 47_045 * 199 == 9_361_955  # about 9.3 M floats
    assert analytic_attention3d_bytes("cca3d", 5, 97, 97) == 37_447_820  # 37 MB in fp32
    assert nonlocal3d_floats(5, 97, 97) == 47_045**2 == 2_213_232_025  # (THW)^2, about 2.2 G
    assert analytic_attention3d_bytes("nonlocal3d", 5, 97, 97) == 8_852_928_100  # 8.8 GB in fp32
    assert analytic_attention3d_bytes("cca3d", 5, 97, 97, dtype_bytes=2) == 2 * 9_361_955
    assert analytic_attention3d_bytes("cca3d", 5, 97, 97, steps=2) == 2 * analytic_attention3d_bytes("cca3d", 5, 97, 97)


def test_one_frame_costs_what_the_2d_formulas_say():
    for method, method2d in [("cca3d", "rcca1"), ("nonlocal3d", "nonlocal")]:
        assert formula_flops3d(method, 64, 1, 13, 17) == formula_flops(method2d, 64, 13, 17)
    assert formula_flops3d("cca3d", 64, 1, 13, 17, steps=2) == formula_flops("rcca2", 64, 13, 17)


def test_the_flop_formula_matches_a_count_of_the_block():
    """Counted on the meta device: the block's GEMMs also multiply the two masked entries per position
    (the stored T + H + W against the T + H + W - 2 of the formula), which is all that differs."""
    channels, (frames, height, width) = 64, SIZE
    block = CrissCrossAttention3d(channels).to("meta")
    cells = frames * height * width
    masked = 2 * cells * 2 * (channels // 8 + channels)
    for impl in ("reference", "export"):
        block.impl = impl
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            block(torch.zeros(1, channels, *SIZE, device="meta"))
        assert counter.get_total_flops() == formula_flops3d("cca3d", channels, *SIZE) + masked, impl


def test_an_unknown_method_is_one_line():
    for cost in (lambda: analytic_attention3d_bytes("rcca2", 2, 3, 4), lambda: formula_flops3d("cca", 8, 2, 3, 4)):
        with pytest.raises(CCNetError, match="unknown 3D attention method"):
            cost()

"""Criss-cross attention against an independent dense reference written from the definition."""
from __future__ import annotations

import pytest
import torch

from ccnet.nn.attention import CrissCrossAttention, NonLocal2d
from ccnet.nn.attention_maps import composed_map, dense_matrix, step_map
from tests.helpers import KEYS_FILE, composed_reference, dense_from_crosses

SIZES = [(1, 1), (1, 6), (5, 1), (3, 4), (7, 5)]


def reference_cca(module: CrissCrossAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop over cells: gather the cross (column without the centre, then the row), one softmax."""
    q, k, v = module.query_conv(x), module.key_conv(x), module.value_conv(x)
    batch, _, height, width = x.shape
    out = torch.zeros_like(x)
    weights = torch.zeros(batch, height, width, height + width, dtype=x.dtype)
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                cells = [(r, j) for r in range(height) if r != i] + [(i, c) for c in range(width)]
                energy = torch.stack([q[b, :, i, j] @ k[b, :, r, c] for r, c in cells])
                attn = torch.softmax(energy, 0)
                out[b, :, i, j] = sum(a * v[b, :, r, c] for a, (r, c) in zip(attn, cells))
                col = [r for r in range(height) if r != i]
                weights[b, i, j, col] = attn[: height - 1]
                weights[b, i, j, height:] = attn[height - 1 :]
    return module.gamma.scale * out + x, weights


def make_cca(channels: int = 16, gamma: float = 0.7, seed: int = 0) -> CrissCrossAttention:
    torch.manual_seed(seed)
    module = CrissCrossAttention(channels).double()
    with torch.no_grad():
        module.gamma.scale.fill_(gamma)
    return module


@pytest.mark.parametrize("size", SIZES)
def test_cca_matches_dense_reference_fp64(size):
    module = make_cca()
    x = torch.randn(2, 16, *size, dtype=torch.float64)
    with torch.no_grad():
        out, attn = module(x, return_attention=True)
        ref_out, ref_attn = reference_cca(module, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(attn, ref_attn, rtol=1e-10, atol=1e-10)


def test_return_attention_does_not_change_output():
    module = make_cca()
    x = torch.randn(1, 16, 4, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(module(x), module(x, return_attention=True)[0])


def test_fresh_module_is_identity_because_gamma_starts_at_zero():
    module = CrissCrossAttention(16)
    x = torch.randn(1, 16, 3, 5)
    assert module.gamma.scale.shape == ()
    torch.testing.assert_close(module(x), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_close_to_fp64(dtype):
    module = make_cca()
    x = torch.randn(1, 16, 6, 7, dtype=torch.float64)
    with torch.no_grad():
        ref = module(x)
        low = module.to(dtype)(x.to(dtype))
    assert low.dtype == dtype
    tol = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 6e-2}[dtype]
    torch.testing.assert_close(low.double(), ref, rtol=tol, atol=tol)


def test_state_dict_is_mmseg_cca_subdict():
    keys_file = KEYS_FILE
    expected = {}
    for line in keys_file.read_text().splitlines():
        if line.startswith("decode_head.cca."):
            name, shape, _ = line.split("\t")
            expected[name.removeprefix("decode_head.cca.")] = tuple(__import__("json").loads(shape))
    got = {k: tuple(v.shape) for k, v in CrissCrossAttention(512).state_dict().items()}
    assert got == expected


@pytest.mark.parametrize("gamma", [0.25, -0.375])
def test_legacy_gamma_shape_one_loads_strictly(gamma):
    module = CrissCrossAttention(16)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    state["gamma"] = torch.tensor([gamma])
    del state["gamma.scale"]
    module.load_state_dict(state, strict=True)
    assert module.gamma.scale.item() == gamma  # exactly, sign included


def test_a_checkpoints_legacy_gamma_keeps_its_sign():
    from ccnet.nn.attention import upgrade_legacy_gamma

    state = {"decode_head.cca.gamma": torch.tensor([-0.5])}
    upgrade_legacy_gamma(state, "decode_head.cca.")
    scale = state.pop("decode_head.cca.gamma.scale")
    assert state == {} and scale.dim() == 0 and scale.item() == -0.5


def test_step_maps_sum_to_one_and_vanish_off_the_cross():
    module = make_cca()
    x = torch.randn(1, 16, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        _, attn = module(x, return_attention=True)
    for i in range(5):
        for j in range(7):
            dense = step_map(attn[0], i, j)
            assert dense.sum().item() == pytest.approx(1.0)
            off_cross = torch.ones(5, 7, dtype=torch.bool)
            off_cross[i, :] = False
            off_cross[:, j] = False
            assert torch.all(dense[off_cross] == 0)


def test_composed_map_and_dense_matrix_match_the_references():
    module = make_cca()
    x = torch.randn(1, 16, 4, 6, dtype=torch.float64)
    with torch.no_grad():
        y1, a1 = module(x, return_attention=True)
        _, a2 = module(y1, return_attention=True)
    torch.testing.assert_close(dense_matrix(a1[0]), torch.from_numpy(dense_from_crosses(a1[0])))
    for i, j in [(0, 0), (2, 3), (3, 5)]:
        composed = composed_map([a1[0], a2[0]], i, j)
        torch.testing.assert_close(composed, torch.from_numpy(composed_reference([a1[0], a2[0]], i, j)))
        assert composed.sum().item() == pytest.approx(1.0)
        assert torch.all(composed > 0)  # two steps reach every cell


def reference_nonlocal(module: NonLocal2d, x: torch.Tensor) -> torch.Tensor:
    q = module.query_conv(x).flatten(2)[0].T  # N, C'
    k = module.key_conv(x).flatten(2)[0].T
    v = module.value_conv(x).flatten(2)[0].T  # N, C
    attn = torch.softmax(q @ k.T, dim=1)
    return (module.gamma.scale * (attn @ v)).T.reshape(x.shape) + x


def test_nonlocal_matches_reference():
    torch.manual_seed(1)
    module = NonLocal2d(16).double()
    with torch.no_grad():
        module.gamma.scale.fill_(0.5)
        x = torch.randn(1, 16, 5, 6, dtype=torch.float64)
        out, attn = module(x, return_attention=True)
        torch.testing.assert_close(out, reference_nonlocal(module, x))
    assert attn.shape == (1, 30, 30)
    torch.testing.assert_close(attn.sum(-1), torch.ones(1, 30, dtype=torch.float64))

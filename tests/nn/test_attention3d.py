"""3D criss-cross attention (the TPAMI paper's video block) against a plain-loop reference written
from the definition, the 2D block at T = 1, its fast path's gradients and memory, and the two bugs
of the authors' public 3D code written as mutants that the definition check rejects."""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import ccnet.nn.attention as attention
import ccnet.nn.attention3d as attention3d
import ccnet.nn.attention3d_fast as attention3d_fast
from ccnet.nn.attention import CrissCrossAttention
from ccnet.nn.attention3d import CrissCrossAttention3d
from ccnet.nn.cost import measure_peak_memory

IMPLS = ["reference", "fast", "export"]
SIZE = (3, 4, 5)  # T, H, W: all different, so a confused axis shows


def make_block(channels: int = 16, gamma: float = 0.7, dtype: torch.dtype = torch.float64,
               seed: int = 0) -> CrissCrossAttention3d:
    torch.manual_seed(seed)
    block = CrissCrossAttention3d(channels).to(dtype)
    with torch.no_grad():
        block.gamma.scale.fill_(gamma)  # a zero gamma would hide every bug of the aggregation
    return block


def run(block: CrissCrossAttention3d, impl: str, x: torch.Tensor, **kwargs):
    block.impl = impl
    return block(x, **kwargs)


@pytest.fixture
def tiny_blocks(monkeypatch):
    """One-row / one-column / one-line blocks, so that the blocked code paths run on small inputs."""
    monkeypatch.setattr(attention, "ROW_BLOCK_BYTES", 1)
    monkeypatch.setattr(attention, "COLUMN_BLOCK_BYTES", 1)
    monkeypatch.setattr(attention3d_fast, "TIME_BLOCK_BYTES", 1)


# ---- the definition, in plain loops (nothing from ccnet.nn) --------------------------------------

def line_positions(t: int, h: int, w: int, size: tuple[int, int, int]) -> list[tuple[int, tuple[int, int, int]]]:
    """(layout index, position) of what u = (t, h, w) attends to: its time line without u, its
    column without u, its whole row (u once, in the row part)."""
    frames, height, width = size
    time = [(s, (s, h, w)) for s in range(frames) if s != t]
    col = [(frames + i, (t, i, w)) for i in range(height) if i != h]
    row = [(frames + height + j, (t, h, j)) for j in range(width)]
    return time + col + row


def loop_reference(block: CrissCrossAttention3d, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Output and (B, T, H, W, T + H + W) weights in float64, one position and one line entry at a time."""
    x = x.double()
    params = {name: p.detach().double() for name, p in block.named_parameters()}

    def project(name: str, b: int, p: tuple[int, int, int]) -> torch.Tensor:
        return params[f"{name}.weight"][:, :, 0, 0] @ x[b, :, p[0], p[1], p[2]] + params[f"{name}.bias"]

    batch, _, *size = x.shape
    out, weights = x.clone(), torch.zeros(batch, *size, sum(size), dtype=torch.float64)
    for b in range(batch):
        for t in range(size[0]):
            for h in range(size[1]):
                for w in range(size[2]):
                    lines = line_positions(t, h, w, tuple(size))
                    assert len({p for _, p in lines}) == len(lines) == sum(size) - 2
                    q = project("query_conv", b, (t, h, w))
                    energy = torch.stack([q @ project("key_conv", b, p) for _, p in lines])
                    e = torch.exp(energy - energy.max())
                    a = e / e.sum()  # one softmax over all T + H + W - 2 positions, no scaling
                    total = sum(a[n] * project("value_conv", b, p) for n, (_, p) in enumerate(lines))
                    out[b, :, t, h, w] += params["gamma.scale"] * total
                    for n, (index, _) in enumerate(lines):
                        weights[b, t, h, w, index] = a[n]
    return out, weights


def assert_matches_definition(block: CrissCrossAttention3d, impl: str, x: torch.Tensor, tol: float = 1e-10) -> None:
    with torch.no_grad():
        out, attn = run(block, impl, x, return_attention=True)
    ref_out, ref_attn = loop_reference(block, x)
    torch.testing.assert_close(attn.double(), ref_attn, rtol=tol, atol=tol)
    torch.testing.assert_close(out.double(), ref_out, rtol=tol, atol=tol)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size", [SIZE, (1, 3, 4), (4, 1, 3), (2, 5, 1)])
def test_outputs_and_weights_equal_the_loop_reference_fp64(impl, size):
    block = make_block()
    x = torch.randn(2, 16, *size, dtype=torch.float64)
    assert_matches_definition(block, impl, x)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_each_position_weighs_exactly_its_lines_once(impl, dtype):
    frames, height, width = SIZE
    x = torch.randn(2, 16, *SIZE, dtype=dtype)
    with torch.no_grad():
        _, attn = run(make_block(dtype=dtype), impl, x, return_attention=True)
    assert attn.shape == (2, *SIZE, frames + height + width) and attn.dtype == dtype
    assert torch.all((attn != 0).sum(-1) == frames + height + width - 2)
    assert torch.all(attn[..., :frames].diagonal(dim1=1, dim2=4) == 0)  # the centre's time entry
    assert torch.all(attn[..., frames:frames + height].diagonal(dim1=2, dim2=4) == 0)  # its column entry
    assert torch.all(attn[..., frames + height:].diagonal(dim1=3, dim2=4) > 0)  # counted in the row part
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, *SIZE, dtype=dtype))


@pytest.mark.parametrize("impl", IMPLS)
def test_one_frame_is_the_2d_block_with_its_state_dict(impl):
    torch.manual_seed(3)
    flat = CrissCrossAttention(16).double()
    with torch.no_grad():
        flat.gamma.scale.fill_(0.6)
    block = CrissCrossAttention3d(16).double()
    block.load_state_dict(flat.state_dict(), strict=True)
    x = torch.randn(2, 16, 1, 6, 7, dtype=torch.float64)
    flat.impl = impl
    with torch.no_grad():
        out, attn = run(block, impl, x, return_attention=True)
        flat_out, flat_attn = flat(x[:, :, 0], return_attention=True)
    assert attn.shape == (2, 1, 6, 7, 1 + 6 + 7)
    assert torch.all(attn[..., 0] == 0)  # the time part is the one masked entry
    torch.testing.assert_close(attn[:, 0, ..., 1:], flat_attn, rtol=0, atol=1e-15)
    torch.testing.assert_close(out[:, :, 0], flat_out, rtol=0, atol=1e-14)


def test_a_legacy_2d_gamma_loads_into_the_3d_block():
    state = CrissCrossAttention(16).state_dict()
    state["gamma"] = torch.tensor([0.25])
    del state["gamma.scale"]
    block = CrissCrossAttention3d(16)
    block.load_state_dict(state, strict=True)
    assert block.gamma.scale.shape == () and block.gamma.scale.item() == pytest.approx(0.25)


# ---- the authors' two public bugs, as mutants of the reference formulas --------------------------

def wrong_row_permutation(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Bug (a): the row part's energies permuted with the query's and the key's column index
    exchanged (what ``permute(0,1,4,2,3)`` for ``(0,1,3,2,4)`` does): u = (t, h, w) gets
    q_(t,h,j) · k_(t,h,w), the row weights of the other positions of its row."""
    energy = ORIGINAL_ENERGY(query, key)
    frames, height = query.shape[2], query.shape[3]
    row = energy[..., frames + height:].transpose(3, 4)
    return torch.cat([energy[..., :frames + height], row], dim=-1)


def one_diagonal_masked(energy: torch.Tensor) -> torch.Tensor:
    """Bug (b): only the time diagonal masked, so the centre is counted twice (column and row)."""
    frames = energy.shape[1]
    centre = torch.zeros(energy.shape[1:], dtype=torch.bool)
    centre[..., :frames] = torch.eye(frames, dtype=torch.bool).view(frames, 1, 1, frames)
    return energy.masked_fill(centre, float("-inf"))


ORIGINAL_ENERGY = attention3d.cross_energy3d
MUTANTS = {"row_permutation": ("cross_energy3d", wrong_row_permutation),
           "centre_twice": ("mask_centre3d", one_diagonal_masked)}


@pytest.mark.parametrize("mutant", MUTANTS)
def test_the_definition_check_rejects_the_authors_bugs(monkeypatch, mutant):
    block, x = make_block(), torch.randn(2, 16, *SIZE, dtype=torch.float64)
    assert_matches_definition(block, "reference", x)  # the unmutated formulas pass
    monkeypatch.setattr(attention3d, *MUTANTS[mutant])
    with torch.no_grad():
        _, attn = run(block, "reference", x, return_attention=True)
    error = (attn - loop_reference(block, x)[1]).abs().max().item()
    assert error > 0.05, f"the mutant is too close to the definition ({error:.2g}) to show the check works"
    with pytest.raises(AssertionError):
        assert_matches_definition(block, "reference", x)


def test_the_centre_counted_twice_shows_in_the_count_of_non_zero_weights(monkeypatch):
    monkeypatch.setattr(attention3d, "mask_centre3d", one_diagonal_masked)
    with torch.no_grad():
        _, attn = run(make_block(), "reference", torch.randn(1, 16, *SIZE, dtype=torch.float64), return_attention=True)
    assert torch.all((attn != 0).sum(-1) == sum(SIZE) - 1)  # H + W + T - 1: what the count test rejects


# ---- the fast path: gradients, layouts, precision, memory ----------------------------------------

def output_and_gradients(block: CrissCrossAttention3d, impl: str, x: torch.Tensor,
                         grad: torch.Tensor) -> list[torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    block.zero_grad()
    out = run(block, impl, x)
    out.backward(grad)
    return [out.detach(), x.grad] + [p.grad.clone() for p in block.parameters()]


LAYOUTS = {
    "contiguous": lambda x: x,
    "channels_last_3d": lambda x: x.contiguous(memory_format=torch.channels_last_3d),
    "h_w_swapped_in_memory": lambda x: x.transpose(3, 4).contiguous().transpose(3, 4),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fast_outputs_and_gradients_equal_the_references_blocked(tiny_blocks, layout):
    block = make_block()
    x = LAYOUTS[layout](torch.randn(2, 16, *SIZE, dtype=torch.float64))
    grad = torch.randn(2, 16, *SIZE, dtype=torch.float64).transpose(0, 1).contiguous().transpose(0, 1)
    reference = output_and_gradients(block, "reference", x, grad)
    for impl in ("fast", "export"):
        for got, expected in zip(output_and_gradients(block, impl, x, grad), reference, strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_gradcheck_input_and_all_parameters(tiny_blocks):
    block = make_block(channels=8)
    names = [name for name, _ in block.named_parameters()]
    x = torch.randn(1, 8, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in block.parameters()]

    def step(x: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        return functional_call(block, dict(zip(names, values)), (x,))

    assert block.impl == "fast"
    assert torch.autograd.gradcheck(step, (x, *params), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_fast_output_is_channels_last_3d_and_leaves_the_input_alone():
    block, x = make_block(), torch.randn(2, 16, *SIZE, dtype=torch.float64)
    before = x.clone()
    with torch.no_grad():
        out = run(block, "fast", x)
    assert out.is_contiguous(memory_format=torch.channels_last_3d) and out._base is None
    assert torch.equal(x, before)


def test_fast_weights_are_detached_in_training():
    block = make_block()
    x = torch.randn(1, 16, *SIZE, dtype=torch.float64, requires_grad=True)
    out, attn = run(block, "fast", x, return_attention=True)
    assert out.requires_grad and not attn.requires_grad
    out.sum().backward()
    assert x.grad is not None and block.gamma.scale.grad is not None


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-2), (torch.bfloat16, 6e-2)])
def test_half_precision_stays_close_to_fp64(impl, dtype, tol):
    block = make_block()
    x = torch.randn(1, 16, *SIZE, dtype=torch.float64)
    with torch.no_grad():
        ref_out, ref_attn = run(block, "reference", x, return_attention=True)
        out, attn = run(block.to(dtype), impl, x.to(dtype), return_attention=True)
    assert out.dtype == attn.dtype == dtype
    torch.testing.assert_close(attn.double(), ref_attn, rtol=tol, atol=tol)
    torch.testing.assert_close(out.double(), ref_out, rtol=tol, atol=tol)


def test_autocast_promotes_like_the_reference_and_trains():
    block = make_block(dtype=torch.float32)
    x = torch.randn(1, 16, *SIZE, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, ref = run(block, "fast", x), run(block, "reference", x)
    assert out.dtype == ref.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=3e-2, atol=3e-2)
    out.sum().backward()
    assert x.grad.dtype == torch.float32 and block.value_conv.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("training", [False, True])
def test_fast_peak_memory_is_at_most_the_einsum_references(training):
    block, x = make_block(channels=64, dtype=torch.float32), torch.randn(1, 64, 5, 24, 28)

    def step() -> None:
        if training:
            block(x.clone().requires_grad_()).sum().backward()
        else:
            with torch.no_grad():
                block(x, return_attention=True)

    peaks = {}
    for impl in ("reference", "fast"):
        block.impl = impl
        peaks[impl] = measure_peak_memory(step)
    weights_bytes = 5 * 24 * 28 * (5 + 24 + 28) * 4
    assert weights_bytes < peaks["fast"] <= peaks["reference"], peaks


def test_the_impl_switch_and_bad_inputs():
    block = CrissCrossAttention3d(16)
    assert block.impl == "fast"
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        block(torch.randn(1, 16, 4, 5))
    block.impl = "cuda-kernel"
    with pytest.raises(ValueError, match="impl"):
        block(torch.randn(1, 16, *SIZE))

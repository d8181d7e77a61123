"""The GEMM fast path of CrissCrossAttention against the einsum reference it replaces."""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import ccnet.nn.attention as attention
from ccnet.nn.attention import CrissCrossAttention, NonLocal2d

SIZES = [(1, 1), (1, 6), (5, 1), (5, 7)]


def make_cca(channels: int = 16, dtype: torch.dtype = torch.float64, gamma: float = 0.7) -> CrissCrossAttention:
    torch.manual_seed(0)
    module = CrissCrossAttention(channels).to(dtype)
    with torch.no_grad():
        module.gamma.scale.fill_(gamma)
    return module


def run(module: CrissCrossAttention, impl: str, x: torch.Tensor, **kwargs):
    module.impl = impl
    return module(x, **kwargs)


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of one row / one column / one cell, so that the blocked code paths run on small inputs."""
    monkeypatch.setattr(attention, "ROW_BLOCK_BYTES", 1)
    monkeypatch.setattr(attention, "COLUMN_BLOCK_BYTES", 1)
    monkeypatch.setattr(attention, "OUTPUT_BLOCK_BYTES", 1)


def test_fast_path_is_the_default():
    assert CrissCrossAttention(16).impl == "fast"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_fast_matches_reference_outputs_and_weights(size, dtype, tol):
    module = make_cca(dtype=dtype)
    x = torch.randn(2, 16, *size, dtype=dtype)
    with torch.no_grad():
        out, attn = run(module, "fast", x, return_attention=True)
        ref_out, ref_attn = run(module, "reference", x, return_attention=True)
    assert attn.shape == (2, *size, sum(size))
    torch.testing.assert_close(out, ref_out, rtol=tol, atol=tol)
    torch.testing.assert_close(attn, ref_attn, rtol=tol, atol=tol)
    height = size[0]
    assert torch.all(attn[..., :height].diagonal(dim1=1, dim2=3) == 0)  # the centre is counted once


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_blocked_paths_match_reference(tiny_blocks, memory_format):
    module = make_cca()
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64).contiguous(memory_format=memory_format).requires_grad_()
    grad = torch.randn_like(x)
    for impl in ("reference", "fast"):
        x.grad = None
        module.zero_grad()
        out = run(module, impl, x)
        out.backward(grad)
        if impl == "reference":
            ref_out, ref_grads = out.detach(), [x.grad.clone()] + [p.grad.clone() for p in module.parameters()]
    torch.testing.assert_close(out, ref_out)
    for got, ref in zip([x.grad] + [p.grad for p in module.parameters()], ref_grads):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_output_is_channels_last_and_equal_for_either_input_format(memory_format):
    module = make_cca()
    x = torch.randn(2, 16, 4, 6, dtype=torch.float64).contiguous(memory_format=memory_format)
    before = x.clone()
    with torch.no_grad():
        out = run(module, "fast", x)
        ref = run(module, "reference", x.contiguous())
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(x, before)  # the output reuses a copy of the input, never the input itself


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_the_output_can_be_changed_in_place_under_autograd(memory_format):
    """The output is a tensor of its own, not a view of the block's buffers: a following
    ``relu_`` (or ``+=``) works and its gradient matches the reference's."""
    module = make_cca()
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64).contiguous(memory_format=memory_format)
    grads = []
    for impl in ("reference", "fast"):
        inputs = x.clone().requires_grad_()
        out = run(module, impl, inputs)
        assert out._base is None
        out.relu_().sum().backward()
        grads.append(inputs.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


def test_any_dense_input_layout_gives_the_reference_output():
    """An input that is neither NCHW nor channels-last (here H and W swapped in memory)."""
    module = make_cca()
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64).transpose(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(run(module, "fast", x), run(module, "reference", x.contiguous()),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [(3, 4), (1, 5), (4, 1), (2, 3)])
def test_gradcheck_input_and_all_parameters(size, tiny_blocks):
    module = make_cca(channels=8)
    names = [name for name, _ in module.named_parameters()]
    x = torch.randn(1, 8, *size, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]

    def block(x: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        return functional_call(module, dict(zip(names, values)), (x,))

    assert torch.autograd.gradcheck(block, (x, *params), eps=1e-6, atol=1e-8, rtol=1e-6,
                                    fast_mode=size != (2, 3))  # one exhaustive case, fast elsewhere


def test_gradients_match_reference_with_channels_last_and_expanded_grads():
    module = make_cca()
    x = torch.randn(1, 16, 5, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    grads = {}
    for impl in ("reference", "fast"):
        x.grad = None
        module.zero_grad()
        run(module, impl, run(module, impl, x)).sum().backward()  # sum(): a stride-0 gradient
        grads[impl] = [x.grad.clone()] + [p.grad.clone() for p in module.parameters()]
    for got, ref in zip(grads["fast"], grads["reference"]):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


def test_weights_output_is_detached_in_training():
    module = make_cca()
    x = torch.randn(1, 16, 3, 4, dtype=torch.float64, requires_grad=True)
    out, attn = run(module, "fast", x, return_attention=True)
    assert out.requires_grad and not attn.requires_grad
    out.sum().backward()
    assert x.grad is not None and module.gamma.scale.grad is not None


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 6e-2), (torch.float16, 2e-2)])
def test_low_precision_forward_close_to_fp32(dtype, tol):
    module = make_cca(dtype=torch.float32)
    x = torch.randn(2, 16, 6, 7)
    with torch.no_grad():
        ref = run(module, "fast", x)
        low, attn = run(module.to(dtype), "fast", x.to(dtype), return_attention=True)
    assert low.dtype == dtype and attn.dtype == dtype
    torch.testing.assert_close(low.float(), ref, rtol=tol, atol=tol)


def test_autocast_promotes_like_the_reference_and_trains():
    module = make_cca(dtype=torch.float32)
    x = torch.randn(1, 16, 5, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = run(module, "fast", x)
        ref = run(module, "reference", x)
    assert out.dtype == ref.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=3e-2, atol=3e-2)
    out.sum().backward()
    assert x.grad.dtype == torch.float32 and module.value_conv.weight.grad.dtype == torch.float32


def test_state_dict_is_shared_by_both_implementations():
    fast, reference = make_cca(), CrissCrossAttention(16).double()
    reference.impl = "reference"
    reference.load_state_dict(fast.state_dict(), strict=True)
    assert list(fast.state_dict()) == list(reference.state_dict())
    x = torch.randn(1, 16, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), reference(x))


def test_unknown_impl_is_an_error():
    module = make_cca()
    module.impl = "cuda-kernel"
    with pytest.raises(ValueError, match="impl"):
        module(torch.randn(1, 16, 2, 2, dtype=torch.float64))


def test_nonlocal_inference_and_training_paths_agree():
    torch.manual_seed(2)
    module = NonLocal2d(16).double()
    with torch.no_grad():
        module.gamma.scale.fill_(0.5)
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        inplace, attn = module(x, return_attention=True)  # in-place softmax
    out = module(x)
    torch.testing.assert_close(inplace, out.detach())
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 20, dtype=torch.float64))
    assert torch.autograd.gradcheck(module, (x[:1, :, :2, :3].detach().requires_grad_(),), fast_mode=True)

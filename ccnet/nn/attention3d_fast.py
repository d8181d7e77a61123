"""The fast path of ``CrissCrossAttention3d``: batched GEMMs on channels-last views, no einsum
temporaries, and an autograd that keeps only the block's input (backward recomputes).

A clip (B, C, T, H, W) is handled as its channels-last view (B, T, H, W, C), which is
``torch.channels_last_3d``'s memory order. Each of the three parts of a position's weights is a
batch of small matrix products on that view: the time lines, one (T, C') x (C', T) product per
(b, h, w); the columns and rows, the 2D block's GEMM primitives (``ccnet.nn.attention``) run on the
B·T frames, whose (B·T, H, W, ·) views need no copy. Weights are written into one
(B, T, H, W, T + H + W) buffer, masked and softmaxed in place: the einsum reference instead holds
three energy parts, their masked copies, their concatenation and the softmax at once.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ccnet.nn.attention import (
    _autocast_off,
    _cross_energy,
    _cross_gather,
    _cross_scatter,
    _project,
    stable_softmax,
)

# Bytes of one temporary block of the time-line products (the column and row products are blocked by
# ccnet.nn.attention's budgets); tests set tiny values to exercise the blocking.
TIME_BLOCK_BYTES = 8 << 20


def _cells(t: Tensor) -> Tensor:
    """(B, C, T, H, W) -> its (B, T, H, W, C) view: contiguous for a channels-last-3d tensor."""
    return t.permute(0, 2, 3, 4, 1)


def _frames(t: Tensor) -> Tensor:
    """(B, T, H, W, c) -> the (B·T, H, W, c) view of its frames (never a copy: results are written into it)."""
    return t.view(-1, *t.shape[2:])


def _lines(t: Tensor) -> Tensor:
    """One clip's (T, H, W, c) -> the (H·W, T, c) view of its time lines."""
    return t.flatten(1, 2).transpose(0, 1)


def _line_blocks(lines: Tensor) -> list[slice]:
    """Slices of the (H·W, T, c) time lines whose (lines, T, c) temporaries take about ``TIME_BLOCK_BYTES``."""
    count = max(1, TIME_BLOCK_BYTES // max(1, lines.shape[1] * lines.shape[2] * lines.element_size()))
    return [slice(l0, min(l0 + count, lines.shape[0])) for l0 in range(0, lines.shape[0], count)]


def energy3d(a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """out[n, u, :] = a[n, u] · b[n, v] for the v on u's lines, ``[time | column | row]``; a and b are
    (B, T, H, W, c) views, out (B, T, H, W, T + H + W)."""
    frames, height, width = a.shape[1:4]
    for n in range(a.shape[0]):
        time = torch.bmm(_lines(a[n]), _lines(b[n]).transpose(1, 2))  # (H·W, T, S)
        out[n, ..., :frames] = time.view(height, width, frames, frames).permute(2, 0, 1, 3)
    _cross_energy(_frames(a), _frames(b), _frames(out[..., frames:]))
    return out


def gather3d(attn: Tensor, v: Tensor, out: Tensor) -> Tensor:
    """out[n, u] = sum over u's lines of attn[n, u, ·] v[n, ·]; v and out (B, T, H, W, c), out contiguous."""
    frames = attn.shape[1]
    _cross_gather(_frames(attn[..., frames:]), _frames(v), _frames(out))
    for n in range(v.shape[0]):
        weights, values, lines = _lines(attn[n, ..., :frames]), _lines(v[n]), _lines(out[n])
        for block in _line_blocks(lines):
            lines[block] += torch.bmm(weights[block], values[block])
    return out


def scatter3d(attn: Tensor, g: Tensor, out: Tensor) -> Tensor:
    """Adds the adjoint of ``gather3d`` into ``out``: out[n, p] += sum of attn[n, u, p] g[n, u] over
    the positions u whose lines hold p."""
    frames = attn.shape[1]
    _cross_scatter(_frames(attn[..., frames:]), _frames(g), _frames(out))
    for n in range(g.shape[0]):
        weights, grads, lines = _lines(attn[n, ..., :frames]).transpose(1, 2), _lines(g[n]), _lines(out[n])
        for block in _line_blocks(lines):
            lines[block] += torch.bmm(weights[block], grads[block])
    return out


def weights3d(query: Tensor, key: Tensor) -> Tensor:
    """The weights of ``criss_cross_weights3d`` from (B, T, H, W, C') views, in one buffer."""
    batch, frames, height, width = query.shape[:4]
    energy = energy3d(query, key, query.new_empty(batch, frames, height, width, frames + height + width))
    energy[..., :frames].diagonal(dim1=1, dim2=4).fill_(float("-inf"))  # s == t
    energy[..., frames:frames + height].diagonal(dim1=2, dim2=4).fill_(float("-inf"))  # i == h
    if energy.dtype == torch.float32 and energy.device.type == "cpu":  # in place: no second buffer
        return torch.ops.aten._softmax.out(energy, -1, False, out=energy)
    return stable_softmax(energy)


def _clip_like(x: Tensor, dtype: torch.dtype) -> Tensor:
    """An empty (B, C, T, H, W) channels-last-3d tensor (a base of its own, used through ``_cells``)."""
    return torch.empty(x.shape, dtype=dtype, device=x.device, memory_format=torch.channels_last_3d)


def _project_residual(gathered: Tensor, weight: Tensor, bias: Tensor, x: Tensor, out: Tensor | None) -> Tensor:
    """``x + conv1x1(gathered)`` for the (B, T, H, W, C) aggregate; ``out``, x's channels-last-3d copy
    (dead by now) or None, receives it, else a fresh channels-last-3d tensor does."""
    batch, channels = x.shape[:2]
    aggregated = gathered.view(batch, -1, channels)
    if x.dtype != gathered.dtype:  # autocast: the residual is promoted like the reference's
        return x + _project(aggregated, weight, bias, x.shape[2:]).permute(0, 4, 1, 2, 3)
    if out is None:
        out = _clip_like(x, x.dtype)
        _cells(out).copy_(_cells(x))
    rows = _cells(out).view(batch, -1, channels).add_(bias)
    for n in range(batch):
        torch.addmm(rows[n], aggregated[n], weight.t(), out=rows[n])
    return out


class _CrissCross3dFunction(torch.autograd.Function):
    """One 3D criss-cross step whose autograd keeps only its input: backward recomputes q, k, v and
    the weights, so no (B, T, H, W, T + H + W) buffer lives between forward and backward. The
    weights output is non-differentiable (it is for display)."""

    @staticmethod
    def forward(ctx, x, weight_qk, bias_qk, weight_v, bias_v, gamma):  # noqa: ANN001, ANN205
        ctx.save_for_backward(x, weight_qk, bias_qk, weight_v, bias_v, gamma)
        ctx.set_materialize_grads(False)
        grid, channels_qk, dtype = x.shape[2:], weight_qk.shape[0] // 2, weight_v.dtype
        copy = None if x.dtype == dtype and _cells(x).is_contiguous() else _clip_like(x, dtype)
        cells = _cells(x) if copy is None else _cells(copy).copy_(_cells(x))
        qk = _project(cells.flatten(1, 3), weight_qk, bias_qk, grid)
        attn = weights3d(qk[..., :channels_qk], qk[..., channels_qk:])
        del qk
        # aggregate the input, then project: sum_p a_p (W x_p + b) = W (sum_p a_p x_p) + b, as the
        # weights sum to 1; gamma is folded into the value projection
        gathered = gather3d(attn, cells, torch.empty_like(cells, memory_format=torch.contiguous_format))
        ctx.mark_non_differentiable(attn)
        return _project_residual(gathered, weight_v * gamma, bias_v * gamma, x, copy), attn

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, _grad_attn):  # noqa: ANN001, ANN205
        if grad_out is None:  # only the (non-differentiable) weights were used
            return (None,) * 6
        x, weight_qk, bias_qk, weight_v, bias_v, gamma = ctx.saved_tensors
        dtype, (batch, channels, *grid) = weight_v.dtype, x.shape
        channels_qk = weight_qk.shape[0] // 2
        with _autocast_off(x.device.type):
            cells = _cells(x.to(dtype)).contiguous()
            rows, grad = cells.view(batch, -1, channels), _cells(grad_out.to(dtype)).contiguous()
            qk = _project(rows, weight_qk, bias_qk, grid)
            query, key = qk[..., :channels_qk], qk[..., channels_qk:]
            attn = weights3d(query, key)
            d = energy3d(grad, _project(rows, weight_v, bias_v, grid), torch.empty_like(attn))  # d[u,p] = g_u . v_p
            s = (attn * d).sum(-1, keepdim=True, dtype=torch.promote_types(dtype, torch.float32))
            grad_gamma = s.sum().to(gamma.dtype)
            d.sub_(s.to(dtype)).mul_(attn).mul_(gamma)  # softmax backward in place: dL/d(energy)
            grad_query = gather3d(d, key, torch.empty_like(query, memory_format=torch.contiguous_format))
            grad_key = scatter3d(d, query, torch.zeros_like(key, memory_format=torch.contiguous_format))
            d = qk = query = key = None  # freed now
            grad_value = scatter3d(attn.mul_(gamma), grad, torch.zeros_like(cells))
            attn = grad = None
            gq, gk, gv = (t.view(batch, -1, t.shape[-1]) for t in (grad_query, grad_key, grad_value))
            back = torch.empty_like(rows)
            for n in range(batch):
                torch.mm(gv[n], weight_v, out=back[n])
                torch.addmm(back[n], gq[n], weight_qk[:channels_qk], out=back[n])
                torch.addmm(back[n], gk[n], weight_qk[channels_qk:], out=back[n])
            grads = (
                torch.cat([sum(g[n].t() @ rows[n] for n in range(batch)) for g in (gq, gk)]),
                torch.cat([gq.sum((0, 1)), gk.sum((0, 1))]),
                sum(gv[n].t() @ rows[n] for n in range(batch)), gv.sum((0, 1)),
            )
            grad_x = (grad_out + back.view(batch, *grid, channels).permute(0, 4, 1, 2, 3)).to(x.dtype)
        return (grad_x, *grads, grad_gamma)


def criss_cross_fast3d(x: Tensor, weight_qk: Tensor, bias_qk: Tensor, weight_v: Tensor, bias_v: Tensor,
                       gamma: Tensor) -> tuple[Tensor, Tensor]:
    """One step on a (B, C, T, H, W) clip: (output, detached weights (B, T, H, W, T + H + W)).

    ``weight_qk`` (2C', C) and ``bias_qk`` stack the query and key projections, ``weight_v`` (C, C)
    and ``bias_v`` the value's, ``gamma`` is 0-dim; all in the dtype to compute in (x is cast to it,
    autocast is off inside).
    """
    with _autocast_off(x.device.type):
        return _CrissCross3dFunction.apply(x, weight_qk, bias_qk, weight_v, bias_v, gamma)

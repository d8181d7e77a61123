"""Criss-cross attention (CCNet) and the non-local block it is compared with.

Attention layout used everywhere in this project (the same as mmcv's op):
``attn[b, i, j, :H]`` are the weights query cell (i, j) gives to the cells (r, j) of its column,
``attn[b, i, j, H:]`` the weights it gives to the cells (i, c) of its row. The centre appears in
both halves but its column entry is always exactly 0, so it is counted once and each
``attn[b, i, j]`` is a probability distribution over the H + W - 1 cells of the cross.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccnet.nn.cross_matmul import cross_aggregate_matmul, cross_weights_matmul


class Scale(nn.Module):
    """A learnable scalar, stored as ``scale`` (0-dim) like mmcv's ``Scale`` so keys match."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale.to(x.dtype)


def stable_softmax(energy: Tensor) -> Tensor:
    """Softmax over the last dim, computed in fp32 for fp16/bf16 inputs, returned in their dtype."""
    if energy.dtype in (torch.float16, torch.bfloat16):
        return F.softmax(energy.float(), dim=-1).to(energy.dtype)
    return F.softmax(energy, dim=-1)


def criss_cross_weights(query: Tensor, key: Tensor) -> Tensor:
    """Softmax over each cell's cross: (B, C', H, W) x 2 -> (B, H, W, H + W).

    One joint softmax over column and row energies, no 1/sqrt(d) scaling, the centre's
    column entry masked to -inf so the centre is counted once (in the row half).
    """
    height = query.shape[2]
    energy_col = torch.einsum("bcij,bcrj->bijr", query, key)
    energy_row = torch.einsum("bcij,bcis->bijs", query, key)
    centre = torch.eye(height, dtype=torch.bool, device=query.device).view(1, height, 1, height)
    energy_col = energy_col.masked_fill(centre, float("-inf"))
    energy = torch.cat([energy_col, energy_row], dim=-1)
    return stable_softmax(energy)


def criss_cross_aggregate(attn: Tensor, value: Tensor) -> Tensor:
    """Weighted sum of the values on each cell's cross: (B,H,W,H+W), (B,C,H,W) -> (B,C,H,W)."""
    height = value.shape[2]
    out_col = torch.einsum("bijr,bcrj->bcij", attn[..., :height], value)
    out_row = torch.einsum("bijs,bcis->bcij", attn[..., height:], value)
    return out_col + out_row


def _nhwc(t: Tensor) -> Tensor:
    """(B, C, H, W) -> its (B, H, W, C) view: contiguous for a channels-last tensor."""
    return t.permute(0, 2, 3, 1)


def _rows(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, H*W, C) for GEMMs: a view for NCHW and channels-last tensors, else a copy."""
    return _nhwc(x).reshape(x.shape[0], -1, x.shape[1])


def _add_nhwc(base: Tensor, nhwc: Tensor) -> Tensor:
    """``base + nhwc.permute(0, 3, 1, 2)`` in base's memory format, reusing ``nhwc``'s storage when it can."""
    if base.dtype != nhwc.dtype:  # autocast: promote like the reference's residual does
        return base + nhwc.permute(0, 3, 1, 2)
    if _nhwc(base).is_contiguous():
        return nhwc.add_(_nhwc(base)).permute(0, 3, 1, 2)
    batch, height, width, channels = nhwc.shape
    out = nhwc.new_empty(batch, channels, height, width)
    for n in range(batch):
        out[n].view(channels, -1).copy_(nhwc[n].view(-1, channels).t())
    return out.add_(base)


def _project(rows: Tensor, weight: Tensor, bias: Tensor, grid: tuple[int, int]) -> Tensor:
    """A 1x1 conv as one GEMM per image, written channels-last: (B, N, C) -> (B, H, W, C_out)."""
    out = rows.new_empty(rows.shape[0], rows.shape[1], weight.shape[0])
    for n in range(rows.shape[0]):
        torch.addmm(bias, rows[n], weight.t(), out=out[n])
    return out.view(rows.shape[0], *grid, weight.shape[0])


def _channels_last_like(x: Tensor, dtype: torch.dtype) -> Tensor:
    """An empty (B, C, H, W) channels-last tensor: a base of its own (used through ``_nhwc``), so the
    block's output is not a view and may be changed in place under autograd."""
    return torch.empty(x.shape, dtype=dtype, device=x.device, memory_format=torch.channels_last)


def _project_residual(gathered: Tensor, weight: Tensor, bias: Tensor, x: Tensor, copy: Tensor | None) -> Tensor:
    """``x + conv1x1(gathered)``, in place, channels-last; ``gathered`` is a channels-last
    (B, C, H, W) tensor of the aggregated cells.

    ``copy``, x's channels-last copy made for the gather (None when x is channels-last already), is
    dead by now and becomes the output; otherwise ``gathered`` does, a block of cells at a time (each
    block's GEMM reads a copy of it). So no fresh output buffer is allocated, and no page faults on new
    memory are paid. Channels-last is the layout this GEMM writes fastest (an NCHW output, W @ agg^T,
    took 1.2x as long) and the next step reads without a copy.
    """
    batch, channels = x.shape[:2]
    aggregated = _nhwc(gathered).view(batch, -1, channels)
    if x.dtype != gathered.dtype:  # autocast: the residual is promoted like the reference's
        return x + _project(aggregated, weight, bias, x.shape[2:]).permute(0, 3, 1, 2)
    if copy is not None:
        out = _nhwc(copy).add_(bias).view(batch, -1, channels)
        for n in range(batch):
            torch.addmm(out[n], aggregated[n], weight.t(), out=out[n])
        return copy
    residual = _nhwc(x).reshape(batch, -1, channels)
    cells_per_block = max(1, OUTPUT_BLOCK_BYTES // (channels * gathered.element_size()))
    spare = gathered.new_empty(min(cells_per_block, aggregated.shape[1]), channels)
    for n in range(batch):
        for c0 in range(0, aggregated.shape[1], cells_per_block):
            block = aggregated[n, c0:c0 + cells_per_block]
            inputs = spare[:block.shape[0]].copy_(block)
            torch.add(residual[n, c0:c0 + cells_per_block], bias, out=block)
            torch.addmm(block, inputs, weight.t(), out=block)
    return gathered


# Bytes of one temporary block of the fast path. Bigger blocks are a little faster, smaller ones
# lower the training peak; tests set tiny values to exercise the blocking.
ROW_BLOCK_BYTES = 8 << 20
OUTPUT_BLOCK_BYTES = 2 << 20
COLUMN_BLOCK_BYTES = 8 << 20


def _row_blocks(x: Tensor, budget: int) -> Iterator[tuple[int, Tensor]]:
    """Yield (first row, block): a (B, C, H, W) tensor as channels-last (B, rows, W, C) blocks.

    A channels-last tensor is one view; otherwise each block is a copy of about ``budget``
    bytes (blocked 2-D transposes), so a channels-last copy of the whole tensor never exists.
    """
    batch, channels, height, width = x.shape
    if x.permute(0, 2, 3, 1).is_contiguous():
        yield 0, x.permute(0, 2, 3, 1)
        return
    rows = min(height, max(1, budget // max(1, width * channels * x.element_size())))
    flat, buffer = x.reshape(batch, channels, height * width), x.new_empty(batch, rows, width, channels)
    for i0 in range(0, height, rows):
        block = buffer[:, :min(rows, height - i0)]  # one buffer for all blocks
        for n in range(batch):
            block[n].view(-1, channels).copy_(flat[n, :, i0 * width:(i0 + block.shape[1]) * width].t())
        yield i0, block


def _for_row_blocks(x: Tensor, fn: Callable[[int, Tensor], object]) -> None:
    """``fn(row0, block)`` for each channels-last row block of ``x`` (see ``_row_blocks``); the
    blocks die with this call, so the next (B,C,H,W) buffer does not meet them."""
    for row0, block in _row_blocks(x, ROW_BLOCK_BYTES):
        fn(row0, block)


def _column_slices(t: Tensor, budget: int) -> Iterator[slice]:
    """Slices of dim 2 of a (B, H, W, c) tensor whose (H, cols, c) part takes about ``budget`` bytes."""
    height, width, channels = t.shape[1:]
    cols = max(1, budget // max(1, height * channels * t.element_size()))
    return [slice(j0, min(j0 + cols, width)) for j0 in range(0, width, cols)]


# The GEMMs below batch over rows (matrices (W, c) of a (B,H,W,c) tensor) or over columns
# (matrices (H, c)). Their operands may be strided views, but every result is written to a
# fresh contiguous tensor or to a contiguous slice: with 2 threads, CPU bmm into a strided out=
# was measured 10-100x slower than into a contiguous one.

def _cross_energy(a: Tensor, b: Tensor, out: Tensor, row0: int = 0) -> Tensor:
    """out[n,i,j,:H] = a[n,i,j]·b[n,:,j] and out[n,i,j,H:] = a[n,i,j]·b[n,i,:] for (B,H,W,c) a, b.

    ``a`` may hold only rows row0.. of the first operand; those rows of ``out`` are written.
    """
    height, rows = b.shape[1], slice(row0, row0 + a.shape[1])
    for n in range(a.shape[0]):
        out[n, rows, :, :height] = torch.bmm(a[n].transpose(0, 1), b[n].permute(1, 2, 0)).transpose(0, 1)
        out[n, rows, :, height:] = torch.bmm(a[n], b[n, rows].transpose(1, 2))
    return out


def _cross_gather(attn: Tensor, v: Tensor, out: Tensor) -> Tensor:
    """out[n,i,j] = sum_r attn[n,i,j,r] v[n,r,j] + sum_s attn[n,i,j,H+s] v[n,i,s], all (B,H,W,c)."""
    height = attn.shape[1]
    for n in range(v.shape[0]):
        torch.bmm(attn[n, :, :, height:], v[n], out=out[n])
        for cols in _column_slices(v, COLUMN_BLOCK_BYTES):
            out[n, :, cols] += torch.bmm(attn[n, :, cols, :height].transpose(0, 1), v[n, :, cols].transpose(0, 1)
                                         ).transpose(0, 1)
    return out


def _cross_scatter(attn: Tensor, g: Tensor, out: Tensor, row0: int = 0) -> Tensor:
    """Adds the adjoint of ``_cross_gather`` into ``out``: out[n,p] += sum of attn[u,p] g[u] over
    the cells u whose cross holds p. ``g`` may hold only rows row0.. of the gradient."""
    height, rows = attn.shape[1], slice(row0, row0 + g.shape[1])
    for n in range(g.shape[0]):
        # out= rather than baddbmm_: FlopCounterMode does not count the in-place variant
        torch.baddbmm(out[n, rows], attn[n, rows, :, height:].transpose(1, 2), g[n], out=out[n, rows])
        for cols in _column_slices(out, COLUMN_BLOCK_BYTES):
            out[n, :, cols] += torch.bmm(attn[n, rows, cols, :height].permute(1, 2, 0), g[n, :, cols].transpose(0, 1)
                                         ).transpose(0, 1)
    return out


def _cross_softmax(query: Tensor, key: Tensor) -> Tensor:
    """``criss_cross_weights`` on channels-last (B,H,W,c) query/key, without (B,C,H,W) temporaries."""
    batch, height, width = query.shape[:3]
    energy = _cross_energy(query, key, query.new_empty(batch, height, width, height + width))
    energy[..., :height].diagonal(dim1=1, dim2=3).fill_(float("-inf"))
    if energy.dtype == torch.float32 and energy.device.type == "cpu":  # in place: no second buffer
        return torch.ops.aten._softmax.out(energy, -1, False, out=energy)
    return stable_softmax(energy)


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast disabled (the fast path casts once itself and uses out= ops autocast cannot wrap)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()  # e.g. "meta", used to count FLOPs without computing


class _CrissCrossFunction(torch.autograd.Function):
    """One CCA step whose autograd keeps only its input: backward recomputes q, k, v and the weights.

    Recomputing costs ~6 GFLOP per step at 512x97x97 but stores no (B,C,H,W) value or (B,H,W,H+W)
    weights between forward and backward, and backward frees each buffer as soon as it can; that
    is what brings RCCA's training memory to the paper's figure. The weights output is
    non-differentiable (it is for display).
    """

    @staticmethod
    def forward(ctx, x, weight_qk, bias_qk, weight_v, bias_v, gamma):  # noqa: ANN001, ANN205
        ctx.save_for_backward(x, weight_qk, bias_qk, weight_v, bias_v, gamma)
        ctx.set_materialize_grads(False)  # no zero (B,H,W,H+W) gradient for the weights output
        grid, channels_qk = x.shape[2:], weight_qk.shape[0] // 2
        dtype = weight_v.dtype
        # The cells as (B, H, W, C), unit-stride rows and columns: a view of a channels-last input,
        # else a channels-last copy
        copy = None if x.dtype == dtype and _nhwc(x).is_contiguous() else _channels_last_like(x, dtype)
        cells = _nhwc(x) if copy is None else _nhwc(copy).copy_(_nhwc(x))
        qk = _project(cells.flatten(1, 2), weight_qk, bias_qk, grid)
        attn = _cross_softmax(qk[..., :channels_qk], qk[..., channels_qk:])
        del qk
        # The input is aggregated, then projected: sum_p a_p (W x_p + b) = W (sum_p a_p x_p) + b, as
        # each cell's weights sum to 1. So the projection's GEMM adds into the residual in place,
        # channels-last: no transpose back, and an NCHW input's copy is reused for the output.
        gathered = _channels_last_like(x, dtype)
        _cross_gather(attn, cells, _nhwc(gathered))
        ctx.mark_non_differentiable(attn)
        # gamma is folded into the value projection: a C x C scaling instead of a pass over B*C*H*W
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
            rows, grad = _rows(x.to(dtype)), grad_out.to(dtype)
            qk = _project(rows, weight_qk, bias_qk, grid)
            query, key = qk[..., :channels_qk], qk[..., channels_qk:]
            attn = _cross_softmax(query, key)
            value = _project(rows, weight_v, bias_v, grid)
            d = torch.empty_like(attn)  # d[u, p] = grad_u . v_p
            _for_row_blocks(grad, lambda row0, block: _cross_energy(block, value, d, row0))
            value = None  # freed now (rebinding, not del: the lambda above closes over the name)
            s = (attn * d).sum(-1, keepdim=True, dtype=torch.promote_types(dtype, torch.float32))
            grad_gamma = s.sum().to(gamma.dtype)
            d.sub_(s.to(dtype)).mul_(attn).mul_(gamma)  # softmax backward in place: d becomes dL/d(energy)
            grad_query = _cross_gather(d, key, torch.empty_like(query, memory_format=torch.contiguous_format))
            grad_key = _cross_scatter(d, query, torch.zeros_like(key, memory_format=torch.contiguous_format))
            d = qk = query = key = None  # freed now
            attn.mul_(gamma)
            grad_value = grad_query.new_zeros(batch, *grid, channels)
            _for_row_blocks(grad, lambda row0, block: _cross_scatter(attn, block, grad_value, row0))
            attn = grad = None  # freed now
            gq, gk, gv = (t.view(batch, -1, t.shape[-1]) for t in (grad_query, grad_key, grad_value))
            back = torch.empty_like(grad_value)
            back_rows = back.view(batch, -1, channels)
            for n in range(batch):
                torch.mm(gv[n], weight_v, out=back_rows[n])
                torch.addmm(back_rows[n], gq[n], weight_qk[:channels_qk], out=back_rows[n])
                torch.addmm(back_rows[n], gk[n], weight_qk[channels_qk:], out=back_rows[n])
            grads = (
                torch.cat([sum(g[n].t() @ rows[n] for n in range(batch)) for g in (gq, gk)]),
                torch.cat([gq.sum((0, 1)), gk.sum((0, 1))]),
                sum(gv[n].t() @ rows[n] for n in range(batch)), gv.sum((0, 1)),
            )
            grad_value = grad_query = grad_key = gq = gk = gv = None  # freed before the last add
            grad_x = _add_nhwc(grad_out, back).to(x.dtype)
        return (grad_x, *grads, grad_gamma)


def upgrade_legacy_gamma(state_dict: dict[str, Tensor], prefix: str) -> None:
    """In place: the scale that checkpoints released in 2020 store as ``<prefix>gamma`` with shape
    [1] becomes ``<prefix>gamma.scale`` with shape [] (a Scale module, as mmseg has it now)."""
    legacy = prefix + "gamma"
    if legacy in state_dict:
        state_dict[legacy + ".scale"] = state_dict.pop(legacy).reshape(())


class AttentionProjections(nn.Module):
    """Query/key (C -> C/8) and value (C -> C) 1x1 convs and the gamma scale (init 0), as both the
    criss-cross and the non-local block define them (same names as mmseg's, so keys match)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.query_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.key_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.value_conv = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = Scale(0.0)


class CrissCrossAttention(AttentionProjections):
    """One criss-cross attention step; its ``state_dict`` is mmseg's ``decode_head.cca.*``.

    ``forward(x, return_attention=True)`` also returns the weights it used, shape
    (B, H, W, H + W) in the layout of this module's docstring; a fresh module is the
    identity because gamma starts at 0, as in the paper.

    ``impl`` picks the computation: ``"fast"`` (default) runs strided batched GEMMs on
    channels-last views with a memory-lean autograd (see ``_CrissCrossFunction``; returned
    weights are detached; the output is channels-last whatever the input's layout, except under
    autocast to another dtype, where the residual's promotion decides);
    ``"reference"`` runs the einsum formulas ``criss_cross_weights`` and
    ``criss_cross_aggregate``; ``"export"`` the plain-MatMul formulation of ``cross_matmul`` that
    ONNX export uses. All give the same outputs, gradients and weights.
    """

    impl = "fast"

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if self.impl == "reference":
            out, attn = self.forward_reference(x)
        elif self.impl == "fast":
            out, attn = self.forward_fast(x)
        elif self.impl == "export":
            attn = cross_weights_matmul(self.query_conv(x), self.key_conv(x))
            out = self.gamma(cross_aggregate_matmul(attn, self.value_conv(x))) + x
        else:
            raise ValueError(f"impl must be 'fast', 'reference' or 'export', got {self.impl!r}")
        return (out, attn) if return_attention else out

    def forward_reference(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The formula-level einsum implementation: (output, weights)."""
        attn = criss_cross_weights(self.query_conv(x), self.key_conv(x))
        return self.gamma(criss_cross_aggregate(attn, self.value_conv(x))) + x, attn

    def forward_fast(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The GEMM implementation: (output, detached weights); autocast-aware like the convs."""
        device = x.device.type
        autocast = torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)
        dtype = torch.get_autocast_dtype(device) if autocast else x.dtype
        q, k, v = self.query_conv, self.key_conv, self.value_conv
        args = (
            torch.cat([q.weight, k.weight]).flatten(1), torch.cat([q.bias, k.bias]),
            v.weight.flatten(1), v.bias, self.gamma.scale,
        )
        with _autocast_off(device):
            return _CrissCrossFunction.apply(x, *(a.to(dtype) for a in args))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        upgrade_legacy_gamma(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _softmax_(energy: Tensor) -> Tensor:
    """Softmax over the last dim in place when no gradient is needed: no second N x N buffer."""
    if (torch.is_grad_enabled() and energy.requires_grad) or energy.dtype in (torch.float16, torch.bfloat16):
        return stable_softmax(energy)
    energy -= energy.amax(-1, keepdim=True)
    energy.exp_()
    energy /= energy.sum(-1, keepdim=True)
    return energy


class NonLocal2d(AttentionProjections):
    """The non-local block of the paper's comparison (§6): q/k C->C/8, v C->C, softmax over all N.

    Kept as lean as plain autograd allows, so that the memory comparison with CCA is fair: the
    softmax runs in place without autograd, and values are aggregated as ``attn @ v`` so that
    the gradient w.r.t. ``attn`` is already contiguous (``v @ attn^T`` makes softmax's backward
    copy an extra N x N).
    """

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        batch, channels, height, width = x.shape
        query = self.query_conv(x).flatten(2)  # B, C', N
        key = self.key_conv(x).flatten(2)
        value = self.value_conv(x).flatten(2)  # B, C, N
        attn = _softmax_(torch.bmm(query.transpose(1, 2), key))  # B, N, N
        out = torch.bmm(attn, value.transpose(1, 2)).transpose(1, 2).reshape(batch, channels, height, width)
        out = x + self.gamma(out)
        return (out, attn) if return_attention else out

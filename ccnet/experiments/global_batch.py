"""Training on several processes as one process would on the whole batch (``train`` under torchrun).

Each rank holds a slice of the global batch. Two layers of the network see across the batch and
are swapped for versions that see the global one:

* BatchNorm: statistics over the global batch, as the paper trains (synchronised BN). On CUDA this
  is PyTorch's SyncBatchNorm; it refuses CPU tensors, so on the CPU ``GlobalBatchNorm2d`` does the
  same with gloo: per-channel sums all-reduced, then the centred squares (two passes, like one
  process's BN), with autograd through the reductions so that every rank's gradient holds the other
  ranks' share, as SyncBatchNorm's backward does.
* Dropout2d: one process draws a (B, C) mask for the whole batch; each rank draws that same mask
  from the same seed (``GlobalBatchDropout2d``) and keeps its rows, so rank r drops exactly the
  channels one process would drop for those samples.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ccnet.experiments.distributed import Group


class SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) with autograd: the gradient of a rank's input is the sum of every rank's
    gradient of the output (each rank's loss depends on every rank's input through the sum)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: Tensor, group: dist.ProcessGroup) -> Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the batch summed over ``group``'s ranks."""

    process_group: dist.ProcessGroup | None = None

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.process_group is None:
            return super().forward(x)
        dims = (0, 2, 3)
        # Every rank holds an equal slice (train checks that the batch divides), so the count is known.
        count = x.numel() // x.shape[1] * dist.get_world_size(self.process_group)
        mean = SumOverRanks.apply(x.sum(dims), self.process_group) / count
        centred = x - mean[None, :, None, None]
        var = SumOverRanks.apply((centred * centred).sum(dims), self.process_group) / count
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
            with torch.no_grad():
                self.running_mean.mul_(1 - factor).add_(factor * mean)
                self.running_var.mul_(1 - factor).add_(factor * var * count / max(count - 1, 1))
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            return centred * (scale * self.weight)[None, :, None, None] + self.bias[None, :, None, None]
        return centred * scale[None, :, None, None]


class GlobalBatchDropout2d(nn.Dropout2d):
    """Dropout2d on rank ``rank``'s slice of a batch ``world_size`` times this one: the whole batch's
    channel mask is drawn (the draw one process makes) and this slice's rows are applied."""

    def __init__(self, p: float, rank: int, world_size: int) -> None:
        super().__init__(p)
        self.rank, self.world_size = rank, world_size

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        batch = x.shape[0]
        shape = (batch * self.world_size, x.shape[1]) + (1,) * (x.dim() - 2)
        # ATen's feature dropout: an empty (B, C, 1, 1) tensor of the input's type, bernoulli_(1 - p), div_(1 - p).
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
        noise = noise.div_(1 - self.p) if self.p < 1 else noise
        return x * noise[self.rank * batch:(self.rank + 1) * batch]


def _swap(module: nn.Module, make: type[nn.Module], build: Callable[[nn.Module], nn.Module]) -> None:
    """Replace every child of exactly type ``make``, at any depth, by ``build(child)``."""
    for name, child in module.named_children():
        if type(child) is make:
            setattr(module, name, build(child))
        else:
            _swap(child, make, build)


def global_batch_norm(net: nn.Module, group: Group) -> nn.Module:
    """``net`` with every BatchNorm2d over the global batch (same parameters and buffers, same keys)."""
    if group.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    bn_group = dist.new_group(backend="gloo")  # its own group: never interleaved with DDP's gradient reductions

    def build(old: nn.BatchNorm2d) -> GlobalBatchNorm2d:
        new = GlobalBatchNorm2d(old.num_features, old.eps, old.momentum, old.affine, old.track_running_stats)
        if old.affine:
            new.weight, new.bias = old.weight, old.bias
        new.running_mean, new.running_var = old.running_mean, old.running_var
        new.num_batches_tracked = old.num_batches_tracked
        new.process_group = bn_group
        return new.train(old.training)

    _swap(net, nn.BatchNorm2d, build)
    return net


def global_batch_dropout(net: nn.Module, group: Group) -> nn.Module:
    """``net`` with every Dropout2d drawing the global batch's mask and applying its rank's rows."""
    _swap(net, nn.Dropout2d, lambda old: GlobalBatchDropout2d(old.p, group.rank, group.world_size).train(old.training))
    return net

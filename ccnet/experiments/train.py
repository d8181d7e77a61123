"""`python -m ccnet train`: train a small CCNet on synthetic street scenes, on the CPU.

Every batch is generated from (seed, iteration), so a run is reproducible and a resumed run
sees exactly the data it would have seen without the interruption. Checkpoints are written
atomically; `--resume` continues from the last one. Under torchrun the batch is the global one,
split over the ranks, with DistributedDataParallel (docs/scale.md).
"""
from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ccnet.errors import CCNetError
from ccnet.experiments import scenes
from ccnet.experiments.distributed import SINGLE, Group, RankError
from ccnet.experiments.global_batch import global_batch_dropout, global_batch_norm
from ccnet.experiments.losses import CategoryConsistentLoss, segmentation_loss
from ccnet.inference.predictor import Protocol, normalise, resolve_device
from ccnet.nn.model import EMBEDDED_CONFIG, CCNet, CCNetConfig
from ccnet.weights.checkpoints import read_checkpoint, save_checkpoint
from ccnet.weights.datasets import IGNORE_INDEX

FROZEN_PREFIXES = ("backbone.", "auxiliary_head.")  # what --backbone loads and freezes
SEED_STRIDE = 10_000_000  # training scene seeds: seed * SEED_STRIDE + sample index


@dataclass(frozen=True)
class TrainConfig:
    out: str = "runs/default"
    iters: int = 2000
    batch: int = 8
    height: int = 128
    width: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    seed: int = 0
    attention: str = "cca"
    recurrence: int = 2
    gamma_init: float = 0.0  # the paper's 0; 1.0 lets a two-hop cue get gradient from the start
    curriculum: float = 0.75  # share of the run that mixes in scenes with the cue one step away
    ccl: bool = False
    merge_context: bool = False  # label car and truck as car: the backbone gets no reason to carry the cue
    backbone: str = ""  # a model checkpoint whose backbone (and auxiliary head) is loaded and frozen
    aux_weight: float = 0.4
    threads: int = 2
    log_every: int = 50
    save_every: int = 250


def model_config(cfg: TrainConfig) -> CCNetConfig:
    return replace(EMBEDDED_CONFIG, attention=cfg.attention, recurrence=cfg.recurrence)


def poly_lr(cfg: TrainConfig, iteration: int) -> float:
    """Linear warm-up, then mmseg's poly decay (power 0.9) to zero at the last iteration."""
    if iteration < cfg.warmup:
        return cfg.lr * (iteration + 1) / cfg.warmup
    return cfg.lr * (1 - iteration / cfg.iters) ** 0.9


def aligned_share(cfg: TrainConfig, iteration: int) -> float:
    """Curriculum: the share of scenes whose cue sits in a vehicle's columns (one step away).

    Half the scenes at the start, falling linearly to none after ``curriculum * iters``
    iterations, so the end of training and every evaluation see only the two-step layout.
    """
    if cfg.curriculum <= 0:
        return 0.0
    return 0.5 * max(0.0, 1.0 - iteration / (cfg.curriculum * cfg.iters))


def make_batch(cfg: TrainConfig, iteration: int, part: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes for this iteration with flips and photometric jitter; (B,3,H,W) input, (B,H,W) labels.

    ``part`` selects rows of the batch: the same scenes, flips and jitter as those rows of the whole
    batch (every random draw is made for the whole batch, then sliced), so the ranks of a
    distributed run together see exactly the batch one process sees.
    """
    rows = range(cfg.batch)[part]
    first = cfg.seed * SEED_STRIDE + iteration * cfg.batch
    aligned = np.random.default_rng([cfg.seed, iteration, 1]).random(cfg.batch) < aligned_share(cfg, iteration)
    images, labels = scenes.scene_batch([first + i for i in rows], cfg.height, cfg.width, "train", aligned[part])
    rng = np.random.default_rng([cfg.seed, iteration])
    images = images.astype(np.float32)
    flip = (rng.random(cfg.batch) < 0.5)[part]
    images[flip] = images[flip, :, ::-1]
    labels[flip] = labels[flip, :, ::-1]
    if cfg.merge_context:
        labels[labels == scenes.TRUCK] = scenes.CAR
    gain = rng.uniform(0.8, 1.2, (cfg.batch, 1, 1, 1))[part]
    offset = rng.uniform(-20, 20, (cfg.batch, 1, 1, 1))[part]
    images = np.clip(images * gain + offset, 0, 255)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return normalise(x, Protocol()).float(), torch.from_numpy(np.ascontiguousarray(labels)).long()


def context_counts(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(vehicle pixels given the right one of the context classes, vehicle pixels): the cue's effect."""
    pred = torch.nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear").argmax(1)
    on_context = torch.isin(labels, torch.tensor(scenes.CONTEXT_CLASSES, device=labels.device))
    return int((pred[on_context] == labels[on_context]).sum()), int(on_context.sum())


def context_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of vehicle pixels given the right one of the context classes (NaN without vehicles)."""
    right, total = context_counts(logits, labels)
    return right / total if total else math.nan


def model_meta(cfg: TrainConfig, net_config: CCNetConfig, iteration: int, seconds: float) -> dict:
    return {
        "classes": list(scenes.CLASS_NAMES),
        "palette": [list(rgb) for rgb in scenes.PALETTE],
        "cityscapes_train_ids": list(scenes.CITYSCAPES_TRAIN_ID_OF_CLASS),
        "context_classes": list(scenes.CONTEXT_CLASSES),
        "ccnet_config": net_config.to_dict(),
        # The network runs at the scale it was trained at: inputs are fitted inside (width, height).
        "protocol": Protocol(test_resize=(max(cfg.width, cfg.height), min(cfg.width, cfg.height))).to_dict(),
        "train": {**asdict(cfg), "iterations_done": iteration, "train_seconds": round(seconds, 1)},
    }


def freeze_backbone(net: CCNet, checkpoint: str) -> None:
    """Load the backbone and auxiliary head of ``checkpoint`` into ``net`` and stop their training.

    Why: a backbone trained end to end can carry the cue across the feature grid itself (its
    dilated layers span it), which hides what the head's attention can reach. Every ablation arm
    trained on the same frozen backbone differs in nothing but its head.
    """
    state, _ = read_checkpoint(checkpoint)
    frozen = {k: v for k, v in state.items() if k.startswith(FROZEN_PREFIXES)}
    own = net.state_dict()
    wrong = [k for k in own if k.startswith(FROZEN_PREFIXES)
             and (k not in frozen or frozen[k].shape != own[k].shape)]
    if wrong:
        raise CCNetError(f"{checkpoint} has no matching backbone for this model (first mismatch: {wrong[0]})")
    net.load_state_dict(frozen, strict=False)
    net.backbone.requires_grad_(False)
    if net.config.auxiliary:
        net.auxiliary_head.requires_grad_(False)


def forward_loss(net: CCNet, cfg: TrainConfig, ccl: CategoryConsistentLoss | None, x: torch.Tensor,
                 labels: torch.Tensor, scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(training loss, decode logits); a frozen backbone runs in eval mode without autograd.
    ``scale`` multiplies the cross-entropy terms (a rank's share of the global batch's labelled pixels)."""
    if cfg.backbone:
        net.backbone.eval()
        with torch.no_grad():
            feature = net.backbone(x)[3]
        logits, features, _ = net.decode_head(feature)
        aux = None  # the auxiliary head is frozen with the backbone
    else:
        logits, aux, features = net.forward_train(x)
    loss = segmentation_loss(logits, labels)
    if aux is not None:
        loss = loss + cfg.aux_weight * segmentation_loss(aux, labels)
    if scale is not None:
        loss = loss * scale
    if ccl is not None:
        loss = loss + ccl(features, labels)
    return loss, logits


class TrainStep(nn.Module):
    """The network and the CCL's projection as one module, the one DistributedDataParallel wraps."""

    def __init__(self, net: CCNet, ccl: CategoryConsistentLoss | None, cfg: TrainConfig) -> None:
        super().__init__()
        self.net, self.ccl, self.cfg = net, ccl, cfg

    def forward(self, x: torch.Tensor, labels: torch.Tensor, scale: float | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return forward_loss(self.net, self.cfg, self.ccl, x, labels, scale)


def pixel_share(group: Group, labels: torch.Tensor) -> float | None:
    """W * (this rank's labelled pixels) / (all ranks' labelled pixels): DDP averages the ranks'
    gradients, so each rank's mean loss times this share makes that average the gradient of the global
    batch's mean loss even when ranks hold different numbers of ignored pixels (1.0 when they do not).
    None in a plain run."""
    if not group.distributed:
        return None
    mine = torch.tensor([float((labels != IGNORE_INDEX).sum())], dtype=torch.float64)
    total = float(group.all_reduce_sum(mine)[0])
    return float(mine[0]) * group.world_size / total if total else 1.0


def setup(cfg: TrainConfig, resume: bool, log: Callable[[str], None], device: torch.device
          ) -> tuple[CCNet, CategoryConsistentLoss | None, torch.optim.Optimizer, int, float]:
    """(network, CCL, optimizer, first iteration, seconds so far): fresh, or from OUT/last.pt."""
    net_config = model_config(cfg)
    torch.manual_seed(cfg.seed)
    net = CCNet(net_config)
    block = net.decode_head.attention_block()
    if block is not None:
        with torch.no_grad():
            block.gamma.scale.fill_(cfg.gamma_init)
    if cfg.backbone:
        freeze_backbone(net, cfg.backbone)
    ccl = CategoryConsistentLoss(net_config.head_channels) if cfg.ccl else None
    net.to(device)
    if ccl:
        ccl.to(device)
    params = [p for p in net.parameters() if p.requires_grad] + (list(ccl.parameters()) if ccl else [])
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, elapsed = 0, 0.0
    last = Path(cfg.out) / "last.pt"
    if resume and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        if state["train_config"] != asdict(cfg):
            raise CCNetError(f"{last} was written with different settings; use a new --out or the same ones")
        net.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        if ccl:
            ccl.load_state_dict(state["ccl"])
        start, elapsed = state["iteration"], state["seconds"]
        log(f"resumed from {last} at iteration {start}")
    return net, ccl, optimizer, start, elapsed


def parallel_step(step: TrainStep, group: Group) -> nn.Module:
    """The step itself in a plain run; under torchrun, with BatchNorm and Dropout2d over the global
    batch (ccnet/experiments/global_batch.py), in DistributedDataParallel (gradients averaged)."""
    if not group.distributed:
        return step
    step = global_batch_dropout(global_batch_norm(step, group), group)
    # 1x1 convolutions' gradients come back with other strides for their size-1 dimensions: harmless.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(step, device_ids=[group.device] if group.device.type == "cuda" else None)


def write_run_record(cfg: TrainConfig, group: Group, device: torch.device, start: int) -> None:
    """OUT/run.json: how this (possibly distributed) run was laid out."""
    record = {"world_size": group.world_size, "global_batch": cfg.batch,
              "per_rank_batch": cfg.batch // group.world_size, "backend": group.backend, "device": device.type,
              "start_iteration": start}
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / "run.json").write_text(json.dumps(record, indent=1) + "\n")


def train(cfg: TrainConfig, resume: bool = False, log=print, device: str = "cpu",  # noqa: ANN001
          group: Group = SINGLE) -> Path:
    """Train (or resume) and return the path of the final model-only checkpoint.

    Under torchrun (``group`` from distributed.session) ``cfg.batch`` is the global batch: rank r trains
    on rows r * B/N .. (r + 1) * B/N of each one-process batch; only rank 0 logs and writes files."""
    torch.set_num_threads(cfg.threads)
    if cfg.batch % group.world_size:
        raise RankError(f"--batch {cfg.batch} is the global batch: it must divide by the {group.world_size} processes")
    log = log if group.is_main else (lambda _: None)
    run_device = resolve_device(group.device_for(device))
    net, ccl, optimizer, start, elapsed = group.checked(setup, cfg, resume, log, run_device)
    step = parallel_step(TrainStep(net, ccl, cfg), group)
    if group.is_main:
        write_run_record(cfg, group, run_device, start)
    per_rank = cfg.batch // group.world_size
    part = slice(group.rank * per_rank, (group.rank + 1) * per_rank)
    out, last = Path(cfg.out), Path(cfg.out) / "last.pt"
    net.train()
    tick, window = time.perf_counter(), []
    for iteration in range(start, cfg.iters):
        torch.manual_seed(cfg.seed * SEED_STRIDE + iteration)  # dropout identical after a resume
        for param_group in optimizer.param_groups:
            param_group["lr"] = poly_lr(cfg, iteration)
        x, labels = (t.to(run_device) for t in make_batch(cfg, iteration, part))
        loss, logits = step(x, labels, pixel_share(group, labels))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window.append(step_numbers(group, loss, logits, labels))
        done = iteration + 1
        if done % cfg.log_every == 0 or done == cfg.iters:
            now = time.perf_counter()
            elapsed, tick = elapsed + now - tick, now
            log(progress_line(cfg, done, start, elapsed, window))
            window = []
        if group.is_main and (done % cfg.save_every == 0 or done == cfg.iters):
            save_checkpoint(last, {
                "state_dict": net.state_dict(), "optimizer": optimizer.state_dict(),
                "ccl": ccl.state_dict() if ccl else {}, "iteration": done, "seconds": elapsed,
                "train_config": asdict(cfg),
            })
    final = out / "model.pt"
    if group.is_main:
        meta = model_meta(cfg, net.config, cfg.iters, elapsed)
        save_checkpoint(final, {"meta": meta, "state_dict": net.state_dict()})
    log(f"wrote {final} ({elapsed / 60:.1f} min of training)")
    return final


def step_numbers(group: Group, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(loss, context accuracy) of the global batch for the log."""
    right, total = context_counts(logits.detach(), labels)
    if group.distributed:
        summed = group.all_reduce_sum(torch.tensor([loss.item(), right, total], dtype=torch.float64))
        loss_value, right, total = float(summed[0]) / group.world_size, float(summed[1]), float(summed[2])
    else:
        loss_value = loss.item()
    return loss_value, right / total if total else math.nan


def progress_line(cfg: TrainConfig, done: int, start: int, elapsed: float, window: list[tuple[float, float]]) -> str:
    rate = elapsed / (done - start) if done > start else 0.0
    losses, ctx = zip(*window)
    return (f"it {done}/{cfg.iters} loss {np.mean(losses):.3f} context-acc {np.nanmean(ctx):.2f} "
            f"lr {poly_lr(cfg, done - 1):.2e} {rate:.2f} s/it eta {(cfg.iters - done) * rate / 60:.1f} min")

"""`python -m ccnet train`: train a small CCNet on synthetic street scenes, on the CPU.

Every batch is generated from (seed, iteration), so a run is reproducible and a resumed run
sees exactly the data it would have seen without the interruption. Checkpoints are written
atomically; `--resume` continues from the last one.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ccnet.errors import CCNetError
from ccnet.experiments import scenes
from ccnet.experiments.losses import CategoryConsistentLoss, segmentation_loss
from ccnet.inference.predictor import Protocol, normalise
from ccnet.nn.model import EMBEDDED_CONFIG, CCNet, CCNetConfig
from ccnet.weights.checkpoints import read_checkpoint, save_checkpoint

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


def make_batch(cfg: TrainConfig, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes for this iteration with flips and photometric jitter; (B,3,H,W) input, (B,H,W) labels."""
    first = cfg.seed * SEED_STRIDE + iteration * cfg.batch
    aligned = np.random.default_rng([cfg.seed, iteration, 1]).random(cfg.batch) < aligned_share(cfg, iteration)
    images, labels = scenes.scene_batch(range(first, first + cfg.batch), cfg.height, cfg.width, "train",
                                        aligned)
    rng = np.random.default_rng([cfg.seed, iteration])
    images = images.astype(np.float32)
    flip = rng.random(cfg.batch) < 0.5
    images[flip] = images[flip, :, ::-1]
    labels[flip] = labels[flip, :, ::-1]
    if cfg.merge_context:
        labels[labels == scenes.TRUCK] = scenes.CAR
    gain = rng.uniform(0.8, 1.2, (cfg.batch, 1, 1, 1))
    offset = rng.uniform(-20, 20, (cfg.batch, 1, 1, 1))
    images = np.clip(images * gain + offset, 0, 255)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return normalise(x, Protocol()).float(), torch.from_numpy(np.ascontiguousarray(labels)).long()


def context_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of vehicle pixels given the right one of the context classes (the cue's effect)."""
    pred = torch.nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear").argmax(1)
    on_context = torch.isin(labels, torch.tensor(scenes.CONTEXT_CLASSES))
    return float((pred[on_context] == labels[on_context]).float().mean()) if on_context.any() else math.nan


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
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(training loss, decode logits); a frozen backbone runs in eval mode without autograd."""
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
    if ccl is not None:
        loss = loss + ccl(features, labels)
    return loss, logits


def train(cfg: TrainConfig, resume: bool = False, log=print) -> Path:  # noqa: ANN001
    """Train (or resume) and return the path of the final model-only checkpoint."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
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
    params = [p for p in net.parameters() if p.requires_grad] + (list(ccl.parameters()) if ccl else [])
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, elapsed = 0, 0.0
    last = out / "last.pt"
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
    net.train()
    tick, window = time.perf_counter(), []
    for iteration in range(start, cfg.iters):
        torch.manual_seed(cfg.seed * SEED_STRIDE + iteration)  # dropout identical after a resume
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(cfg, iteration)
        x, labels = make_batch(cfg, iteration)
        loss, logits = forward_loss(net, cfg, ccl, x, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window.append((loss.item(), context_accuracy(logits.detach(), labels)))
        done = iteration + 1
        if done % cfg.log_every == 0 or done == cfg.iters:
            now = time.perf_counter()
            elapsed, tick = elapsed + now - tick, now
            rate = elapsed / (done - start) if done > start else 0.0
            losses, ctx = zip(*window)
            log(f"it {done}/{cfg.iters} loss {np.mean(losses):.3f} context-acc {np.nanmean(ctx):.2f} "
                f"lr {poly_lr(cfg, iteration):.2e} {rate:.2f} s/it eta {(cfg.iters - done) * rate / 60:.1f} min")
            window = []
        if done % cfg.save_every == 0 or done == cfg.iters:
            save_checkpoint(last, {
                "state_dict": net.state_dict(), "optimizer": optimizer.state_dict(),
                "ccl": ccl.state_dict() if ccl else {}, "iteration": done, "seconds": elapsed,
                "train_config": asdict(cfg),
            })
    final = out / "model.pt"
    save_checkpoint(final, {"meta": model_meta(cfg, net_config, cfg.iters, elapsed), "state_dict": net.state_dict()})
    log(f"wrote {final} ({elapsed / 60:.1f} min of training)")
    return final

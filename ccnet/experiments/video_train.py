"""Training a video head on synthetic clips, on the frozen backbone of the default model (CPU).

Why on a frozen backbone, from cached features: every arm of the video ablation differs in nothing
but its head, and no arm can teach the backbone to carry the cue (the default backbone keeps it
local: assets/MODEL_CARD.md). The backbone then computes the same features for every arm, seed and
iteration, so they are computed once: a pool of training clips (split "train", each flipped and
colour-jittered once, from its own seed) and their features, written to a folder
(``build_cache``, resumable) that every run reads. An iteration draws clips from the pool from
(seed, iteration), so a resumed run sees what an uninterrupted one would have.

Each arm starts from the image head of ``default``'s family with its block and steps (ARMS): with
T = 1 its video network is that trained image model, a sound start that has never seen time.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ccnet.errors import CCNetError
from ccnet.experiments import scenes
from ccnet.experiments.losses import segmentation_loss
from ccnet.experiments.street_clips import FRAMES, HEIGHT, WIDTH, generate_clip
from ccnet.inference.predictor import Protocol, normalise
from ccnet.nn.variants import VIDEO_HEADS, variant_of
from ccnet.nn.video import ClipHead, to_frames
from ccnet.weights.checkpoints import save_checkpoint
from ccnet.weights.family import sibling_name
from ccnet.weights.video import HEAD_PREFIX, load_video_model

# arm -> (the image model whose head starts it, whether that head runs on each frame)
ARMS: dict[str, tuple[str, bool]] = {
    "perframe_r2": (sibling_name("rcca_r2"), True),
    **{head.name: (sibling_name(variant_of(head.attention, head.recurrence).name), False) for head in VIDEO_HEADS},
}
SEED_STRIDE = 10_000_000
ALIGNED_SEEDS = 1_000_000  # the curriculum's clips use training seeds from here on, apart from the main pool's
CACHE_CHUNK = 8  # clips per step of the cache: the unit of its progress file


def _augment(frames: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The image training's augmentation, one draw per clip: a horizontal flip and a gain and offset."""
    if rng.random() < 0.5:
        frames, labels = frames[:, :, ::-1], labels[:, :, ::-1]
    frames = np.clip(frames.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20), 0, 255)
    return frames, np.ascontiguousarray(labels)


def build_cache(folder: str | Path, count: int, aligned: bool = False, log: Callable[[str], None] = print) -> Path:
    """Write (or finish writing) ``count`` training clips' backbone features, labels and panel frames;
    ``aligned``: the curriculum's clips (street_clips' aligned layout, seeds from ALIGNED_SEEDS on).

    features.npy (N, T, C, h, w) float16, labels.npy (N, T, H, W) uint8, panel.npy (N,), and
    progress.json (clips done), so an interrupted build continues where it stopped.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    progress = folder / "progress.json"
    done = json.loads(progress.read_text())["done"] if progress.is_file() else 0
    if done and json.loads(progress.read_text())["count"] != count:
        raise CCNetError(f"{folder} holds a cache of another size; use a new folder or the same --clips")
    backbone = load_video_model("default").net.backbone.eval()
    shape = (count, FRAMES, backbone.out_channels[3], HEIGHT // 8, WIDTH // 8)
    mode = "r+" if done else "w+"
    features = np.lib.format.open_memmap(folder / "features.npy", mode, np.float16, shape)
    labels = np.lib.format.open_memmap(folder / "labels.npy", mode, np.uint8, (count, FRAMES, HEIGHT, WIDTH))
    panel = np.lib.format.open_memmap(folder / "panel.npy", mode, np.int64, (count,))
    start = time.perf_counter()
    for first in range(done, count, CACHE_CHUNK):
        chunk = range(first, min(first + CACHE_CHUNK, count))
        clips = [generate_clip(i + (ALIGNED_SEEDS if aligned else 0), split="train", aligned=aligned) for i in chunk]
        pairs = [_augment(c.frames, c.labels, np.random.default_rng([i, 7, aligned])) for i, c in zip(chunk, clips)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 4, 1, 2, 3)  # B, 3, T, H, W
        with torch.inference_mode():
            out = backbone(normalise(to_frames(x), Protocol()))[3]
        features[chunk.start:chunk.stop] = out.reshape(len(chunk), FRAMES, *out.shape[1:]).numpy()
        labels[chunk.start:chunk.stop] = np.stack([p[1] for p in pairs])
        panel[chunk.start:chunk.stop] = [c.panel_frame for c in clips]
        for array in (features, labels, panel):
            array.flush()
        progress.write_text(json.dumps({"done": chunk.stop, "count": count}))
        if chunk.stop % 256 < CACHE_CHUNK or chunk.stop == count:
            log(f"cache {chunk.stop}/{count} clips, {(time.perf_counter() - start) / (chunk.stop - done):.2f} s/clip")
    return folder


def cache_ready(folder: str | Path) -> bool:
    progress = Path(folder) / "progress.json"
    if not progress.is_file():
        return False
    state = json.loads(progress.read_text())
    return state["done"] == state["count"]


@dataclass(frozen=True)
class VideoTrainConfig:
    out: str = "runs/video/rcca3d_r2_s0"
    arm: str = "rcca3d_r2"
    cache: str = "runs/video/cache"
    aligned_cache: str = "runs/video/cache_aligned"  # the curriculum's pool ("" without a curriculum)
    curriculum: float = 0.5  # share of the run that mixes in aligned clips (the panel two steps away)
    iters: int = 1200
    batch: int = 4  # clips
    lr: float = 2e-3  # the image training's rate
    weight_decay: float = 1e-4
    warmup: int = 50
    seed: int = 0
    threads: int = 1
    log_every: int = 50
    save_every: int = 100


def poly_lr(cfg: VideoTrainConfig, iteration: int) -> float:
    """Linear warm-up, then poly decay (power 0.9) to zero, as the image training."""
    if iteration < cfg.warmup:
        return cfg.lr * (iteration + 1) / cfg.warmup
    return cfg.lr * (1 - iteration / cfg.iters) ** 0.9


def aligned_share(cfg: VideoTrainConfig, iteration: int) -> float:
    """The share of aligned clips in a batch: half at the start, falling linearly to none after
    ``curriculum * iters`` iterations (as the image training's curriculum), so the rest of the run
    and every evaluation see only the three-step layout."""
    if cfg.curriculum <= 0 or not cfg.aligned_cache:
        return 0.0
    return 0.5 * max(0.0, 1.0 - iteration / (cfg.curriculum * cfg.iters))


def _pool(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, panel frames) of a finished cache, memory-mapped."""
    if not cache_ready(folder):
        raise CCNetError(f"no finished clip cache in {folder}: build it first (python -m ccnet ablation --video)")
    return tuple(np.load(Path(folder) / f"{name}.npy", mmap_mode="r") for name in ("features", "labels", "panel"))


def _batch(pools: list[tuple[np.ndarray, ...]], cfg: VideoTrainConfig,
           iteration: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features (B, C, T, h, w), labels (B, T, H, W), panel frames (B,)) drawn from (seed, iteration)."""
    rng = np.random.default_rng([cfg.seed, iteration])
    aligned = rng.random(cfg.batch) < aligned_share(cfg, iteration)
    parts = []
    for pool, take in zip(pools, (~aligned, aligned)):
        if take.any():
            index = np.sort(rng.choice(len(pool[2]), int(take.sum()), replace=False))
            parts.append([array[index] for array in pool])
    features, labels, panel = (np.concatenate(arrays) for arrays in zip(*parts))
    return (torch.from_numpy(features.astype(np.float32)).transpose(1, 2),
            torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(panel))


def hidden_context_accuracy(logits: torch.Tensor, labels: torch.Tensor, panel: torch.Tensor) -> float:
    """Share of vehicle pixels given the right one of car and truck, in frames without the panel."""
    frames = labels.shape[1]
    pred = torch.nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear").argmax(1)
    hidden = (torch.arange(frames)[None] != panel[:, None]).flatten()
    labels = labels.flatten(0, 1)[hidden]
    vehicle = torch.isin(labels, torch.tensor(scenes.CONTEXT_CLASSES))
    return float((pred[hidden][vehicle] == labels[vehicle]).float().mean()) if vehicle.any() else float("nan")


def initial_head(arm: str) -> ClipHead:
    """The arm's head: its family member's image head, over the clip or on each frame."""
    if arm not in ARMS:
        raise CCNetError(f"unknown video arm {arm!r}: one of {', '.join(ARMS)}")
    spec, per_frame = ARMS[arm]
    return load_video_model(spec, per_frame=per_frame).net.decode_head


def train_video(cfg: VideoTrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train (or resume) one arm's head on the cache and return its checkpoint (head weights only)."""
    torch.set_num_threads(cfg.threads)
    pools = [_pool(cfg.cache)] + ([_pool(cfg.aligned_cache)] if aligned_share(cfg, 0) > 0 else [])
    out, head = Path(cfg.out), initial_head(cfg.arm)
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, elapsed, last = 0, 0.0, out / "last.pt"
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        if state["train_config"] != asdict(cfg):
            raise CCNetError(f"{last} was written with different settings; use a new --out or the same ones")
        head.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        start, elapsed = state["iteration"], state["seconds"]
        log(f"resumed from {last} at iteration {start}")
    head.train()
    tick, window, begun = time.perf_counter(), [], time.perf_counter()
    for iteration in range(start, cfg.iters):
        torch.manual_seed(cfg.seed * SEED_STRIDE + iteration)  # dropout identical after a resume
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(cfg, iteration)
        x, target, shown = _batch(pools, cfg, iteration)
        logits = to_frames(head(x)[0])
        loss = segmentation_loss(logits, target.flatten(0, 1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window.append((loss.item(), hidden_context_accuracy(logits.detach(), target, shown)))
        done = iteration + 1
        if done % cfg.log_every == 0 or done == cfg.iters:
            now = time.perf_counter()
            elapsed, tick = elapsed + now - tick, now
            losses, accuracy = zip(*window)
            log(f"it {done}/{cfg.iters} loss {np.mean(losses):.3f} hidden-frame context-acc {np.nanmean(accuracy):.2f} "
                f"lr {poly_lr(cfg, iteration):.2e} {(now - begun) / (done - start):.2f} s/it")
            window = []
        if done % cfg.save_every == 0 or done == cfg.iters:
            save_checkpoint(last, {"state_dict": head.state_dict(), "optimizer": optimizer.state_dict(),
                                   "iteration": done, "seconds": elapsed, "train_config": asdict(cfg)})
    final = out / "model.pt"
    meta = {"arm": cfg.arm, "head": head.variant.name, "init": ARMS[cfg.arm][0],
            "train": {**asdict(cfg), "train_seconds": round(elapsed, 1)}}
    save_checkpoint(final, {"meta": meta, "state_dict": {HEAD_PREFIX + k: v for k, v in head.state_dict().items()}})
    log(f"wrote {final} ({elapsed / 60:.1f} min of training)")
    return final

"""`python -m ccnet ablation --video`: how many 3D criss-cross steps a cue that only time can carry needs.

Every arm fine-tunes one head (ccnet.experiments.video_train.ARMS: the image R = 2 head on each
frame, 3D criss-cross with R = 1, 2, 3, space-time non-local) on the same frozen backbone, clip
pool, seeds and budget, then is scored on held-out clips (split "eval") through VideoPredictor,
the path users run. The score that matters is the temporal context mIoU: car and truck IoU in
the frames where the panel is hidden, whose vehicles are three steps from it
(ccnet.experiments.street_clips). Runs are separate processes (a crash loses one run, and each
resumes from its last checkpoint).
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ccnet.errors import CCNetError
from ccnet.experiments import scenes
from ccnet.experiments.ablation import summarise
from ccnet.experiments.evaluate import SEED_STRIDE
from ccnet.experiments.metrics import confusion_matrix, iou_per_class, mean_iou
from ccnet.experiments.street_clips import FRAMES, HEIGHT, WIDTH, generate_clip
from ccnet.experiments.video_train import ARMS, VideoTrainConfig, build_cache, initial_head, train_video
from ccnet.inference.video import VideoPredictor
from ccnet.nn.cost import measure_peak_memory
from ccnet.nn.variants import BY_NAME
from ccnet.nn.video import VideoCCNet
from ccnet.weights.checkpoints import read_checkpoint
from ccnet.weights.load import LoadedModel, load_model

LABELS = {"perframe_r2": "R = 2 per frame (image head)", **{arm: BY_NAME[arm].label for arm in ARMS if arm in BY_NAME}}


def _context(matrix: np.ndarray) -> tuple[float, float]:
    """(mean IoU of car and truck, share of their pixels given the right one of the two)."""
    iou = iou_per_class(matrix)[list(scenes.CONTEXT_CLASSES)]
    rows = matrix[list(scenes.CONTEXT_CLASSES)]
    right = sum(matrix[c, c] for c in scenes.CONTEXT_CLASSES)
    return float(np.nanmean(iou)), float(right / max(1, rows.sum()))


def clip_report(loaded: LoadedModel, count: int, seed: int, device: str = "cpu", aligned: bool = False) -> dict:
    """Scores on ``count`` held-out clips (clip i of ``seed``: eval seed ``seed * 100000 + i``):
    mIoU over every frame, and car/truck IoU and accuracy in the frames without the panel
    (``temporal_*``, the cue three steps away) and in the panel's frame (``panel_frame_*``).
    ``aligned`` renders the same clips in the curriculum's layout (the panel over a vehicle's
    columns, two steps from it in the other frames): "cannot reach" against "never learned"."""
    predictor = VideoPredictor(loaded.net, loaded.protocol, device=device)
    classes = len(scenes.CLASS_NAMES)
    total, hidden, shown = (np.zeros((classes, classes), np.int64) for _ in range(3))
    for i in range(count):
        clip = generate_clip(seed * SEED_STRIDE + i, split="eval", aligned=aligned)
        masks = predictor.predict(clip.frames, with_attention=False).masks
        for t in range(FRAMES):
            matrix = confusion_matrix(masks[t], clip.labels[t], classes)
            total += matrix
            (shown if t == clip.panel_frame else hidden)[...] += matrix
    iou = iou_per_class(total)
    (temporal, temporal_acc), (panel, panel_acc) = _context(hidden), _context(shown)
    return {"clips": count, "eval_seed": seed, "aligned": aligned, "miou": mean_iou(iou),
            "per_class": {name: None if np.isnan(v) else float(v) for name, v in zip(scenes.CLASS_NAMES, iou)},
            "temporal_context_miou": temporal, "temporal_context_accuracy": temporal_acc,
            "panel_frame_context_miou": panel, "panel_frame_context_accuracy": panel_acc}


def load_run(path: str | Path) -> LoadedModel:
    """A trained arm's head on the default backbone, as a LoadedModel of a VideoCCNet."""
    weights, meta = read_checkpoint(path)
    base = load_model("default")
    net = VideoCCNet(base.net.config, BY_NAME[meta["head"]])
    state = {k: v for k, v in base.net.state_dict().items() if k.startswith("backbone.")}
    net.load_state_dict({**state, **weights}, strict=True)
    return replace(base, name=f"{meta['arm']} ({Path(path).parent.name})", net=net.eval())


def head_cost(arm: str) -> dict:
    """FLOPs and peak memory of one forward of the head on one clip's features (5 x 16 x 32 cells)."""
    head = initial_head(arm).eval()
    feature = torch.randn(1, head.convs[0].conv.in_channels, FRAMES, HEIGHT // 8, WIDTH // 8)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        head(feature)
    with torch.inference_mode():
        memory = measure_peak_memory(lambda: head(feature), torch.device("cpu"))
    return {"grid": [FRAMES, HEIGHT // 8, WIDTH // 8], "head_gflops": counter.get_total_flops() / 1e9,
            "head_peak_bytes": memory}


def _train_one(cfg: VideoTrainConfig) -> str:
    """One run in its own process, logging to its folder's train.log."""
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    with open(Path(cfg.out) / "train.log", "a") as log:
        return str(train_video(cfg, log=lambda msg: print(msg, file=log, flush=True)))


def run(args: argparse.Namespace) -> dict:
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = args.arms.split(",") if args.arms else list(ARMS)
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown:
        raise CCNetError(f"unknown video arm {unknown[0]!r}: one of {', '.join(ARMS)}")
    out, log = Path(args.out), (lambda msg: print(msg, file=sys.stderr, flush=True))
    build_cache(out / "cache", args.clips, log=log)
    if args.curriculum > 0:
        build_cache(out / "cache_aligned", args.aligned_clips, aligned=True, log=log)
    configs = {(arm, seed): VideoTrainConfig(
        out=str(out / f"{arm}_s{seed}"), arm=arm, cache=str(out / "cache"), aligned_cache=str(out / "cache_aligned"),
        curriculum=args.curriculum, iters=args.iters, batch=args.batch, lr=args.lr, seed=seed, threads=args.threads)
        for seed in seeds for arm in arms}
    todo = [cfg for cfg in configs.values() if not (Path(cfg.out) / "model.pt").is_file()]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        list(pool.map(_train_one, todo))
    results = {}
    for arm in arms:
        runs = []
        for seed in seeds:
            path = Path(configs[(arm, seed)].out) / "model.pt"
            loaded = load_run(path)
            report = clip_report(loaded, args.eval_clips, args.eval_seed)
            aligned = clip_report(loaded, args.eval_clips, args.eval_seed, aligned=True)["temporal_context_miou"]
            runs.append({"seed": seed, "train_seconds": read_checkpoint(path)[1]["train"]["train_seconds"], **report,
                         "aligned_temporal_context_miou": aligned})
            log(f"{arm} seed {seed}: miou {report['miou']:.3f} temporal context {report['temporal_context_miou']:.3f}"
                f" (panel frame {report['panel_frame_context_miou']:.3f}, panel two steps away {aligned:.3f})")
        results[arm] = {"label": LABELS[arm], "init": ARMS[arm][0], "runs": runs, **head_cost(arm),
                        **{key: summarise([r[key] for r in runs]) for key in (
                            "miou", "temporal_context_miou", "temporal_context_accuracy", "panel_frame_context_miou",
                            "aligned_temporal_context_miou", "train_seconds")}}
    budget = {"iters": args.iters, "batch_clips": args.batch, "frames": FRAMES, "frame_size": [HEIGHT, WIDTH],
              "pool_clips": args.clips, "aligned_pool_clips": args.aligned_clips, "curriculum": args.curriculum,
              "lr": args.lr, "seeds": seeds, "threads": args.threads, "jobs": args.jobs,
              "eval_clips": args.eval_clips, "eval_seed": args.eval_seed}
    return {"budget": budget, "arms": results}


def markdown_table(result: dict) -> str:
    """One row per arm, mean ± spread over seeds."""
    rows = ["| arm | temporal context mIoU (panel hidden) | context mIoU, panel frame | temporal context, panel two "
            "steps away | mIoU (all frames) | head GFLOPs | head peak memory | train min |",
            "|---|---|---|---|---|---|---|---|"]

    def cell(score: dict) -> str:
        return f"{score['mean']:.3f} ± {score['spread']:.3f}"

    for r in result["arms"].values():
        scores = " | ".join(cell(r[key]) for key in ("temporal_context_miou", "panel_frame_context_miou",
                                                      "aligned_temporal_context_miou", "miou"))
        rows.append(f"| {r['label']} | {scores} | {r['head_gflops']:.3f} | {r['head_peak_bytes'] / 2**20:.1f} MiB | "
                    f"{r['train_seconds']['mean'] / 60:.1f} |")
    return "\n".join(rows)

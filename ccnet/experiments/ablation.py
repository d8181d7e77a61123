"""`python -m ccnet ablation`: the paper's central claim, reproduced on the synthetic scenes.

Every arm trains the same small CCNet with the same data, seeds and iteration budget and
differs only in its head: no attention, criss-cross with R = 1, 2, 3, non-local, and R = 2
with the category consistent loss. Arms are trained in parallel subprocesses (resumable),
then scored on held-out scenes; the head's cost is measured on the same feature size. Under
torchrun the (arm, seed) runs are spread over the ranks and rank 0 gathers the scores.

``--frozen-backbone`` and ``--backbone FILE`` make the arms differ in nothing but the head: every
arm trains only its head on the same frozen backbone, either one trained first per seed with car
and truck merged (so it has no reason to carry the cue across the image) or a given model's.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ccnet.experiments.distributed import SINGLE, Group, plain_environment
from ccnet.experiments.evaluate import evaluate_synthetic
from ccnet.inference.geometry import grid_size
from ccnet.nn.model import EMBEDDED_CONFIG, CCNet
from ccnet.nn.variants import BY_NAME, IMAGE_HEADS
from ccnet.weights.load import load_file

# every head of the variants table, and R = 2 with the category consistent loss
ARMS: dict[str, list[str]] = {**{head.name: head.train_flags() for head in IMAGE_HEADS},
                              "rcca_r2_ccl": [*BY_NAME["rcca_r2"].train_flags(), "--ccl"]}


BACKBONE_STAGE = ["--attention", "none", "--merge-context", "--curriculum", "0"]


def run_folder(args: argparse.Namespace, name: str, seed: int) -> Path:
    return Path(args.out) / f"{name}_s{seed}"


def train_run(name: str, seed: int, flags: list[str], iters: int, args: argparse.Namespace,
              device: str = "cpu") -> Path:
    """Train one run in a subprocess (so runs go in parallel); skipped when already finished.
    The subprocess is a plain one-process run even when this process is a torchrun rank."""
    out = run_folder(args, name, seed)
    if (out / "model.pt").is_file():
        return out / "model.pt"
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "ccnet", "train", "--out", str(out), "--iters", str(iters),
               "--seed", str(seed), "--threads", str(args.threads), "--batch", str(args.batch),
               "--height", str(args.height), "--width", str(args.width), "--gamma-init", str(args.gamma_init),
               "--curriculum", str(args.curriculum), "--resume", *flags]
    if device != "cpu":
        command += ["--device", device]
    with open(out / "train.log", "a") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, env=plain_environment())
    return out / "model.pt"


def backbone_for(template: str, seed: int) -> str:
    """The frozen backbone's file for this seed: ``{seed}`` in the template is replaced."""
    return template.replace("{seed}", str(seed))


def train_arms(arms: list[str], seeds: list[int], args: argparse.Namespace,
               group: Group = SINGLE) -> dict[tuple[str, int], Path]:
    """Every (arm, seed) run of this rank (all of them in a plain run), end to end or (``--backbone``,
    ``--frozen-backbone``) head only.

    ``--frozen-backbone`` first trains each seed's backbone with the plain head and car and truck
    as one class, so nothing rewards it for carrying the cue; ``--backbone FILE`` gives every arm
    that checkpoint's backbone (``{seed}`` in FILE: each seed its own). Under torchrun rank r takes
    jobs r, r + N, ... of each stage, on its own device; every rank waits for the backbones.
    """
    device = group.device_for(getattr(args, "device", "cpu"))
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        backbones = {seed: ["--backbone", backbone_for(args.backbone, seed)] if args.backbone else []
                     for seed in seeds}
        if args.frozen_backbone:
            group.checked(lambda: list(pool.map(
                lambda seed: train_run("backbone", seed, BACKBONE_STAGE, args.backbone_iters, args, device),
                group.shard(seeds))))
            backbones = {seed: ["--backbone", str(run_folder(args, "backbone", seed) / "model.pt")]
                         for seed in seeds}
        jobs = group.shard([(arm, seed) for seed in seeds for arm in arms])
        paths = group.checked(lambda: list(pool.map(
            lambda job: train_run(job[0], job[1], ARMS[job[0]] + backbones[job[1]], args.iters, args, device),
            jobs)))
        return dict(zip(jobs, paths))


def head_cost(arm: str, height: int, width: int) -> dict:
    """FLOPs and peak memory of one forward of the decode head on this input size's feature."""
    from ccnet.nn.cost import measure_peak_memory

    model = arm_model(arm)
    grid = grid_size(height, width)
    feature = torch.randn(1, model.backbone.out_channels[3], *grid)
    head = model.decode_head.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        head(feature)
    with torch.inference_mode():
        memory = measure_peak_memory(lambda: head(feature), torch.device("cpu"))
    return {"grid": list(grid), "head_gflops": counter.get_total_flops() / 1e9, "head_peak_bytes": memory}


def arm_model(arm: str) -> CCNet:
    """The arm's network with random weights (cost does not depend on the weights)."""
    return CCNet(BY_NAME[arm.removesuffix("_ccl")].config(EMBEDDED_CONFIG))


def summarise(values: list[float]) -> dict:
    """Mean and spread (half the range) over seeds."""
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "spread": float((arr.max() - arr.min()) / 2), "values": arr.tolist()}


def score_run(arm: str, seed: int, path: Path, args: argparse.Namespace, device: str, group: Group) -> dict:
    """One run's scores on the held-out scenes, in the two-step layout and with the cue one step away."""
    loaded = load_file(path)
    report, one_step = (evaluate_synthetic(loaded, args.eval_scenes, args.eval_seed, args.eval_height,
                                           args.eval_width, device=device, aligned=aligned)
                        for aligned in (False, True))
    group.log(f"{arm} seed {seed}: miou {report['miou']:.3f} context {report['context_miou']:.3f} "
              f"(cue one step away: {one_step['context_miou']:.3f})")
    return {"seed": seed, "miou": report["miou"], "context_miou": report["context_miou"],
            "per_class": report["per_class"], "aligned_context_miou": one_step["context_miou"]}


def run(args: argparse.Namespace, group: Group = SINGLE) -> dict | None:
    """Train and score every arm; under torchrun the ranks share the runs and rank 0 gets the
    gathered table (the others get None)."""
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = args.arms.split(",") if args.arms else list(ARMS)
    paths = train_arms(arms, seeds, args, group)
    device = group.device_for(getattr(args, "device", "cpu"))
    order = sorted(paths, key=lambda job: (list(ARMS).index(job[0]), seeds.index(job[1])))  # the table's order
    mine = group.checked(lambda: {job: score_run(*job, paths[job], args, device, group) for job in order})
    scores = {job: score for part in group.all_gather(mine) for job, score in part.items()}
    if not group.is_main:
        return None
    results = {}
    for arm in sorted(arms, key=list(ARMS).index):
        runs = [scores[(arm, seed)] for seed in seeds]
        results[arm] = {
            "miou": summarise([s["miou"] for s in runs]),
            "context_miou": summarise([s["context_miou"] for s in runs]),
            "aligned_context_miou": summarise([s["aligned_context_miou"] for s in runs]),
            "runs": runs,
            **head_cost(arm, args.eval_height, args.eval_width),
        }
    budget = {k: getattr(args, k) for k in ("iters", "batch", "height", "width", "gamma_init", "curriculum", "seeds",
                                            "frozen_backbone", "backbone_iters", "backbone",
                                            "eval_scenes", "eval_seed", "eval_height", "eval_width")}
    if group.distributed:
        budget["world_size"] = group.world_size
    return {"budget": budget, "arms": results}


def markdown_table(result: dict) -> str:
    """One row per arm, mean ± spread over seeds (the one-step column only where it was scored)."""
    rows = ["| arm | mIoU | context mIoU (car/truck) | context mIoU, cue one step away | head GFLOPs "
            "| head peak memory |", "|---|---|---|---|---|---|"]

    def cell(score: dict | None) -> str:
        return "–" if score is None else f"{score['mean']:.3f} ± {score['spread']:.3f}"

    for arm, r in result["arms"].items():
        rows.append(
            f"| {arm} | {cell(r['miou'])} | {cell(r['context_miou'])} | {cell(r.get('aligned_context_miou'))} | "
            f"{r['head_gflops']:.3f} | {r['head_peak_bytes'] / 2**20:.1f} MiB |"
        )
    return "\n".join(rows)

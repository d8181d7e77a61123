"""`python -m tools.cue_probe MODEL`: how far the backbone alone carries the long-range cue.

Why: the ablation asks whether criss-cross attention carries the panel's colour to the vehicles.
A backbone whose receptive field spans the feature grid could carry it instead. This renders
held-out scenes with each cue (only the panel's pixels differ), and reports the relative change of
the backbone's output feature, averaged by distance (in feature cells, Chebyshev) from the panel:
near zero far from the panel means the backbone keeps the cue local and the head must fetch it.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from ccnet.experiments import scenes
from ccnet.inference.geometry import box_cells
from ccnet.inference.predictor import preprocess
from ccnet.weights.load import LoadedModel, load_model
from tools._cli import run


def cue_spread(model: LoadedModel, count: int = 6, seed: int = 0, max_distance: int = 11,
               size: tuple[int, int] = (128, 256)) -> list[float]:
    """Mean relative L2 change of the backbone feature per distance 0..max_distance from the panel."""
    sums, counts = np.zeros(max_distance + 1), np.zeros(max_distance + 1)
    net = model.net.eval()
    for index in range(count):
        pair = [scenes.generate_scene(seed * 1000 + index, *size, split="eval", cue=cue) for cue in scenes.CUES]
        with torch.inference_mode():
            car, truck = (net.backbone(preprocess(s.image, model.protocol))[3][0] for s in pair)
        change = ((car - truck).norm(dim=0) / car.norm(dim=0).clamp_min(1e-6)).numpy()
        top, bottom, left, right = box_cells(pair[0].sign_box, size, change.shape)
        rows, cols = np.mgrid[0:change.shape[0], 0:change.shape[1]]
        distance = np.maximum(np.maximum(top - rows, rows - bottom), np.maximum(left - cols, cols - right)).clip(0)
        for d in range(max_distance + 1):
            mask = distance == d
            sums[d] += change[mask].sum()
            counts[d] += mask.sum()
    return [float(s / c) if c else float("nan") for s, c in zip(sums, counts)]


def probe(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    profile = cue_spread(load_model(args.model), args.scenes, args.seed)
    print(json.dumps({"model": args.model, "change_by_distance": [round(v, 4) for v in profile]}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cue_probe", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="'default', a preset name or a checkpoint file trained on the scenes")
    parser.add_argument("--scenes", type=int, default=6, help="held-out scene pairs")
    parser.add_argument("--seed", type=int, default=0)
    return run(parser, probe, argv)


if __name__ == "__main__":
    sys.exit(main())

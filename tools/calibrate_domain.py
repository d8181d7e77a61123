"""`python -m tools.calibrate_domain`: the embedded model's domain check (ccnet/inference/domain.py),
calibrated on synthetic scenes (assets/domain_default.json).

The layout prior counts the training scenes' labels. The thresholds come from held-out scenes
only, each rendered at three sizes and once more as a JPEG (what a visitor who saves and
re-uploads a demo sends): the largest entropy times ENTROPY_MARGIN and the smallest layout score
minus LAYOUT_MARGIN. Photos are scored for the report and never move a threshold.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ccnet.cli.outputs import checked_output, write_text
from ccnet.experiments import scenes
from ccnet.experiments.evaluate import synthetic_seeds
from ccnet.inference.domain import DomainCheck, domain_scores, log_row_prior
from ccnet.inference.images import decode_image
from ccnet.inference.predictor import Predictor
from ccnet.weights.load import load_model
from tools._cli import run

ENTROPY_MARGIN = 1.5  # x the largest held-out entropy
LAYOUT_MARGIN = 1.0  # nats below the smallest held-out layout score
SIZES = ((192, 384), (256, 512), (512, 1024))
KNOWN = "synthetic street scenes"


def probabilities(predictor: Predictor, image: np.ndarray) -> torch.Tensor:
    """(K, H, W) class probabilities at the image's size, as the app computes them."""
    return torch.softmax(predictor.predict(image, with_attention=False).logits, dim=0)


def jpeg(image: np.ndarray, quality: int = 75) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return decode_image(buffer.getvalue())


def held_out_images(count: int, seed: int) -> Iterable[tuple[str, np.ndarray]]:
    """(name, image) of every held-out variant: each scene at each size, and the middle one as JPEG."""
    for scene_seed in synthetic_seeds(seed, count):
        for height, width in SIZES:
            image = scenes.generate_scene(scene_seed, height, width, split="eval").image
            yield f"eval {scene_seed} {width}x{height}", image
            if (height, width) == SIZES[1]:
                yield f"eval {scene_seed} {width}x{height} jpeg", jpeg(image)


def calibrate(predictor: Predictor, count: int = 64, seed: int = 1, train_scenes: int = 64,
              photos: Iterable[Path] = (), progress: Callable[[str], None] | None = None) -> dict:
    """The check's prior and thresholds, with every held-out scene's and photo's scores."""
    labels = [scenes.generate_scene(s, split="train").label for s in range(train_scenes)]
    log_prior = log_row_prior(labels, len(scenes.CLASS_NAMES))
    held_out = {}
    for name, image in held_out_images(count, seed):
        held_out[name] = domain_scores(probabilities(predictor, image), log_prior)
        if progress:
            progress(name)
    entropy = max(s.entropy for s in held_out.values())
    layout = min(s.layout for s in held_out.values())
    check = DomainCheck(log_prior, round(entropy * ENTROPY_MARGIN, 4), round(layout - LAYOUT_MARGIN, 4), KNOWN)
    photo_rows = [_photo_row(check, predictor, path) for path in sorted(photos)]
    return {
        "check": check.to_dict(),
        "rule": f"max_entropy = {ENTROPY_MARGIN} x the largest held-out entropy; "
                f"min_layout = the smallest held-out layout - {LAYOUT_MARGIN}",
        "held_out": {"scenes": count, "seed": seed, "images": len(held_out), "sizes": [list(s) for s in SIZES],
                     "max_entropy": entropy, "min_layout": layout,
                     "false_alarms": sum(check.verdict(s).out_of_domain for s in held_out.values())},
        "train_scenes": train_scenes,
        "photos": photo_rows,
        "photos_flagged": f"{sum(r['out_of_domain'] for r in photo_rows)}/{len(photo_rows)}",
    }


def _photo_row(check: DomainCheck, predictor: Predictor, path: Path) -> dict:
    scores = domain_scores(probabilities(predictor, decode_image(path)), check.log_prior)
    return {"file": path.name, "entropy": scores.entropy, "layout": scores.layout,
            "out_of_domain": check.verdict(scores).out_of_domain}


def calibrate_command(args: argparse.Namespace) -> int:
    out = checked_output(args.out, "--out", (".json",))
    if args.threads:
        torch.set_num_threads(args.threads)
    photos = [p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".png")] if args.photos else []
    loaded = load_model(args.model)
    predictor = Predictor(loaded.net, loaded.protocol, "cpu")
    report = calibrate(predictor, args.scenes, args.seed, photos=photos)
    report["model"] = args.model
    write_text(out, json.dumps(report, indent=1) + "\n")
    held = report["held_out"]
    print(f"thresholds: entropy > {report['check']['max_entropy']}, layout < {report['check']['min_layout']}; "
          f"false alarms on {held['images']} held-out images: {held['false_alarms']}; "
          f"photos flagged: {report['photos_flagged']} -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.calibrate_domain",
                                     description="the embedded model's out-of-domain thresholds")
    parser.add_argument("--model", default="default", help="a model trained on the synthetic scenes")
    parser.add_argument("--scenes", type=int, default=64, help="held-out scenes (each at 3 sizes and as JPEG)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--photos", type=Path, help="a folder of real photos to report on (never calibrated on)")
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.add_argument("--out", type=Path, default=Path("assets/domain_default.json"))
    return run(parser, calibrate_command, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Calibrating the embedded model's domain check (ccnet/inference/domain.py) on synthetic scenes.

The layout prior counts the training scenes' labels. The thresholds come from held-out scenes
only, each rendered at three sizes and once more as a JPEG (what a visitor who saves and
re-uploads a demo sends): the largest entropy times ENTROPY_MARGIN and the smallest layout score
minus LAYOUT_MARGIN. Photos are scored for the report and never move a threshold.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ccnet.experiments import scenes
from ccnet.experiments.evaluate import synthetic_seeds
from ccnet.inference.domain import DomainCheck, domain_scores, log_row_prior
from ccnet.inference.images import decode_image
from ccnet.inference.predictor import Predictor

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

"""Calibration: thresholds from held-out scenes only, by the documented rule."""
from __future__ import annotations

import pytest
import torch

from ccnet.experiments.evaluate import synthetic_seeds
from ccnet.experiments.scenes import generate_scene
from ccnet.inference.domain import domain_scores, log_row_prior
from ccnet.inference.predictor import Predictor
from ccnet.project import ROOT
from ccnet.weights.load import load_model
from tools import calibrate_domain as calibration


def test_thresholds_follow_the_rule_and_photos_never_move_them(monkeypatch):
    monkeypatch.setattr(calibration, "SIZES", ((128, 256), (96, 192)))
    loaded = load_model("default")
    predictor = Predictor(loaded.net, loaded.protocol, "cpu")
    photos = sorted((ROOT / "tests" / "data" / "photos").glob("*.jpg"))[:2]
    with_photos = calibration.calibrate(predictor, count=2, seed=3, train_scenes=3, photos=photos)
    without = calibration.calibrate(predictor, count=2, seed=3, train_scenes=3)
    assert with_photos["check"] == without["check"] and len(with_photos["photos"]) == 2

    prior = log_row_prior([generate_scene(s, split="train").label for s in range(3)], 11)
    entropies, layouts = [], []
    for seed in synthetic_seeds(3, 2):
        for height, width in ((128, 256), (96, 192)):
            image = generate_scene(seed, height, width, split="eval").image
            variants = [image] + ([calibration.jpeg(image)] if (height, width) == (96, 192) else [])
            for variant in variants:
                probabilities = torch.softmax(predictor.predict(variant, with_attention=False).logits, 0)
                scores = domain_scores(probabilities, prior)
                entropies.append(scores.entropy)
                layouts.append(scores.layout)
    assert with_photos["held_out"]["images"] == len(entropies) == 6
    assert with_photos["check"]["max_entropy"] == pytest.approx(1.5 * max(entropies), abs=1e-3)
    assert with_photos["check"]["min_layout"] == pytest.approx(min(layouts) - 1.0, abs=1e-3)

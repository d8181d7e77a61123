"""The shipped default model: loads offline with weights_only and really segments street scenes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ccnet import scenes
from ccnet.evaluate import evaluate_synthetic
from ccnet.images import decode_image
from ccnet.inference import Predictor
from ccnet.registry import DEFAULT_CHECKPOINT, load_model

DEMOS = Path(__file__).resolve().parent.parent / "demos"


@pytest.fixture(scope="module")
def default_model():
    assert DEFAULT_CHECKPOINT.is_file(), "assets/ccnet_default.pt is missing"
    assert DEFAULT_CHECKPOINT.stat().st_size <= 10 * 2**20
    return load_model("default")


def test_default_model_is_the_small_ccnet(default_model):
    config = default_model.net.config
    assert (config.depth, config.attention, config.recurrence) == (18, "cca", 2)
    assert default_model.classes == scenes.CLASS_NAMES
    assert default_model.palette == scenes.PALETTE


@pytest.mark.parametrize("name", ["street_seed1_car.png", "street_seed2_truck.png"])
def test_segments_a_demo_scene_with_the_expected_classes(default_model, name):
    image = decode_image(DEMOS / name)
    label = decode_image(DEMOS / name.replace(".png", "_label.png"))
    pred = Predictor(default_model.net, default_model.protocol, device="cpu").predict(image)
    mask = pred.mask
    present = {default_model.classes[c] for c in np.unique(mask) if (mask == c).mean() > 0.01}
    assert {"road", "sky", "building"} <= present
    # the vehicles are found as vehicles (car or truck; which one needs the distant cue)
    vehicle = np.zeros(label.shape[:2], bool)
    for index in scenes.CONTEXT_CLASSES:
        vehicle |= (label == scenes.PALETTE[index]).all(-1)
    assert np.isin(mask[vehicle], scenes.CONTEXT_CLASSES).mean() > 0.5


def test_held_out_scores_stay_near_the_model_card(default_model):
    report = evaluate_synthetic(default_model, count=12, seed=7, device="cpu")
    assert report["miou"] >= 0.6, report

"""The shipped default model: loads offline with weights_only and really segments street scenes."""
from __future__ import annotations

import numpy as np
import pytest

from ccnet.experiments import scenes
from ccnet.experiments.evaluate import evaluate_synthetic
from ccnet.inference.explain import attention_at
from ccnet.inference.geometry import box_cells
from ccnet.inference.images import decode_image
from ccnet.inference.predictor import Predictor
from ccnet.project import DEFAULT_CHECKPOINT, DEMOS
from ccnet.weights.load import load_model


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
    assert report["miou"] >= 0.7 and report["context_miou"] >= 0.6, report


@pytest.fixture(scope="module")
def cue_pairs(default_model):
    """Each demo scene rendered with both cues (only the panel's pixels differ), predicted."""
    predictor = Predictor(default_model.net, default_model.protocol, device="cpu")
    return [(scene, predictor.predict(scene.image))
            for seed in range(1, 9) for cue in scenes.CUES
            for scene in [scenes.generate_scene(seed, split="demo", cue=cue)]]


def test_the_distant_cue_decides_car_or_truck(cue_pairs):
    """The long-range case: the vehicles' majority class follows the panel, which shares no row
    or column with them; the same scene with the other panel colour flips it."""
    right = 0
    for scene, prediction in cue_pairs:
        votes = prediction.mask[np.isin(scene.label, scenes.CONTEXT_CLASSES)]
        want, other = (scenes.CAR, scenes.TRUCK) if scene.cue == "car" else (scenes.TRUCK, scenes.CAR)
        right += int((votes == want).sum() > (votes == other).sum())
    assert right >= 15, f"{right} of {len(cue_pairs)} scenes follow the cue"


def test_two_attention_steps_reach_the_panel_that_one_step_cannot(cue_pairs):
    """From a vehicle's centre, step 1 gives the panel exactly nothing (not on its cross); the
    composed map of both steps gives it several times its uniform share."""
    ratios = []
    for scene, prediction in cue_pairs:
        (h, w), (height, width) = prediction.grid, scene.label.shape
        top, bottom, left, right = box_cells(scene.sign_box, (height, width), (h, w))
        panel = np.zeros((h, w), bool)
        panel[top:bottom + 1, left:right + 1] = True
        vx0, vy0, vx1, vy1 = scene.vehicle_boxes[0]
        maps = attention_at(prediction.attention, prediction.grid, (height, width), (vx0 + vx1) // 2, (vy0 + vy1) // 2)
        assert maps.steps[0][panel].sum() == 0
        ratios.append(maps.composed[panel].sum() / (panel.sum() / (h * w)))
    assert np.median(ratios) > 3, ratios

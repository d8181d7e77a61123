"""The shipped video heads: small, weights only, every head on default's exact backbone, trained (not
the image head it started from), and default:video the 3D criss-cross head the ablation ranked best."""
from __future__ import annotations

import json

import numpy as np
import torch

from ccnet.experiments.scene_classes import CAR, LIGHT, SIGN, TRUCK
from ccnet.experiments.street_clips import generate_clip
from ccnet.experiments.video_train import initial_head
from ccnet.inference.video import VideoPredictor, explain_clip_pixel
from ccnet.project import ASSETS
from ccnet.weights.checkpoints import read_checkpoint
from ccnet.weights.load import load_model
from ccnet.weights.video import VIDEO_FILE, load_video_model


def test_the_file_is_small_and_holds_heads_only():
    assert VIDEO_FILE.stat().st_size <= 5e6
    weights, meta = read_checkpoint(VIDEO_FILE)  # weights_only=True
    assert all(key.split(".", 1)[1].startswith("decode_head.") for key in weights)
    assert meta["backbone"] == "default" and meta["best"] in meta["arms"]


def test_default_video_is_the_best_3d_criss_cross_head_of_the_ablation():
    result = json.loads((ASSETS / "video_ablation.json").read_text())
    _, meta = read_checkpoint(VIDEO_FILE)
    candidates = [arm for arm in result["arms"] if arm.startswith("rcca3d")]
    assert meta["best"] == max(candidates, key=lambda arm: result["arms"][arm]["temporal_context_miou"]["mean"])
    assert load_video_model("default:video").net.head_variant.kind == "criss-cross-3d"


def test_every_shipped_head_is_trained_on_default_backbone():
    base = load_model("default").net.state_dict()
    _, meta = read_checkpoint(VIDEO_FILE)
    for arm in meta["arms"]:
        state = load_video_model(f"default:{arm}").net.state_dict()
        assert all(torch.equal(state[k], v) for k, v in base.items() if k.startswith("backbone."))
        start = initial_head(arm).state_dict()
        assert not torch.equal(state["decode_head.conv_seg.weight"], start["conv_seg.weight"])


def test_default_video_reaches_the_panel_from_a_hidden_frame_where_r2_cannot():
    """On demo clips, the composed map of a vehicle in a frame without the panel gives the panel's cells
    (three steps away) weight at R = 3, and exactly none at R = 2 (the reach, on the shipped weights)."""
    models = {"r3": load_video_model("default:video"), "r2": load_video_model("default:rcca3d_r2")}
    assert [m.net.head_variant.steps for m in models.values()] == [3, 2]
    weights = {name: [] for name in models}
    for seed in range(3):
        clip = generate_clip(seed, split="demo")
        panel = np.zeros((5, 16, 32), bool)
        ys, xs = np.nonzero(np.isin(clip.labels[clip.panel_frame], [SIGN, LIGHT]))
        panel[clip.panel_frame, ys // 8, xs // 8] = True
        hidden = (clip.panel_frame + 2) % 5
        ys, xs = np.nonzero(np.isin(clip.labels[hidden], [CAR, TRUCK]))
        for name, loaded in models.items():
            prediction = VideoPredictor(loaded.net, loaded.protocol, "cpu").predict(clip.frames)
            maps = explain_clip_pixel(prediction, hidden, int(xs[len(xs) // 2]), int(ys[len(ys) // 2]))
            weights[name].append(float(maps.composed[panel].sum()))
    assert min(weights["r3"]) > 0 and max(weights["r2"]) == 0

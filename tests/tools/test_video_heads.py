"""The video heads' asset: collected from a video ablation's runs, loaded by name on default's backbone."""
from __future__ import annotations

import json

import pytest
import torch

from ccnet.errors import CCNetError
from ccnet.experiments.video_train import initial_head
from ccnet.nn.video import VideoCCNet
from ccnet.weights.checkpoints import save_checkpoint
from ccnet.weights.load import load_model
from ccnet.weights.video import load_video_model
from tools.video_heads import main

SCORES = {"perframe_r2": 0.95, "rcca3d_r2": 0.25, "rcca3d_r3": 0.5, "nonlocal3d": 0.9}


@pytest.fixture()
def asset(tmp_path):
    """Runs whose heads are their starting heads with conv_seg's bias shifted, and their results."""
    result = {"arms": {}}
    for shift, (arm, score) in enumerate(SCORES.items()):
        head = initial_head(arm)
        with torch.no_grad():
            head.conv_seg.bias.add_(shift + 1.0)
        meta = {"arm": arm, "head": head.variant.name, "init": "x", "train": {"iters": 1}}
        save_checkpoint(tmp_path / f"{arm}_s0" / "model.pt",
                        {"meta": meta, "state_dict": {f"decode_head.{k}": v for k, v in head.state_dict().items()}})
        result["arms"][arm] = {"temporal_context_miou": {"mean": score}, "runs": [{"seed": 0, "miou": score}]}
    (tmp_path / "result.json").write_text(json.dumps(result))
    out = tmp_path / "video.pt"
    assert main(["--runs", str(tmp_path), "--ablation", str(tmp_path / "result.json"), "--out", str(out)]) == 0
    return out


def test_the_best_3d_criss_cross_head_is_default_video_and_every_head_loads_by_name(asset):
    best = load_video_model("default:video", path=asset)  # better arms are no 3D criss-cross head
    assert best.name == "default:video" and best.net.head_variant.name == "rcca3d_r3"
    base = load_model("default").net.state_dict()
    for spec, head, shift in (("default:perframe_r2", "rcca_r2", 1.0), ("default:rcca3d_r2", "rcca3d_r2", 2.0),
                              ("default:nonlocal3d", "nonlocal3d", 4.0)):
        net = load_video_model(spec, path=asset).net
        assert isinstance(net, VideoCCNet) and net.head_variant.name == head
        state = net.state_dict()
        assert all(torch.equal(state[k], v) for k, v in base.items() if k.startswith("backbone."))
        expected = initial_head(spec.split(":")[1]).conv_seg.bias + shift
        assert torch.allclose(state["decode_head.conv_seg.bias"], expected)
    with pytest.raises(CCNetError, match="unknown video head 'default:nothing'"):
        load_video_model("default:nothing", path=asset)
    with pytest.raises(CCNetError, match="per_frame applies to image models"):
        load_video_model("default:video", per_frame=True, path=asset)


def test_missing_runs_are_one_line(tmp_path, capsys):
    (tmp_path / "result.json").write_text(json.dumps({"arms": {"rcca3d_r3": {}}}))
    assert main(["--runs", str(tmp_path), "--ablation", str(tmp_path / "result.json"),
                 "--out", str(tmp_path / "v.pt")]) == 2
    assert "train them first" in capsys.readouterr().err

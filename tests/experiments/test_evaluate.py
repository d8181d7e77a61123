"""Evaluation on tiny dataset folders (written here) and synthetic scenes, with known answers."""
from __future__ import annotations

import json
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ccnet.cli import main
from ccnet.errors import CCNetError
from ccnet.experiments import evaluate, scenes
from ccnet.inference.predictor import Predictor, Protocol
from ccnet.nn.model import CCNetConfig
from ccnet.weights.checkpoints import save_checkpoint
from ccnet.weights.load import load_file
from tests.helpers import tiny_model

TINY_SMALL = dict(depth=18, stem_channels=(8, 8, 16), base_channels=8, head_channels=16, aux_channels=8)


class FakePredictor:
    """Predicts the class written into the image as grey level 10 * class (robust to JPEG),
    with one-hot logits scaled by ``gain(protocol)``; records the protocol of every call."""

    def __init__(self, num_classes, protocol=None, gain=lambda protocol: 1.0):
        self.num_classes, self.protocol, self.gain = num_classes, protocol or Protocol(), gain
        self.calls = []

    def predict(self, image, with_attention=False):
        self.calls.append(self.protocol.test_resize)
        classes = np.clip(np.rint(image.astype(np.float64).mean(2) / 10), 0, self.num_classes - 1)
        one_hot = F.one_hot(torch.from_numpy(classes.astype(np.int64)), self.num_classes).permute(2, 0, 1)
        return types.SimpleNamespace(logits=one_hot.float() * self.gain(self.protocol))


def grey(classes: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat((np.asarray(classes) * 10).astype(np.uint8)[..., None], 3, axis=2))


def blocks(*rows) -> np.ndarray:
    """An image's classes from a grid of 8x8 blocks (constant blocks survive JPEG)."""
    return np.kron(np.array(rows), np.ones((8, 8), dtype=np.int64))


def save_png(path: Path, array, mode=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = array if isinstance(array, Image.Image) else Image.fromarray(np.asarray(array, dtype=np.uint8), mode)
    image.save(path)


def stripes(top, middle, bottom) -> np.ndarray:
    """16x16 label: rows 0-3, 4-11 and 12-15."""
    return np.array([top] * 4 + [middle] * 8 + [bottom] * 4, dtype=np.uint8)[:, None].repeat(16, axis=1)


@pytest.fixture
def cityscapes(tmp_path) -> Path:
    root = tmp_path / "cityscapes"
    img, gt = root / "leftImg8bit" / "val", root / "gtFine" / "val"
    # A: all predicted road; labels: unlabeled (id 0, ignored) / road (id 7) / car (id 26).
    save_png(img / "aachen" / "aachen_000000_000019_leftImg8bit.png", grey(blocks([0, 0], [0, 0])))
    save_png(gt / "aachen" / "aachen_000000_000019_gtFine_labelIds.png", stripes(0, 7, 26))
    # B: left half predicted car (train id 13), right half road; everything is car.
    save_png(img / "bonn" / "bonn_000000_000019_leftImg8bit.png", grey(blocks([13, 0], [13, 0])))
    save_png(gt / "bonn" / "bonn_000000_000019_gtFine_labelIds.png", np.full((16, 16), 26, np.uint8))
    return root


@pytest.fixture
def ade20k(tmp_path) -> Path:
    root = tmp_path / "ADEChallengeData2016"
    grey(blocks([0, 0], [0, 0])).save(_mkdir(root / "images" / "validation") / "ADE_val_00000001.jpg", quality=100)
    # 0 = "other" (ignored), 1 = wall (class 0), 2 = building (class 1).
    save_png(root / "annotations" / "validation" / "ADE_val_00000001.png", stripes(0, 1, 2))
    return root


@pytest.fixture
def voc(tmp_path) -> Path:
    root = tmp_path / "VOC2012"
    palette = [0, 0, 0, 128, 0, 0] + [64] * (256 * 3 - 6)
    for name, classes, label in (
        ("2007_000001", blocks([15, 0], [0, 0]), blocks([15, 0], [0, 0])),
        ("2007_000002", blocks([0, 0], [0, 0]), blocks([0, 0], [0, 0])),
        ("2007_000003", blocks([0, 0], [0, 0]), blocks([15, 15], [15, 15])),  # not in val.txt
    ):
        grey(classes).save(_mkdir(root / "JPEGImages") / f"{name}.jpg", quality=100)
        label = label.astype(np.uint8)
        label[0, :] = 255  # VOC's object boundaries: ignored
        indexed = Image.fromarray(label, "P")
        indexed.putpalette(palette)
        save_png(root / "SegmentationClass" / f"{name}.png", indexed)
    _mkdir(root / "ImageSets" / "Segmentation")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000001\n2007_000002\n")
    return root


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- known answers ---------------------------------------------------------------------------

def test_cityscapes_label_ids_are_mapped_and_scored(cityscapes):
    result = evaluate.evaluate_dataset(FakePredictor(19), cityscapes, "cityscapes")
    # road: TP 128, FP 64 + 128 -> 0.4; car: TP 128, FN 64 + 128 -> 0.4; the rest absent (null).
    assert result["per_class"]["road"] == pytest.approx(0.4)
    assert result["per_class"]["car"] == pytest.approx(0.4)
    assert sum(v is not None for v in result["per_class"].values()) == 2
    assert result["miou"] == pytest.approx(0.4)
    assert result["accuracy"] == pytest.approx(256 / 448)
    assert result["images"] == 2 and len(result["per_class"]) == 19


def test_cityscapes_train_id_files_are_used_as_they_are(cityscapes):
    gt = cityscapes / "gtFine" / "val" / "bonn"
    (gt / "bonn_000000_000019_gtFine_labelIds.png").unlink()
    save_png(gt / "bonn_000000_000019_gtFine_labelTrainIds.png", np.full((16, 16), 13, np.uint8))
    assert evaluate.evaluate_dataset(FakePredictor(19), cityscapes, "cityscapes")["miou"] == pytest.approx(0.4)


def test_ade20k_reduces_the_zero_label(ade20k):
    result = evaluate.evaluate_dataset(FakePredictor(150), ade20k, "ade20k")
    assert result["per_class"]["wall"] == pytest.approx(2 / 3)  # TP 128, FP 64
    assert result["per_class"]["building"] == 0.0  # 64 pixels, none found
    assert result["miou"] == pytest.approx(1 / 3)


def test_voc_follows_val_txt_and_ignores_boundaries(voc):
    result = evaluate.evaluate_dataset(FakePredictor(21), voc, "voc")
    assert result["images"] == 2
    assert result["miou"] == 1.0
    assert {k for k, v in result["per_class"].items() if v is not None} == {"background", "person"}


def test_limit_takes_the_first_images_in_order(cityscapes):
    result = evaluate.evaluate_dataset(FakePredictor(19), cityscapes, "cityscapes", limit=1)
    assert result["images"] == 1
    assert result["per_class"]["road"] == pytest.approx(128 / 192) and result["per_class"]["car"] == 0.0


@pytest.mark.parametrize("dataset", ["cityscapes", "ade20k", "voc"])
def test_missing_layout_is_a_clear_error(tmp_path, dataset):
    with pytest.raises(CCNetError, match="expected") as err:
        evaluate.evaluate_dataset(FakePredictor(19), tmp_path, dataset)
    assert "\n" not in str(err.value)


def test_missing_label_is_named(cityscapes):
    missing = cityscapes / "gtFine" / "val" / "bonn" / "bonn_000000_000019_gtFine_labelIds.png"
    missing.unlink()
    with pytest.raises(CCNetError, match="missing .*bonn_000000_000019_gtFine_labelIds.png"):
        evaluate.evaluate_dataset(FakePredictor(19), cityscapes, "cityscapes")


def test_model_with_other_classes_is_refused(voc):
    with pytest.raises(CCNetError, match="predicts 19 classes, but the data has 21"):
        evaluate.evaluate_dataset(FakePredictor(19), voc, "voc")


# ---- test-time augmentation ------------------------------------------------------------------

def test_multiscale_flip_averages_softmax_over_mmseg_scales():
    image = np.asarray(grey(blocks([1, 2, 0])))  # 8 x 24, classes by column block
    predictor = FakePredictor(3, Protocol(test_resize=(2048, 1024)), gain=lambda p: p.test_resize[0] / 1000)
    scores = evaluate.class_scores(predictor, image, multiscale=True, flip=True)
    scales = [(int(2048 * r), int(1024 * r)) for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)]
    assert predictor.calls == [s for s in scales for _ in (0, 1)]  # each scale, plain and mirrored
    one_hot = F.one_hot(torch.from_numpy(blocks([1, 2, 0])), 3).permute(2, 0, 1).float()
    expected = sum(2 * torch.softmax(one_hot * s[0] / 1000, dim=0) for s in scales)
    torch.testing.assert_close(scores, expected)
    assert predictor.protocol.test_resize == (2048, 1024)  # the caller's predictor is untouched


def test_without_test_resize_the_scales_are_of_the_image():
    predictor = FakePredictor(3)
    evaluate.class_scores(predictor, np.zeros((10, 30, 3), np.uint8), multiscale=True)
    assert predictor.calls == [(int(30 * r), int(10 * r)) for r in evaluate.MS_RATIOS]


def test_flip_only_is_one_scale_two_views(cityscapes):
    predictor = FakePredictor(19, Protocol(test_resize=(2048, 1024)))
    result = evaluate.evaluate_dataset(predictor, cityscapes, "cityscapes", flip=True, multiscale=False)
    assert result["miou"] == pytest.approx(0.4) and result["flip"] and not result["multiscale"]
    assert predictor.calls == [(2048, 1024)] * 4  # two images, each plain and mirrored at scale 1.0


# ---- synthetic scenes ------------------------------------------------------------------------

@pytest.fixture
def fake_scenes(monkeypatch):
    """A stand-in ccnet.experiments.scenes whose images encode their labels, recording the seeds asked for."""
    seen = []

    def generate_scene(seed, height=256, width=512, *, split="train", cue=None, aligned=False):
        seen.append((seed, split) + (("aligned",) if aligned else ()))
        label = np.full((height, width), seed % 3, np.uint8)
        label[0] = 255
        return types.SimpleNamespace(image=np.asarray(grey(label % 255)), label=label)

    module = types.SimpleNamespace(generate_scene=generate_scene, CLASS_NAMES=("a", "b", "c", "d"),
                                   CONTEXT_CLASSES=(1, 3), seen=seen)
    monkeypatch.setattr("ccnet.experiments.scenes", module, raising=False)
    monkeypatch.setitem(sys.modules, "ccnet.experiments.scenes", module)
    return module


def test_synthetic_seeds_and_context_miou(fake_scenes):
    result = evaluate.synthetic_report(FakePredictor(4), count=3, seed=7, height=16, width=24)
    assert fake_scenes.seen == [(700000, "eval"), (700001, "eval"), (700002, "eval")]
    assert result["miou"] == 1.0 and result["images"] == 3
    assert result["per_class"] == {"a": 1.0, "b": 1.0, "c": 1.0, "d": None}
    assert result["context_miou"] == 1.0 and result["context_classes"] == ["b", "d"]
    assert result["aligned"] is False


def test_synthetic_scenes_in_the_curriculum_layout(fake_scenes):
    result = evaluate.synthetic_report(FakePredictor(4), count=2, seed=7, height=16, width=24, aligned=True)
    assert fake_scenes.seen == [(700000, "eval", "aligned"), (700001, "eval", "aligned")]
    assert result["aligned"] is True


def test_synthetic_count_is_bounded():
    with pytest.raises(CCNetError, match="1..100000"):
        evaluate.synthetic_seeds(1, 0)


def test_evaluate_synthetic_on_real_scenes_keeps_train_mode():
    config = CCNetConfig(num_classes=len(scenes.CLASS_NAMES), **TINY_SMALL)
    net = tiny_model(config=config).train()
    loaded = types.SimpleNamespace(name="tiny", net=net, protocol=Protocol())
    result = evaluate.evaluate_synthetic(loaded, count=2, seed=1, height=64, width=128, device="cpu")
    assert net.training
    assert result["images"] == 2 and result["dataset"] == "synthetic" and result["model"] == "tiny"
    assert len(result["per_class"]) == len(scenes.CLASS_NAMES)
    assert set(result["context_classes"]) == {"car", "truck"}
    assert result["miou"] is None or 0.0 <= result["miou"] <= 1.0


# ---- command line ----------------------------------------------------------------------------

def checkpoint(path: Path, num_classes: int) -> str:
    model = tiny_model(config=CCNetConfig(num_classes=num_classes, **TINY_SMALL))
    meta = {"ccnet_config": model.config.to_dict(), "protocol": Protocol().to_dict()}
    save_checkpoint(path, {"meta": meta, "state_dict": model.state_dict()})
    return str(path)


def test_cli_evaluate_dataset_prints_one_json_object(cityscapes, tmp_path, capsys):
    model = checkpoint(tmp_path / "tiny19.pth", 19)
    out = tmp_path / "result.json"
    code = main(["evaluate", "--model", model, "--data", str(cityscapes), "--dataset", "cityscapes",
                 "--device", "cpu", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    result = json.loads(captured.out)
    assert json.loads(out.read_text()) == result
    assert result["model"] == "tiny19.pth" and result["images"] == 2 and result["dataset"] == "cityscapes"
    assert set(result) >= {"miou", "per_class", "images", "seconds", "accuracy"}
    assert 0.0 <= result["miou"] <= 1.0 and len(result["per_class"]) == 19
    assert "evaluating 2/2" in captured.err and "mIoU" in captured.err


def test_cli_evaluate_synthetic(tmp_path, capsys):
    model = checkpoint(tmp_path / "tiny11.pth", len(scenes.CLASS_NAMES))
    code = main(["evaluate", "--model", model, "--synthetic", "2", "--seed", "3", "--height", "64",
                 "--width", "128", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["images"] == 2 and result["seed"] == 3 and "context_miou" in result
    assert len(result["per_class"]) == len(scenes.CLASS_NAMES) and result["aligned"] is False
    assert main(["evaluate", "--model", model, "--synthetic", "1", "--height", "64", "--width", "128",
                 "--device", "cpu", "--aligned"]) == 0
    assert json.loads(capsys.readouterr().out)["aligned"] is True


@pytest.mark.parametrize("args, message", [
    (["--data", "somewhere"], "--data needs --dataset"),
    (["--data", "somewhere", "--dataset", "voc", "--limit", "0"], "--limit must be at least 1"),
])
def test_cli_evaluate_errors(tmp_path, capsys, args, message):
    assert main(["evaluate", "--model", checkpoint(tmp_path / "m.pth", 21), *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_evaluate_wrong_class_count(cityscapes, tmp_path, capsys):
    model = checkpoint(tmp_path / "tiny21.pth", 21)
    assert main(["evaluate", "--model", model, "--data", str(cityscapes), "--dataset", "cityscapes"]) == 2
    assert "predicts 21 classes, but the data has 19" in capsys.readouterr().err


def test_real_predictor_multiscale_flip_runs(cityscapes, tmp_path):
    loaded = load_file(checkpoint(tmp_path / "tiny19.pth", 19))
    predictor = Predictor(loaded.net, replace(loaded.protocol, test_resize=(32, 16)), device="cpu")
    result = evaluate.evaluate_dataset(predictor, cityscapes, "cityscapes", multiscale=True, flip=True, limit=1)
    assert result["images"] == 1 and 0.0 <= result["miou"] <= 1.0

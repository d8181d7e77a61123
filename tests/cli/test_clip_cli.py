"""The command line on clips, end to end (one run as its own process): per-frame masks and logits that are
the video predictor's, one position's maps over the clip, and every bad clip one line, exit 2."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ccnet.inference.predictor import Protocol
from ccnet.inference.video import VideoPredictor, explain_clip_pixel
from ccnet.nn.video import VideoCCNet
from tests.cli.runner import run_cli, run_cli_process
from tests.files import BAD_CLIPS, animated, clip_frames
from tests.helpers import tiny_checkpoint, tiny_model

FRAMES = clip_frames(3, 45, 70, seed=5)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clips")
    (tmp / "clip.webp").write_bytes(animated(FRAMES, "WEBP"))
    Image.fromarray(FRAMES[0]).save(tmp / "still.png")
    tiny_checkpoint(tmp / "tiny.pth")
    return tmp


def test_predict_writes_each_frames_mask_and_the_clips_logits(files):
    result = run_cli_process("predict", str(files / "clip.webp"), "--model", str(files / "tiny.pth"), "--device", "cpu",
                     "--out-mask", str(files / "m.png"), "--out-color", str(files / "c.png"),
                     "--out-logits", str(files / "l.npy"))
    assert result.returncode == 0, result.stderr
    assert "clip.webp: 3 frames of 70x45" in result.stdout
    logits = np.load(files / "l.npy")
    assert logits.dtype == np.float32 and logits.shape == (3, 4, 45, 70)
    expected = VideoPredictor(VideoCCNet.from_image(tiny_model()), Protocol(), "cpu").predict(FRAMES).logits.numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    for t in range(3):
        np.testing.assert_array_equal(np.asarray(Image.open(files / f"m_{t:02d}.png")), logits[t].argmax(0))
        assert Image.open(files / f"c_{t:02d}.png").size == (70, 45)
    assert not (files / "m.png").exists() and not (files / "m_03.png").exists()


def test_attention_writes_one_positions_maps_over_the_clip(files):
    result = run_cli("attention", str(files / "clip.webp"), "--model", str(files / "tiny.pth"), "--device", "cpu",
                     "--frame", "2", "--pixel", "69,20", "--out", str(files / "maps.npz"))
    assert result.returncode == 0, result.stderr
    maps = np.load(files / "maps.npz")
    assert set(maps.files) == {"steps", "composed", "cell", "grid"}
    assert tuple(maps["grid"]) == (3, 6, 9) and tuple(maps["cell"]) == (2, 20 * 6 // 45, 69 * 9 // 70)
    prediction = VideoPredictor(VideoCCNet.from_image(tiny_model()), Protocol(), "cpu").predict(FRAMES)
    expected = explain_clip_pixel(prediction, 2, 69, 20)
    assert maps["steps"].shape == (2, 3, 6, 9) and maps["composed"].shape == (3, 6, 9)
    np.testing.assert_allclose(maps["steps"], expected.steps, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(maps["composed"], expected.composed, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(set(BAD_CLIPS) - {"still.gif"}))  # a one-frame GIF is an image
def test_bad_clips_are_one_line_and_exit_2(files, name):
    data, words = BAD_CLIPS[name]
    (files / name).write_bytes(data)
    result = run_cli("predict", str(files / name), "--model", str(files / "tiny.pth"), "--device", "cpu")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and words in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, words", [
    (["attention", "{clip}", "--pixel", "1,1", "--out", "{tmp}/a.npz"], "a clip needs --frame T"),
    (["attention", "{clip}", "--frame", "3", "--pixel", "1,1", "--out", "{tmp}/a.npz"], "--frame 3 is outside"),
    (["attention", "{still}", "--frame", "0", "--pixel", "1,1", "--out", "{tmp}/a.npz"], "--frame applies to clips"),
    (["predict", "{clip}", "--slide", "32,16"], "--slide applies to images"),
])
def test_clip_options_misused_are_one_line(files, args, words):
    values = {"clip": files / "clip.webp", "still": files / "still.png", "tmp": files}
    result = run_cli(*[a.format(**values) for a in args], "--model", str(files / "tiny.pth"), "--device", "cpu")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and words in result.stderr


def test_the_default_model_on_a_clip_is_default_video(files):
    result = run_cli("predict", str(files / "clip.webp"), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "model default:video" in result.stdout and "3 frames of 70x45" in result.stdout

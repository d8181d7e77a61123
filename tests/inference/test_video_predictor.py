"""The video predictor and the maps of one pixel of one frame: one frame is the image predictor,
the maps are rows of products of dense matrices built entry by entry, a per-frame head looks
at its own frame only, and video models load by name."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ccnet.errors import CCNetError, ImageError
from ccnet.inference.explain import explain_pixel
from ccnet.inference.predictor import Predictor, Protocol
from ccnet.inference.video import VideoPredictor, explain_clip_pixel
from ccnet.nn.model import CCNetConfig
from ccnet.nn.video import VideoCCNet
from ccnet.weights.video import load_video_model
from tests.helpers import TINY, tiny_model
from tests.nn.test_attention_maps3d import dense_reference

RNG = np.random.default_rng(0)
CLIP = RNG.integers(0, 256, (3, 45, 70, 3), dtype=np.uint8)  # feature grid 3 x 6 x 9


def video(attention: str = "cca", recurrence: int = 2, per_frame: bool = False, seed: int = 0) -> VideoCCNet:
    return VideoCCNet.from_image(tiny_model(seed, CCNetConfig(**{**TINY.to_dict(), "attention": attention,
                                                                 "recurrence": recurrence})), per_frame)


@pytest.mark.parametrize("per_frame", [False, True])
def test_one_frame_is_the_image_predictor(per_frame):
    image = tiny_model()
    protocol = Protocol(test_resize=(64, 40))  # a resize, so both resize steps run
    clip = VideoPredictor(VideoCCNet.from_image(image, per_frame), protocol, "cpu").predict(CLIP[:1])
    still = Predictor(image, protocol, "cpu").predict(CLIP[0])
    torch.testing.assert_close(clip.logits[0], still.logits, rtol=1e-4, atol=1e-4)
    assert clip.grid == (1, *still.grid) and clip.masks.shape == (1, 45, 70) and clip.input_size == still.input_size
    for mine, theirs in zip(clip.attention, still.attention):
        torch.testing.assert_close(mine[0, ..., 1:], theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("steps", [1, 3])
def test_a_pixels_maps_are_rows_of_the_steps_dense_matrices(steps):
    prediction = VideoPredictor(video(recurrence=steps), Protocol(), "cpu").predict(CLIP)
    assert prediction.kind == "criss-cross-3d" and prediction.grid == (3, 6, 9)
    maps = explain_clip_pixel(prediction, 2, 69, 20)
    cell = (2, 20 * 6 // 45, 69 * 9 // 70)
    assert maps.cell == cell and maps.steps.shape == (steps, 3, 6, 9) and maps.steps.dtype == np.float32
    matrices = [dense_reference(a) for a in prediction.attention]
    row = (cell[0] * 6 + cell[1]) * 9 + cell[2]
    composed = np.eye(3 * 6 * 9)[row]
    for step, matrix in enumerate(matrices):
        np.testing.assert_allclose(maps.steps[step].ravel(), matrix[row], atol=1e-6)
    for matrix in reversed(matrices):  # the last step first: M = e_u A_R ... A_1
        composed = composed @ matrix
    np.testing.assert_allclose(maps.composed.ravel(), composed, rtol=1e-4, atol=1e-7)
    assert maps.composed.sum() == pytest.approx(1.0, abs=1e-5)
    assert set(maps.to_npz_dict()) == {"steps", "composed", "cell", "grid"}


def test_a_per_frame_head_looks_at_its_own_frame_only():
    prediction = VideoPredictor(video(per_frame=True), Protocol(), "cpu").predict(CLIP)
    assert prediction.kind == "criss-cross"
    maps = explain_clip_pixel(prediction, 1, 30, 40)
    still = explain_pixel(Predictor(tiny_model(), Protocol(), "cpu").predict(CLIP[1]), 30, 40)
    assert not np.delete(maps.composed, 1, axis=0).any()
    np.testing.assert_allclose(maps.composed[1], still.composed, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(maps.steps[:, 1], np.stack(still.steps), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("per_frame", [False, True])
def test_non_local_maps_are_a_row_of_its_weights(per_frame):
    prediction = VideoPredictor(video("nonlocal", per_frame=per_frame), Protocol(), "cpu").predict(CLIP)
    maps = explain_clip_pixel(prediction, 2, 5, 5)
    weights = prediction.attention[0]
    if per_frame:
        assert weights.shape == (3, 54, 54) and not maps.composed[:2].any()
        np.testing.assert_allclose(maps.composed[2].ravel(), weights[2, 0].numpy(), atol=1e-7)
    else:
        assert weights.shape == (162, 162)
        np.testing.assert_allclose(maps.composed.ravel(), weights[2 * 54].numpy(), atol=1e-7)
    assert maps.steps.shape == (1, 3, 6, 9) and maps.composed.sum() == pytest.approx(1.0, abs=1e-5)


def test_user_errors_are_one_line():
    prediction = VideoPredictor(video(), Protocol(), "cpu").predict(CLIP)
    for t, x, y, words in [(3, 0, 0, "frame 3 is outside the clip's 3 frames"), (0, 70, 0, "outside the 70x45")]:
        with pytest.raises(CCNetError, match=words):
            explain_clip_pixel(prediction, t, x, y)
    plain = VideoPredictor(video("none"), Protocol(), "cpu").predict(CLIP)
    with pytest.raises(CCNetError, match="no attention to show"):
        explain_clip_pixel(plain, 0, 0, 0)
    with pytest.raises(ImageError, match="expected clip frames"):
        VideoPredictor(video(), Protocol(), "cpu").predict(CLIP[0])


@pytest.mark.parametrize("spec, per_frame, head", [("default", False, "rcca3d_r2"), ("default", True, "rcca_r2"),
                                                   ("default:rcca_r1", False, "rcca3d_r1"),
                                                   ("default:nonlocal", False, "nonlocal3d")])
def test_image_models_load_as_video_models_by_name(spec, per_frame, head):
    loaded = load_video_model(spec, per_frame=per_frame)
    assert isinstance(loaded.net, VideoCCNet) and loaded.net.head_variant.name == head

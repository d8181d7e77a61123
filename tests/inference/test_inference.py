"""mmseg's test protocol: keep-ratio resize, sliding windows, logits at the image size."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ccnet.inference.predictor import (
    Predictor,
    Protocol,
    preprocess,
    rescale_size,
    resized_input,
    slide_windows,
)
from ccnet.nn.variants import BY_NAME
from tests.helpers import tiny_model


def test_rescale_size_follows_mmcv_keep_ratio():
    assert rescale_size(1024, 2048, 2048, 1024) == (1024, 2048)
    assert rescale_size(375, 500, 2048, 512) == (512, 683)  # short side binds
    assert rescale_size(100, 1000, 2048, 512) == (205, 2048)  # long side binds
    assert rescale_size(512, 1024, 2049, 1025) == (1025, 2049)


def test_slide_windows_cover_every_pixel_with_full_crops():
    height, width, crop, stride = 1025, 2049, (769, 769), (513, 513)
    cover = np.zeros((height, width), int)
    for y1, y2, x1, x2 in slide_windows(height, width, crop, stride):
        assert (y2 - y1, x2 - x1) == crop
        cover[y1:y2, x1:x2] += 1
    assert cover.min() >= 1
    assert len(list(slide_windows(height, width, crop, stride))) == 2 * 4


class EchoNet(nn.Module):
    """Returns its input as 'logits': sliding-window averaging must then give back the input."""

    head_variant = BY_NAME["none"]  # no attention

    def forward(self, x, return_attention=False):
        return (x, []) if return_attention else x


def test_slide_inference_averages_overlapping_crops_exactly():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    protocol = Protocol(mode="slide", crop=(32, 32), stride=(20, 20))
    pred = Predictor(EchoNet(), protocol, device="cpu").predict(image, with_attention=False)
    torch.testing.assert_close(pred.logits, preprocess(image, protocol)[0])


def test_whole_inference_logits_at_image_size_and_attention_grid():
    model = tiny_model()
    image = np.random.default_rng(1).integers(0, 256, (61, 90, 3), dtype=np.uint8)
    pred = Predictor(model, Protocol(), device="cpu").predict(image)
    assert tuple(pred.logits.shape) == (4, 61, 90) and pred.logits.dtype == torch.float32
    assert pred.grid == (8, 12) and len(pred.attention) == 2
    assert tuple(pred.attention[0].shape) == (8, 12, 20)
    # the same forward pass gave the attention: recompute it from the model
    x = preprocess(image, Protocol())
    with torch.no_grad():
        logits, attn = model(x, return_attention=True)
    torch.testing.assert_close(pred.attention[1], attn[1][0])
    expected = torch.nn.functional.interpolate(logits, size=(61, 90), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(pred.logits, expected)
    np.testing.assert_array_equal(pred.mask, expected.argmax(0).numpy())


def test_test_resize_then_back_to_image_size():
    model = tiny_model()
    image = np.random.default_rng(2).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    pred = Predictor(model, Protocol(test_resize=(120, 80)), device="cpu").predict(image)
    assert pred.input_size == (80, 120)
    assert tuple(pred.logits.shape[1:]) == (40, 60)
    assert pred.grid == (10, 15)


def test_the_test_resize_rounds_to_uint8_as_opencv_does():
    """1 x 3 -> 1 x 2, half-pixel bilinear: the outputs sample x = 0.25 and x = 1.75, so
    0.75 * 0 + 0.25 * 9 = 2.25 and 0.25 * 9 + 0.75 * 40 = 32.25, kept as the uint8 values 2 and 32."""
    image = np.repeat(np.uint8([[0, 9, 40]])[..., None], 3, axis=2)
    x = resized_input(image, Protocol(test_resize=(2, 1)))
    assert x.dtype == torch.float32 and tuple(x.shape) == (1, 3, 1, 2)
    assert x[0, :, 0].tolist() == [[2.0, 32.0]] * 3


def test_preprocess_normalises_rgb_and_bgr():
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 0] = 200
    rgb = preprocess(image, Protocol())
    assert rgb[0, 0, 0, 0].item() == pytest.approx((200 - 123.675) / 58.395)
    bgr = preprocess(image, Protocol(bgr=True, mean=(0, 0, 0), std=(1, 1, 1)))
    assert bgr[0, 2, 0, 0].item() == 200 and bgr[0, 0, 0, 0].item() == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model = tiny_model()
    image = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    cpu = Predictor(model, Protocol(), device="cpu").predict(image)
    gpu = Predictor(tiny_model(), Protocol(), device="cuda").predict(image)
    torch.testing.assert_close(gpu.logits, cpu.logits, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("height, width, expected", [(600, 1000, (396, 660)), (512, 1024, (362, 724)),
                                                      (1080, 2400, (343, 763)), (777, 1234, (406, 645))])
def test_the_interactive_size_keeps_the_aspect_and_never_passes_the_pixel_cap(height, width, expected):
    """Each side scaled by sqrt(cap / pixels) and rounded down (rounding to nearest gives 397 x 661
    for 600 x 1000: 262,417 pixels, over the 512 x 512 cap)."""
    from ccnet.inference.predictor import input_size, interactive

    cap = 512 * 512
    size = input_size(height, width, interactive(Protocol(), cap))
    assert size == expected and size[0] * size[1] <= cap


@pytest.mark.parametrize("height, width", [(70, 100), (64, 96), (65, 97), (8, 8), (9, 17)])
def test_the_feature_grid_rounds_up_as_a_stride_8_network_does(height, width):
    """The grid of an H x W input is the network's own output size: ceil(H / 8) x ceil(W / 8)."""
    from ccnet.inference.geometry import grid_size

    net = tiny_model()
    with torch.no_grad():
        logits = net(torch.zeros(1, 3, height, width))
    assert grid_size(height, width) == tuple(logits.shape[2:]) == (-(-height // 8), -(-width // 8))

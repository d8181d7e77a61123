"""What the page receives for its attention viewer: the 8-bit log code and its error bound, the
byte budget, and deep links checked before anything is read."""
from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from ccnet.app.links import parse_link
from ccnet.app.viewer import FLOOR, REL_ERROR, dequantise, error_bound, payload_bytes, quantise, viewer_value
from ccnet.errors import CCNetError


def softmax_crosses(seed: int, shape: tuple[int, int, int]) -> np.ndarray:
    logits = torch.tensor(np.random.default_rng(seed).normal(0, 5, shape))
    return torch.softmax(logits, dim=-1).numpy().astype(np.float32)


def test_the_log_code_keeps_every_weight_within_its_stated_bound():
    weights = softmax_crosses(0, (12, 20, 32))
    codes, scales = quantise(weights)
    decoded = dequantise(codes, scales)
    assert codes.dtype == np.uint8 and scales.shape == (12, 20)
    assert np.all(np.abs(decoded - weights) <= error_bound(weights, scales))
    big = weights >= FLOOR * scales[..., None]
    assert np.all(np.abs(decoded - weights)[big] <= REL_ERROR * weights[big] * 1.000001)
    assert 0.02 < REL_ERROR < 0.025  # 5 decades over 254 steps: half a step is 2.3 %
    np.testing.assert_array_equal(decoded.max(-1), scales)  # each cell's maximum is exact


def test_codes_by_hand():
    cross = np.array([[[1.0, 0.1, 2e-5, 1e-6, 0.0]]], np.float32)
    codes, scales = quantise(cross)
    assert scales[0, 0] == 1.0
    # 0 decades below the maximum: the top code; 1 decade: 254/5 codes lower; 4.7: code 16; below 5: none
    assert list(codes[0, 0]) == [255, 204, 16, 0, 0]


def test_the_payload_holds_the_maps_only_within_the_budget(explorer, picture):
    analysis = explorer.analyse(picture)
    loaded = explorer.model()[0]
    size = payload_bytes(analysis.grid, len(analysis.attention))
    h, w = analysis.grid
    assert size == 2 * h * w * (h + w + 4)
    inside = viewer_value(analysis, loaded.classes, loaded.palette, budget=size)
    assert len(inside["codes"]) == 2 and len(base64.b64decode(inside["codes"][0])) == h * w * (h + w)
    scales = np.frombuffer(base64.b64decode(inside["scales"][1]), "<f4").reshape(h, w)
    np.testing.assert_allclose(scales, analysis.attention[1].numpy().max(-1), rtol=1e-6)
    outside = viewer_value(analysis, loaded.classes, loaded.palette, budget=size - 1)
    assert "codes" not in outside and outside["grid"] == [h, w] and outside["image"].startswith("data:image/jpeg")


def test_a_link_names_a_demo_a_model_a_pixel_a_view_and_the_display():
    link = parse_link({"example": "a.png", "model": "default", "x": "12", "y": "7", "view": "step2",
                       "cmap": "viridis", "scale": "linear", "clip": "0.5"}, ["a.png"], ["default"])
    assert (link.example, link.model, link.pixel, link.view) == ("a.png", "default", (12, 7), "step2")
    assert link.display == {"cmap": "viridis", "scale": "linear", "clip": 0.5}
    assert parse_link({}, ["a.png"], ["default"]).pixel is None


@pytest.mark.parametrize("params, words", [
    ({"example": "../../etc/passwd"}, "unknown example"),
    ({"key": "/etc/passwd"}, "is not an image key"),
    ({"model": "/tmp/evil.pt"}, "unknown model"),
    ({"x": "1e999", "y": "3"}, "x must be a pixel coordinate"),
    ({"x": "-1", "y": "3"}, "x must be a pixel coordinate"),
    ({"x": "4"}, "y must be a pixel coordinate"),
    ({"view": "x" * 10_000}, "view must be one of"),
    ({"clip": "nan"}, "clip must be in (0, 1]"),
    ({"clip": "0"}, "clip must be in (0, 1]"),
    ({"cmap": "rainbow"}, "unknown colormap"),
])
def test_a_bad_link_is_one_short_line(params, words):
    with pytest.raises(CCNetError, match=None) as err:
        parse_link(params, ["a.png"], ["default"])
    assert words in str(err.value) and "\n" not in str(err.value) and len(str(err.value)) < 200

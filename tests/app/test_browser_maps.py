"""What the page receives for its attention viewer: the 8-bit log code and its error bound, the
byte budget, and deep links checked before anything is read."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from ccnet.app.analysis import Display
from ccnet.app.browser_maps import (
    FLOOR,
    REL_ERROR,
    dequantise,
    error_bound,
    page_data,
    payload_bytes,
    quantise,
    viewer_value,
)
from ccnet.app.links import parse_link
from ccnet.nn.variants import IMAGE_HEADS


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
    loaded = explorer.models.model()[0]
    size = payload_bytes(analysis.grid, len(analysis.attention))
    h, w = analysis.grid
    assert size == 2 * h * w * (h + w + 4)
    name = analysis.model
    [inside] = page_data({name: analysis}, name, loaded.classes, loaded.palette, budget=size)["heads"]
    assert len(inside["codes"]) == 2 and len(base64.b64decode(inside["codes"][0])) == h * w * (h + w)
    scales = np.frombuffer(base64.b64decode(inside["scales"][1]), "<f4").reshape(h, w)
    np.testing.assert_allclose(scales, analysis.attention[1].numpy().max(-1), rtol=1e-6)
    assert viewer_value(analysis, "ccnet/data/x", budget=size)["maps"] is True
    outside = page_data({name: analysis}, name, loaded.classes, loaded.palette, budget=size - 1)
    assert "codes" not in outside["heads"][0] and outside["image"].startswith("data:image/jpeg")
    assert outside["heads"][0]["mask"].startswith("data:image/png")  # the segmentation is always sent
    small = viewer_value(analysis, "ccnet/data/x", budget=size - 1)
    assert small["maps"] is False and small["grid"] == [h, w] and small["data"] == "ccnet/data/x"
    assert len(json.dumps(small)) < 1024  # what the session keeps: no picture, no map


def test_a_link_names_a_demo_a_model_a_pixel_a_view_and_the_display():
    link = parse_link({"example": "a.png", "model": "default", "x": "12", "y": "7", "view": "step2",
                       "cmap": "viridis", "scale": "linear", "clip": "0.5"}, ["a.png"], ["default"])
    assert (link.example, link.model, link.pixel, link.view) == ("a.png", "default", (12, 7), "step2")
    assert link.display == {"cmap": "viridis", "scale": "linear", "clip": 0.5}
    assert parse_link({}, ["a.png"], ["default"]).pixel is None


def test_the_page_starts_from_the_apis_display_and_a_link_may_name_any_step_a_head_runs(explorer, picture):
    """The viewers take their display defaults and the views a link may name from the server: the
    API's pictures' defaults (Display), and a step of the deepest head in the heads table."""
    value = viewer_value(explorer.analyse(picture), "ccnet/data/x")
    assert value["defaults"] == {"cmap": Display.cmap, "scale": Display.scale, "clip": Display.clip,
                                 "opacity": Display.alpha}
    deepest = max(head.steps for head in IMAGE_HEADS)
    assert value["views"][1:deepest + 1] == [f"step{i}" for i in range(1, deepest + 1)]
    assert parse_link({"view": f"step{deepest}"}, [], []).view == f"step{deepest}"
    assert "ignored" in parse_link({"view": f"step{deepest + 1}"}, [], []).problems[0]


GOOD_LINK = {"example": "a.png", "model": "default", "x": "12", "y": "7", "view": "step2", "cmap": "viridis",
             "scale": "linear", "clip": "0.5"}


@pytest.mark.parametrize("params, words", [
    ({"example": "../../etc/passwd"}, "example='../../etc/passwd' ignored"),
    ({"key": "/etc/passwd"}, "key='/etc/passwd' ignored: not an image key"),
    ({"model": "/tmp/evil.pt"}, "model='/tmp/evil.pt' ignored"),
    ({"x": "1e999"}, "x='1e999', y='7' ignored"),
    ({"x": "-1"}, "x='-1', y='7' ignored"),
    ({"x": "\u0663"}, "x='\u0663', y='7' ignored"),  # an Arabic-Indic 3: a digit to \\d, not to a link
    ({"y": None}, "x='12', y=None ignored"),
    ({"view": "x" * 10_000}, "view='xxxx"),
    ({"clip": "nan"}, "clip='nan' ignored"),
    ({"clip": "0"}, "clip='0' ignored"),
    ({"clip": "1.5"}, "clip='1.5' ignored"),
    ({"cmap": "rainbow"}, "cmap='rainbow' ignored"),
    ({"cmap": "constructor"}, "cmap='constructor' ignored"),
    ({"scale": "<h1>x</h1>"}, "scale='<h1>x</h1>' ignored"),
])
def test_a_bad_parameter_is_dropped_with_one_short_note_and_the_rest_of_the_link_kept(params, words):
    asked = {k: v for k, v in {**GOOD_LINK, **params}.items() if v is not None}
    link = parse_link(asked, ["a.png"], ["default"])
    assert len(link.problems) == 1 and words in link.problems[0]
    assert "\n" not in link.problems[0] and len(link.problems[0]) < 200
    good = parse_link(GOOD_LINK, ["a.png"], ["default"])
    for name in ("example", "key", "model", "pixel", "view"):  # everything else as the good link says
        bad_name = {"x": "pixel", "y": "pixel"}.get(next(iter(params)), next(iter(params)))
        if name != bad_name:
            assert getattr(link, name) == getattr(good, name), name
    assert link.display == {k: v for k, v in good.display.items() if k not in params}


def test_a_pixel_outside_the_image_is_dropped_with_its_note_once_the_size_is_known():
    link = parse_link({"example": "a.png", "x": "512", "y": "7", "view": "step2"}, ["a.png"], ["default"])
    assert link.place((256, 513)) == link  # x = 512 is the last column of 513
    placed = link.place((256, 512))
    assert placed.pixel is None and placed.view == "step2" and placed.example == "a.png"
    assert placed.problems == ("x=512, y=7 ignored: outside the 512x256 image",)
    assert parse_link({"y": "256", "x": "0"}, [], []).place((256, 512)).pixel is None


def test_markdown_text_shows_any_value_as_itself():
    """What a visitor sends becomes text: no HTML element, no Markdown link, image, heading or
    emphasis, one line; Markdown's own escapes give back the characters."""
    import re

    from ccnet.app.present import md_text

    payload = '<h1 style="color:red">X</h1> [a](http://203.0.113.7) ![i](//x/p.png) # **b** _c_ `d` $e$\n<form>'
    text = md_text(payload)
    assert "<" not in text and ">" not in text and "\n" not in text
    assert not re.search(r"(?<!\\)[\[\]()*_`#$]", text)  # every Markdown sign is escaped
    unescaped = re.sub(r"\\(.)", r"\1", text).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert unescaped == " ".join(payload.split())

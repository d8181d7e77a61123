"""Released models at an interactive size on a CPU, the full protocol one argument away, and the
embedded model's out-of-domain verdict on each analysis."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ccnet.app.analysis import INTERACTIVE_PIXELS
from ccnet.app.explorer import Explorer
from ccnet.errors import CCNetError
from ccnet.inference.predictor import normalise, rescale_size
from ccnet.project import DEMOS, ROOT
from ccnet.weights import presets
from ccnet.weights.load import load_file

CITYSCAPES = "ccnet_r50-d8_512x1024_80k_cityscapes"
SLIDING = "ccnet_r50-d8_769x769_80k_cityscapes"


@pytest.fixture()
def preset_explorer(checkpoint):
    """An Explorer whose presets are the tiny checkpoint under each preset's protocol (no download)."""
    def loader(name, progress=None):
        protocol = presets.get(name).protocol if name in presets.presets() else None
        return load_file(checkpoint, protocol=protocol, name=name)

    return Explorer("default", device="cpu", loader=loader)


@pytest.fixture(scope="module")
def street():
    return np.random.default_rng(1).integers(0, 256, (512, 1024, 3), dtype=np.uint8)


def _expected_mask(net, image, size):
    """The network on the image resized by hand to `size`, logits back at the image's size."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False).round().clamp(0, 255)
    with torch.no_grad():
        logits = net(normalise(x, presets.get(CITYSCAPES).protocol))
    logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    logits = F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False)
    return logits[0].argmax(0).numpy()


def test_a_released_model_runs_at_the_interactive_size_by_default_on_a_cpu(preset_explorer, street):
    analysis = preset_explorer.analyse(street, CITYSCAPES)
    height, width = analysis.input_size
    assert analysis.analysis_size == "interactive" and height * width <= INTERACTIVE_PIXELS
    assert abs(width / height - 2) < 0.02 and height * width > 0.98 * INTERACTIVE_PIXELS
    assert analysis.size == (512, 1024)  # shown at the upload's size
    net = preset_explorer.models.model(CITYSCAPES)[0].net
    assert (analysis.mask == _expected_mask(net, street, (height, width))).mean() > 0.999
    assert f"interactive size: the whole image at {width}×{height}" in analysis.note
    assert "full protocol: the whole image resized to fit 2048×1024" in analysis.note


def test_the_full_protocol_is_one_argument_away_and_cached_apart(preset_explorer, street):
    interactive = preset_explorer.analyse(street, CITYSCAPES)
    full = preset_explorer.analyse(street, CITYSCAPES, size="full")
    assert full.analysis_size == "full" and full.input_size == rescale_size(512, 1024, 2048, 1024)
    assert full.note.startswith("full protocol: the whole image resized to fit 2048×1024 (2048×1024)")
    assert preset_explorer.network_runs == 2
    assert preset_explorer.analyse(street, CITYSCAPES, size="interactive") is interactive
    assert preset_explorer.network_runs == 2


def test_a_sliding_window_preset_becomes_one_whole_pass_at_the_interactive_size(preset_explorer, street):
    analysis = preset_explorer.analyse(street, SLIDING)
    assert "769×769 sliding windows" in analysis.note and "interactive size" in analysis.note


def test_the_embedded_model_and_checkpoint_files_have_one_size(preset_explorer, street, explorer):
    assert preset_explorer.size_for("default", "interactive") == "full"
    assert explorer.analyse(street, size="interactive").analysis_size == "full"
    with pytest.raises(CCNetError, match="unknown analysis size 'huge'"):
        preset_explorer.analyse(street, CITYSCAPES, size="huge")


def test_a_gpu_app_defaults_to_the_full_protocol(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert Explorer("default", device="cuda").default_size == "full"
    assert Explorer("default", device="cpu").default_size == "interactive"


def test_the_embedded_model_says_when_an_image_is_out_of_its_domain():
    explorer = Explorer("default", device="cpu")
    demo = explorer.analyse(DEMOS / "street_seed1_car.png")
    assert demo.domain is not None and not demo.out_of_domain
    cat = explorer.analyse(ROOT / "tests" / "data" / "photos" / "chelsea.jpg")
    assert cat.out_of_domain and "synthetic street scenes" in cat.domain.note


def test_models_without_a_calibration_are_not_judged(explorer, street):
    assert explorer.analyse(street).domain is None and not explorer.analyse(street).out_of_domain

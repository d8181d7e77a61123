"""Every head of the embedded family can be shown: switching to `none` or `non-local` redraws the
segmentation with that head's own prediction, a non-local pin shows its dense map, a head without
attention says so in one line, and the comparison always sets a criss-cross head against non-local."""
from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from ccnet.app.browser_maps import page_data, viewer_value
from ccnet.app.explorer import Explorer
from ccnet.errors import CCNetError
from ccnet.experiments.scenes import generate_scene
from ccnet.inference.geometry import cell_of
from ccnet.inference.predictor import normalise, resized_input
from ccnet.project import DEMOS

CAR_SCENE = DEMOS / "street_seed1_car.png"


@pytest.fixture(scope="module")
def explorer():
    return Explorer("default", device="cpu")


@pytest.fixture(scope="module")
def vehicle_pixel():
    x0, y0, x1, y1 = generate_scene(1, split="demo", cue="car").vehicle_boxes[0]
    return (x0 + x1) // 2, (y0 + y1) // 2


def _independent_nonlocal_weights(explorer: Explorer, image: np.ndarray) -> torch.Tensor:
    """softmax(query^T key) over every cell, from the unfolded network's layers, written out here
    rather than taken from the block's own return value (the app runs a BatchNorm-folded copy)."""
    loaded = explorer.models.model("default:nonlocal")[0]
    net, protocol = loaded.net, loaded.protocol
    with torch.no_grad():
        x = normalise(resized_input(image, protocol), protocol)
        features = net.decode_head.convs[0](net.backbone(x)[3])
        block = net.decode_head.nl
        query, key = block.query_conv(features).flatten(2)[0], block.key_conv(features).flatten(2)[0]
        return torch.softmax(query.T.double() @ key.double(), dim=-1).float()


def test_the_heads_without_criss_cross_attention_have_their_own_segmentation(explorer):
    base = explorer.analyse(CAR_SCENE)
    none = explorer.analyse(CAR_SCENE, "default:none")
    non_local = explorer.analyse(CAR_SCENE, "default:nonlocal")
    assert (base.kind, none.kind, non_local.kind) == ("criss-cross", "none", "non-local")
    assert none.views == [] and non_local.views == ["composed"]
    h, w = non_local.grid
    assert non_local.dense.shape == (h * w, h * w) and non_local.attention == []


@pytest.mark.parametrize("head, right", [("default", True), ("default:nonlocal", True), ("default:none", False),
                                         ("default:rcca_r1", False)])
def test_switching_the_head_shows_who_gets_the_trucks_right(explorer, head, right):
    """On the truck demos, against the scenes' own labels: the heads that reach the cue panel
    (R = 2, non-local) label the vehicles right, the others (none, R = 1) mostly call them cars."""
    classes = explorer.classes()
    scores = []
    for seed in (2, 4, 6, 8):
        label = generate_scene(seed, split="demo", cue="truck").label
        mask = explorer.analyse(DEMOS / f"street_seed{seed}_truck.png", head).mask
        vehicle = np.isin(label, [classes.index("car"), classes.index("truck")])
        scores.append(float((mask[vehicle] == label[vehicle]).mean()))
    assert (np.mean(scores) > 0.8) if right else (np.mean(scores) < 0.5)


def test_a_non_local_pin_shows_the_heads_dense_map(explorer, vehicle_pixel):
    analysis = explorer.analyse(CAR_SCENE, "default:nonlocal")
    explanation = explorer.explain(analysis, *vehicle_pixel)
    row, col = cell_of(*vehicle_pixel, analysis.size, analysis.grid)
    assert explanation.maps.cell == (row, col) and explanation.maps.steps == []
    reference = _independent_nonlocal_weights(explorer, analysis.image)
    expected = reference[row * analysis.grid[1] + col].reshape(analysis.grid).numpy()
    np.testing.assert_allclose(explanation.maps.composed, expected, rtol=1e-3, atol=1e-6)
    assert abs(float(explanation.maps.composed.sum()) - 1) < 1e-5
    assert explanation.topk[0]["weight"] == pytest.approx(float(expected.max()), rel=1e-3)


def test_a_head_without_attention_says_so_in_one_line(explorer, vehicle_pixel):
    analysis = explorer.analyse(CAR_SCENE, "default:none")
    with pytest.raises(CCNetError, match="has no attention to show") as err:
        explorer.explain(analysis, *vehicle_pixel)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("head", ["default:none", "default:nonlocal", "default:rcca_r1"])
def test_the_comparison_sets_a_criss_cross_head_against_non_local(explorer, vehicle_pixel, head):
    """For a criss-cross head its own composed map; for the others R = 2's (the default), whose
    figures then equal those of a pin on R = 2 itself."""
    analysis = explorer.analyse(CAR_SCENE, head)
    non_local, figures = explorer.compare_nonlocal(analysis, *vehicle_pixel)
    _, on_base = explorer.compare_nonlocal(explorer.analyse(CAR_SCENE), *vehicle_pixel)
    own = explorer.analyse(CAR_SCENE, "default:nonlocal")
    np.testing.assert_allclose(non_local, explorer.explain(own, *vehicle_pixel).maps.composed, rtol=1e-5, atol=1e-8)
    if head == "default:rcca_r1":
        assert figures["criss_cross_model"] == head and figures["panel_weight"]["criss_cross"] == 0
    else:
        assert figures["criss_cross_model"] == "default"
        assert figures["topk_overlap"] == on_base["topk_overlap"]
        # the panel's cells are those the shown head labels as the panel: a few may differ from R = 2's
        assert figures["panel_weight"] == pytest.approx(on_base["panel_weight"], abs=1e-3)


def test_every_heads_class_comes_from_that_head(explorer, vehicle_pixel):
    """A pin on R = 1 names R = 2's class from R = 2's own run (not R = 1's mask under R = 2's name)."""
    x, y = vehicle_pixel
    classes = explorer.classes()
    expected = {name: classes[int(explorer.analyse(CAR_SCENE, name).mask[y, x])]
                for name in ("default", "default:none", "default:rcca_r1", "default:rcca_r3", "default:nonlocal")}
    assert explorer.head_classes(explorer.analyse(CAR_SCENE, "default:rcca_r1"), x, y) == expected
    assert expected["default"] == "car"


def test_the_page_gets_every_heads_maps_side_by_side_within_the_budget(explorer):
    """The family's five heads: crosses for criss-cross, a non-local head's dense matrix (512^2
    weights: 256 KiB at a byte each), nothing for the head without attention; past the budget the
    shown head's maps come first."""
    from ccnet.app.browser_maps import dequantise, head_bytes

    analysis = explorer.analyse(CAR_SCENE)
    heads = explorer.heads(analysis)
    loaded = explorer.models.model()[0]
    assert list(heads) == ["default:none", "default:rcca_r1", "default", "default:rcca_r3", "default:nonlocal"]
    data = page_data(heads, "default:nonlocal", loaded.classes, loaded.palette)
    sent = {head["name"]: head for head in data["heads"]}
    assert [sent[n]["kind"] for n in heads] == ["none", "criss-cross", "criss-cross", "criss-cross", "non-local"]
    assert "codes" not in sent["default:none"] and "dense" not in sent["default:none"]
    assert [len(sent[n]["codes"]) for n in ("default:rcca_r1", "default", "default:rcca_r3")] == [1, 2, 3]
    dense = heads["default:nonlocal"].dense.numpy()
    codes = np.frombuffer(base64.b64decode(sent["default:nonlocal"]["dense"]["codes"]), np.uint8).reshape(dense.shape)
    scales = np.frombuffer(base64.b64decode(sent["default:nonlocal"]["dense"]["scales"]), "<f4")
    np.testing.assert_allclose(dequantise(codes, scales), dense, rtol=0.03, atol=1e-5 * dense.max())
    tight = page_data(heads, "default:nonlocal", loaded.classes, loaded.palette,
                      budget=head_bytes(heads["default:nonlocal"]) + 1)  # room for the shown head's alone
    assert [("codes" in h or "dense" in h) for h in tight["heads"]] == [False, False, False, False, True]
    for head, kind in (("default", "criss-cross"), ("default:none", "none"), ("default:nonlocal", "non-local")):
        value = viewer_value(explorer.analyse(CAR_SCENE, head), "ccnet/data/x")
        assert value["kind"] == kind and value["maps"] == (kind != "none")

"""On the shipped family, from vehicle pixels of the demo scenes, the R = 2 composed map and the
non-local map put their largest weight on the cue panel (each for one panel colour), while R = 1's
single step cannot reach it; `attention --compare nonlocal` writes both maps and their agreement."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.cli.runner import run_cli
from tools.cue_reach import measure, vehicle_pixels


@pytest.fixture(scope="module")
def reach():
    return measure(("rcca_r1", "rcca_r2", "nonlocal"))


def test_r2_and_non_local_reach_the_panel_that_r1_cannot(reach):
    """Each of R = 2 and non-local looks at the panel from every vehicle pixel of one cue's scenes
    (R = 2: the blue panel, cars; non-local: the red one, trucks: each learned to detect one colour
    and read its absence as the other class), and gets the vehicles' class right; R = 1's single
    step never reaches the panel, and it misses the trucks."""
    arms = reach["arms"]
    assert arms["rcca_r2"]["car"]["top_on_panel"] == 12 and arms["rcca_r2"]["truck"]["top_on_panel"] <= 1
    assert arms["nonlocal"]["truck"]["top_on_panel"] == 12 and arms["nonlocal"]["car"]["top_on_panel"] <= 1
    for arm in ("rcca_r2", "nonlocal"):
        assert all(arms[arm][cue]["right_class"] >= 11 for cue in ("car", "truck"))
    for cue in ("car", "truck"):
        assert arms["rcca_r1"][cue]["top_on_panel"] == 0 and arms["rcca_r1"][cue]["panel_weight"] == 0
    assert arms["rcca_r1"]["truck"]["right_class"] <= 3


def test_vehicle_pixels_lie_in_the_vehicles():
    boxes = [(10, 20, 40, 50), (100, 30, 160, 90)]
    for x, y in vehicle_pixels(boxes):
        assert any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in boxes)


def test_attention_compare_nonlocal_from_the_command_line(tmp_path):
    from ccnet.project import DEMOS

    result = run_cli("attention", str(DEMOS / "street_seed1_car.png"), "--pixel", "165,182", "--compare",
                     "nonlocal", "--out", str(tmp_path / "maps.npz"))
    assert result.returncode == 0, result.stderr
    maps = np.load(tmp_path / "maps.npz")
    grid = tuple(maps["grid"])
    assert maps["nonlocal"].shape == grid and maps["nonlocal"].dtype == np.float32
    assert abs(float(maps["nonlocal"].sum()) - 1) < 1e-4
    figures = json.loads(str(maps["agreement"]))
    assert 0 <= figures["topk_overlap"] <= 1 and 0 <= figures["js_divergence_bits"] <= 1
    image = np.zeros((64, 64, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "i.png")
    result = run_cli("attention", str(tmp_path / "i.png"), "--pixel", "3,3", "--model",
                     "ccnet_r50-d8_512x1024_80k_cityscapes", "--compare", "nonlocal", "--out", str(tmp_path / "m.npz"))
    assert result.returncode == 2 and "has no non-local sibling" in result.stderr


@pytest.mark.parametrize("seed, cue", [(1, "car"), (2, "truck")])
def test_the_apps_comparison_shows_each_head_on_its_own_panel_colour(seed, cue):
    """The explorer's comparison of a vehicle pixel: R = 2's weight on the panel is large in the car
    scene and small in the truck scene; the non-local head's the other way round."""
    from ccnet.app.explorer import Explorer
    from ccnet.experiments.scenes import generate_scene
    from ccnet.project import DEMOS

    explorer = Explorer("default", device="cpu")
    scene = generate_scene(seed, split="demo", cue=cue)
    x0, y0, x1, y1 = scene.vehicle_boxes[0]
    analysis = explorer.analyse(DEMOS / f"street_seed{seed}_{cue}.png")
    _, figures = explorer.compare_nonlocal(analysis, (x0 + x1) // 2, (y0 + y1) // 2)
    looking, blind = ("criss_cross", "nonlocal") if cue == "car" else ("nonlocal", "criss_cross")
    assert figures["panel_weight"][looking] > 0.5 > 0.05 > figures["panel_weight"][blind]
    shares = figures["image_on_cross_share"]
    assert 0 < shares["nonlocal"] < shares["criss_cross"] < 1

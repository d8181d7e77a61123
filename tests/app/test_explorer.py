"""The app's logic without Gradio: bounded cache, one network run per image, clicks, errors, exports."""
from __future__ import annotations

import csv
import io
import re
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from ccnet.app.analysis import Display
from ccnet.app.cache import LRUCache
from ccnet.app.explorer import Explorer, image_key
from ccnet.app.exports import Exports, cost_csv_text
from ccnet.app.present import cost_note, cost_rows, legend_html, md_text, pixel_text
from ccnet.errors import CCNetError, for_visitor
from ccnet.nn import cost
from ccnet.nn.cost import METHODS
from ccnet.project import DEMOS
from ccnet.weights.load import load_file
from tests.helpers import composed_reference, step_reference, tiny_checkpoint, topk_reference
from tools.latency import click_latency


# ---- the bounded LRU ---------------------------------------------------------------------------
def test_lru_is_bounded_in_entries_and_evicts_the_least_recent():
    cache = LRUCache(max_entries=2, max_bytes=1000)
    cache.put("a", 1, 10)
    cache.put("b", 2, 10)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3, 10)
    assert "b" not in cache and "a" in cache and "c" in cache and len(cache) == 2


def test_lru_is_bounded_in_bytes_and_skips_oversized_values():
    cache = LRUCache(max_entries=10, max_bytes=100)
    for key in "abcd":
        cache.put(key, key, 40)
    assert list(cache._items) == ["c", "d"] and cache.nbytes == 80
    cache.put("huge", 0, 101)
    assert "huge" not in cache and cache.nbytes == 80
    cache.put("c", "c2", 10)  # replacing an entry releases its old size
    assert cache.nbytes == 50 and cache.get("c") == "c2"


def test_lru_get_or_create_runs_the_factory_once_under_concurrency():
    cache, calls = LRUCache(4, 1000), []

    def create():
        calls.append(1)
        time.sleep(0.05)
        return "value", 1

    threads = [threading.Thread(target=cache.get_or_create, args=("k", create)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and cache.get("k") == "value"


def test_lru_get_or_create_lets_a_failure_through_and_retries_later():
    cache = LRUCache(4, 1000)

    def fail():
        raise CCNetError("boom")

    with pytest.raises(CCNetError):
        cache.get_or_create("k", fail)
    assert cache.get_or_create("k", lambda: ("ok", 1)) == "ok"


# ---- an Explorer on a tiny model ---------------------------------------------------------------
def count_forwards(explorer: Explorer) -> list[int]:
    """Wrap the network's forward so a test can count how often it really ran."""
    net = explorer.models.model()[1].net  # the network the predictor runs (an optimized copy)
    calls, forward = [], net.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    net.forward = counting
    return calls


def test_clicks_never_rerun_the_network(explorer, picture):
    calls = count_forwards(explorer)
    analysis = explorer.analyse(picture)
    for x, y in [(0, 0), (95, 63), (40, 20), (10, 50)]:
        for view in analysis.views:
            shown = Display(view=view, scale="log", clip=0.3)
            explorer.render(explorer.explain(picture, x, y, display=shown), shown)
    explorer.overlay(explorer.analyse(picture), 0.8, (3, 4))
    assert len(calls) == 1 and explorer.network_runs == 1


def test_the_same_image_as_another_file_or_model_is_a_new_entry(explorer, picture, tmp_path, checkpoint):
    explorer.analyse(picture)
    copy = tmp_path / "copy.png"
    copy.write_bytes(picture.read_bytes())
    explorer.analyse(copy)
    assert explorer.network_runs == 1 and image_key(copy) == image_key(picture)
    other = tiny_checkpoint(tmp_path / "other.pt", seed=1)
    explorer.analyse(picture, model=str(other))
    assert explorer.network_runs == 2 and len(explorer.cache) == 2


def test_models_load_once_per_name_even_when_asked_concurrently(checkpoint):
    calls = []

    def loader(name, progress=None):
        calls.append(name)
        time.sleep(0.05)
        return load_file(checkpoint, name=name)

    explorer = Explorer("default", device="cpu", loader=loader)
    threads = [threading.Thread(target=explorer.models.model) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["default"]


def test_explain_gives_the_clicked_cell_and_distributions(explorer, picture):
    height, width = 64, 96
    for x, y in [(0, 0), (95, 63), (47, 31), (13, 60)]:
        explanation = explorer.explain(picture, x, y)
        (h, w) = explanation.maps.grid
        assert explanation.maps.cell == (y * h // height, x * w // width)
        for grid_map in [*explanation.maps.steps, explanation.maps.composed]:
            assert grid_map.shape == (h, w)
            assert abs(float(grid_map.sum()) - 1.0) < 1e-4
    analysis = explorer.analyse(picture)
    row, col = explanation.maps.cell
    for attn, grid_map in zip(analysis.attention, explanation.maps.steps):
        np.testing.assert_allclose(grid_map, step_reference(attn, row, col), atol=1e-7)
    np.testing.assert_allclose(explanation.maps.composed, composed_reference(analysis.attention, row, col),
                               rtol=1e-5, atol=1e-7)


def test_topk_follows_the_chosen_view(explorer, picture):
    attention = explorer.analyse(picture).attention
    for view in ("step 1", "composed"):
        explanation = explorer.explain(picture, 50, 30, display=Display(view=view, k=4))
        row, col = explanation.maps.cell
        shown = step_reference(attention[0], row, col) if view == "step 1" else composed_reference(attention, row, col)
        np.testing.assert_allclose(explanation.view_map, shown, rtol=1e-5, atol=1e-7)
        expected = topk_reference(explanation.view_map, 4)
        assert [tuple(t["cell"]) for t in explanation.topk] == [(r, c) for r, c, _ in expected]
        np.testing.assert_allclose([t["weight"] for t in explanation.topk], [w for _, _, w in expected], atol=1e-6)
        assert [t["rank"] for t in explanation.topk] == [1, 2, 3, 4]


def test_explanation_json_has_the_endpoint_fields(explorer, picture):
    explanation = explorer.explain(picture, 50, 30)
    data = explanation.to_json(explorer.classes())
    assert {"grid", "cell", "steps", "composed", "topk", "pixel", "class", "confidence"} <= set(data)
    assert len(data["steps"]) == 2 and np.asarray(data["steps"][0]).shape == tuple(data["grid"])
    assert data["class"] in explorer.classes() and 0 < data["confidence"] <= 1
    assert "(50, 30)" in pixel_text(explanation, explorer.classes())


def test_render_draws_every_view_at_the_image_size(explorer, picture):
    shown = Display(view="step 2", cmap="viridis", upsampling="bilinear", grid_lines=True, k=3)
    pictures = explorer.render(explorer.explain(picture, 10, 10, display=shown), shown)
    assert pictures["heatmap"].shape == (64, 96, 3) and set(pictures) == {"heatmap", "steps"}
    assert pictures["steps"].shape[0] > 20 and pictures["steps"].shape[1] > 3 * 96


@pytest.mark.parametrize("x, y", [(-1, 0), (96, 0), (0, 64), (1000, 1000)])
def test_a_click_outside_the_image_is_a_clear_error(explorer, picture, x, y):
    with pytest.raises(CCNetError, match="outside the 96x64 image"):
        explorer.explain(picture, x, y)


def test_bad_inputs_are_one_line_errors(explorer, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (20, 200)).save(tiny)
    for source, message in [(broken, "broken.png"), (tiny, "too small: 20x200"), (None, "no image yet"),
                            (tmp_path / "missing.png", "no longer on the server")]:
        with pytest.raises(CCNetError, match=message) as info:
            explorer.analyse(source)
        assert "\n" not in str(info.value)
    with pytest.raises(CCNetError, match="whole numbers"):
        explorer.explain(np.zeros((40, 40, 3), np.uint8), "a", 3)
    assert explorer.network_runs == 1  # only the valid array above ran


def test_large_images_are_downscaled_with_a_note(explorer):
    wide = np.zeros((200, 2100, 3), np.uint8)
    analysis = explorer.analyse(wide)
    assert analysis.size == (195, 2048) and "downscaled from 2100x200" in analysis.note
    assert "downscaled" in explorer.status(analysis)


def test_status_line_names_device_model_and_time(explorer, picture):
    assert "cpu" in explorer.status(None) and "tiny\\.pt" in explorer.status(None)  # Markdown-escaped
    text = explorer.status(explorer.analyse(picture))
    assert "last inference" in text and "96×64" in text


def test_legend_html_lists_classes_with_shares(explorer, picture):
    analysis = explorer.analyse(picture)
    loaded = explorer.models.model()[0]
    text = legend_html(analysis, loaded.classes, loaded.palette)
    assert all(name in text for name in loaded.classes) and "%" in text


def test_exports_write_mask_overlay_npz(explorer, picture, tmp_path):
    exports = Exports(tmp_path)
    analysis = explorer.analyse(picture)
    palette = explorer.models.model()[0].palette
    with Image.open(exports.mask_png(analysis, palette)) as saved:  # the values are class indices ...
        assert saved.mode == "P"
        np.testing.assert_array_equal(np.asarray(saved), analysis.mask)
        colours = np.asarray(saved.convert("RGB"))  # ... and any viewer shows the class colours
    np.testing.assert_array_equal(colours, np.asarray(palette, np.uint8)[analysis.mask])
    with Image.open(exports.colour_png(analysis, palette)) as saved:
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(palette, np.uint8)[analysis.mask])
    overlay = explorer.overlay(analysis, 0.4)
    np.testing.assert_array_equal(np.asarray(Image.open(exports.picture(analysis, "overlay", overlay))), overlay)
    exports.attention_npz(explorer.explain(picture, 50, 60))
    explanation = explorer.explain(picture, 5, 6)
    with np.load(exports.attention_npz(explanation)) as data:
        assert list(data["cell"]) == list(explanation.maps.cell) and list(data["pixel"]) == [5, 6]
        np.testing.assert_array_equal(data["step1"], explanation.maps.steps[0])
        np.testing.assert_array_equal(data["composed"], explanation.maps.composed)
    assert len(list(tmp_path.glob("*/*.npz"))) == 2


# ---- cost, with a stand-in for ccnet.nn.cost so only the caching is tested here ----------------------
@pytest.fixture()
def fake_cost(monkeypatch):
    """ccnet.nn.cost.measure_costs replaced by a counting stand-in: only the caching is tested here."""
    calls = []

    def measure_costs(methods, channels, h, w, device="cpu"):
        calls.extend((method, channels, h, w) for method in methods)
        n = h * w
        return {method: {"method": method, "memory_bytes": 4 * n * (n if method == "nonlocal" else h + w - 1) + 100,
                         "analytic_bytes": 4 * n * (n if method == "nonlocal" else h + w - 1),
                         "flops": 2 * n * (n if method == "nonlocal" else h + w - 1) * channels, "time_ms": 1.0,
                         "estimated": False} for method in methods}

    monkeypatch.setattr(cost, "measure_costs", measure_costs)
    return calls


def test_cost_is_measured_once_per_feature_size(explorer, picture, fake_cost):
    """Caching only: the stand-in's figures prove nothing about the methods (see the test below)."""
    first = explorer.cost(picture)
    again = explorer.cost(picture)
    same_size = explorer.cost(np.zeros((64, 96, 3), np.uint8))
    assert first is again is same_size and len(fake_cost) == len(METHODS)
    assert first["feature_size"] == list(explorer.analyse(picture).grid) and first["channels"] == 16
    growth = explorer.cost_growth(first)
    assert 97 in growth["sides"] and set(growth["curves"]) == set(METHODS)


def test_cost_on_an_8x16_grid_matches_the_sizes_worked_out_by_hand(explorer):
    """The real measurement (no stand-in): the paper's memory claim is about the attention maps.

    A 128 x 64 image gives the tiny model an 8 x 16 feature grid: N = 128 cells. A non-local block
    stores one N x N float32 map: 128 * 128 * 4 = 65,536 bytes. A criss-cross step stores, for each
    cell, the weights of its cross of 8 + 16 - 1 = 23 cells: 128 * 23 * 4 = 11,776 bytes per step,
    23,552 for R = 2. FLOPs (2 per multiply-add, C = 16, C/8 = 2): the 1x1 convs 2 * 128 * 16 * (2 + 2
    + 16) = 81,920 per step, affinity and aggregation 2 * 128 * S * (2 + 16) with S = 128 for non-local
    and S = 8 + 16 = 24 for a criss-cross step (the stored layout's always-zero centre entry is computed
    too: one cell more than the paper's 23)."""
    measured = explorer.cost(np.zeros((64, 128, 3), np.uint8))
    assert measured["feature_size"] == [8, 16] and measured["channels"] == 16
    by_hand = {"rcca1": 11_776, "rcca2": 23_552, "rcca3": 35_328, "nonlocal": 65_536}
    assert {method: measured[method]["analytic_bytes"] for method in METHODS} == by_hand
    flops = {"rcca1": 81_920 + 110_592, "rcca2": 2 * (81_920 + 110_592), "rcca3": 3 * (81_920 + 110_592),
             "nonlocal": 81_920 + 589_824}
    assert {method: measured[method]["flops"] for method in METHODS} == flops
    assert not any(measured[method]["estimated"] for method in METHODS)
    memory = {method: measured[method]["memory_bytes"] for method in METHODS}
    assert memory["nonlocal"] > memory["rcca3"] > memory["rcca1"] > 0 and memory["rcca2"] > memory["rcca1"]
    assert memory["nonlocal"] >= by_hand["nonlocal"]  # the N x N map was really allocated


def test_cost_table_and_csv_flag_estimates():
    item = {"memory_bytes": 2 << 20, "analytic_bytes": 1 << 20, "flops": 3e9, "time_ms": 1.5}
    measured = {"feature_size": [32, 64], "channels": 64, "device": "cpu", "rcca1": item, "rcca2": item,
                "rcca3": item, "nonlocal": {"memory_bytes": 5 << 30, "analytic_bytes": 4 << 30, "flops": 1e12,
                                            "time_ms": None, "estimated": True,
                                            "reason": "needs 5.0 GiB, 2.0 GiB free"}}
    rows = cost_rows(measured)
    assert [row[0] for row in rows] == ["no attention", "R = 1", "R = 2", "R = 3", "non-local"]
    assert rows[1][:5] == ["R = 1", "—", "1.00 MiB", "2.00 MiB", 3.0] and rows[4][-1].startswith("estimated: needs")
    assert "estimated" in cost_note(measured) and "32×64" in cost_note(measured)
    table = list(csv.DictReader(io.StringIO(cost_csv_text(measured))))
    assert [r["method"] for r in table] == list(METHODS)
    assert table[3]["estimated"] == "True" and table[0]["flops"] == "3000000000.0"


def test_click_latency_reports_without_running_the_network(explorer, picture):
    explorer.analyse(picture)
    result = click_latency(explorer, picture, clicks=3)
    assert result["network_runs"] == 0 and result["clicks"] == 3 and result["median_ms"] > 0


def test_gpu_task_is_a_no_op_off_zerogpu():
    from ccnet.app.server import zerogpu

    if "spaces" in sys.modules:
        pytest.skip("the spaces package is installed: its GPU decorator is in use")
    assert zerogpu.gpu_task(30)(len) is len


def test_an_unreachable_preset_is_a_clear_error_and_the_current_model_stays(explorer, picture, monkeypatch, tmp_path):
    from ccnet.weights import presets as zoo

    monkeypatch.setenv("CCNET_CACHE", str(tmp_path))
    monkeypatch.setenv("CCNET_ZOO_URL", "http://127.0.0.1:9")  # loopback, nothing listening: like offline
    name = next(iter(zoo.presets()))
    explorer.analyse(picture)
    with pytest.raises(CCNetError, match="cannot download") as info:
        explorer.models.model(name, progress=lambda done, total: None)
    assert "\n" not in str(info.value)
    assert "http://127.0.0.1:9" in str(info.value) and str(tmp_path) in str(info.value)  # for the log and CLI
    visitor = for_visitor(info.value)  # for the page: what happened and what to do, no URL, no path
    assert visitor.startswith("cannot download ccnet_") and visitor.endswith("try again later")
    assert "http" not in visitor and "/" not in visitor
    assert explorer.analyse(picture).model == explorer.default_model and explorer.network_runs == 1


def test_exif_orientation_and_the_first_gif_frame_are_honoured(explorer, tmp_path):
    photo = Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 72, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    photo.save(tmp_path / "turned.jpg", exif=exif)
    assert explorer.analyse(tmp_path / "turned.jpg").size == (72, 40)
    frames = [Image.new("RGB", (48, 40), colour) for colour in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    first = explorer.analyse(tmp_path / "anim.gif").image
    assert first.shape == (40, 48, 3) and first[..., 0].mean() > 200 and first[..., 2].mean() < 50


def test_kept_examples_survive_a_flood_of_uploads(checkpoint, tmp_path):
    """The examples are analysed once and kept apart: uploads never evict them."""
    explorer = Explorer(str(checkpoint), device="cpu", max_entries=2)
    examples = sorted(str(p) for p in DEMOS.glob("*_car.png"))[:2]
    explorer.keep(examples)
    assert explorer.network_runs == 2
    rng = np.random.default_rng(3)
    for i in range(5):
        path = tmp_path / f"upload{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path)
        explorer.analyse(path)
    assert len(explorer.cache) == 2 and explorer.network_runs == 7
    for example in examples:
        explorer.explain(example, 10, 10)
    assert explorer.network_runs == 7  # answered from the kept cache


def test_a_failed_model_load_is_remembered_and_retried_with_backoff(checkpoint, monkeypatch):
    from ccnet.app import models as models_module
    from ccnet.errors import DownloadError

    calls, now = [], [1000.0]
    monkeypatch.setattr(models_module.time, "monotonic", lambda: now[0])

    def loader(name, progress=None):
        calls.append(name)
        if len(calls) < 3:
            raise DownloadError("cannot download x from http://host/", "cannot download x now")
        return load_file(checkpoint, name=name)

    explorer = Explorer("default", device="cpu", loader=loader)
    for _ in range(5):  # five requests inside the first backoff: one attempt
        with pytest.raises(DownloadError):
            explorer.models.model("preset")
    assert calls == ["preset"]
    now[0] += 31  # after 30 s: one retry, which fails again; the next wait doubles
    with pytest.raises(DownloadError):
        explorer.models.model("preset")
    now[0] += 31
    with pytest.raises(DownloadError):
        explorer.models.model("preset")
    assert len(calls) == 2
    now[0] += 30  # 61 s after the second failure: retried, and it works
    assert explorer.models.model("preset")[0].name == "preset" and len(calls) == 3


def test_class_names_from_a_checkpoint_are_text_in_every_line_the_page_renders(tmp_path, picture):
    """A crafted checkpoint's class names reach the pixel line, the legend and the status as text."""
    markup = ("<img src=//203.0.113.7/x>", "[a](//203.0.113.7)", "**b**", "<h1>c</h1>")
    explorer = Explorer(str(tiny_checkpoint(tmp_path / "crafted.pt", classes=markup)), device="cpu")
    analysis = explorer.analyse(picture)
    loaded = explorer.models.model()[0]
    explanation = explorer.explain(analysis, 10, 10)
    line = pixel_text(explanation, loaded.classes)
    legend = legend_html(analysis, loaded.classes, loaded.palette)
    assert "<img" not in legend and "<h1" not in legend  # HTML: escaped entities
    assert "<img" not in line and "<h1" not in line and "](" not in line and "****" not in line  # Markdown
    assert "**" + md_text(loaded.classes[explanation.pixel_class]) + "**" in line


def test_an_uploads_link_key_is_random_lives_with_the_upload_and_says_nothing_of_others(tmp_path):
    """The key is not the content's hash nor the upload's path: the same bytes uploaded elsewhere, or
    by another page to the same path, get another key, while the page holding a key keeps it; a key
    works while its upload lives (a use renews it) and after that is answered like one never issued;
    at most `max_keys` are answered."""
    import hashlib
    import os

    from ccnet.app.links import KEY_PATTERN, LinkKeys

    keys = LinkKeys(max_keys=3, max_age_s=60)
    first, second = tmp_path / "a" / "scene.png", tmp_path / "b" / "scene.png"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(b"same bytes")
    content = hashlib.sha1(b"same bytes").hexdigest()
    key = keys.issue(content, str(first), client="a")
    assert re.fullmatch(KEY_PATTERN, key) and content not in key and keys.issue(content, str(first), key) == key
    same_path = keys.issue(content, str(first), client="b")  # another visitor's upload, kept at the same path
    assert same_path != key and keys.issue(content, str(first), same_path) == same_path
    assert keys.issue(content, str(first)) is None  # an event that does not keep a key gets none made
    other = keys.issue(content, str(second), key, client="a")  # a key names its own upload, not another's
    assert other not in (key, same_path) and keys.resolve(key) == (content, str(first))
    assert keys.resolve(content) is None
    old = time.time() - 120
    os.utime(first, (old, old))  # unused for two minutes: expired
    assert keys.resolve(key) is None and keys.resolve("A" * 22) is None
    os.utime(first, None)
    assert keys.resolve(key) is None  # gone for good, even if the file is used again
    for i in range(4):
        (tmp_path / f"c{i}").write_bytes(b"x")
        keys.issue(f"k{i}", str(tmp_path / f"c{i}"), client=f"c{i}")
    assert keys.resolve(other) is None  # the least recently used of more than three


def test_a_client_asking_for_keys_again_and_again_turns_over_its_own_only(tmp_path):
    """Even on an upload it shares with another visitor (the same bytes under the same name)."""
    from ccnet.app.links import LinkKeys

    keys = LinkKeys(max_keys=6, max_age_s=60, per_client=2)
    shared = tmp_path / "scene.png"
    shared.write_bytes(b"x")
    kept = keys.issue("s", str(shared), client="visitor")
    first = keys.issue("s", str(shared), client="attacker")
    second = keys.issue("s", str(shared), client="attacker")
    keys.resolve(first)  # used since: `second` is now the attacker's least recently used
    churned = [keys.issue("s", str(shared), client="attacker") for _ in range(50)]
    assert keys.resolve(kept) == ("s", str(shared)) and keys.resolve(second) is None
    assert keys.resolve(churned[-1]) == ("s", str(shared)) and keys.resolve(churned[-3]) is None


def test_two_pages_sending_the_same_file_get_their_own_link_and_each_keeps_it(tmp_path, explorer, picture,
                                                                               monkeypatch):
    """Gradio keeps two visitors' uploads of the same bytes under the same name at one path: each
    page still gets its own key, and keeps it on its next event, or when opened from its link."""
    from ccnet.app.ui.page import ExplorerUI

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    page = ExplorerUI(explorer, Exports(tmp_path / "exports"))
    upload = tmp_path / "uploads" / "0f3a9c" / "scene.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(picture.read_bytes())
    model = explorer.default_model
    mine, theirs = (page.current(str(upload), None, model, client=who)[1] for who in ("10.0.0.2", "10.0.0.3"))
    assert mine != theirs
    assert page.current(str(upload), mine, model)[1] == mine and page.current(None, theirs, model)[1] == theirs
    assert page.current(str(upload), None, model)[1] is None  # a pin or a cost event makes no key


def test_a_links_pixel_outside_its_image_is_named_and_the_rest_of_the_link_applied(tmp_path, explorer):
    """Before, the pixel reached the pin and its error emptied the page."""
    from types import SimpleNamespace

    import gradio as gr

    from ccnet.app.ui.page import ExplorerUI

    with gr.Blocks():
        page = ExplorerUI(explorer, Exports(tmp_path / "exports"))
        page.layout()
    asked = {"example": "street_seed2_truck.png", "x": "5000", "y": "10", "view": "step2", "cmap": "viridis"}
    updates = page.on_load(SimpleNamespace(query_params=asked))
    viewer = updates[page.viewer]
    assert viewer["pin"] is None and viewer["view"] == "step2" and viewer["display"] == {"cmap": "viridis"}
    assert "x=5000, y=10 ignored: outside the 512x256 image" in updates[page.status].replace("\\", "")


def test_a_link_whose_image_cannot_be_analysed_yet_sets_its_model_and_says_why(tmp_path, explorer, monkeypatch):
    """E.g. a link naming a released model still downloading: the menu holds it, the views are empty
    and the status line says to retry (before, only the status line changed)."""
    from types import SimpleNamespace

    import gradio as gr

    from ccnet.app.ui.page import ExplorerUI

    with gr.Blocks():
        page = ExplorerUI(explorer, Exports(tmp_path / "exports"))
        page.layout()

    def downloading(*args, **kwargs):
        raise CCNetError("m is being downloaded (about 200 MB); retry in a minute")

    monkeypatch.setattr(explorer, "analyse", downloading)
    updates = page.on_load(SimpleNamespace(query_params={"example": "street_seed2_truck.png"}))
    assert updates[page.model] == explorer.default_model and updates[page.viewer] is None
    assert "retry in a minute" in updates[page.status] and "\n" not in updates[page.status]


def test_a_link_to_an_expired_upload_and_a_made_up_one_are_answered_alike(tmp_path, explorer, picture):
    import os

    from ccnet.app.links import EXPIRED
    from ccnet.app.ui.page import ExplorerUI

    page = ExplorerUI(explorer, Exports(tmp_path / "exports"))
    upload = tmp_path / "upload.png"
    upload.write_bytes(picture.read_bytes())
    key = explorer.links.issue(explorer.analyse(upload).key, str(upload), client="10.0.0.2")
    os.utime(upload, (time.time() - 7200, time.time() - 7200))  # unused for two hours
    answers = []
    for asked in (key, "A" * 22):
        with pytest.raises(CCNetError) as err:
            page.current(None, asked, explorer.default_model)
        answers.append(str(err.value))
    assert answers == [EXPIRED, EXPIRED] and "hour" in EXPIRED

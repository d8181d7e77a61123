"""The video mode without Gradio: a clip analysed once per (head, clip), one position's maps equal to
explain_clip_pixel's, bad clips and bad pixels in one line, the page's quantised 3D weights within
the image viewer's bound, the cost strip's figures, deep links, the demo clips, and a clip's weight
in the fair queue."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from ccnet import limits
from ccnet.app.browser_maps import BUDGET_BYTES, dequantise, error_bound
from ccnet.app.server.fairness import job_cost
from ccnet.app.video import VIDEO_MODELS, VideoExplorer
from ccnet.app.video_links import parse_clip_link
from ccnet.app.video_maps import camvid_bench, cost_strip, head_bytes, in_browser, page_data, panels
from ccnet.errors import CCNetError, ImageError
from ccnet.inference.clips import clip_pixels, decode_clip
from ccnet.inference.video import VideoPredictor, explain_clip_pixel
from ccnet.nn.attention_maps3d import composed_map
from ccnet.project import DEMOS
from ccnet.weights.video import load_video_model
from tests.files import BAD_CLIPS, animated, clip_frames, encoded

CLIP = DEMOS / "clip_seed10_truck.webp"


@pytest.fixture(scope="module")
def video():
    return VideoExplorer("cpu")


@pytest.fixture(scope="module")
def analysis(video):
    return video.analyse(CLIP)


def test_a_clip_is_analysed_once_per_head_and_kept_compactly(video, analysis):
    assert analysis.model == "default:video" and analysis.kind == "criss-cross-3d" and analysis.steps == 3
    assert analysis.grid == (5, 16, 32) and analysis.size == (128, 256) and analysis.frames.shape == (5, 128, 256, 3)
    assert analysis.masks.shape == analysis.confidence.shape == (5, 128, 256)
    assert [tuple(a.shape) for a in analysis.attention] == [(5, 16, 32, 53)] * 3
    runs = video.network_runs
    assert video.analyse(CLIP) is analysis and video.analyse(CLIP.read_bytes()) is analysis
    assert video.network_runs == runs
    classes = video.classes()
    truck = classes.index("truck")  # the panel shows in frame 4 only: the head reads it across time
    assert all((analysis.masks[t] == truck).sum() > 300 for t in range(4))


def test_a_positions_maps_are_the_predictors(video, analysis):
    loaded = load_video_model("default:video")
    prediction = VideoPredictor(loaded.net, loaded.protocol, "cpu").predict(decode_clip(CLIP))
    for t, x, y in ((1, 78, 84), (0, 0, 0), (4, 255, 127), (2, 200, 30)):
        mine, theirs = video.explain(analysis, t, x, y), explain_clip_pixel(prediction, t, x, y)
        assert mine.cell == theirs.cell and mine.grid == theirs.grid
        np.testing.assert_allclose(mine.steps, theirs.steps, atol=1e-5)
        np.testing.assert_allclose(mine.composed, theirs.composed, atol=1e-5)
        assert mine.composed.sum() == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize("t, x, y, words", [
    (5, 10, 10, "frame 5 is outside the clip's 5 frames"), (1.5, 10, 10, "the frame t must be a whole number"),
    (True, 10, 10, "the frame t must be a whole number"), (1, 256, 10, "outside the 256x128 image"),
    (1, "7", 10, "pixel coordinates must be whole numbers"), (1, 3, float("nan"), "must be whole numbers")])
def test_a_bad_frame_or_pixel_is_one_line(video, analysis, t, x, y, words):
    with pytest.raises(CCNetError, match=words) as info:
        video.explain(analysis, t, x, y)
    assert "\n" not in str(info.value)


def test_reach_counts_one_two_and_three_steps(video, analysis):
    frames, h, w = analysis.grid
    assert video.reach_counts(analysis, (1, 10, 9)) == [frames + h + w - 2, 1 + (frames - 1) + (h - 1) + (w - 1) + (
        (frames - 1) * (h - 1) + (frames - 1) * (w - 1) + (h - 1) * (w - 1)), frames * h * w]
    assert video.reach_counts(analysis, (0, 0, 0)) == [51, 700, 2560]


@pytest.mark.parametrize("name", sorted(BAD_CLIPS))
def test_bad_clips_are_one_line_and_the_next_clip_is_served(video, name, tmp_path):
    data, words = BAD_CLIPS[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageError, match=words) as info:
        video.analyse(path)
    assert "\n" not in str(info.value)
    assert video.analyse(CLIP).grid == (5, 16, 32)


def huge_gif() -> bytes:
    """Six flat 2000 x 2000 frames: the fifth passes the 16,000,000 pixels a clip may have."""
    frames = [Image.new("L", (2000, 2000), 40 * (i % 2)) for i in range(6)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def test_a_huge_gif_and_unknown_heads_are_one_line(video):
    with pytest.raises(ImageError, match=f"5 frames of 2000x2000 pixels pass the {limits.MAX_CLIP_PIXELS:,} pixels"):
        video.analyse(huge_gif())
    with pytest.raises(CCNetError, match="unknown video model 'default'; choose one of: default:video"):
        video.analyse(CLIP, "default")
    for crafted in (["x"], {"a": 1}, 3):  # what a raw call can send as the model: one line, no traceback
        with pytest.raises(CCNetError, match="unknown video model"):
            video.analyse(CLIP, crafted)
    with pytest.raises(ImageError, match="no clip yet"):
        video.analyse(None)


def test_the_endpoints_json_and_pictures(video, analysis):
    data = video.segment_json(analysis)
    assert data["frames"] == 5 and data["grid"] == [5, 16, 32] and data["frame_size"] == [128, 256]
    assert abs(sum(row["share"] for row in data["legend"]) - 1) < 1e-6 and len(data["frame_legends"]) == 5
    strip = video.strip(analysis)
    assert strip.shape == (128, 5 * 256 + 4 * 4, 3)
    maps = video.explain(analysis, 1, 78, 84)
    info = video.attention_json(analysis, maps, 78, 84)
    assert info["cell"] == [1, 10, 9] and info["class"] == "truck" and info["reach"] == [51, 700, 2560]
    assert np.asarray(info["steps"]).shape == (3, 5, 16, 32) and np.asarray(info["composed"]).shape == (5, 16, 32)
    assert video.attention_strip(analysis, maps, 78, 84).shape == strip.shape


def test_the_pages_weights_decode_within_the_bound_and_compose_as_the_server(video, analysis):
    data = page_data(analysis, video.classes(), video.palette(), 64)
    assert len(data["frames"]) == len(data["masks"]) == 5 and in_browser(analysis)
    import base64

    frames, h, w = analysis.grid
    decoded = []
    for s, step in enumerate(analysis.attention):
        codes = np.frombuffer(base64.b64decode(data["codes"][s]), np.uint8).reshape(step.shape)
        scales = np.frombuffer(base64.b64decode(data["scales"][s]), "<f4").reshape(step.shape[:3])
        weights = step.numpy()
        assert np.all(np.abs(dequantise(codes, scales) - weights) <= error_bound(weights, scales))
        decoded.append(dequantise(codes, scales))
    assert head_bytes(analysis) == sum(len(base64.b64decode(c)) + len(base64.b64decode(s))
                                       for c, s in zip(data["codes"], data["scales"]))
    import torch

    cell = (1, 10, 9)
    page = composed_map([torch.from_numpy(d) for d in decoded], cell).numpy()
    assert np.abs(page - video.explain(analysis, 1, 78, 84).composed).max() < 0.05 * page.max()


def test_over_the_budget_and_for_non_local_the_page_gets_no_weights(video, analysis):
    assert "codes" not in page_data(analysis, video.classes(), video.palette(), 64, budget=head_bytes(analysis) - 1)
    non_local = video.analyse(CLIP, "default:nonlocal3d")
    assert non_local.kind == "non-local-3d" and non_local.steps == 1 and not in_browser(non_local, BUDGET_BYTES)
    assert head_bytes(non_local) == 2560 * (2560 + 4)
    assert panels("non-local-3d", 1) == [["segmentation", "segmentation"],
                                          ["composed", "non-local · the whole clip in one step"]]
    assert [v for v, _ in panels("criss-cross-3d", 3)] == ["segmentation", "step1", "step2", "step3", "composed"]
    maps = video.explain(non_local, 1, 78, 84)
    assert maps.steps.shape == (1, 5, 16, 32) and video.reach_counts(non_local, maps.cell) == [2560]


def test_the_cost_strip_says_where_each_figure_comes_from():
    strip = cost_strip((5, 16, 32), 64, 3)
    here, paper = strip["here"], strip["paper"]
    assert here["step_bytes"] == 2560 * 53 * 4 and here["criss_cross_bytes"] == 3 * here["step_bytes"]
    assert here["nonlocal_bytes"] == 2560 ** 2 * 4 and "analytic" in here["source"]
    assert round(paper["step_bytes"] / 1e6, 1) == 37.4 and round(paper["nonlocal_bytes"] / 1e9, 2) == 8.85
    bench = camvid_bench()
    assert strip["camvid"] == bench and bench["grid"] == [5, 90, 120] and bench["channels"] == 512
    assert bench["criss_cross"]["median_ms"] > 0 and bench["nonlocal"]["estimated"] is True
    assert "assets/bench_video_cpu.json" in bench["source"] or "bench_video_cpu.json" in bench["source"]


def test_links_are_checked_and_placed_on_the_clip():
    models, clips = list(VIDEO_MODELS), ["clip_seed10_truck.webp"]
    link = parse_clip_link({"clip": clips[0], "t": "2", "x": "30", "y": "40", "model": "default:rcca3d_r2",
                            "view": "reach", "cmap": "viridis", "scale": "linear"}, clips, models)
    assert (link.clip, link.t, link.pixel, link.model, link.view, link.problems) == (
        clips[0], 2, (30, 40), "default:rcca3d_r2", "reach", ())
    assert link.display == {"cmap": "viridis", "scale": "linear"}
    bad = parse_clip_link({"clip": "<h1>x</h1>", "t": "-1", "x": "3", "view": "all", "model": "default"}, clips, models)
    assert (bad.clip, bad.t, bad.pixel, bad.view, bad.model) == (None,) * 5
    assert [p.split("=")[0] for p in bad.problems] == ["clip", "model", "view", "t", "x"]
    assert "'<h1>x</h1>'" in bad.problems[0]
    placed = parse_clip_link({"t": "9", "x": "300", "y": "5"}, clips, models).place(5, (128, 256))
    assert placed.t is None and placed.pixel is None and len(placed.problems) == 2
    assert parse_clip_link({"x": "3", "y": "5"}, clips, models).place(5, (128, 256)).t == 0
    assert parse_clip_link({"t": "16"}, clips, models).problems  # no clip has a 17th frame


def test_the_demo_clips_are_the_rendered_clips_losslessly(tmp_path):
    from ccnet.experiments.street_clips import generate_clip
    from tools.demos import CLIP_SEEDS, write_clips

    written, rows = write_clips(tmp_path)
    assert len(written) == len(rows) == len(CLIP_SEEDS) >= 2
    for path in written:
        shipped = DEMOS / path.name
        assert "clip" in path.name and shipped.read_bytes() == path.read_bytes() and shipped.stat().st_size < 1 << 20
        seed = int(path.name.split("_")[1][4:])
        clip = generate_clip(seed, split="demo", cue="car" if seed % 2 else "truck")
        assert np.array_equal(decode_clip(shipped), clip.frames)


FILE_DATA = {"_type": "gradio.FileData"}


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_a_clip_weighs_all_its_frames_in_the_fair_queue(fmt, tmp_path):
    path = tmp_path / f"clip.{fmt.lower()}"
    path.write_bytes(animated(clip_frames(7, 40, 48), fmt))
    assert clip_pixels(path) == 7 * 40 * 48
    event = SimpleNamespace(data=SimpleNamespace(data=[{"path": str(path), "meta": FILE_DATA}, "", 3]))
    assert job_cost(event) == pytest.approx(1 + 7 * 40 * 48 / 1e6)
    longer = tmp_path / "long.gif"
    longer.write_bytes(animated(clip_frames(limits.MAX_FRAMES + 4, 40, 48), "GIF"))
    assert clip_pixels(longer) == limits.MAX_FRAMES * 40 * 48  # counted up to the most a clip may have
    still = tmp_path / "still.png"
    Image.new("RGB", (50, 40)).save(still)
    assert clip_pixels(still) is None and job_cost(SimpleNamespace(data=SimpleNamespace(data=[
        {"path": str(still), "meta": FILE_DATA}]))) == pytest.approx(1 + 2000 / 1e6)

"""The video mode's endpoints and page handlers without a server: /segment_video and /attention_video
(their pictures and JSON, the cache, one-line refusals, their tool docs for MCP, a clip's weight in
the fair queue), and the /video page's handlers (a link's clip, frame and pixel, the server's maps
past the byte budget, a bad clip in one line). Through a served app: tests/e2e/test_app_api.py; in
a browser: tests/e2e/test_video_viewer.py."""
from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from ccnet.app.browser_maps import BUDGET_BYTES
from ccnet.app.exports import Exports
from ccnet.app.server.blobs import BLOBS, PREFIX
from ccnet.app.server.fairness import job_cost
from ccnet.app.ui.video_api import attention_video_endpoint, segment_video_endpoint
from ccnet.app.ui.video_page import FIRST_PIN, VideoUI
from ccnet.app.video import VideoExplorer
from ccnet.app.video_maps import head_bytes
from ccnet.inference.clips import decode_clip
from ccnet.project import DEMOS
from tests.files import BAD_CLIPS, animated

CLIP = DEMOS / "clip_seed10_truck.webp"


@pytest.fixture(scope="module")
def video():
    return VideoExplorer("cpu")


@pytest.fixture()
def endpoints(video, tmp_path):
    exports = Exports(tmp_path / "exports")
    return segment_video_endpoint(video, exports), attention_video_endpoint(video, exports)


@pytest.fixture()
def uploads(tmp_path, monkeypatch):
    """Gradio's upload folder, where a request's files must lie."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


def test_segment_video_returns_every_frame_and_its_legend(endpoints):
    segment, _ = endpoints
    strip, data = segment({"path": str(CLIP)}, "")
    assert Image.open(strip).size == (5 * 256 + 4 * 4, 128)
    assert (data["model"], data["frames"], data["grid"], data["kind"], data["steps"]) == (
        "default:video", 5, [5, 16, 32], "criss-cross-3d", 3)
    assert abs(sum(row["share"] for row in data["legend"]) - 1) < 1e-6 and len(data["frame_legends"]) == 5
    assert "truck" in {row["name"] for row in data["frame_legends"][1]}


def test_attention_video_answers_any_position_from_the_cache(endpoints, video):
    segment, attention = endpoints
    segment(str(CLIP), "")
    runs = video.network_runs
    for t, x, y in ((1, 78, 84), (4, 255, 127), (0, 0, 0)):
        heatmap, data = attention(str(CLIP), t, x, y, "")
        assert data["cell"] == [t, y * 16 // 128, x * 32 // 256] and data["frame"] == t and data["pixel"] == [x, y]
        steps, composed = np.asarray(data["steps"]), np.asarray(data["composed"])
        assert steps.shape == (3, 5, 16, 32) and composed.shape == (5, 16, 32)
        assert np.allclose(steps.sum(axis=(1, 2, 3)), 1, atol=1e-4) and abs(composed.sum() - 1) < 1e-4
        assert data["reach"] == [51, 700, 2560] and Image.open(heatmap).size == (5 * 256 + 4 * 4, 128)
    assert data["class"] and attention(str(CLIP), 1, 78, 84, "")[1]["class"] == "truck"
    _, non_local = attention(str(CLIP), 1, 78, 84, "default:nonlocal3d")
    assert non_local["kind"] == "non-local-3d" and non_local["reach"] == [2560] and len(non_local["steps"]) == 1
    assert video.network_runs == runs + 1  # the non-local head's one run; every position after it is cached


@pytest.mark.parametrize("name", sorted(BAD_CLIPS))
def test_a_bad_clip_is_one_line_from_both_endpoints(endpoints, uploads, name):
    data, words = BAD_CLIPS[name]
    path = uploads / name
    path.write_bytes(data)
    for call in (lambda: endpoints[0](str(path), ""), lambda: endpoints[1](str(path), 0, 1, 1, "")):
        with pytest.raises(gr.Error) as info:
            call()
        assert words in info.value.message and "\n" not in info.value.message


@pytest.mark.parametrize("args, words", [
    ((None, 1, 1), "give the frame t and the pixel"), ((1, None, 1), "give the frame t and the pixel"),
    ((5, 1, 1), "frame 5 is outside the clip's 5 frames"), ((1.5, 1, 1), "the frame t must be a whole number"),
    ((1, 256, 1), "outside the 256x128 image"), ((1, 3, float("nan")), "must be whole numbers")])
def test_a_bad_frame_or_pixel_is_one_line(endpoints, args, words):
    with pytest.raises(gr.Error, match=words):
        endpoints[1](str(CLIP), *args, "")


def test_a_request_names_only_uploads_and_known_heads(endpoints, uploads):
    segment, attention = endpoints
    with pytest.raises(gr.Error, match="was not uploaded to this app"):
        segment("/etc/hostname", "")
    with pytest.raises(gr.Error, match="fetches no URL"):
        attention("http://10.0.0.1/clip.gif", 0, 1, 1, "")
    with pytest.raises(gr.Error, match="unknown video model 'default'; choose one of"):
        segment(str(CLIP), "default")
    with pytest.raises(gr.Error, match="no clip yet"):
        segment(None, "")


def test_the_endpoints_are_described_for_the_api_page_and_mcp(endpoints):
    for fn, params in zip(endpoints, (("clip", "model"), ("clip", "t", "x", "y", "model"))):
        doc = fn.__doc__
        assert fn.__name__ in ("segment_video", "attention_video") and len(doc.splitlines()[0]) > 60
        args = doc.split("Args:")[1].split("Returns:")[0].strip().splitlines()
        assert [line.split(":")[0].strip() for line in args] == list(params)
        assert "20 s" in doc and "16 frames" in doc.replace("2 to 16 frames", "16 frames")


def test_a_clip_weighs_all_its_frames_in_the_fair_queue():
    clip = {"path": str(CLIP), "meta": {"_type": "gradio.FileData"}}
    event = SimpleNamespace(data=SimpleNamespace(data=[clip, "1", 78, 84, ""]))
    assert job_cost(event) == pytest.approx(1 + 5 * 128 * 256 / 1e6)
    untagged = SimpleNamespace(data=SimpleNamespace(data=[{"path": str(CLIP)}, "1", 78, 84, ""]))
    assert job_cost(untagged) == 1.0  # not a file to Gradio: not opened


# ---- the /video page's handlers ----------------------------------------------------------------
@pytest.fixture(scope="module")
def pages(video, tmp_path_factory):
    """The page twice, in Blocks that are never launched: at the page's budget, and at one byte
    below this clip's weights (so that a pin must carry its maps)."""
    made = {}
    for name, budget in (("normal", BUDGET_BYTES), ("tight", head_bytes(video.analyse(CLIP)) - 1)):
        with gr.Blocks():
            made[name] = VideoUI(video, Exports(tmp_path_factory.mktemp(name)), budget)
            made[name].layout()
    return made


def loaded(page, **params):
    return page.on_load(SimpleNamespace(query_params=params))


def plain(markdown: str) -> str:
    """A status line as shown: without Markdown's escapes."""
    return markdown.replace("\\", "")


def test_the_first_screen_pins_a_truck_pixel_of_a_frame_without_the_panel(pages):
    page = pages["normal"]
    updates = loaded(page)
    value = updates[page.viewer]
    assert value["clip"] == CLIP.name and value["pin"] == list(FIRST_PIN) and value["maps"] is True
    assert "truck" in updates[page.pixel] and updates[page.pin_state] == list(FIRST_PIN)
    assert "pinned" not in value and len(json.dumps(value)) < 1000  # the weights are fetched, not in the state


def test_a_link_opens_its_clip_head_frame_and_pixel_and_says_what_it_dropped(pages):
    page = pages["normal"]
    updates = loaded(page, clip="clip_seed1_car.webp", model="default:rcca3d_r2", t="3", x="100", y="90",
                     view="reach", cmap="viridis")
    value = updates[page.viewer]
    assert (value["clip"], value["model"], value["pin"], value["view"], value["display"]) == (
        "clip_seed1_car.webp", "default:rcca3d_r2", [3, 100, 90], "reach", {"cmap": "viridis"})
    assert updates[page.model] == "default:rcca3d_r2" and updates[page.clip] == str(DEMOS / "clip_seed1_car.webp")
    frame = loaded(page, clip="clip_seed1_car.webp", t="2")[page.viewer]
    assert frame["t"] == 2 and frame["pin"] is None
    bad = loaded(page, clip="clip_seed1_car.webp", t="9", x="999", y="5")
    assert "t=9 ignored: the clip has 5 frames" in plain(bad[page.status])
    assert "x=999, y=5 ignored: outside the 256x128 frames" in plain(bad[page.status])
    assert bad[page.viewer]["pin"] is None and bad[page.viewer]["t"] is None
    gone = loaded(page, key="A" * 22)
    assert gone[page.viewer] is None and "⚠️ the clip of this link is not on the server" in plain(gone[page.status])


def test_past_the_budget_a_pin_carries_its_positions_maps(pages, video):
    page = pages["tight"]
    analysis = video.analyse(CLIP)
    updates = page.pin_views(analysis, None, (2, 200, 30))
    value = updates[page.viewer]
    assert value["maps"] is False and value["pin"] == [2, 200, 30]
    maps = json.loads(BLOBS.get(value["pinned"].removeprefix(PREFIX.lstrip("/"))))
    truth = video.explain(analysis, 2, 200, 30)
    assert maps["cell"] == list(truth.cell)
    composed = np.frombuffer(base64.b64decode(maps["composed"]), "<f4").reshape(truth.composed.shape)
    np.testing.assert_array_equal(composed, truth.composed.astype(np.float32))
    data = json.loads(BLOBS.get(value["data"].removeprefix(PREFIX.lstrip("/"))))
    assert "codes" not in data and len(data["frames"]) == 5  # the frames come, the weights do not
    assert page.viewer not in pages["normal"].pin_views(analysis, None, (2, 200, 30))  # within it: nothing sent


def test_two_pages_sending_the_same_clip_get_their_own_link_and_each_keeps_it(pages, uploads):
    page = pages["normal"]
    from tests.files import animated, clip_frames

    upload = uploads / "0f3a9c" / "clip.webp"  # where Gradio keeps both visitors' uploads of these bytes
    upload.parent.mkdir()
    upload.write_bytes(animated(clip_frames(3, 64, 64), "WEBP"))
    mine, theirs = (page.current(str(upload), None, "", client=who)[1] for who in ("10.0.0.2", "10.0.0.3"))
    assert mine != theirs
    assert page.current(str(upload), mine, "")[1] == mine and page.current(None, theirs, "")[1] == theirs


def test_a_bad_clip_empties_the_page_with_one_line(pages, uploads):
    page = pages["normal"]
    path = uploads / "cut.gif"
    path.write_bytes(BAD_CLIPS["cut.gif"][0])
    updates = page.on_upload({"path": str(path)}, "default:video")
    assert updates[page.viewer] is None and updates[page.clip] is None and updates[page.key_state] is None
    assert "⚠️ cut.gif: frame 3 is damaged" in plain(updates[page.status]) and "\n" not in updates[page.status]
    mine = uploads / "mine.webp"  # two frames of the demo, mirrored: a clip of the visitor's own
    mine.write_bytes(animated(np.ascontiguousarray(decode_clip(CLIP)[:2, :, ::-1]), "WEBP"))
    served = page.on_upload({"path": str(mine)}, "default:video")
    assert served[page.key_state] and served[page.viewer]["key"] == served[page.key_state]
    assert served[page.clip] == str(mine.resolve()) and served[page.viewer]["clip"] is None

"""The video mode (/video) in a real Chromium: hovering a pixel of one frame repaints every frame's
maps, drawn in the page from its quantised weights and equal to the server's within the
quantisation bound; the reach across frames; a deep link with a frame round-trips and the URL is
always the page (no stale pin); a non-local head falls back to the server's maps; a bad upload is
one line and the next clip is served; the cost strip; the page at 1400x900 and on a phone."""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import torch

from ccnet.app.browser_maps import error_bound, quantise
from ccnet.app.ui.video_page import FIRST_PIN
from ccnet.app.video import VideoExplorer
from ccnet.inference.clips import decode_clip
from ccnet.inference.geometry import cell_centre
from ccnet.nn.attention_maps3d import composed_map, step_map
from ccnet.project import DEMOS
from tests.e2e.conftest import PHONE, open_page
from tests.e2e.test_browser import shot
from tests.files import BAD_CLIPS, animated

pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword is deprecated).*")]
FIRST = DEMOS / "clip_seed10_truck.webp"
CAR = DEMOS / "clip_seed1_car.webp"
MAP_ROWS = ("step1", "step2", "step3", "composed")
# a checksum of each frame's tile of a row's canvas (what the visitor sees) and of its map canvas (the
# weights painted, without the outlines)
TILES_JS = """(name) => {
  const V = window.__ccnetVideo.state, [T, h, w] = V.value.grid, dpr = window.devicePixelRatio || 1;
  const sum = (d) => { let s = 0; for (let i = 0; i < d.length; i++) s = (s * 31 + d[i]) % 1000000007; return s; };
  const shown = document.querySelector(`[data-testid=video-${name}]`), ctx = shown.getContext('2d');
  const step = (V.fw + V.gap) * dpr, fw = Math.round(V.fw * dpr);
  const map = V.mapCanvas[name] && V.mapCanvas[name].getContext('2d');
  return Array.from({length: T}, (_, t) => [sum(ctx.getImageData(Math.round(t * step), 0, fw, shown.height).data),
                                            map ? sum(map.getImageData(t * w, 0, w, h).data) : null]);
}"""


@pytest.fixture(scope="module")
def video():
    """The server's analysis, recomputed here (the same heads and clip: the same weights)."""
    return VideoExplorer("cpu")


def wait_video(page, timeout: float = 60_000) -> None:
    page.wait_for_function("() => window.__ccnetVideo?.state.value && window.__ccnetVideo.state.cell",
                           timeout=timeout)


def state(page, name: str):
    return page.evaluate(f"window.__ccnetVideo.state.{name}")


def query(page) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def status(page) -> str:
    return page.locator("#video-status span.md").inner_text()


def point(page, row: str, t: int, x: int, y: int) -> tuple[float, float]:
    """Screen position of pixel (x, y) of frame t on one row of the strip."""
    box = page.locator(f"[data-testid=video-{row}]").bounding_box()
    (height, width), fw, gap = state(page, "value.size"), state(page, "fw"), state(page, "gap")
    return box["x"] + t * (fw + gap) + (x + 0.5) * fw / width, box["y"] + (y + 0.5) * box["height"] / height


def wait_pinned(page, t: int, x: int, y: int) -> str:
    page.wait_for_function("(p) => document.querySelector('#video-pixel')?.innerText.includes(p)",
                           arg=f"frame {t} · pixel ({x}, {y})", timeout=30_000)
    return page.locator("#video-pixel").inner_text()


def upload(page, path) -> None:
    with page.expect_file_chooser() as chooser:
        page.click("#video-upload")
    chooser.value.set_files(str(path))


def test_hovering_one_frame_repaints_every_frame_with_the_servers_maps(page, live_app, video):
    """The first screen pins a truck pixel of a frame without the panel; hovering another frame's
    pixel repaints every map row in every frame, from the page's weights (no server call), and the
    maps the page computes equal the server's within the quantisation bound."""
    url, _ = live_app
    page.goto(url + "video")
    wait_video(page)
    assert page.locator("[data-testid=video-viewer]").get_attribute("data-mode") == "browser"
    assert state(page, "pinned") == list(FIRST_PIN) and "truck" in wait_pinned(page, *FIRST_PIN)
    for name in MAP_ROWS:  # every row visible without scrolling, the strip's frames side by side
        box = page.locator(f"[data-testid=video-{name}]").bounding_box()
        assert box["y"] + box["height"] <= 900 and box["width"] >= 5 * 120
    before = {name: page.evaluate(TILES_JS, name) for name in MAP_ROWS}
    calls = []
    page.on("request", lambda request: calls.append(request.url) if "/gradio_api/" in request.url else None)
    page.mouse.move(*point(page, "composed", 3, 200, 40))
    page.wait_for_function("() => window.__ccnetVideo.state.cell[0] === 3")
    analysis = video.analyse(FIRST)
    t, r, c = state(page, "cell")
    assert (t, r, c) == (3, 40 * 16 // 128, 200 * 32 // 256)
    for name in MAP_ROWS:
        after = page.evaluate(TILES_JS, name)
        for frame in range(5):  # what is shown and the weights painted both change in every frame
            assert after[frame][0] != before[name][frame][0], (name, frame)
            assert after[frame][1] != before[name][frame][1], (name, frame)
    assert calls == []  # hovering asks the server nothing
    assert state(page, "pinned") == list(FIRST_PIN)  # a hover pins nothing ...
    assert query(page)["t"] == "1" and query(page)["x"] == "78"  # ... and leaves the link alone

    # the page's maps against the server's: each step within the bound of its quantised lines, the
    # composed map between the products of the steps' lower and upper bounds
    steps = [a.numpy() for a in analysis.attention]
    bounds = [error_bound(a, quantise(a)[1]) for a in steps]
    shape = analysis.grid
    for cell in ((t, r, c), (1, 10, 9), (4, 2, 28)):
        truth = video.explain(analysis, cell[0], *cell_centre(cell[1], cell[2], shape[1:], analysis.size))
        assert truth.cell == cell
        page_steps = [np.asarray(page.evaluate("(a) => window.__ccnetVideo.stepAt(...a)", [s, *cell])).reshape(shape)
                      for s in range(3)]
        for s in range(3):
            limit = step_map(torch.from_numpy(bounds[s]), cell).numpy()
            assert np.all(np.abs(page_steps[s] - truth.steps[s]) <= limit + 1e-6)
        composed = np.asarray(page.evaluate("(a) => window.__ccnetVideo.composedAt(...a)", list(cell))).reshape(shape)
        upper = composed_map([torch.from_numpy(a + b) for a, b in zip(steps, bounds)], cell).numpy()
        lower = composed_map([torch.from_numpy(np.maximum(a - b, 0)) for a, b in zip(steps, bounds)], cell).numpy()
        assert np.all(composed <= upper + 1e-6) and np.all(composed >= lower - 1e-6)
        assert np.all(truth.composed <= upper + 1e-6) and np.all(truth.composed >= lower - 1e-6)

    # the reach across frames: the positions each step can carry weight from, as the server counts them
    page.locator("[data-testid=video-viewer] button[data-mode=reach]").click()
    assert page.locator(".ccvv-row[data-map=composed] .ccvv-name").inner_text().startswith(
        "reach · " + ", then ".join(f"{n:,}" for n in video.reach_counts(analysis, (t, r, c))))
    assert query(page)["view"] == "reach"
    text = page.locator("[data-testid=video-cost]").inner_text().replace("\xa0", " ")  # analytic and measured
    assert "543 kB a step" in text and "(measured)" in text and "5×97×97" in text and "8.9 GB" in text
    assert len(page.locator("[data-testid=video-cost] b[title]").all()) >= 5
    shot(page, "video-1400x900")


def test_a_deep_link_with_a_frame_round_trips_and_the_link_is_always_the_page(page, live_app):
    url, _ = live_app
    link = {"clip": CAR.name, "model": "default:rcca3d_r2", "t": "2", "x": "100", "y": "90", "view": "step2",
            "cmap": "viridis", "scale": "linear"}
    page.goto(url + "video?" + "&".join(f"{k}={v}" for k, v in link.items()))
    wait_video(page)
    wait_pinned(page, 2, 100, 90)
    assert query(page) == link  # the page writes back the link it was given
    assert state(page, "pinned") == [2, 100, 90] and state(page, "cell") == [2, 90 * 16 // 128, 100 * 32 // 256]
    assert (state(page, "view"), state(page, "cmap"), state(page, "scale")) == ("step2", "viridis", "linear")
    assert "after 2 steps (not the whole clip)" in page.locator(".ccvv-row[data-map=composed]").inner_text()
    page.mouse.click(*point(page, "step1", 4, 30, 100))  # pin another frame's pixel: the link follows
    page.wait_for_function("() => new URL(location.href).searchParams.get('t') === '4'")
    x, y = int(query(page)["x"]), int(query(page)["y"])
    assert abs(x - 30) <= 1 and abs(y - 100) <= 1
    wait_pinned(page, 4, x, y)
    pinned = page.url
    page.goto(pinned)  # and the new link opens the same page
    wait_video(page)
    assert page.url == pinned and state(page, "pinned") == [4, x, y]
    page.goto(url + f"video?clip={CAR.name}&t=3")  # a frame without a pixel: that frame, kept in the link
    wait_video(page)
    assert state(page, "cell")[0] == 3 and state(page, "pinned") is None and query(page)["t"] == "3"
    page.goto(url + f"video?clip={CAR.name}&t=7&x=10&y=10")  # a frame the clip lacks: one line, frame 0
    wait_video(page)
    assert "t=7 ignored: the clip has 5 frames" in status(page)
    assert state(page, "pinned") == [0, 10, 10] and query(page)["t"] == "0"


def test_a_bad_upload_is_one_line_and_the_next_clip_is_served_without_a_stale_pin(page, live_app, tmp_path):
    url, _ = live_app
    page.goto(url + "video")
    wait_video(page)
    for name, words in (("cut.gif", "frame 3 is damaged"), ("slow.webp", "past the 20 s a clip may last"),
                        ("still.gif", "has only one frame")):
        (tmp_path / name).write_bytes(BAD_CLIPS[name][0])
        upload(page, tmp_path / name)
        page.wait_for_function("(w) => document.querySelector('#video-status')?.innerText.includes(w)", arg=words)
        line = status(page)
        assert line.count("\n") == 0 and "⚠️" in line and "Traceback" not in line, line
        assert page.locator(".ccvv-empty").inner_text() == "Upload a clip or pick a demo clip."
        assert query(page) == {}  # nothing shown, nothing linked
    mine = tmp_path / "reversed.webp"  # not a demo clip: it gets a link key
    mine.write_bytes(animated(decode_clip(FIRST)[::-1], "WEBP"))
    upload(page, mine)
    page.wait_for_function("() => window.__ccnetVideo.state.value?.key")
    assert set(query(page)) == {"key", "model", "view", "cmap", "scale"}  # no pin of the clip before
    page.mouse.click(*point(page, "segmentation", 3, 78, 84))  # the truck of frame 1 is frame 3's now
    page.wait_for_function("() => new URL(location.href).searchParams.get('x')")  # the pin's link is written
    assert "truck" in wait_pinned(page, 3, int(query(page)["x"]), int(query(page)["y"]))
    assert query(page)["t"] == "3"


def test_a_non_local_head_gets_its_maps_from_the_server(page, live_app, video):
    """Its (T·h·w)² weights are past the page's budget: a pin fetches that position's maps."""
    url, _ = live_app
    page.goto(url + f"video?clip={CAR.name}&model=default:nonlocal3d&t=2&x=100&y=90")
    wait_video(page)
    wait_pinned(page, 2, 100, 90)
    root = page.locator("[data-testid=video-viewer]")
    assert root.get_attribute("data-mode") == "server" and root.get_attribute("data-kind") == "non-local-3d"
    analysis = video.analyse(CAR, "default:nonlocal3d")
    truth = video.explain(analysis, 2, 100, 90)
    page.wait_for_function("() => window.__ccnetVideo.state.shown.composed")
    composed = np.asarray(page.evaluate("""() => { const V = window.__ccnetVideo.state, p = V.value.pinned_maps;
        return Array.from(new Float32Array(Uint8Array.from(atob(p.composed), c => c.charCodeAt(0)).buffer)); }"""))
    np.testing.assert_allclose(composed.reshape(truth.composed.shape), truth.composed, rtol=1e-6, atol=1e-9)
    page.mouse.move(*point(page, "composed", 0, 20, 20))  # another position: the page has no weights for it
    page.wait_for_function("() => window.__ccnetVideo.state.cell[0] === 0")
    assert "pin a pixel" in page.locator(".ccvv-row[data-map=composed] .ccvv-max").inner_text()
    page.mouse.click(*point(page, "composed", 0, 20, 20))
    page.wait_for_function("() => window.__ccnetVideo.state.value.pinned_maps?.cell[0] === 0", timeout=30_000)
    assert page.evaluate("window.__ccnetVideo.state.shown.composed")


def test_the_video_mode_on_a_phone(browser, live_app):
    """At 412x915: nothing wider than the screen but the strip, which scrolls sideways; a tap pins."""
    url, _ = live_app
    page = open_page(browser, **PHONE, device_scale_factor=2)  # a context of its own: a denser screen
    try:
        page.goto(url + "video")
        wait_video(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 412
        strip = page.locator(".ccvv-strip")
        assert strip.evaluate("s => s.scrollWidth > s.clientWidth")  # the frames scroll, the page does not
        for title in page.locator(".ccvv-title").all():  # every title within the strip's view
            box, seen = title.bounding_box(), strip.bounding_box()
            assert box["x"] + box["width"] <= seen["x"] + seen["width"] + 1
        shot(page, "video-412x915")
        page.touchscreen.tap(*point(page, "segmentation", 0, 78, 84))  # on the screen: the first row
        wait_pinned(page, 0, *state(page, "pinned")[1:])
        assert state(page, "pinned")[0] == 0
        assert page.blocked == []
    finally:
        page.context.close()

"""The page in a real Chromium: the attention viewer draws in the browser what the server computes,
hover, keys, clicks and taps move and pin the query cell, links restore a view, and the bugs
found by trying the page stay fixed."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from PIL import Image

from ccnet.app.browser_maps import dequantise, error_bound, quantise
from ccnet.app.ui.common import FIRST_PIXEL
from ccnet.inference.geometry import cell_of
from ccnet.project import DEMOS, ROOT
from tests.e2e.conftest import api_client, open_page, wait_answered, wait_pinned, wait_viewer

pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword is deprecated).*")]
FIRST = DEMOS / "street_seed1_car.png"
PHOTOS = ROOT / "tests" / "data" / "photos"


def state(page, name: str):
    return page.evaluate(f"window.__ccnetViewer.state.{name}")


def composed_png(page) -> str:
    return page.locator("[data-testid=attention-canvas]").evaluate("c => c.toDataURL()")


def point(page, panel: str, x: int, y: int) -> tuple[float, float]:
    """Screen position of pixel (x, y) of the analysed image on one panel."""
    box = page.locator(f".ccv-panel[data-view={panel}] .ccv-stage").bounding_box()
    height, width = state(page, "value.size")
    return box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box["height"] / height


def status(page) -> str:
    """The status line's text (without the progress tracker Gradio lays over it)."""
    return page.locator("#status span.md").inner_text()


def shot(page, name: str) -> None:
    folder = os.environ.get("CCNET_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def test_the_first_screen_shows_a_car_pixel_pinned_with_its_cross(first_screen):
    page = first_screen
    assert "car" in wait_pinned(page, *FIRST_PIXEL)
    query = parse_qs(urlparse(page.url).query)
    assert query["example"] == [FIRST.name] and query["x"] == [str(FIRST_PIXEL[0])]
    assert page.locator("[data-testid=attention-viewer]").get_attribute("data-mode") == "browser"
    from ccnet.app.analysis import Display

    shown = Display()  # the page draws with the server's defaults, the API's pictures' too
    assert (state(page, "cmap"), state(page, "scale"), state(page, "clip")) == (shown.cmap, shown.scale, shown.clip)
    label = np.asarray(Image.open(DEMOS / "street_seed1_car_label.png").convert("RGB"))
    assert tuple(label[FIRST_PIXEL[1], FIRST_PIXEL[0]]) == (0, 0, 142)  # Cityscapes' car colour
    for name in ("step1", "step2", "composed"):  # every panel visible without scrolling, titled
        box = page.locator(f".ccv-panel[data-view={name}]").bounding_box()
        assert box["y"] + box["height"] <= 900 and box["width"] >= 300
    shot(page, "first-screen-1400x900")


def test_the_browser_maps_equal_the_servers_within_the_stated_bound(first_screen, live_app):
    page, (_, explorer) = first_screen, live_app
    analysis = explorer.analyse(str(FIRST))
    first, second = (a.numpy() for a in analysis.attention)
    (codes1, scales1), (_, scales2) = quantise(first), quantise(second)
    decoded1, bound1, bound2 = dequantise(codes1, scales1), error_bound(first, scales1), error_bound(second, scales2)
    h, w = analysis.grid
    rng = np.random.default_rng(0)
    for r, c in zip(rng.integers(h, size=12), rng.integers(w, size=12)):
        truth = explorer.explain(analysis, *_centre(r, c, analysis)).maps
        assert truth.cell == (r, c)
        steps = [np.asarray(page.evaluate(f"window.__ccnetViewer.stepAt({s}, {r}, {c})")).reshape(h, w)
                 for s in (0, 1)]
        composed = np.asarray(page.evaluate(f"window.__ccnetViewer.composedAt({r}, {c})")).reshape(h, w)
        for s, bound in ((0, bound1), (1, bound2)):
            assert np.all(np.abs(steps[s] - truth.steps[s]) <= _dense(bound[r, c], r, c, h, w) + 1e-6)
        # |A2' A1' - A2 A1| <= e2 A1' + A2 e1, summed over the cells u of the query's cross
        e2 = _dense(bound2[r, c], r, c, h, w)
        limit = sum(e2[i, j] * _dense(decoded1[i, j], i, j, h, w)
                    + truth.steps[1][i, j] * _dense(bound1[i, j], i, j, h, w) for i in range(h) for j in range(w))
        assert np.all(np.abs(composed - truth.composed) <= limit + 1e-6)


def _dense(cross: np.ndarray, r: int, c: int, h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w))
    out[:, c] += cross[:h]
    out[r, :] += cross[h:]
    return out


def _centre(r: int, c: int, analysis) -> tuple[int, int]:
    from ccnet.inference.geometry import cell_centre

    return cell_centre(int(r), int(c), analysis.grid, analysis.size)


def test_the_guard_fails_and_records_every_request_to_another_host(first_screen):
    """What the page fixtures rely on: a request by name, by address or to a look-alike of loopback,
    from the app's own page, fails at once at the dead proxy and is recorded."""
    page, failures = first_screen, []
    page.on("requestfailed", record := lambda request: failures.append(request.failure))
    outside = ["http://example.com/x.js", "http://203.0.113.7/x.png", "http://127.0.0.1.nip.io/x"]
    failed = page.evaluate("""urls => Promise.all(urls.map(u => fetch(u, {mode: 'no-cors'}).then(
        () => 'reached', () => 'failed')))""", outside)
    assert failed == ["failed"] * 3 and sorted(page.blocked) == sorted(outside)
    assert failures == ["net::ERR_PROXY_CONNECTION_FAILED"] * 3, failures
    page.remove_listener("requestfailed", record)
    page.blocked.clear()


def test_hover_arrow_keys_and_pinning(first_screen_to_change):
    page = first_screen_to_change
    before = composed_png(page)
    page.mouse.move(*point(page, "step1", 450, 40))
    height, width = state(page, "value.size")
    h, w = state(page, "value.grid")
    page.wait_for_function("(c) => window.__ccnetViewer.state.cell.join() === c",
                           arg=f"{40 * h // height},{450 * w // width}")
    assert composed_png(page) != before  # the hovered cell's maps are drawn
    page.mouse.move(*point(page, "step1", 450, 40))
    page.locator("[data-testid=attention-viewer]").focus()
    row, col = state(page, "cell")
    page.keyboard.press("ArrowLeft")
    assert state(page, "cell") == [row, col - 1]
    page.keyboard.press("Shift+ArrowDown")
    assert state(page, "cell") == [min(h - 1, row + 4), col - 1]
    page.keyboard.press("Enter")
    x, y = state(page, "pinned")
    assert [y * h // height, x * w // width] == [min(h - 1, row + 4), col - 1]
    wait_pinned(page, x, y)
    assert parse_qs(urlparse(page.url).query)["x"] == [str(x)]
    page.mouse.click(*point(page, "composed", 100, 200))  # a click pins where it lands
    assert "feature cell" in wait_pinned(page, 100, 200)


def test_a_tap_pins_a_pixel_on_a_phone(phone, live_app):
    url, _ = live_app
    phone.goto(url)
    wait_viewer(phone)
    viewer, upload = phone.locator("#viewer").bounding_box(), phone.locator("#input").bounding_box()
    assert viewer["y"] < upload["y"]  # one column, the viewer first
    phone.touchscreen.tap(*point(phone, "segmentation", 250, 168))
    wait_pinned(phone, 250, 168)
    shot(phone, "phone-412x915")


def test_a_link_restores_the_image_pixel_view_and_display(page, live_app, tmp_path):
    url, _ = live_app
    page.goto(url + "?example=street_seed2_truck.png&x=300&y=120&view=step2&cmap=viridis&scale=linear&clip=0.5")
    wait_viewer(page)
    wait_pinned(page, 300, 120)
    assert state(page, "pinned") == [300, 120] and state(page, "view") == "step2"
    assert (state(page, "cmap"), state(page, "scale"), state(page, "clip")) == ("viridis", "linear", 0.5)
    assert "ccv-active" in page.locator(".ccv-panel[data-view=step2]").get_attribute("class")
    # an upload is named by its cache key while the server keeps it
    path = tmp_path / "flipped.png"
    Image.open(DEMOS / "street_seed3_car.png").transpose(Image.FLIP_LEFT_RIGHT).save(path)
    page.locator("#input input[type=file]").set_input_files(str(path))
    page.wait_for_function("() => new URL(location.href).searchParams.get('key')", timeout=60_000)
    page.mouse.click(*point(page, "composed", 60, 70))
    wait_pinned(page, 60, 70)
    link = page.url
    other = open_page(page.context.browser)
    try:
        other.goto(link)
        wait_viewer(other)
        wait_pinned(other, 60, 70)
        assert state(other, "value.key") == parse_qs(urlparse(link).query)["key"][0]
    finally:
        other.context.close()


def test_a_bad_link_is_one_line_in_the_status(page, live_app):
    url, _ = live_app
    page.goto(url + "?example=../../etc/passwd&x=1")
    page.wait_for_function("() => document.querySelector('#status span.md')?.innerText.includes('link:')",
                           timeout=60_000)
    line = status(page)
    assert "example='../../etc/passwd' ignored" in line and "\n" not in line.strip() and "Traceback" not in line


def test_clearing_the_input_after_an_example_empties_every_view(page, live_app):
    """Bug (a): after an example, a click, then the input's X, the old views came back."""
    url, _ = live_app
    page.goto(url)
    wait_viewer(page)
    page.locator(".gallery-item").nth(1).click()
    page.wait_for_function("() => new URL(location.href).searchParams.get('example') === 'street_seed2_truck.png'",
                           timeout=60_000)
    page.mouse.click(*point(page, "composed", 200, 150))
    wait_pinned(page, 200, 150)
    page.locator("#input button[aria-label='Remove Image']").click()
    page.wait_for_function("() => document.querySelector('.ccv-empty')", timeout=30_000)
    wait_answered(page)  # nothing comes back
    assert page.locator(".ccv-empty").count() == 1 and page.locator(".ccv-panel").count() == 0
    assert "Upload an image" in status(page)
    assert page.locator("#dl-mask").is_disabled() and page.locator("#dl-npz").is_disabled()


def test_typed_values_apply_on_enter(page, live_app):
    """Bug (c): a value typed in the clip or top-k box changed nothing until the box lost focus."""
    url, _ = live_app
    page.goto(url)
    wait_viewer(page)
    wait_pinned(page, *FIRST_PIXEL)
    before = composed_png(page)
    page.locator(".ccv-clip").fill("0.9")
    page.locator(".ccv-clip").press("Enter")
    assert state(page, "clip") == 0.9 and composed_png(page) != before
    page.locator("#topk-k input[type=number]").fill("3")
    page.locator("#topk-k input[type=number]").press("Enter")
    rows = "() => (document.querySelector('#topk').innerText.match(/^\\(\\d+, \\d+\\)$/gm) || []).length / 2"
    page.wait_for_function(f"() => ({rows})() === 3", timeout=30_000)  # each row has a cell and a pixel


def test_choosing_the_model_in_use_changes_nothing(page, live_app):
    """Bug (d): choosing the selected model again re-ran the network and cleared the attention."""
    url, explorer = live_app
    page.goto(url)
    wait_viewer(page)
    info = wait_pinned(page, *FIRST_PIXEL)
    runs = explorer.network_runs
    page.locator("#model input").click()
    page.locator("ul[role=listbox] li", has_text="default").first.click()
    wait_answered(page)
    assert explorer.network_runs == runs and page.locator("#pixel-info").inner_text() == info


def test_a_broken_upload_is_one_line_and_the_next_upload_is_served(page, live_app, tmp_path):
    from tests.files import BAD_FILES

    url, _ = live_app
    page.goto(url)
    wait_viewer(page)
    for name in ("page.png", "sliver.png"):
        data, message = BAD_FILES[name]
        (tmp_path / name).write_bytes(data)
        page.locator("#input input[type=file]").set_input_files(str(tmp_path / name))
        page.wait_for_function("(m) => document.querySelector('#status span.md')?.innerText.includes(m)",
                               arg=message.split(":")[0], timeout=60_000)
        line = status(page)
        assert "Traceback" not in line and line.strip().count("\n") == 0
        assert page.locator(".ccv-panel").count() == 0 and page.locator(".toast-body").count() == 0
    page.locator("#input input[type=file]").set_input_files(str(DEMOS / "street_seed4_truck.png"))
    page.wait_for_function("() => window.__ccnetViewer.state.value?.example === 'street_seed4_truck.png'",
                           timeout=60_000)


def test_over_the_budget_a_pin_asks_the_server_for_the_maps(browser, tmp_path_factory):
    """Beyond the byte budget no maps are sent; a click gets the pinned cell's maps from the server."""
    from ccnet.app.explorer import Explorer
    from ccnet.app.exports import Exports
    from ccnet.app.ui import build_app, launch_options
    from tools.ports import free_port

    port, explorer = free_port(), Explorer("default", device="cpu")
    demo = build_app(explorer, Exports(tmp_path_factory.mktemp("exports")), viewer_budget=0)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    page = open_page(browser)
    try:
        page.goto(f"http://127.0.0.1:{port}/?example=street_seed5_car.png")
        page.wait_for_function("() => window.__ccnetViewer?.state.value", timeout=120_000)
        assert page.locator("[data-testid=attention-viewer]").get_attribute("data-mode") == "server"
        assert page.evaluate("() => { const S = window.__ccnetViewer.state, h = S.heads[S.own];"
                             " return !!(h.codes || h.denseCodes); }") is False
        page.mouse.click(*point(page, "composed", 200, 180))
        wait_pinned(page, 200, 180)
        page.wait_for_function("() => window.__ccnetViewer.state.value.pinned_maps", timeout=30_000)
        truth = explorer.explain(str(DEMOS / "street_seed5_car.png"), 200, 180).maps
        drawn = page.evaluate("() => { const p = window.__ccnetViewer.state.value.pinned_maps;"
                              " const raw = atob(p.composed), b = new Uint8Array(raw.length);"
                              " for (let i = 0; i < raw.length; i++) b[i] = raw.charCodeAt(i);"
                              " return Array.from(new Float32Array(b.buffer)); }")
        np.testing.assert_array_equal(np.asarray(drawn, np.float32).reshape(truth.composed.shape), truth.composed)
        assert state(page, "shown.composed") is True
    finally:
        page.context.close()
        demo.close()


def test_a_real_photo_gets_the_out_of_domain_note_and_a_model_for_photos_one_click_away(
        page, live_app, monkeypatch, tmp_path):
    from ccnet.app.explorer import PHOTO_MODEL
    from tools.ports import free_port

    monkeypatch.setenv("CCNET_CACHE", str(tmp_path / "cache"))  # the released model is not here ...
    monkeypatch.setenv("CCNET_ZOO_URL", f"http://127.0.0.1:{free_port()}/")  # ... and nothing serves it
    url, _ = live_app
    page.goto(url)
    wait_viewer(page)
    assert not page.locator("#domain-note").is_visible()  # the first screen's demo is a street scene
    assert "synthetic street scenes only" in page.locator("#intro").inner_text()
    page.locator("#input input[type=file]").set_input_files(str(PHOTOS / "chelsea.jpg"))
    page.locator("#domain-note").wait_for(state="visible", timeout=60_000)
    assert "does not look like the synthetic street scenes" in page.locator("#domain-note").inner_text()
    button = page.locator("#photo-model")
    assert "ADE20K (everyday scenes) · R-50-D8 · 150 classes" in button.inner_text()
    shot(page, "photo-note")
    button.click()
    page.wait_for_function("(m) => document.querySelector('#status span.md')?.innerText.includes(m)",
                           arg=f"cannot download {PHOTO_MODEL}", timeout=60_000)
    assert "still using default" in status(page) and "127.0.0.1" not in status(page)
    wait_answered(page)  # the steps after the load (views, cost) leave the error where the visitor reads it
    assert f"cannot download {PHOTO_MODEL}" in status(page)
    page.locator("#input input[type=file]").set_input_files(str(DEMOS / "street_seed4_truck.png"))
    page.locator("#domain-note").wait_for(state="hidden", timeout=60_000)


def test_a_pin_shows_the_non_local_head_beside_and_r1_misses_the_truck(page, live_app):
    """The pinned car pixel of the first screen gets the non-local head's map, the agreement and
    every head's class; switching to the R = 1 sibling redraws the segmentation, and the same pixel
    is then a truck (one step cannot reach the blue panel)."""
    url, explorer = live_app
    page.goto(url)
    wait_viewer(page)
    wait_pinned(page, *FIRST_PIXEL)
    page.locator("#compare-text").wait_for(state="visible", timeout=60_000)
    text = page.locator("#compare-text").inner_text()
    assert "against non-local" in text and "R = 1 truck" in text and "R = 2 car" in text and "On the cue panel" in text
    assert page.locator("#nonlocal-map img").count() == 1
    shot(page, "compare")
    before = composed_png(page)
    choose_head(page, "R = 1 head", "default:rcca_r1")
    page.mouse.click(*point(page, "composed", *FIRST_PIXEL))
    assert "→ truck" in wait_pinned(page, *FIRST_PIXEL)
    assert composed_png(page) != before


def choose_head(page, label: str, name: str) -> None:
    page.locator("#model input").click()
    page.locator("ul[role=listbox] li", has_text=label).first.click()
    page.wait_for_function("(m) => document.querySelector('#status span.md')?.innerText.includes(m)", arg=name,
                           timeout=60_000)
    page.wait_for_function("(m) => window.__ccnetViewer?.state.value?.model === m", arg=name, timeout=60_000)


def test_the_heads_without_criss_cross_attention_can_be_shown(page, live_app):
    """Choosing `none` redraws the segmentation with that head's (the truck becomes a car) and shows
    no attention panel; choosing non-local gives one whole-image panel, which a pin fills with the
    head's dense map of that cell from the server; both keep the comparison against R = 2."""
    url, explorer = live_app
    truck = DEMOS / "street_seed2_truck.png"
    page.goto(f"{url}?example={truck.name}")
    wait_viewer(page)
    mask_of = "() => { const S = window.__ccnetViewer.state; return S.value.heads.find(h => h.name === S.own).mask; }"
    before = page.evaluate(mask_of)
    choose_head(page, "no attention, same backbone", "default:none")
    assert page.evaluate(mask_of) != before
    assert page.locator(".ccv-panel").evaluate_all("ps => ps.map(p => p.dataset.view)") == ["segmentation"]
    assert "no attention in this head" in page.locator(".ccv-hover").inner_text()
    assert not page.locator(".ccv-bar").is_visible()  # no map, no colour scale
    x, y = 246, 157  # on a truck
    page.mouse.click(*point(page, "segmentation", x, y))
    text = wait_pinned(page, x, y)
    assert "→ car" in text and "default:none has no attention" in text
    page.locator("#compare-text").wait_for(state="visible", timeout=60_000)
    assert "Criss-cross R = 2 (composed) against non-local" in page.locator("#compare-text").inner_text()
    choose_head(page, "non-local head on the embedded backbone", "default:nonlocal")
    views = page.locator(".ccv-panel").evaluate_all("ps => ps.map(p => p.dataset.view)")
    assert views == ["segmentation", "composed"]
    assert "non-local · the whole image" in page.locator(".ccv-panel[data-view=composed] .ccv-title").inner_text()
    page.mouse.click(*point(page, "composed", x, y))
    assert "→ truck" in wait_pinned(page, x, y)
    page.wait_for_function("() => window.__ccnetViewer.state.shown.composed === true", timeout=60_000)
    # the non-local head's dense maps are in the page too: its map of any cell, within the code's bound
    analysis = explorer.analyse(str(truck), "default:nonlocal")
    dense = analysis.dense.numpy()
    _, scales = quantise(dense)
    bound = error_bound(dense, scales)
    h, w = analysis.grid
    for r, c in ((0, 0), (h // 2, w // 3), (h - 1, w - 1), cell_of(x, y, analysis.size, analysis.grid)):
        drawn = np.asarray(page.evaluate(f"window.__ccnetViewer.headAt('default:nonlocal', {r}, {c})"))
        q = r * w + c
        assert np.all(np.abs(drawn - dense[q]) <= bound[q] + 1e-6)
    shot(page, "nonlocal-head")


def test_a_slow_model_download_does_not_hold_up_other_visitors(browser, tmp_path_factory, checkpoint):
    """While one visitor's chosen model takes seconds to load (a slow download), another visitor's
    click on a cached image is answered at once: loading runs on its own queue."""
    import threading
    import time

    from gradio_client import handle_file

    from ccnet.app.explorer import Explorer
    from ccnet.app.exports import Exports
    from ccnet.app.ui import build_app, launch_options
    from ccnet.weights.load import load_file, load_model
    from tools.ports import free_port

    preset, started, released = "ccnet_r50-d8_512x1024_80k_cityscapes", threading.Event(), threading.Event()

    def slow_loader(name, progress=None):
        if name != preset:
            return load_model(name)
        started.set()
        released.wait(60)  # a download on a slow link, until the other visitor has been answered
        return load_file(checkpoint, name=name)

    port, explorer = free_port(), Explorer("default", device="cpu", loader=slow_loader)
    demo = build_app(explorer, Exports(tmp_path_factory.mktemp("exports")))
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    page = open_page(browser)
    try:
        client = api_client(f"http://127.0.0.1:{port}/", tmp_path_factory.mktemp("dl"))
        client.predict(handle_file(str(FIRST)), 165, 182, api_name="/attention")  # cached from now on
        page.goto(f"http://127.0.0.1:{port}/")
        wait_viewer(page)
        page.locator("#model input").click()
        page.locator("ul[role=listbox] li", has_text="Cityscapes (street scenes) · R-50-D8 · 19 classes · crop 512×1024"
                     " · 80k").first.click()
        assert started.wait(30)
        start = time.perf_counter()
        client.submit(handle_file(str(FIRST)), 300, 120, api_name="/attention").result(timeout=30)
        assert time.perf_counter() - start < 2.0 and not explorer.models.loaded(preset)  # answered during the load
        released.set()
        page.wait_for_function(f"() => document.querySelector('#status span.md')?.innerText.includes('{preset}')",
                               timeout=60_000)
    finally:
        released.set()
        page.context.close()
        demo.close()


INJECTIONS = ('<h1>PWN</h1>', '<img src=//203.0.113.7/x>', '<a href="//203.0.113.7/">PWN</a>',
              '<form action="//203.0.113.7/"><input name=PWN></form>', '"><svg onload=alert(1)>PWN')
LINK = {"example": "street_seed2_truck.png", "x": "300", "y": "120", "view": "step2", "cmap": "viridis",
        "scale": "linear", "clip": "0.5", "model": "default"}
# an element the payload made: one pointing at the outside host (a percent-encoded copy of the page's
# own URL, which Plotly puts in its clip paths, is no such element), a handler attribute, or its tags
FOREIGN_ELEMENTS = """() => [...document.querySelectorAll('*')].filter(e =>
    [...e.attributes].some(a => a.value.includes('//203.0.113.7') || a.name.startsWith('on'))
    || (['H1', 'A', 'FORM', 'INPUT', 'SVG'].includes(e.tagName.toUpperCase())
        && ((e.textContent || '') + (e.getAttribute('name') || '')).includes('PWN'))
  ).map(e => e.outerHTML.slice(0, 120))"""


def open_link(page, url: str, params: dict) -> str:
    from urllib.parse import urlencode

    page.goto(url + "?" + urlencode(params))
    page.wait_for_function("() => document.querySelector('#status span.md')?.innerText.includes('link:')",
                           timeout=60_000)
    wait_viewer(page)
    return status(page)


@pytest.mark.parametrize("payload", INJECTIONS)
def test_markup_in_every_parameter_of_a_link_is_shown_as_text(page, live_app, payload):
    """Every parameter carries the payload: none becomes an element, nothing is fetched from
    outside (the page fixture fails on any non-loopback request), each is named in one line."""
    url, _ = live_app
    line = open_link(page, url, dict.fromkeys(LINK, payload))
    assert page.evaluate(FOREIGN_ELEMENTS) == []
    assert "\n" not in line.strip() and payload[:20] in line
    for name in LINK:
        assert f"{name}=" in line
    assert state(page, "cmap") in state(page, "value.colormaps")


@pytest.mark.parametrize("name", list(LINK))
def test_a_bad_parameter_is_named_and_the_rest_of_the_link_restored(page, live_app, name):
    url, _ = live_app
    payload = INJECTIONS[list(LINK).index(name) % len(INJECTIONS)]
    line = open_link(page, url, {**LINK, name: payload})
    assert page.evaluate(FOREIGN_ELEMENTS) == []
    assert f"{name}=" in line and payload[:20] in line
    expected = {"example": "street_seed2_truck.png", "pinned": [300, 120], "view": "step2", "cmap": "viridis",
                "scale": "linear", "clip": 0.5}
    if name == "example":
        expected["example"] = FIRST.name  # no example: the first screen's, with the link's pixel and display
    if name in ("x", "y"):
        expected["pinned"] = None
    if name in expected:
        expected[name] = {"view": "composed", "cmap": "magma", "scale": "log", "clip": 0.2}.get(name, expected[name])
    shown = {"example": state(page, "value.example"), "pinned": state(page, "pinned"), "view": state(page, "view"),
             "cmap": state(page, "cmap"), "scale": state(page, "scale"), "clip": state(page, "clip")}
    assert shown == expected
    if expected["pinned"]:
        wait_pinned(page, 300, 120)


BRIGHT_COLUMN = """([panel, x, y0, y1]) => {
  const canvas = document.querySelector(`.ccv-panel[data-view=${panel}] canvas.ccv-view`);
  const data = canvas.getContext('2d').getImageData(x, 0, 1, canvas.height).data;
  let bright = 0, rows = 0;
  for (let y = 0; y < canvas.height; y++) {
    if (y >= y0 - 2 && y <= y1 + 2) continue;  // the hovered row's band: its own lines cross here
    rows++;
    if (Math.min(data[4 * y], data[4 * y + 1], data[4 * y + 2]) >= 215) bright++;
  }
  return bright / rows;
}"""


def test_the_hovered_cells_row_and_column_are_outlined_where_they_are(page, live_app):
    """The dashed outline runs down the hovered cell's column edges (not at its row's index)."""
    url, _ = live_app
    page.goto(url + "?example=street_seed2_truck.png")
    wait_viewer(page)
    height, width = state(page, "value.size")
    h, w = state(page, "value.grid")
    row, col = 3, 24  # far apart: an outline drawn at the row's index would be columns away
    x, y = (col * width) // w + 2, (row * height) // h + 2
    page.mouse.move(*point(page, "step1", x, y))
    page.wait_for_function("(c) => window.__ccnetViewer.state.cell.join() === c", arg=f"{row},{col}")
    geometry = page.evaluate("""([r, c]) => {
      const canvas = document.querySelector('.ccv-panel[data-view=step1] canvas.ccv-view');
      const [H, W] = window.__ccnetViewer.state.value.size, [h, w] = window.__ccnetViewer.state.value.grid;
      const bound = (i, n, size) => Math.ceil((i * size) / n);
      const xs = (k) => Math.round((bound(k, w, W) / W) * canvas.width);
      const ys = (k) => Math.round((bound(k, h, H) / H) * canvas.height);
      return [xs(c), xs(c + 1), xs(r), ys(r), ys(r + 1)];
    }""", [row, col])
    left, right, wrong, top, bottom = geometry
    for edge in (left, right):
        assert page.evaluate(BRIGHT_COLUMN, ["step1", edge, top, bottom]) > 0.3
    assert page.evaluate(BRIGHT_COLUMN, ["step1", wrong, top, bottom]) < 0.05


def test_copy_link_puts_the_pages_link_on_the_clipboard(page, live_app):
    url, _ = live_app
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.rstrip("/"))
    try:
        page.goto(url)
        wait_viewer(page)
        page.locator(".ccv-link").click()
        page.wait_for_function("() => document.querySelector('.ccv-link').textContent === 'link copied'")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == page.url and "x=165" in copied and "y=182" in copied  # the first screen's pin
    finally:
        page.context.clear_permissions()

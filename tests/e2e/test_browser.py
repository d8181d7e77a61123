"""The app in a real Chromium (Playwright): upload, click a known pixel, change opacity and step.

Every request the page makes to a non-loopback host is blocked and recorded; there must be none.
Writes docs/screenshot.png (the README shows it). Without Chromium the test is skipped, unless
the environment variable CI is set: then it fails.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ccnet.project import ROOT
from ccnet.tools.ports import free_port

DEMO = ROOT / "demos" / "street_seed2_truck.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
H, W = 256, 512
pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword is deprecated).*")]


def _require_browser() -> None:
    missing = [what for what, ok in [("chromium", Path(CHROMIUM).exists() or shutil.which("chromium")),
                                     ("playwright", _importable("playwright"))] if not ok]
    if missing:
        message = f"browser test needs {', '.join(missing)} (apt-get install chromium; pip install playwright)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    _require_browser()
    from app import build_app
    from ccnet.app.explorer import Explorer
    from ccnet.app.exports import Exports

    port = free_port()
    demo = build_app(Explorer(os.environ.get("CCNET_MODEL", "default"), device="cpu"),
                     Exports(tmp_path_factory.mktemp("exports")))
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def _src(page, elem_id: str) -> str | None:
    img = page.locator(f"#{elem_id} img")
    return img.first.get_attribute("src") if img.count() else None


def _wait_src_change(page, elem_id: str, before: str | None, timeout: float = 60_000) -> str:
    page.wait_for_function(
        "([id, before]) => { const i = document.querySelector(`#${id} img`);"
        " return i && i.complete && i.naturalWidth > 0 && i.getAttribute('src') !== before; }",
        arg=[elem_id, before], timeout=timeout,
    )
    return _src(page, elem_id)


def _attention_json(page) -> dict:
    return json.loads(page.locator("#attention-json .cm-content").inner_text())


def _click_pixel(page, x: int, y: int) -> float:
    """Click original pixel (x, y) of the overlay; returns the display scale (screen px per image px)."""
    img = page.locator("#overlay img")
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    natural_w, natural_h = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    scale = min(box["width"] / natural_w, box["height"] / natural_h)
    left = box["x"] + (box["width"] - natural_w * scale) / 2
    top = box["y"] + (box["height"] - natural_h * scale) / 2
    page.mouse.click(left + (x + 0.5) * scale, top + (y + 0.5) * scale)
    return scale


def test_upload_click_opacity_and_step_in_chromium(app_url):
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith(("http://127.0.0.1", "data:", "blob:")):
            return request_route.continue_()
        blocked.append(url)
        return request_route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route("**/*", route)
            page.goto(app_url)
            page.locator("#input input[type=file]").set_input_files(str(DEMO))
            _wait_src_change(page, "overlay", None, timeout=120_000)
            assert _src(page, "heatmap") is None

            x, y = 300, 120
            scale = _click_pixel(page, x, y)
            heat = _wait_src_change(page, "heatmap", None)
            page.wait_for_function("() => document.querySelector('#attention-json .cm-content')"
                                   "?.innerText.includes('\"cell\"')")
            data = _attention_json(page)
            tolerance = 1 / scale + 1
            assert abs(data["pixel"][0] - x) <= tolerance and abs(data["pixel"][1] - y) <= tolerance
            h, w = data["grid"]
            assert data["cell"] == [data["pixel"][1] * h // H, data["pixel"][0] * w // W]
            assert data["cell"] == [y * h // H, x * w // W]  # the known pixel lies well inside its cell
            assert data["class"] in page.locator("#pixel-info").inner_text()

            # a second click, on the truck, changes the attention view
            x, y = 250, 168
            _click_pixel(page, x, y)
            heat = _wait_src_change(page, "heatmap", heat)
            page.wait_for_function("() => document.querySelector('#attention-json .cm-content')"
                                   "?.innerText.includes('\"pixel\": [25')")
            assert _attention_json(page)["cell"] == [y * h // H, x * w // W]

            # the opacity slider redraws the overlay
            overlay = _src(page, "overlay")
            page.locator("#opacity input[type=range]").fill("0.6")
            _wait_src_change(page, "overlay", overlay)

            # switching the map to step 1 and back redraws the heat map and says so in the JSON
            for view in ("step 1", "composed"):
                page.locator("#view label", has_text=view).click()
                heat = _wait_src_change(page, "heatmap", heat)
                page.wait_for_function("(v) => document.querySelector('#attention-json .cm-content')"
                                       "?.innerText.includes(`\"view\": \"${v}\"`)", arg=view)

            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(500)
            bottom = page.locator("#steps").bounding_box()
            (ROOT / "docs").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "docs" / "screenshot.png"), full_page=True,
                            clip={"x": 0, "y": 0, "width": 1400, "height": bottom["y"] + bottom["height"] + 16})
        finally:
            browser.close()
    assert blocked == [], f"the page tried to reach: {blocked}"


def test_a_broken_upload_shows_its_one_line_message_and_the_page_keeps_working(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.files import BAD_FILES

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1024, "height": 768})
            page.goto(app_url)
            for name in ("page.png", "sliver.png"):
                data, message = BAD_FILES[name]
                (tmp_path / name).write_bytes(data)
                page.locator("#input input[type=file]").set_input_files(str(tmp_path / name))
                page.wait_for_function("(m) => document.querySelector('#status')?.innerText.includes(m)",
                                       arg=message.split(":")[0], timeout=60_000)
                status = page.locator("#status").inner_text()
                assert "Traceback" not in status and status.count("\n") == 0
                assert _src(page, "overlay") is None
                clear = page.locator("#input button[aria-label='Clear']")
                if clear.count():
                    clear.first.click()
            page.locator("#input input[type=file]").set_input_files(str(DEMO))
            _wait_src_change(page, "overlay", None, timeout=120_000)  # the next upload is served
        finally:
            browser.close()

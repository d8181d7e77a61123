"""How fast exploring feels, measured side by side in one run: hover-to-paint in a real Chromium
(the viewer's own timing from the pointer event to the frame that shows the new maps, beside a
no-op listener on the same page: the page's floor), on images and, in the video mode, on clips
(every frame's maps after each step and composed, repainted per hover); a pin (click -> the frame
whose pin line shows the pixel's class, from what the page holds), and a server click through
gradio_client (/attention and /attention_maps on an analysed image) beside a do-nothing endpoint
that receives the same upload.
Needs Playwright and Debian's Chromium (the test dependencies); loopback only.
`python -m tools.viewer_bench --json assets/viewer_bench.json`;
`python -m tools.viewer_bench --parts video --json assets/viewer_bench_video.json` (clips only)."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from ccnet.cli.outputs import checked_output, write_text
from ccnet.errors import CCNetError
from ccnet.experiments.scenes import generate_scene
from ccnet.project import DEMOS
from tools._cli import run
from tools.ports import free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FLOOR_JS = """() => {
  window.__floor = [];
  if (window.__floorOn) return;  // one listener a page, however often the floor is measured
  window.__floorOn = true;
  document.querySelector('#intro').addEventListener('pointerrawupdate', ev => {
    const t0 = ev.timeStamp;
    requestAnimationFrame(() => setTimeout(() => window.__floor.push(performance.now() - t0), 0));
  });
}"""


PARTS = ("images", "video", "server")
VIDEO_FLOOR_JS = FLOOR_JS.replace("#intro", "#video-intro")
LONG_CLIP_FRAMES = 16  # the most frames a clip may have (ccnet.limits.MAX_FRAMES), at the demo clips' size



def sweep(page: object, moves: int, left: float, right: float, box: dict) -> None:
    """``moves`` pointer moves 40 ms apart from ``left`` to ``right``, zig-zagging over ``box``'s height."""
    for i in range(moves):
        x = left + (right - left) * i / max(1, moves - 1)
        page.mouse.move(x, box["y"] + box["height"] * (0.2 + 0.6 * (i % 7) / 6))
        time.sleep(0.04)
    page.wait_for_timeout(300)


def sweep_floor(page: object, moves: int, selector: str) -> None:
    """The same moves over a text block whose listener does nothing: the page's own floor."""
    box = page.locator(selector).bounding_box()
    sweep(page, moves, box["x"] + 5, box["x"] + box["width"] - 5, {**box, "y": box["y"] + box["height"] / 2,
                                                                    "height": 0})

def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"count": len(values), "median_ms": round(statistics.median(values), 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2)}


def hover(page: object, moves: int) -> dict:
    """Sweep the composed panel in `moves` steps, 40 ms apart; then the same over the intro text."""
    page.wait_for_function("() => window.__ccnetViewer?.state.cell", timeout=120_000)
    page.evaluate("window.__ccnetViewer.state.timings.length = 0")
    box = page.locator(".ccv-panel[data-view=composed] .ccv-stage").bounding_box()
    sweep(page, moves, box["x"] + box["width"] * 0.02, box["x"] + box["width"] * 0.98, box)
    timings = page.evaluate("window.__ccnetViewer.timings()")
    page.evaluate(FLOOR_JS)
    sweep_floor(page, moves, "#intro")
    return sweep_result(page, timings, "window.__ccnetViewer", "attention-viewer")


def sweep_result(page: object, timings: list[dict], viewer: str, testid: str) -> dict:
    """A sweep's figures: the viewer's paint and work times, the page's floor over the intro text, and
    what was swept (the viewer's mode, grid and size)."""
    return {"paint": summary([t["paint_ms"] for t in timings]), "work": summary([t["work_ms"] for t in timings]),
            "page_floor": summary(page.evaluate("window.__floor")),
            "mode": page.locator(f"[data-testid={testid}]").get_attribute("data-mode"),
            "grid": page.evaluate(f"{viewer}.state.value.grid"), "size": page.evaluate(f"{viewer}.state.value.size")}


def pins(page: object, clicks: int) -> dict:
    """Click `clicks` cells of the composed panel, 400 ms apart (the server's answer to each click
    follows, outside the figure): the viewer's time from the click's pointer event to the frame
    whose pin line (data-testid pin-class) shows the new pixel's class."""
    page.evaluate("window.__ccnetViewer.state.pins.length = 0")
    box = page.locator(".ccv-panel[data-view=composed] .ccv-stage").bounding_box()
    rng = np.random.default_rng(1)
    for _ in range(clicks):
        x, y = rng.uniform(0.05, 0.95, size=2)
        page.mouse.click(box["x"] + box["width"] * x, box["y"] + box["height"] * y)
        time.sleep(0.4)
    page.wait_for_timeout(300)
    return summary([t["paint_ms"] for t in page.evaluate("window.__ccnetViewer.pins()")])


def video_hover(page: object, moves: int) -> dict:
    """Sweep the composed row of the video viewer across every frame it shows, in `moves` steps 40 ms
    apart (a step that lands between two frames paints nothing and is not counted); then the same
    over the intro text. Each hover repaints every row's frames."""
    page.wait_for_function("() => window.__ccnetVideo?.state.cell && window.__ccnetVideo.state.codes",
                           timeout=120_000)
    page.evaluate("window.__ccnetVideo.state.timings.length = 0")
    row = page.locator("[data-testid=video-composed]")
    row.scroll_into_view_if_needed()
    box, seen = row.bounding_box(), page.locator(".ccvv-strip").bounding_box()
    left, right = box["x"], min(box["x"] + box["width"], seen["x"] + seen["width"])  # what the strip shows
    sweep(page, moves, left + (right - left) * 0.01, left + (right - left) * 0.99, box)
    timings = page.evaluate("window.__ccnetVideo.timings()")
    page.evaluate(VIDEO_FLOOR_JS)
    sweep_floor(page, moves, "#video-intro")
    rows = page.locator(".ccvv-row").count()
    return {**sweep_result(page, timings, "window.__ccnetVideo", "video-viewer"), "rows": rows}


def long_clip(folder: Path) -> Path:
    """A street clip of LONG_CLIP_FRAMES frames at the demo clips' size (lossless WebP)."""
    from ccnet.experiments.street_clips import generate_clip

    frames = generate_clip(3, frames=LONG_CLIP_FRAMES, split="demo").frames
    path = folder / f"clip_{LONG_CLIP_FRAMES}_frames.webp"
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], lossless=True, duration=200)
    return path


def browser_video(url: str, clip: Path, moves: int) -> dict:
    """The video mode's hover on the page's first clip (5 frames) and on a 16-frame upload."""
    require_browser()
    from playwright.sync_api import sync_playwright

    results = {}
    with sync_playwright() as playwright:
        browser, page = desktop_page(playwright, url + "video")
        results["demo clip"] = video_hover(page, moves)
        with page.expect_file_chooser() as chooser:
            page.click("#video-upload")
        chooser.value.set_files(str(clip))
        page.wait_for_function("(t) => window.__ccnetVideo?.state.value?.grid[0] === t", arg=LONG_CLIP_FRAMES,
                               timeout=120_000)
        results[f"{LONG_CLIP_FRAMES}-frame clip"] = video_hover(page, moves)
        browser.close()
    return results


def desktop_page(playwright: object, url: str) -> tuple[object, object]:
    """(browser, page): Chromium at 1400x900 on ``url``."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url)
    return browser, page


def require_browser() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise CCNetError("the viewer benchmark needs playwright (pip install -r requirements-dev.txt)") from None
    if not Path(CHROMIUM).exists():
        raise CCNetError(f"the viewer benchmark needs Chromium at {CHROMIUM} (apt-get install chromium)")


def browser_hover(url: str, photo: Path, moves: int, clicks: int) -> dict:
    require_browser()
    from playwright.sync_api import sync_playwright

    results = {}
    with sync_playwright() as playwright:
        browser, page = desktop_page(playwright, url + "?example=street_seed1_car.png")
        results["demo scene"] = hover(page, moves)
        results["demo scene"]["pin"] = pins(page, clicks)
        page.locator("#input input[type=file]").set_input_files(str(photo))
        page.wait_for_function("(w) => window.__ccnetViewer?.state.value?.size[1] === w", arg=2048, timeout=120_000)
        results["2048 px image"] = hover(page, moves)
        browser.close()
    return results


def server_clicks(url: str, image: Path, clicks: int) -> dict:
    """/attention and /attention_maps on an analysed image beside /noop (the same upload and
    pixel, a tiny JSON returned) and /noop_files (the same upload and the same outputs as
    /attention: two PNG files and a JSON), interleaved."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=tempfile.mkdtemp(prefix="ccnet-bench-"))
    client.predict(handle_file(str(image)), api_name="/segment")  # analysed once
    times: dict[str, list[float]] = {"attention": [], "attention_maps": [], "noop": [], "noop_files": []}
    rng = np.random.default_rng(0)
    for _ in range(clicks):
        x, y = int(rng.integers(512)), int(rng.integers(256))
        for name in ("noop", "noop_files", "attention", "attention_maps"):
            start = time.perf_counter()
            client.predict(handle_file(str(image)), x, y, api_name=f"/{name}")
            times[name].append((time.perf_counter() - start) * 1000)
    result = {name: summary(values) for name, values in times.items()}
    result["attention_minus_floor_ms"] = round(result["attention"]["median_ms"] - result["noop"]["median_ms"], 1)
    result["attention_maps_minus_floor_ms"] = round(
        result["attention_maps"]["median_ms"] - result["noop"]["median_ms"], 1)
    result["attention_minus_files_floor_ms"] = round(
        result["attention"]["median_ms"] - result["noop_files"]["median_ms"], 1)
    return result


def measure(moves: int = 60, clicks: int = 30, parts: tuple[str, ...] = PARTS) -> dict:
    """Serve the app on loopback (with a do-nothing endpoint beside it) and measure the `parts`:
    hovering images, hovering clips, the server's click."""
    from ccnet.app.explorer import Explorer
    from ccnet.app.ui import build_app, launch_options

    folder = Path(tempfile.mkdtemp(prefix="ccnet-bench-"))
    demo = build_app(Explorer("default", device="cpu"))
    add_floor_endpoint(demo, folder)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    url, result = f"http://127.0.0.1:{port}/", {}
    try:
        load_before = os.getloadavg()[0]
        if "images" in parts:
            photo = folder / "scene_2048.png"
            Image.fromarray(generate_scene(11, 1024, 2048, split="eval").image).save(photo)
            result["hover"] = browser_hover(url, photo, moves, max(5, clicks // 2))
        if "video" in parts:
            result["video_hover"] = browser_video(url, long_clip(folder), moves)
        if "server" in parts:
            result["server_click"] = server_clicks(url, DEMOS / "street_seed1_car.png", clicks)
    finally:
        demo.close()
    return {**result, "machine": {
        "cpus": os.cpu_count(), "load_average_at_start": round(load_before, 2),
        "load_average_at_end": round(os.getloadavg()[0], 2), "browser": "Debian Chromium, headless, --disable-gpu"}}


def format_table(result: dict) -> str:
    lines = ["hover-to-paint (pointer event -> the frame showing the new maps), Chromium headless",
             f"{'image or clip':<16}{'grid':>10}{'median ms':>11}{'p95 ms':>9}{'work ms':>9}{'page floor':>12}"]
    for name, row in [*result.get("hover", {}).items(), *result.get("video_hover", {}).items()]:
        grid = "x".join(map(str, row["grid"]))
        lines.append(f"{name:<16}{grid:>10}{row['paint']['median_ms']:>11}{row['paint']['p95_ms']:>9}"
                     f"{row['work']['median_ms']:>9}{row['page_floor']['median_ms']:>12}")
    if "hover" in result:
        pin = result["hover"]["demo scene"]["pin"]
        lines.append(f"pin (click -> the frame showing the pixel's class), demo scene: median {pin['median_ms']} ms, "
                     f"p95 {pin['p95_ms']} ms over {pin['count']} clicks")
    if "server_click" not in result:
        return "\n".join([*lines, f"load average {result['machine']['load_average_at_start']} at start, "
                           f"{result['machine']['load_average_at_end']} at end, {result['machine']['cpus']} CPUs"])
    click = result["server_click"]
    lines += ["", "server click through gradio_client (upload, queue, event stream included)",
              f"{'endpoint':<16}{'median ms':>11}{'p95 ms':>9}",
              *(f"{name:<16}{click[name]['median_ms']:>11}{click[name]['p95_ms']:>9}"
                for name in ("noop", "noop_files", "attention", "attention_maps")),
              f"/attention - /noop: {click['attention_minus_floor_ms']} ms, /attention - /noop_files: "
              f"{click['attention_minus_files_floor_ms']} ms, /attention_maps - /noop: "
              f"{click['attention_maps_minus_floor_ms']} ms (medians)",
              f"load average {result['machine']['load_average_at_start']} at start, "
              f"{result['machine']['load_average_at_end']} at end, {result['machine']['cpus']} CPUs"]
    return "\n".join(lines)


def add_floor_endpoint(demo: gr.Blocks, folder: Path) -> None:
    """Floors the benchmark measures the real endpoints against (never part of the served app):
    /noop receives an image and a pixel like /attention and returns a tiny JSON; /noop_files does nothing either but
    returns two tiny PNG files and a JSON like /attention, so that the client's fetching of output
    files is in the floor too."""
    tiny = folder / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    with demo:
        image_in, out = gr.Image(type="filepath", visible=False), gr.JSON(visible=False)
        first, second = gr.Image(format="png", visible=False), gr.Image(format="png", visible=False)
        x_in, y_in = gr.Number(visible=False, precision=0), gr.Number(visible=False, precision=0)
        gr.on([], lambda image, x, y: {"ok": True}, [image_in, x_in, y_in], [out], api_name="noop", preprocess=False)
        gr.on([], lambda image, x, y: (str(tiny), str(tiny), {"ok": True}), [image_in, x_in, y_in],
              [first, second, out], api_name="noop_files", preprocess=False)


def viewer_command(args: argparse.Namespace) -> int:
    if not 10 <= args.moves <= 2000 or not 5 <= args.clicks <= 500:
        raise CCNetError("--moves must be 10..2000 and --clicks 5..500")
    parts = tuple(part.strip() for part in args.parts.split(",") if part.strip())
    if not parts or not set(parts) <= set(PARTS):
        raise CCNetError(f"--parts must name some of {', '.join(PARTS)}, got {args.parts!r}")
    json_out = checked_output(args.json, "--json", (".json",))
    result = measure(args.moves, args.clicks, parts)
    print(format_table(result))
    if json_out:
        write_text(json_out, json.dumps(result, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.viewer_bench",
                                     description="hover-to-paint in Chromium and a server click, beside their floors")
    parser.add_argument("--moves", type=int, default=60, help="pointer moves per image")
    parser.add_argument("--clicks", type=int, default=30, help="API clicks (and as many do-nothing calls)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"what to measure, comma-separated: {', '.join(PARTS)} (default: all)")
    parser.add_argument("--json", help="also write the figures to this JSON file (e.g. assets/viewer_bench.json)")
    return run(parser, viewer_command, argv)


if __name__ == "__main__":
    sys.exit(main())

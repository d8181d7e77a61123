"""The app's named endpoints through gradio_client, against the app served on a free loopback port.

The model is the embedded `default` (env CCNET_MODEL may point at another checkpoint file).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from ccnet.project import ROOT
from tests.e2e.conftest import api_client
from tools import hostile
from tools.ports import free_port

# gradio 6.31's queue calls pandas APIs that pandas 3 deprecates (not ours to fix)
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword is deprecated).*")
DEMO = ROOT / "demos" / "street_seed1_car.png"
H, W = 256, 512


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(client, explorer): the app launched in-process; the explorer lets tests count network runs."""
    from ccnet.app.explorer import Explorer
    from ccnet.app.exports import Exports
    from ccnet.app.ui import build_app, launch_options

    explorer = Explorer(os.environ.get("CCNET_MODEL", "default"), device="cpu")
    demo = build_app(explorer, Exports(tmp_path_factory.mktemp("exports")))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, mcp_server=True,
                **launch_options())  # the app's own limits: a test of them fails if app.py drops one
    try:
        client = api_client(f"http://127.0.0.1:{port}/", tmp_path_factory.mktemp("dl"))
        client.base = f"http://127.0.0.1:{port}"
        yield client, explorer
    finally:
        demo.close()


def test_segment_returns_the_overlay_at_the_image_size_first(served):
    from gradio_client import handle_file

    client, explorer = served
    overlay, info = client.predict(handle_file(str(DEMO)), api_name="/segment")
    assert Image.open(overlay).size == (W, H)
    assert info["image_size"] == [H, W] and info["grid"] == list(explorer.analyse(DEMO).grid)
    assert abs(sum(row["share"] for row in info["legend"]) - 1.0) < 1e-6
    assert {row["name"] for row in info["legend"]} >= {"road", "sky", "car"}


@pytest.mark.parametrize("x, y", [(0, 0), (W - 1, H - 1), (300, 120), (77, 201)])
def test_attention_json_has_the_clicked_cell_and_distributions(served, x, y):
    from gradio_client import handle_file

    client, _ = served
    heatmap, steps, data = client.predict(handle_file(str(DEMO)), x, y, api_name="/attention")
    h, w = data["grid"]
    assert data["cell"] == [y * h // H, x * w // W] and data["pixel"] == [x, y]
    assert len(data["steps"]) == 2
    for grid_map in [*data["steps"], data["composed"]]:
        values = np.asarray(grid_map)
        assert values.shape == (h, w) and abs(values.sum() - 1.0) < 1e-4 and values.min() >= 0
    weights = [t["weight"] for t in data["topk"]]
    assert len(weights) == 5 and weights == sorted(weights, reverse=True)
    assert Image.open(heatmap).size == (W, H) and Image.open(steps).size[0] > W
    assert client.predict(handle_file(str(DEMO)), x, y, api_name="/attention_maps") == data  # the JSON alone


def test_clicks_through_the_api_never_rerun_the_network(served):
    from gradio_client import handle_file

    client, explorer = served
    picture = ROOT / "demos" / "street_seed4_truck.png"
    client.predict(handle_file(str(picture)), api_name="/segment")
    runs = explorer.network_runs
    for x, y in [(10, 10), (200, 100), (500, 250)]:
        client.predict(handle_file(str(picture)), x, y, api_name="/attention")
    assert explorer.network_runs == runs


def test_cost_compares_rcca_with_the_non_local_block(served):
    from gradio_client import handle_file

    client, explorer = served
    data = client.predict(handle_file(str(DEMO)), api_name="/cost")
    assert data["feature_size"] == list(explorer.analyse(DEMO).grid)
    for method in ("rcca1", "rcca2", "nonlocal"):
        assert data[method]["memory_bytes"] > 0 and data[method]["flops"] > 0 and data[method]["time_ms"] > 0
    assert data["nonlocal"]["memory_bytes"] > data["rcca2"]["memory_bytes"]
    assert data["nonlocal"]["flops"] > data["rcca2"]["flops"] > data["rcca1"]["flops"]


def test_a_clip_is_segmented_and_explained_through_the_api(served, tmp_path):
    """/segment_video and /attention_video on a demo clip, every position from the cache, a bad clip
    in one line and the server still serving (the same calls without a server: tests/app/test_video_api.py)."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from tests.files import BAD_CLIPS

    client, _ = served
    clip = ROOT / "demos" / "clip_seed10_truck.webp"
    strip, info = client.predict(handle_file(str(clip)), "", api_name="/segment_video")
    assert Image.open(strip).size == (5 * 256 + 4 * 4, 128) and info["grid"] == [5, 16, 32]
    heatmap, data = client.predict(handle_file(str(clip)), 1, 78, 84, "", api_name="/attention_video")
    assert data["cell"] == [1, 10, 9] and data["class"] == "truck" and data["reach"] == [51, 700, 2560]
    assert abs(np.asarray(data["composed"]).sum() - 1) < 1e-4 and Image.open(heatmap).size == Image.open(strip).size
    bad = tmp_path / "long.gif"
    bad.write_bytes(BAD_CLIPS["long.gif"][0])
    with pytest.raises(AppError, match="more than 16 frames") as err:
        client.predict(handle_file(str(bad)), "", api_name="/segment_video")
    assert "\n" not in str(err.value).strip()
    with pytest.raises(AppError, match="frame 5 is outside the clip's 5 frames"):
        client.predict(handle_file(str(clip)), 5, 1, 1, "", api_name="/attention_video")
    assert client.predict(handle_file(str(clip)), "", api_name="/segment_video")[1] == info  # still serving


def test_bad_requests_get_a_clear_message_and_the_server_keeps_serving(served, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client, _ = served
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a PNG")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    cases = [
        ((handle_file(str(broken)),), "/segment", "broken.png is"),
        ((handle_file(str(tiny)),), "/segment", "too small"),
        ((handle_file(str(DEMO)), W, 3), "/attention", f"outside the {W}x{H} image"),
        ((handle_file(str(DEMO)), "nope"), "/cost", "unknown model 'nope'"),
    ]
    for args, endpoint, message in cases:
        with pytest.raises(AppError, match=message):
            client.predict(*args, api_name=endpoint)
    overlay, _ = client.predict(handle_file(str(DEMO)), api_name="/segment")
    assert Image.open(overlay).size == (W, H)


def test_segment_says_when_the_embedded_model_meets_a_photo(served):
    from gradio_client import handle_file

    from ccnet.app.explorer import PHOTO_MODEL

    client, _ = served
    _, street = client.predict(handle_file(str(DEMO)), api_name="/segment")
    assert street["out_of_domain"] is False and street["domain_note"] is None and street["suggested_model"] is None
    _, cat = client.predict(handle_file(str(ROOT / "tests" / "data" / "photos" / "chelsea.jpg")), api_name="/segment")
    assert cat["out_of_domain"] is True and "synthetic street scenes" in cat["domain_note"]
    assert cat["suggested_model"] == PHOTO_MODEL and cat["analysis_size"] == "full"


def test_a_failed_preset_download_tells_the_visitor_without_urls_or_server_paths(served, monkeypatch, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from ccnet.weights import presets

    monkeypatch.setenv("CCNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CCNET_ZOO_URL", f"http://127.0.0.1:{free_port()}/")  # nothing listens there
    client, _ = served
    name = next(iter(presets.presets()))
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(DEMO)), name, api_name="/segment")
    message = str(err.value)
    assert f"cannot download {name}" in message and "try again later" in message
    assert "127.0.0.1" not in message and str(tmp_path) not in message and "http" not in message


NETWORK_GUARD = """
import ipaddress, socket, sys
def guard(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple) and args[0].family in (socket.AF_INET, socket.AF_INET6):
        host = args[1][0]
    elif event == "socket.getaddrinfo":
        host = args[0]
    else:
        return
    host = host.decode() if isinstance(host, bytes) else str(host)
    try:
        ok = host in ("localhost", "") or ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        ok = False
    if not ok:
        print("NON-LOOPBACK", event, host, flush=True)
        raise ConnectionRefusedError(host)
sys.addaudithook(guard)
import runpy
sys.argv = ["app.py", *sys.argv[1:]]
runpy.run_path("app.py", run_name="__main__")
"""


def test_python_app_py_honours_the_server_env_and_reaches_no_other_host(tmp_path):
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port))
    log = tmp_path / "server.log"
    args = [sys.executable, "-c", NETWORK_GUARD, "--device", "cpu"]
    if os.environ.get("CCNET_MODEL"):
        args += ["--model", os.environ["CCNET_MODEL"]]
    with log.open("w") as out:
        server = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as response:
                    config = json.load(response)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.5)
        names = {d.get("api_name") for d in config["dependencies"] if d.get("api_visibility") == "public"}
        assert names == {"segment", "attention", "attention_maps", "cost", "segment_video", "attention_video"}
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "NON-LOOPBACK" not in log.read_text(), log.read_text()[-2000:]


# ---- robustness through the server (the same cases without it: test_robustness.py) ---------------
def _file(tmp_path, name, data):
    from gradio_client import handle_file

    path = tmp_path / name
    path.write_bytes(data)
    return handle_file(str(path))


def test_odd_images_are_segmented_at_their_size_and_bad_ones_refused(served, tmp_path):
    from gradio_client.exceptions import AppError

    from tests.files import BAD_FILES, odd_files

    client, _ = served
    for name in ("gray16.png", "cmyk.jpg", "palette.png", "anim.webp"):
        data, expected = odd_files()[name]
        overlay, info = client.predict(_file(tmp_path, name, data), "", api_name="/segment")
        assert info["image_size"] == list(expected.shape[:2]) and Image.open(overlay).size == expected.shape[1::-1]
    for name in ("truncated.png", "page.png", "bomb.png", "stride.png", "sliver.png"):
        data, message = BAD_FILES[name]
        with pytest.raises(AppError, match=message):
            client.predict(_file(tmp_path, name, data), "", api_name="/segment")
    overlay, _ = client.predict(handle_demo(), "", api_name="/segment")  # still serving
    assert Image.open(overlay).size == (W, H)


def handle_demo():
    from gradio_client import handle_file

    return handle_file(str(DEMO))


def test_requests_cannot_read_server_files_or_load_arbitrary_checkpoints(served):
    from gradio_client.exceptions import AppError

    client, explorer = served
    runs = explorer.network_runs
    port = int(client.src.rstrip("/").rsplit(":", 1)[1])
    for path in ("/etc/hostname", str(ROOT / "assets" / "MODEL_CARD.md"), str(ROOT / "app.py"), "http://10.0.0.1/x.png"):
        # refused before it is queued (ccnet.app.server.uploads.refuse_bad_requests), in one line
        status, message = hostile.submit(port, "segment", [{"path": path, "meta": {"_type": "gradio.FileData"}}, ""])
        words = "fetches no URL" if path.startswith("http") else "was not uploaded to this app"
        assert status == 400 and words in message and "10.0.0.1" not in message, message
        assert str(ROOT) not in message and "/etc" not in message
    for model in (str(ROOT / "assets" / "ccnet_default.pt"), "/etc/passwd"):
        with pytest.raises(AppError, match="unknown model"):
            client.predict(handle_demo(), model, api_name="/segment")
    assert explorer.network_runs == runs


def raw_call(base: str, endpoint: str, data: list) -> tuple[str, str]:
    """POST to /gradio_api/call/<endpoint> as any HTTP client could (gradio_client would upload a
    local path itself), then read the event stream: ("complete"|"error", its data)."""
    request = urllib.request.Request(f"{base.rstrip('/')}/gradio_api/call/{endpoint}", method="POST",
                                     data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{base.rstrip('/')}/gradio_api/call/{endpoint}/{event_id}", timeout=60) as response:
        lines = response.read().decode().splitlines()
    events = [line.split(":", 1)[1].strip() for line in lines if line.startswith("event:")]
    payloads = [line.split(":", 1)[1].strip() for line in lines if line.startswith("data:")]
    return events[-1], payloads[-1]


def test_uploads_above_the_size_limit_are_refused(served, tmp_path):
    from ccnet.limits import FILE_BYTES

    client, explorer = served
    limit = FILE_BYTES
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(limit + 1000))
    with pytest.raises(Exception, match="(?i)maximum|size|413"):
        client.predict(handle_file_(big), "", api_name="/segment")
    overlay, _ = client.predict(handle_demo(), "", api_name="/segment")  # still serving
    assert Image.open(overlay).size == (W, H)


def handle_file_(path):
    from gradio_client import handle_file

    return handle_file(str(path))


def test_concurrent_visitors_get_their_own_results_within_the_limits(served, tmp_path):
    """The load test in small: four sessions at once, each checked against its own image."""
    from tools.loadtest import make_visitors, run_load

    client, explorer = served
    visitors = make_visitors(4, 3, tmp_path)
    result = run_load(client.src, visitors, explorer.classes(), timeout_s=240)
    assert result["errors"] == 0, result["error_examples"]
    assert result["requests"] == 4 * (1 + 3)
    assert explorer.max_in_flight == 1  # the views' queue runs one network at a time
    assert len(explorer.cache) <= explorer.cache.max_entries and explorer.cache.nbytes <= explorer.cache.max_bytes


def test_segment_attention_and_cost_are_mcp_tools(served):
    client, _ = served
    with urllib.request.urlopen(f"{client.base}/gradio_api/mcp/schema", timeout=30) as response:
        schema = json.loads(response.read())
    tools = {tool["name"]: tool for tool in schema}
    assert any("attention_maps" in name for name in tools)
    for word in ("segment", "attention", "cost"):
        name = next(name for name in tools if word in name)
        assert len(tools[name]["description"]) > 60, tools[name]
    attention = tools[next(name for name in tools if "attention" in name and "video" not in name)]
    assert {"image", "x", "y"} <= set(attention["inputSchema"]["properties"])
    clip = tools[next(name for name in tools if "attention_video" in name)]  # the video mode's, described too
    assert {"clip", "t", "x", "y", "model"} <= set(clip["inputSchema"]["properties"]) and len(clip["description"]) > 60
    assert any("segment_video" in name for name in tools)
    assert not any(name.startswith("on_") or "noop" in name for name in tools)  # the page's events stay private


def test_the_analysis_size_reaches_released_models_through_the_api(tmp_path_factory, checkpoint):
    """A released model (its preset's protocol, the tiny network: no download) at the default
    interactive size on a CPU server, and at the full protocol when the request asks for it."""
    from gradio_client import Client, handle_file

    from ccnet.app.explorer import Explorer
    from ccnet.app.exports import Exports
    from ccnet.app.ui import build_app, launch_options
    from ccnet.weights import presets
    from ccnet.weights.load import load_file

    name = "ccnet_r50-d8_512x1024_80k_cityscapes"

    def loader(model, progress=None):
        protocol = presets.get(model).protocol if model in presets.presets() else None
        return load_file(checkpoint, protocol=protocol, name=model)

    demo = build_app(Explorer("default", device="cpu", loader=loader), Exports(tmp_path_factory.mktemp("exports")))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path_factory.mktemp("dl")))
        _, fast = client.predict(handle_file(str(DEMO)), name, api_name="/segment")
        _, full = client.predict(handle_file(str(DEMO)), name, "full", api_name="/segment")
        assert fast["analysis_size"] == "interactive" and "interactive size" in fast["note"]
        assert full["analysis_size"] == "full" and full["note"].startswith("full protocol")
        assert full["grid"] == [128, 256] and fast["grid"][0] * fast["grid"][1] < full["grid"][0] * full["grid"][1]
        assert fast["out_of_domain"] is False  # released models are not judged
    finally:
        demo.close()


def test_attention_compares_with_the_non_local_sibling_when_asked(served):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client, explorer = served
    _, _, plain = client.predict(handle_file(str(DEMO)), 165, 182, "", "", "", api_name="/attention")
    assert "nonlocal" not in plain
    _, _, data = client.predict(handle_file(str(DEMO)), 165, 182, "", "", "nonlocal", api_name="/attention")
    non_local = np.asarray(data["nonlocal"])
    assert non_local.shape == tuple(data["grid"]) and abs(non_local.sum() - 1) < 1e-4
    assert set(data["agreement"]) >= {"topk_overlap", "js_divergence_bits", "on_cross_share", "top_cell"}
    with pytest.raises(AppError, match="compare must be empty or 'nonlocal'"):
        client.predict(handle_file(str(DEMO)), 165, 182, "", "", "everything", api_name="/attention")


@pytest.mark.parametrize("x, y", [(1.5, 3), (True, 3), (None, 3), ("7", 3), (float("nan"), 3), (3, [1])])
def test_a_coordinate_that_is_not_a_whole_number_is_one_line_and_no_traceback(served, capfd, x, y):
    client, _ = served
    port = int(client.src.rstrip("/").rsplit(":", 1)[1])
    status, path = hostile.upload(port, "scene.png", DEMO.read_bytes())
    image = {"path": path, "meta": {"_type": "gradio.FileData"}}
    capfd.readouterr()
    answer = hostile.call(port, "attention", [image, x, y, "", "", ""])
    words = "give the pixel as x" if x is None else "pixel coordinates must be whole numbers"
    assert answer.outcome == "error" and words in answer.text
    assert "Traceback" not in capfd.readouterr().err


def test_malformed_calls_are_refused_in_one_line_before_they_are_queued(served, capfd):
    client, _ = served
    port = int(client.src.rstrip("/").rsplit(":", 1)[1])
    image = {"path": hostile.upload(port, "scene.png", DEMO.read_bytes())[1], "meta": {"_type": "gradio.FileData"}}
    segment = next(d["id"] for d in client.config["dependencies"] if d.get("api_name") == "segment")
    capfd.readouterr()
    for body, words in (({"data": [image], "fn_index": 9999, "session_hash": "s1"}, "unknown function 9999"),
                        ({"data": [image], "fn_index": segment, "session_hash": "s1"}, "takes 3 inputs, got 1"),
                        ({"data": "x", "fn_index": segment, "session_hash": "s1"}, None)):
        status, text = hostile.post(port, "/gradio_api/queue/join", json.dumps(body).encode(),
                                    {"content-type": "application/json"})
        assert status in (400, 422) and "\n" not in text.decode().strip(), (status, text)
        if words:
            assert words in text.decode()
    assert "Traceback" not in capfd.readouterr().err

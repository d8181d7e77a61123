"""`python -m ccnet loadtest`: many visitors at once against the app, on loopback only.

Each simulated visitor is its own gradio_client session with its own scene: it uploads it
(/segment) and clicks pixels (/attention). Every answer is checked against the same model run in
this process, so a result that belongs to another visitor (cross-talk through a cache or shared
state) counts as an error, as does any failed or timed-out request. Bounded in visitors, clicks
and time; it never talks to anything but 127.0.0.1.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ccnet.errors import CCNetError
from ccnet.experiments import scenes
from ccnet.inference.geometry import cell_of
from ccnet.inference.predictor import Predictor
from ccnet.weights.load import load_model

MAX_USERS, MAX_CLICKS = 32, 20
SCENE_SIZE = (256, 512)


@dataclass(frozen=True)
class Visitor:
    """One visitor's scene and what the model says about it (the expected answers)."""

    index: int
    path: Path
    classes: np.ndarray  # (H, W) expected class per pixel
    clicks: list[tuple[int, int]]  # pixels whose expected class is unambiguous (margin > 0.2)


def make_visitors(users: int, clicks: int, folder: Path, model: str = "default") -> list[Visitor]:
    """A distinct scene per visitor (demo split, seeds 1000+i) and its expected segmentation."""
    loaded = load_model(model)
    predictor = Predictor(loaded.net, loaded.protocol, device="cpu")
    visitors = []
    for i in range(users):
        scene = scenes.generate_scene(1000 + i, *SCENE_SIZE, split="demo")
        path = folder / f"visitor{i:02d}.png"
        Image.fromarray(scene.image).save(path)
        probabilities = torch.softmax(predictor.predict(scene.image, with_attention=False).logits, 0)
        top2 = probabilities.topk(2, dim=0).values
        sure = ((top2[0] - top2[1]) > 0.2).numpy()
        ys, xs = np.nonzero(sure)
        pick = np.random.default_rng(i).choice(len(ys), size=min(clicks, len(ys)), replace=False)
        visitors.append(Visitor(i, path, probabilities.argmax(0).numpy(),
                                [(int(xs[k]), int(ys[k])) for k in pick]))
    return visitors


def _visit(url: str, visitor: Visitor, class_names: tuple[str, ...], headers: dict[str, str] | None) -> list[dict]:
    """One visitor's session: upload, then the clicks; one record per request."""
    from gradio_client import Client, handle_file

    records = []

    def timed(endpoint: str, check: Callable, *args: object) -> None:
        start = time.perf_counter()
        try:
            result = client.predict(*args, api_name=endpoint)
            error = check(result)
        except Exception as err:  # noqa: BLE001 - every failure is a counted error, not a crash
            error = f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
        records.append({"visitor": visitor.index, "endpoint": endpoint, "ms": (time.perf_counter() - start) * 1000,
                        "error": error})

    def check_segment(result) -> str | None:  # noqa: ANN001
        info = result[1]
        if info["image_size"] != list(SCENE_SIZE):
            return f"wrong image size {info['image_size']}"
        shares = {row["index"]: row["share"] for row in info["legend"]}
        expected = np.bincount(visitor.classes.ravel(), minlength=len(class_names)) / visitor.classes.size
        worst = max(abs(shares.get(k, 0.0) - expected[k]) for k in range(len(class_names)))
        return None if worst < 0.01 else f"class shares differ from this visitor's image by {worst:.3f}"

    def check_click(x: int, y: int):  # noqa: ANN202
        def check(result) -> str | None:  # noqa: ANN001
            data = result[2]
            want_cell = list(cell_of(x, y, SCENE_SIZE, tuple(data["grid"])))
            want_class = class_names[visitor.classes[y, x]]
            if data["pixel"] != [x, y] or data["cell"] != want_cell or data["class"] != want_class:
                return f"click ({x}, {y}) answered {data['pixel']} {data['cell']} {data['class']}"
            return None
        return check

    client = Client(url, verbose=False, download_files=False, headers=headers)
    upload = handle_file(str(visitor.path))
    timed("/segment", check_segment, upload, "")
    for x, y in visitor.clicks:
        timed("/attention", check_click(x, y), upload, x, y, "")
    return records


def run_load(url: str, visitors: list[Visitor], class_names: tuple[str, ...], timeout_s: float = 300,
             behind_proxy: bool = False) -> dict:
    """All visitors at once (one thread each); latency percentiles, errors and throughput.

    ``behind_proxy``: each visitor's requests carry an X-Forwarded-For address of its own, for an
    app served with CCNET_PROXY_HOPS=1 (as on a Space). From one loopback address, more than 8
    visitors would pass the app's cap of waiting requests per client (ccnet.app.fairness)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(visitors)) as pool:
        futures = [pool.submit(_visit, url, v, class_names, _forwarded_for(v.index) if behind_proxy else None)
                   for v in visitors]
        records = []
        for future in futures:
            try:
                records += future.result(timeout=max(1.0, timeout_s - (time.perf_counter() - start)))
            except Exception as err:  # noqa: BLE001 - a stuck or crashed visitor is an error
                records.append({"visitor": -1, "endpoint": "session", "ms": float("nan"),
                                "error": f"{type(err).__name__}: {err}"})
    wall = time.perf_counter() - start
    summary = {"visitors": len(visitors), "requests": len(records), "wall_s": round(wall, 2),
               "requests_per_s": round(len(records) / wall, 2),
               "errors": sum(r["error"] is not None for r in records),
               "error_examples": sorted({r["error"] for r in records if r["error"]})[:5]}
    for endpoint in ("/segment", "/attention", "all"):
        times = [r["ms"] for r in records if endpoint in ("all", r["endpoint"]) and r["error"] is None]
        if times:
            summary[endpoint.strip("/")] = {"count": len(times), "p50_ms": round(statistics.median(times), 1),
                                            "p95_ms": round(float(np.percentile(times, 95)), 1),
                                            "max_ms": round(max(times), 1)}
    return summary


def _forwarded_for(index: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"10.0.{index // 250}.{index % 250 + 1}"}


def peak_rss_mib(pid: int) -> float | None:
    """The process's high-water resident memory (Linux VmHWM), in MiB."""
    return status_mib(pid, "VmHWM")


def status_mib(pid: int, field: str) -> float | None:
    """A memory field of /proc/PID/status (VmRSS: now, VmHWM: the high-water mark), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def serve_app(app_py: Path, port: int, timeout_s: float = 120, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `python app.py` on 127.0.0.1:port (with `env` added) and wait until it answers; its
    log goes to a temporary file (a pipe nobody reads would stall a talkative server)."""
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", **(env or {})}
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the server (closed with it)
    server = subprocess.Popen([sys.executable, str(app_py)], env=env, cwd=app_py.parent,
                              stdout=subprocess.DEVNULL, stderr=log, text=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise CCNetError(f"the app exited before serving: {log.read().strip().splitlines()[-1:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2).close()
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise CCNetError(f"the app did not answer on port {port} within {timeout_s:.0f} s")

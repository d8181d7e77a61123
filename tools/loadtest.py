"""`python -m tools.loadtest`: many visitors at once against the app, on loopback only
(`--adversarial`: hostile clients instead, tools/attacks.py).

Each simulated visitor is its own gradio_client session with its own scene: it uploads it
(/segment) and clicks pixels (/attention). Every answer is checked against the same model run in
this process, so a result that belongs to another visitor (cross-talk through a cache or shared
state) counts as an error, as does any failed or timed-out request. Bounded in visitors, clicks
and time; it never talks to anything but 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
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

from ccnet.cli.outputs import checked_output, write_text
from ccnet.errors import CCNetError
from ccnet.experiments import scenes
from ccnet.inference.geometry import cell_of
from ccnet.inference.predictor import Predictor
from ccnet.weights.load import load_model
from tools._cli import run
from tools.ports import free_port

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
    visitors would pass the app's cap of waiting requests per client (ccnet.app.server.fairness)."""
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

    def log_text() -> str:
        log.seek(0)
        return log.read()

    server.log_text = log_text  # what the server wrote to stderr so far (the adversarial run counts tracebacks)
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


def loadtest(args: argparse.Namespace) -> int:
    if args.adversarial:
        return adversarial(args)
    if not 1 <= args.users <= MAX_USERS or not 1 <= args.clicks <= MAX_CLICKS:
        raise CCNetError(f"--users must be 1..{MAX_USERS} and --clicks 1..{MAX_CLICKS}")
    json_out = checked_output(args.json, "--json", (".json",))
    torch.set_num_threads(1)  # the server gets the rest of the machine
    with tempfile.TemporaryDirectory(prefix="ccnet-load-") as folder:
        visitors = make_visitors(args.users, args.clicks, Path(folder))
        classes = load_model("default").classes
        port = free_port()
        server = serve_app(Path(args.app).resolve(), port, env={"CCNET_PROXY_HOPS": "1"})
        try:  # the visitors pose behind a proxy, each its own client, as on a Space
            result = run_load(f"http://127.0.0.1:{port}/", visitors, classes, args.timeout, behind_proxy=True)
            result["server_peak_rss_mib"] = peak_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    result.update({"clicks_per_visitor": args.clicks, "machine": f"{os.cpu_count()} CPUs, {sys.platform}",
                   "load_average": os.getloadavg()[0],
                   "server": "python app.py (default model, CPU, queue concurrency 1 for the views)"})
    print_table(result)
    if json_out:
        write_text(json_out, json.dumps(result, indent=2) + "\n")
    return 1 if result["errors"] else 0


def adversarial(args: argparse.Namespace) -> int:
    """Replay the attacks (tools/attacks.py) and print what each cost the server and a victim."""
    from tools.attacks import print_attacks, run_attacks

    json_out = checked_output(args.json, "--json", (".json",))
    torch.set_num_threads(1)  # the server gets the rest of the machine
    with tempfile.TemporaryDirectory(prefix="ccnet-attacks-") as folder:
        result = run_attacks(Path(args.app).resolve(), Path(folder))
    print_attacks(result)
    if json_out:
        write_text(json_out, json.dumps(result, indent=2) + "\n")
    return 0


def print_table(result: dict) -> None:
    print(f"{result['visitors']} visitors at once, {result['requests']} requests in {result['wall_s']} s "
          f"({result['requests_per_s']}/s), errors {result['errors']}, "
          f"server peak RSS {result.get('server_peak_rss_mib') or float('nan'):.0f} MiB")
    print(f"{'endpoint':<12}{'count':>7}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for name in ("segment", "attention", "all"):
        if name in result:
            row = result[name]
            print(f"{name:<12}{row['count']:>7}{row['p50_ms']:>10.1f}{row['p95_ms']:>10.1f}{row['max_ms']:>10.1f}")
    for example in result["error_examples"]:
        print(f"error: {example}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.loadtest",
                                     description="concurrent visitors against `python app.py` on loopback")
    parser.add_argument("--users", type=int, default=8, help=f"simultaneous visitors (1..{MAX_USERS})")
    parser.add_argument("--clicks", type=int, default=5, help=f"clicks per visitor after the upload (1..{MAX_CLICKS})")
    parser.add_argument("--timeout", type=float, default=300, help="give up after this many seconds")
    parser.add_argument("--app", default="app.py", help="the app to serve")
    parser.add_argument("--adversarial", action="store_true",
                        help="replay hostile clients instead (tools/attacks.py) and report RSS, disk and a victim's "
                             "latency before and after each attack")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return run(parser, loadtest, argv)


if __name__ == "__main__":
    sys.exit(main())

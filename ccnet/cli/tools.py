"""`bench` (time, peak memory and FLOPs side by side) and `loadtest` (visitors of the served app)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from ccnet.cli.outputs import checked_output, write_text
from ccnet.errors import CCNetError
from ccnet.inference.predictor import resolve_device
from ccnet.tools import viewer_bench
from ccnet.tools.attacks import print_attacks, run_attacks
from ccnet.tools.bench import (
    PAPER,
    bench_attention,
    bench_model,
    format_tables,
    load_average,
    machine_info,
    parse_sizes,
)
from ccnet.tools.loadtest import (
    MAX_CLICKS,
    MAX_USERS,
    make_visitors,
    peak_rss_mib,
    run_load,
    serve_app,
)
from ccnet.tools.ports import free_port
from ccnet.tools.stage_bench import bench_stages, format_stage_tables
from ccnet.tools.upload_bench import bench_uploads, format_upload_table
from ccnet.weights.load import load_model


def cmd_bench(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if args.channels < 8:
        raise CCNetError(f"--channels must be at least 8 (query/key have C/8 channels), got {args.channels}")
    if args.repeats < 1 or args.model_repeats < 1 or args.threads < 1:
        raise CCNetError("--repeats, --model-repeats and --threads must be at least 1")
    sizes = parse_sizes(args.sizes)
    json_out = checked_output(args.json, "--json", (".json",))
    torch.set_num_threads(args.threads)
    report: dict = {"command": " ".join(["python -m ccnet", *sys.argv[1:]]), "machine": machine_info(device),
                    "paper": PAPER}
    if args.part in ("attention", "all"):
        report["attention"] = [bench_attention(args.channels, h, w, device, args.repeats) for h, w in sizes]
    if args.part in ("model", "all"):
        report["model"] = bench_model(device, args.model_repeats)
    if args.part == "upload":
        report["upload"] = bench_uploads(device, args.model_repeats)
    if args.part == "stages":
        if device.type != "cpu":
            raise CCNetError("bench stages measures the CPU paths (onnxruntime runs on the CPU); use --device cpu")
        report["stages"] = bench_stages(args.model_repeats)
    report["machine"]["load_average_at_end"] = load_average()
    print(format_tables(report))
    if report.get("upload"):
        print(format_upload_table(report["upload"]))
    if report.get("stages"):
        print(format_stage_tables(report["stages"]))
    if json_out:
        write_text(json_out, json.dumps(report, indent=2) + "\n")
        print(f"\nwritten to {json_out}")
    return 0


def _register_bench(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="measure attention and model costs (time, peak memory, FLOPs)")
    p.add_argument("part", nargs="?", default="all", choices=("attention", "model", "all", "upload", "stages"),
                   help="upload and stages are not in all (minutes each): released models on an upload, "
                        "interactive vs full protocol; where a whole model's time goes, and its fastest path")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--sizes", default="97x97", help="feature sizes HxW for the attention part, comma-separated")
    p.add_argument("--channels", type=int, default=512, help="feature channels for the attention part")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per attention case")
    p.add_argument("--model-repeats", type=int, default=2, help="timed runs per whole-model case")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(func=cmd_bench)


def cmd_loadtest(args: argparse.Namespace) -> int:
    if args.adversarial:
        return _adversarial(args)
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
                   "server": "python app.py (default model, CPU, queue concurrency 1 for the views, max 64 queued)"})
    print_table(result)
    if json_out:
        write_text(json_out, json.dumps(result, indent=2) + "\n")
    return 1 if result["errors"] else 0


def _adversarial(args: argparse.Namespace) -> int:
    """Replay the attacks (ccnet/tools/attacks.py) and print what each cost the server and a victim."""
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


def _register_loadtest(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("loadtest", help="concurrent visitors against `python app.py` on loopback")
    p.add_argument("--users", type=int, default=8, help=f"simultaneous visitors (1..{MAX_USERS})")
    p.add_argument("--clicks", type=int, default=5, help=f"clicks per visitor after the upload (1..{MAX_CLICKS})")
    p.add_argument("--timeout", type=float, default=300, help="give up after this many seconds")
    p.add_argument("--app", default="app.py", help="the app to serve")
    p.add_argument("--adversarial", action="store_true",
                   help="replay hostile clients instead (sessionless floods, a slow download, a queue flood, "
                        "decoding bombs, huge bodies, a disk flood, a shutdown) and report RSS, disk and a victim's "
                        "latency")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(func=cmd_loadtest)


def cmd_bench_viewer(args: argparse.Namespace) -> int:
    if not 10 <= args.moves <= 2000 or not 5 <= args.clicks <= 500:
        raise CCNetError("--moves must be 10..2000 and --clicks 5..500")
    json_out = checked_output(args.json, "--json", (".json",))
    result = viewer_bench.run(args.moves, args.clicks)
    print(viewer_bench.format_table(result))
    if json_out:
        write_text(json_out, json.dumps(result, indent=2) + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_bench(subparsers)
    _register_loadtest(subparsers)
    p = subparsers.add_parser("bench-viewer", help="hover-to-paint in Chromium and a server click, beside their floors")
    p.add_argument("--moves", type=int, default=60, help="pointer moves per image")
    p.add_argument("--clicks", type=int, default=30, help="API clicks (and as many do-nothing calls)")
    p.add_argument("--json", help="also write the figures to this JSON file (e.g. assets/viewer_bench.json)")
    p.set_defaults(func=cmd_bench_viewer)

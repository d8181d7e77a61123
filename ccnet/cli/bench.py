"""`bench`: the paper's cost table measured here (time, peak memory and FLOPs of criss-cross
attention beside a non-local block, and of whole models; `bench video`: the 3D blocks on a clip
as T grows), printed and saved as JSON."""
from __future__ import annotations

import argparse
import json
import sys

import torch

from ccnet.cli.outputs import checked_output, write_text
from ccnet.errors import CCNetError
from ccnet.experiments.bench import (
    PAPER,
    bench_attention,
    bench_model,
    format_tables,
    load_average,
    machine_info,
    parse_sizes,
)
from ccnet.experiments.bench_video import VIDEO_FRAMES, VIDEO_SIZE, bench_video, format_video_table
from ccnet.inference.predictor import resolve_device


def cmd_bench(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if args.channels < 8:
        raise CCNetError(f"--channels must be at least 8 (query/key have C/8 channels), got {args.channels}")
    if args.repeats < 1 or args.model_repeats < 1 or args.threads < 1:
        raise CCNetError("--repeats, --model-repeats and --threads must be at least 1")
    sizes = parse_sizes(args.sizes)
    video_size = parse_sizes(args.video_size)[0]
    frames = _frames(args.frames)
    json_out = checked_output(args.json, "--json", (".json",))
    torch.set_num_threads(args.threads)
    report: dict = {"command": " ".join(["python -m ccnet", *sys.argv[1:]]), "machine": machine_info(device)}
    if args.part != "video":
        report["paper"] = PAPER  # the 2D figures; the TPAMI paper gives none for its video block
    if args.part in ("attention", "all"):
        report["attention"] = [bench_attention(args.channels, h, w, device, args.repeats) for h, w in sizes]
    if args.part in ("model", "all"):
        report["model"] = bench_model(device, args.model_repeats)
    if args.part == "video":
        report["video"] = bench_video(args.channels, frames, video_size, device, args.repeats)
    report["machine"]["load_average_at_end"] = load_average()
    print(format_video_table(report["video"]) if args.part == "video" else format_tables(report))
    if json_out:
        write_text(json_out, json.dumps(report, indent=2) + "\n")
        print(f"\nwritten to {json_out}")
    return 0


def _frames(text: str) -> list[int]:
    """'1,2,5,10' -> [1, 2, 5, 10], or a one-line error."""
    try:
        frames = [int(t) for t in text.split(",")]
    except ValueError:
        raise CCNetError(f"bad --frames {text!r}: expected frame counts, e.g. 1,2,5,10") from None
    if min(frames) < 1:
        raise CCNetError(f"bad --frames {text!r}: every clip has at least one frame")
    return frames


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="measure attention and model costs (time, peak memory, FLOPs)")
    p.add_argument("part", nargs="?", default="all", choices=("attention", "model", "all", "video"),
                   help="all = attention and model; video (3D blocks on a clip, minutes) runs on its own")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--sizes", default="97x97", help="feature sizes HxW for the attention part, comma-separated")
    p.add_argument("--channels", type=int, default=512, help="feature channels for the attention and video parts")
    p.add_argument("--frames", default=",".join(map(str, VIDEO_FRAMES)), help="video: clip lengths T")
    p.add_argument("--video-size", default="x".join(map(str, VIDEO_SIZE)), metavar="HxW",
                   help="video: the feature grid of each frame (CamVid's 720x960 at stride 8)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per attention case")
    p.add_argument("--model-repeats", type=int, default=2, help="timed runs per whole-model case")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(func=cmd_bench)

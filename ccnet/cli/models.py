"""`zoo` (the released checkpoints and what is cached), `fetch NAME` (download one) and `export`
(a model as an ONNX graph)."""
from __future__ import annotations

import argparse
import json
import time

from ccnet.cli.outputs import checked_output
from ccnet.errors import CCNetError
from ccnet.inference.export import export_onnx
from ccnet.weights import download
from ccnet.weights.load import load_model
from ccnet.weights.presets import fetch, presets


def table() -> str:
    """The presets as an aligned text table (what `python -m ccnet zoo` prints)."""
    header = ("name", "dataset", "backbone", "classes", "crop", "protocol", "mIoU", "ms+flip", "MB", "cached")
    rows = [header] + [
        (
            p.name, p.dataset, p.backbone, str(p.num_classes), f"{p.crop_size[0]}x{p.crop_size[1]}",
            p.describe_protocol(), f"{p.miou_single_scale:.2f}", f"{p.miou_multiscale_flip:.2f}",
            f"~{p.download_mb:.0f}", "yes" if p.path.is_file() else "no",
        )
        for p in presets().values()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def cmd_zoo(args: argparse.Namespace) -> int:
    print(table())
    print("\nmIoU: published on the validation set (%); ac: align_corners=True; MB: download size estimated "
          f"from the parameter count (float32). Cache: {download.cache_dir()}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    print(fetch(args.name))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    out = checked_output(args.out, "--out", (".onnx",))
    if args.opset is not None and not 18 <= args.opset <= 23:
        raise CCNetError(f"--opset must be 18..23 (the dynamo exporter's range), got {args.opset}")
    loaded = load_model(args.model)
    start = time.perf_counter()
    metadata = {"ccnet.model": loaded.name, "ccnet.classes": json.dumps(loaded.classes),
                "ccnet.palette": json.dumps(loaded.palette)}
    outputs = export_onnx(loaded.net, loaded.protocol, out, args.with_attention, args.opset, metadata)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB, input image (1, 3, H, W) RGB 0-255, outputs "
          f"{', '.join(outputs)}; {time.perf_counter() - start:.1f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("zoo", help="list the released CCNet checkpoints (presets)")
    p.set_defaults(func=cmd_zoo)
    p = subparsers.add_parser("fetch", help="download a preset's checkpoint into the cache")
    p.add_argument("name", help="a preset name (see `python -m ccnet zoo`)")
    p.set_defaults(func=cmd_fetch)
    p = subparsers.add_parser("export", help="export a model as an ONNX graph (docs/deploy.md)")
    p.add_argument("--model", default="default", help="'default', a preset name or a checkpoint file")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--with-attention", action="store_true", help="also output every step's attention weights")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's, 18)")
    p.set_defaults(func=cmd_export)

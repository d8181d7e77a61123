"""`zoo` (the released checkpoints and what is cached) and `fetch NAME` (download one)."""
from __future__ import annotations

import argparse

from ccnet.weights import download
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


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("zoo", help="list the released CCNet checkpoints (presets)")
    p.set_defaults(func=cmd_zoo)
    p = subparsers.add_parser("fetch", help="download a preset's checkpoint into the cache")
    p.add_argument("name", help="a preset name (see `python -m ccnet zoo`)")
    p.set_defaults(func=cmd_fetch)

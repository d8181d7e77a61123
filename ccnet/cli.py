"""Command line: `python -m ccnet predict|attention|...`; every user error is one line, exit 2."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np

from ccnet.errors import CCNetError

# Modules that add their own sub-commands through `add_cli(subparsers)`.
COMMAND_MODULES = ("ccnet.evaluate", "ccnet.train", "ccnet.ablation", "ccnet.bench", "ccnet.zoo", "ccnet.loadtest")


def _pair(text: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two integers 'A,B', got {text!r}") from None
    return a, b


def _positive_pair(text: str) -> tuple[int, int]:
    a, b = _pair(text)
    if a <= 0 or b <= 0:
        raise argparse.ArgumentTypeError(f"expected two positive integers, got {text!r}")
    return a, b


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="'default', a preset name or a checkpoint file")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--amp", choices=("fp16", "bf16"), help="autocast dtype (mainly for CUDA)")
    parser.add_argument("--resize", type=_positive_pair, metavar="LONG,SHORT", help="keep-ratio test resize")
    parser.add_argument("--slide", type=_positive_pair, metavar="CROP,STRIDE", help="sliding-window inference")


def make_predictor(args: argparse.Namespace):  # noqa: ANN202
    """Load the model named on the command line, with --resize/--slide overriding its protocol."""
    from dataclasses import replace

    from ccnet.inference import Predictor
    from ccnet.registry import load_model

    loaded = load_model(args.model)
    protocol = loaded.protocol
    if args.resize:
        protocol = replace(protocol, test_resize=args.resize)
    if args.slide:
        crop, stride = args.slide
        protocol = replace(protocol, mode="slide", crop=(crop, crop), stride=(stride, stride))
    return loaded, Predictor(loaded.net, protocol, device=args.device, amp=args.amp)


def cmd_predict(args: argparse.Namespace) -> int:
    from PIL import Image

    from ccnet.images import check_size, decode_image
    from ccnet.viz import colorize, overlay

    image = decode_image(args.image)
    check_size(image)
    loaded, predictor = make_predictor(args)
    pred = predictor.predict(image, with_attention=False)
    mask = pred.mask
    if args.out_mask:
        Image.fromarray(mask.astype(np.uint8)).save(args.out_mask)
    if args.out_color:
        Image.fromarray(colorize(mask, loaded.palette)).save(args.out_color)
    if args.out_overlay:
        Image.fromarray(overlay(image, mask, loaded.palette, args.alpha)).save(args.out_overlay)
    if args.out_logits:
        np.save(args.out_logits, pred.logits.numpy().astype(np.float32))
    counts = np.bincount(mask.ravel(), minlength=len(loaded.classes))
    shares = ", ".join(
        f"{loaded.classes[i]} {100 * counts[i] / mask.size:.1f}%" for i in np.argsort(-counts)[:6] if counts[i]
    )
    print(f"{Path(args.image).name}: {image.shape[1]}x{image.shape[0]}, model {loaded.name}, "
          f"{predictor.device.type}, {pred.seconds * 1000:.0f} ms; {shares}")
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    from ccnet.explain import pixel_attention
    from ccnet.images import check_size, decode_image

    image = decode_image(args.image)
    check_size(image)
    _, predictor = make_predictor(args)
    pred = predictor.predict(image, with_attention=True)
    maps = pixel_attention(pred, *args.pixel)
    np.savez(args.out, **maps.to_npz_dict())
    print(f"pixel {args.pixel} -> cell {list(maps.cell)} of grid {list(maps.grid)}; "
          f"{len(maps.steps)} steps + composed written to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ccnet", description="CCNet Explorer command line")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="segment an image")
    p.add_argument("image")
    add_model_args(p)
    p.add_argument("--out-mask", help="class-index PNG")
    p.add_argument("--out-color", help="colour-coded mask PNG")
    p.add_argument("--out-overlay", help="mask blended over the image, PNG")
    p.add_argument("--out-logits", help="float32 (num_classes, H, W) .npy at the image's size")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("attention", help="export one pixel's criss-cross attention maps")
    p.add_argument("image")
    add_model_args(p)
    p.add_argument("--pixel", type=_pair, required=True, metavar="X,Y", help="pixel column,row in the image")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=cmd_attention)

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CCNetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. an output folder that does not exist
        print(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2

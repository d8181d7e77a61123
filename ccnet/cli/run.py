"""`predict` (segment an image or a clip) and `attention` (one pixel's maps as .npz). A file of two
frames or more (an animated GIF, PNG or WebP) is a clip: ccnet/cli/clips.py; an image runs here."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from ccnet.cli.clips import attention_clip, predict_clip
from ccnet.cli.common import add_model_args, make_predictor, pair, printable
from ccnet.cli.outputs import check_fraction, checked_output, open_output
from ccnet.errors import CCNetError
from ccnet.inference.agreement import agreement, nonlocal_map
from ccnet.inference.clips import is_clip
from ccnet.inference.explain import explain_pixel
from ccnet.inference.images import check_size, decode_image
from ccnet.viz.pictures import colorize, overlay
from ccnet.weights.family import nonlocal_sibling

PREDICT_OUTPUTS = {"--out-mask": (".png",), "--out-color": (".png",), "--out-overlay": (".png",),
                   "--out-logits": (".npy",)}


def cmd_predict(args: argparse.Namespace) -> int:
    outputs = {option: checked_output(getattr(args, option.lstrip("-").replace("-", "_")), option, suffixes)
               for option, suffixes in PREDICT_OUTPUTS.items()}
    check_fraction(args.alpha, "--alpha")
    if is_clip(args.image):
        print(predict_clip(args, outputs))
        return 0
    image = decode_image(args.image)
    check_size(image)
    loaded, predictor = make_predictor(args)
    pred = predictor.predict(image, with_attention=False)
    mask = pred.mask
    pictures = {"--out-mask": lambda: mask.astype(np.uint8), "--out-color": lambda: colorize(mask, loaded.palette),
                "--out-overlay": lambda: overlay(image, mask, loaded.palette, args.alpha)}
    for option, picture in pictures.items():
        if outputs[option]:
            with open_output(outputs[option]) as handle:
                Image.fromarray(picture()).save(handle, format="PNG")
    if outputs["--out-logits"]:
        with open_output(outputs["--out-logits"]) as handle:
            np.save(handle, pred.logits.numpy().astype(np.float32))
    counts = np.bincount(mask.ravel(), minlength=len(loaded.classes))
    shares = ", ".join(
        f"{loaded.classes[i]} {100 * counts[i] / mask.size:.1f}%" for i in np.argsort(-counts)[:6] if counts[i]
    )
    print(printable(f"{Path(args.image).name}: {image.shape[1]}x{image.shape[0]}, model {loaded.name}, "
                    f"{predictor.device.type}, {pred.seconds * 1000:.0f} ms; {shares}"))
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    out = checked_output(args.out, "--out", (".npz",))
    if is_clip(args.image):
        print(attention_clip(args, out))
        return 0
    if args.frame is not None:
        raise CCNetError(f"--frame applies to clips; {Path(args.image).name} is a single image")
    sibling = nonlocal_sibling(args.model) if args.compare == "nonlocal" else None  # before any download
    image = decode_image(args.image)
    check_size(image)
    _, predictor = make_predictor(args)
    pred = predictor.predict(image, with_attention=True)
    maps = explain_pixel(pred, *args.pixel)
    arrays = maps.to_npz_dict()
    if sibling:
        attention = make_predictor(argparse.Namespace(**{**vars(args), "model": sibling}))[1].predict(
            image, with_attention=True).attention[0]
        arrays["nonlocal"] = nonlocal_map(attention, *maps.cell, maps.grid)
        figures = agreement(maps.composed, arrays["nonlocal"], maps.cell)
        arrays["agreement"] = np.array(json.dumps(figures))
        print(f"criss-cross composed vs non-local ({sibling}): top-{figures['topk']} overlap "
              f"{figures['topk_overlap']:.2f}, JS divergence {figures['js_divergence_bits']:.3f} bits")
    with open_output(out) as handle:
        np.savez(handle, **arrays)
    written = f"{len(maps.steps)} steps + composed" if maps.steps else "the non-local map (as composed)"
    print(f"pixel {args.pixel} -> cell {list(maps.cell)} of grid {list(maps.grid)}; {written} written to {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment an image, or each frame of a clip")
    p.add_argument("image", help="an image, or a clip (animated GIF, PNG or WebP: its outputs are per frame, "
                                 "NAME_00.png ...)")
    add_model_args(p)
    p.add_argument("--out-mask", help="class-index PNG")
    p.add_argument("--out-color", help="colour-coded mask PNG")
    p.add_argument("--out-overlay", help="mask blended over the image, PNG")
    p.add_argument("--out-logits", help="float32 (num_classes, H, W) .npy at the image's size")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("attention", help="export one pixel's criss-cross attention maps")
    p.add_argument("image", help="an image, or a clip (animated GIF, PNG or WebP; then give --frame)")
    add_model_args(p)
    p.add_argument("--pixel", type=pair, required=True, metavar="X,Y", help="pixel column,row in the image")
    p.add_argument("--frame", type=int, metavar="T", help="a clip's frame of the pixel (0 is the first)")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--compare", choices=("nonlocal",),
                   help="also the non-local sibling's map of the same cell (key 'nonlocal') and how the two "
                        "agree (key 'agreement', JSON); default and its siblings have one")
    p.set_defaults(func=cmd_attention)

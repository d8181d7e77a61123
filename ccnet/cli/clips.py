"""`predict` and `attention` on a clip: an animated GIF, PNG or WebP of two frames or more.

`predict CLIP` writes each picture output per frame, the frame number before the suffix
(``--out-mask m.png`` writes m_00.png, m_01.png, ...), and ``--out-logits`` as one (T, K, H, W)
array. `attention CLIP --frame T --pixel X,Y --out maps.npz` writes ``steps`` (R, T, h, w),
``composed`` (T, h, w), ``cell`` (t, row, col) and ``grid`` (T, h, w). ``--model default`` means the
default model's head trained on clips (``default:video``) here; any other name runs that model's
head over the clip (ccnet.weights.video).
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from ccnet.cli.outputs import checked_output, open_output
from ccnet.errors import CCNetError
from ccnet.inference.clips import decode_clip
from ccnet.inference.video import VideoPredictor, explain_clip_pixel
from ccnet.viz.pictures import colorize, overlay
from ccnet.weights.load import LoadedModel
from ccnet.weights.video import VIDEO, load_video_model


def frame_path(path: Path, frame: int) -> Path:
    """Where frame ``frame`` of a per-frame output goes: the frame number before the suffix."""
    return path.with_name(f"{path.stem}_{frame:02d}{path.suffix}")


def video_predictor(args: argparse.Namespace) -> tuple[LoadedModel, VideoPredictor]:
    """The video model a clip runs with (--model, --resize, --device, --amp); one line for the options
    that only images take."""
    if args.runtime != "torch":
        raise CCNetError("--runtime onnx runs images only; a clip runs with --runtime torch")
    if args.slide:
        raise CCNetError("--slide applies to images: a clip is segmented whole, so that attention spans it")
    loaded = load_video_model(VIDEO if args.model == "default" else args.model)
    protocol = replace(loaded.protocol, test_resize=args.resize) if args.resize else loaded.protocol
    return loaded, VideoPredictor(loaded.net, protocol, device=args.device, amp=args.amp)


def predict_clip(args: argparse.Namespace, outputs: dict[str, Path | None]) -> str:
    """Segment a clip and write the outputs asked for; returns the summary line."""
    frames = decode_clip(args.image)
    per_frame = [frame_path(path, t) for path in outputs.values() if path and path.suffix == ".png"
                 for t in range(len(frames))]
    for path in per_frame:
        checked_output(path, "an output", (".png",))  # e.g. not a planted link
    loaded, predictor = video_predictor(args)
    pred = predictor.predict(frames, with_attention=False)
    masks = pred.masks
    pictures = {"--out-mask": lambda t: masks[t].astype(np.uint8),
                "--out-color": lambda t: colorize(masks[t], loaded.palette),
                "--out-overlay": lambda t: overlay(frames[t], masks[t], loaded.palette, args.alpha)}
    for option, picture in pictures.items():
        for t in range(len(frames)) if outputs[option] else ():
            with open_output(frame_path(outputs[option], t)) as handle:
                Image.fromarray(picture(t)).save(handle, format="PNG")
    if outputs["--out-logits"]:
        with open_output(outputs["--out-logits"]) as handle:
            np.save(handle, pred.logits.numpy().astype(np.float32))
    counts = np.bincount(masks.ravel(), minlength=len(loaded.classes))
    shares = ", ".join(
        f"{loaded.classes[i]} {100 * counts[i] / masks.size:.1f}%" for i in np.argsort(-counts)[:6] if counts[i]
    )
    return (f"{Path(args.image).name}: {len(frames)} frames of {frames.shape[2]}x{frames.shape[1]}, model "
            f"{loaded.name}, {predictor.device.type}, {pred.seconds * 1000:.0f} ms; {shares}")


def attention_clip(args: argparse.Namespace, out: Path) -> str:
    """Write one position's per-step and composed maps over the clip; returns the summary line."""
    if args.compare:
        raise CCNetError("--compare applies to images; on a clip, run the space-time non-local head "
                         "(--model default:nonlocal) and compare the maps yourself")
    if args.frame is None:
        raise CCNetError("a clip needs --frame T, the frame of the pixel (0 is the first)")
    frames = decode_clip(args.image)
    if not 0 <= args.frame < len(frames):
        raise CCNetError(f"--frame {args.frame} is outside the clip's {len(frames)} frames (0..{len(frames) - 1})")
    _, predictor = video_predictor(args)
    maps = explain_clip_pixel(predictor.predict(frames, with_attention=True), args.frame, *args.pixel)
    with open_output(out) as handle:
        np.savez(handle, **maps.to_npz_dict())
    return (f"frame {args.frame}, pixel {args.pixel} -> position {list(maps.cell)} of grid {list(maps.grid)}; "
            f"{len(maps.steps)} steps + composed written to {args.out}")

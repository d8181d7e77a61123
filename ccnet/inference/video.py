"""Segmenting a clip with a video CCNet, and reading where one pixel of one frame looks.

The frames go through the image protocol one by one (the same resize and normalisation as
``Predictor``) and through the network together, so that its head attends across them; the
logits come back per frame at the frames' own size. A clip is always segmented whole, in one
pass: a sliding window would cut the attention's lines, so a protocol's ``slide`` mode runs
whole here (as ``Predictor`` does for its attention pass).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ccnet.errors import CCNetError, ImageError, shown
from ccnet.inference.geometry import cell_of
from ccnet.inference.predictor import AMP_DTYPES, Protocol, normalise, resized_input, resolve_device
from ccnet.nn.attention_maps3d import composed_map, step_map
from ccnet.nn.optimize import channels_last_inputs, optimize_for_inference
from ccnet.nn.video import VideoCCNet


@dataclass
class ClipPrediction:
    """What one clip gives: logits per frame at the frames' size and the attention of every step."""

    logits: Tensor  # (T, K, H, W) float32
    attention: list[Tensor]  # per step; layouts in VideoCCNet's docstring, batch dimension dropped
    grid: tuple[int, int, int]  # (T, h, w) of the feature grid
    input_size: tuple[int, int]  # (H', W') of each frame as the network saw it
    seconds: float = 0.0
    kind: str = "criss-cross-3d"  # the head's kind (ccnet/nn/variants.py KINDS)

    @property
    def masks(self) -> np.ndarray:
        """(T, H, W) class indices."""
        return self.logits.argmax(1).numpy().astype(np.uint8 if self.logits.shape[1] <= 256 else np.int32)

    @property
    def frame_size(self) -> tuple[int, int]:
        return tuple(self.logits.shape[2:])


def check_frames(frames: np.ndarray) -> np.ndarray:
    """A (T, H, W, 3) uint8 array with T >= 1, or a one-line ImageError."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or 0 in frames.shape:
        raise ImageError(f"expected clip frames as a (T, H, W, 3) uint8 array, got {frames.dtype} {frames.shape}")
    return frames


class VideoPredictor:
    """Holds one video network on one device and segments clips with its protocol."""

    def __init__(self, net: VideoCCNet, protocol: Protocol, device: str = "auto", amp: str | None = None,
                 optimize: bool = True) -> None:
        """``optimize`` runs a copy with BatchNorm folded and a channels-last backbone (as Predictor)."""
        if amp is not None and amp not in AMP_DTYPES:
            raise CCNetError(f"unknown autocast dtype {amp!r}: use fp16 or bf16")
        self.device = resolve_device(device)
        if optimize:
            net = optimize_for_inference(net, channels_last=False)
            channels_last_inputs(net.backbone)
        self.net = net.eval().to(self.device)
        self.protocol = protocol
        self.amp = amp
        self.kind = net.head_variant.kind

    def _autocast(self):  # noqa: ANN202
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp])

    @torch.inference_mode()
    def predict(self, frames: np.ndarray, with_attention: bool = True) -> ClipPrediction:
        """Segment a clip of RGB uint8 frames (T, H, W, 3), T >= 1."""
        start = time.perf_counter()
        frames = check_frames(frames)
        x = torch.cat([resized_input(frame, self.protocol) for frame in frames])  # T, 3, H', W'
        clip = normalise(x, self.protocol).transpose(0, 1)[None].to(self.device)
        with self._autocast():
            out = self.net(clip, return_attention=with_attention)
        logits, attention = out if with_attention else (out, [])
        grid = (frames.shape[0], *logits.shape[3:])
        logits = F.interpolate(logits[0].transpose(0, 1).float(), size=x.shape[2:], mode="bilinear",
                               align_corners=self.protocol.align_corners)
        if tuple(logits.shape[2:]) != frames.shape[1:3]:
            logits = F.interpolate(logits, size=frames.shape[1:3], mode="bilinear",
                                   align_corners=self.protocol.align_corners)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return ClipPrediction(logits.cpu(), [a[0].float().cpu() for a in attention], grid, tuple(x.shape[2:]),
                              time.perf_counter() - start, self.kind)


@dataclass
class ClipPixelAttention:
    """Dense (T, h, w) float32 maps of one query position: one per step, and their composition."""

    grid: tuple[int, int, int]
    cell: tuple[int, int, int]  # (t, row, col)
    steps: np.ndarray  # (R, T, h, w)
    composed: np.ndarray  # (T, h, w)

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        return {"steps": self.steps, "composed": self.composed, "cell": np.asarray(self.cell, np.int64),
                "grid": np.asarray(self.grid, np.int64)}


def explain_clip_pixel(prediction: ClipPrediction, t: int, x: int, y: int) -> ClipPixelAttention:
    """Per-step and composed maps of the position under pixel (x, y) of frame t."""
    if not prediction.attention:
        raise CCNetError("this prediction has no attention to show (a model without attention, or "
                         "predicted without it)")
    return explain_clip_attention(prediction.attention, prediction.kind, prediction.grid, prediction.frame_size,
                                  t, x, y)


def explain_clip_attention(attention: list[Tensor], kind: str, grid: tuple[int, int, int],
                           frame_size: tuple[int, int], t: int, x: int, y: int) -> ClipPixelAttention:
    """explain_clip_pixel from a prediction's parts: its per-step weights, the head's kind, the
    feature grid (T, h, w) and the frames' size (H, W); for callers that keep the weights but not
    the logits (the app)."""
    frames, height, width = grid
    if not 0 <= t < frames:
        raise CCNetError(f"frame {shown(t)} is outside the clip's {frames} frames (0..{frames - 1})")
    cell = (t, *cell_of(x, y, frame_size, (height, width)))
    if kind in ("criss-cross-3d", "criss-cross"):  # per-frame steps have a zero time part
        steps = [step_map(a, cell) for a in attention]
        composed = composed_map(attention, cell)
    else:  # non-local: the row of the position; space-time (N, N) or per frame (T, hw, hw)
        attn = attention[0]
        composed = torch.zeros(frames, height, width, dtype=attn.dtype)
        if kind == "non-local-3d":
            composed = attn[(t * height + cell[1]) * width + cell[2]].view(frames, height, width)
        else:
            composed[t] = attn[t, cell[1] * width + cell[2]].view(height, width)
        steps = [composed]
    return ClipPixelAttention(grid, cell, torch.stack(steps).numpy().astype(np.float32),
                              composed.numpy().astype(np.float32))

"""mmsegmentation's test protocol in plain PyTorch, and the Predictor shared by the CLI and the app.

Protocol (mmsegmentation's test pipeline and EncoderDecoder inference): optional keep-ratio
resize, RGB mean/std normalisation, whole-image or sliding-window inference, logits resized
bilinearly straight to the network input's size and then to the original image size.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ccnet.errors import CCNetError
from ccnet.inference.geometry import grid_size
from ccnet.nn.optimize import optimize_for_inference

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Protocol:
    """How an image becomes network input and logits become a prediction, as a preset defines it."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    bgr: bool = False
    test_resize: tuple[int, int] | None = None  # (long, short): fit inside, keep the aspect ratio
    mode: str = "whole"  # or "slide"
    crop: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    align_corners: bool = False
    max_pixels: int | None = None  # after test_resize: larger inputs are downscaled to this many pixels

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict) -> Protocol:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def rescale_size(height: int, width: int, long: int, short: int) -> tuple[int, int]:
    """mmcv's keep-ratio rescale: the largest scale that fits (long, short), rounded half up."""
    scale = min(long / max(height, width), short / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def interactive(protocol: Protocol, max_pixels: int) -> Protocol:
    """The protocol at an interactive size: the whole image in one pass, downscaled (keeping its
    aspect ratio) to at most `max_pixels`, instead of the preset's test resize and sliding window."""
    return replace(protocol, test_resize=None, mode="whole", crop=None, stride=None, max_pixels=max_pixels)


def input_size(height: int, width: int, protocol: Protocol) -> tuple[int, int]:
    """The (h, w) the network sees for an image of (height, width) under the protocol."""
    if protocol.test_resize is not None:
        height, width = rescale_size(height, width, *protocol.test_resize)
    if protocol.max_pixels is not None and height * width > protocol.max_pixels:
        scale = (protocol.max_pixels / (height * width)) ** 0.5
        height, width = max(1, int(height * scale)), max(1, int(width * scale))
    return height, width


def resized_input(image: np.ndarray, protocol: Protocol) -> Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, h, w) float32 RGB in 0-255 at the size the protocol asks for."""
    x = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)[None].float()
    size = input_size(x.shape[2], x.shape[3], protocol)
    if size != tuple(x.shape[2:]):
        # OpenCV's INTER_LINEAR on uint8 (what mmseg uses): half-pixel bilinear, rounded.
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False).round().clamp(0, 255)
    return x


def preprocess(image: np.ndarray, protocol: Protocol) -> Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, h, w) float32 normalised network input."""
    return normalise(resized_input(image, protocol), protocol)


def normalise(x: Tensor, protocol: Protocol) -> Tensor:
    """(B, 3, H, W) RGB in 0-255 -> the network's input: channel order, mean and std of the protocol."""
    if protocol.bgr:
        x = x.flip(1)
    mean = torch.tensor(protocol.mean).view(1, 3, 1, 1)
    std = torch.tensor(protocol.std).view(1, 3, 1, 1)
    return (x - mean) / std


def slide_windows(height: int, width: int, crop: tuple[int, int],
                  stride: tuple[int, int]) -> Iterator[tuple[int, int, int, int]]:
    """The (y1, y2, x1, x2) crops of mmseg's slide_inference, the last ones flush with the border."""
    rows = max(height - crop[0] + stride[0] - 1, 0) // stride[0] + 1
    cols = max(width - crop[1] + stride[1] - 1, 0) // stride[1] + 1
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride[0] + crop[0], height), min(c * stride[1] + crop[1], width)
            yield max(y2 - crop[0], 0), y2, max(x2 - crop[1], 0), x2


@dataclass
class Prediction:
    """What one image gives: logits at the image's size and the attention of every step."""

    logits: Tensor  # (K, H, W) float32 at the original image size
    attention: list[Tensor]  # criss-cross: per step (h, w, h + w); non-local: one (h*w, h*w); none: []
    grid: tuple[int, int]  # (h, w) of the attention's feature grid
    input_size: tuple[int, int]  # (H', W') the network saw after the test resize
    seconds: float = 0.0
    kind: str = "criss-cross"  # the head's attention (ccnet/nn/variants.py KINDS), as its network says

    @property
    def mask(self) -> np.ndarray:
        return self.logits.argmax(0).numpy().astype(np.uint8 if self.logits.shape[0] <= 256 else np.int32)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.logits.shape[1:])


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else the CPU; asking for CUDA without it is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CCNetError("--device cuda was asked for, but no CUDA device is available")
    if device != "cpu" and not device.startswith("cuda"):
        raise CCNetError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


class Predictor:
    """Holds one model on one device and segments images with its preset's protocol."""

    def __init__(self, net: torch.nn.Module, protocol: Protocol, device: str = "auto", amp: str | None = None,
                 optimize: bool = True) -> None:
        """`optimize` runs a copy with BatchNorm folded and channels-last memory (the fastest PyTorch
        path measured by `python -m tools.stage_bench`; same outputs within float rounding); pass
        False for a network that is already optimized or must be run as it is."""
        if amp is not None and amp not in AMP_DTYPES:
            raise CCNetError(f"unknown autocast dtype {amp!r}: use fp16 or bf16")
        self.device = resolve_device(device)
        self.net = (optimize_for_inference(net) if optimize else net.eval()).to(self.device)
        self.protocol = protocol
        self.amp = amp
        self.kind = net.head_variant.kind  # what its attention is: its predictions carry it

    def _autocast(self):  # noqa: ANN202
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp])

    def _forward(self, x: Tensor, with_attention: bool) -> tuple[Tensor, list[Tensor]]:
        """Logits resized to x's size (mmseg's encode_decode) and, if asked, the step weights;
        x is RGB in 0-255 (normalised here, so that other runtimes can take it as it is)."""
        with self._autocast():
            out = self.net(normalise(x, self.protocol).to(self.device), return_attention=with_attention)
        logits, attn = out if with_attention else (out, [])
        logits = F.interpolate(logits.float(), size=x.shape[2:], mode="bilinear",
                               align_corners=self.protocol.align_corners)
        return logits, [a[0].float().cpu() for a in attn]

    def _slide(self, x: Tensor) -> Tensor:
        """mmseg's slide_inference: logits of overlapping crops averaged."""
        height, width = x.shape[2:]
        total, count = None, torch.zeros(1, 1, height, width, device=self.device)
        for y1, y2, x1, x2 in slide_windows(height, width, self.protocol.crop, self.protocol.stride):
            logits, _ = self._forward(x[:, :, y1:y2, x1:x2], with_attention=False)
            if total is None:
                total = torch.zeros(1, logits.shape[1], height, width, device=self.device)
            total[:, :, y1:y2, x1:x2] += logits
            count[:, :, y1:y2, x1:x2] += 1
        return total / count

    @torch.inference_mode()
    def predict(self, image: np.ndarray, with_attention: bool = True) -> Prediction:
        """Segment an RGB uint8 image. In slide mode the attention comes from one whole-image pass."""
        start = time.perf_counter()
        x = resized_input(image, self.protocol)
        if self.protocol.mode == "slide":
            logits = self._slide(x)
            attention = self._forward(x, with_attention=True)[1] if with_attention else []
        else:
            logits, attention = self._forward(x, with_attention)
        if tuple(logits.shape[2:]) != image.shape[:2]:
            logits = F.interpolate(logits, size=image.shape[:2], mode="bilinear",
                                   align_corners=self.protocol.align_corners)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        grid = tuple(attention[0].shape[:2]) if attention and self.kind == "criss-cross" else grid_size(*x.shape[2:])
        return Prediction(logits[0].cpu(), attention, grid, tuple(x.shape[2:]), time.perf_counter() - start,
                          self.kind)


def predict_or_fall_back(predictor: Predictor, image: np.ndarray, with_attention: bool,
                         cpu_predictor: Callable[[], Predictor]) -> tuple[Prediction, str | None]:
    """Predict on the predictor's device; if a GPU runs out of memory, free it and run the same
    image on the CPU instead, with a note for the user. A CPU out-of-memory is a clear error (torch
    reports it as a plain RuntimeError from its CPU allocator, numpy and Pillow as MemoryError)."""
    try:
        return predictor.predict(image, with_attention), None
    except (RuntimeError, MemoryError) as err:
        if not isinstance(err, (torch.OutOfMemoryError, MemoryError)) and "can't allocate memory" not in str(err):
            raise
        if predictor.device.type != "cuda":
            height, width = image.shape[:2]
            raise CCNetError(f"out of memory segmenting a {width}x{height} image; try a smaller one") from None
    torch.cuda.empty_cache()
    return cpu_predictor().predict(image, with_attention), "the GPU ran out of memory, so this image ran on the CPU"

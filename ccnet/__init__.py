"""CCNet Explorer: criss-cross attention (CCNet) in plain PyTorch, with its attention exposed.

    import ccnet
    loaded = ccnet.load_model("default")             # or a preset name, or a checkpoint file
    prediction = ccnet.Predictor(loaded.net, loaded.protocol).predict(image)  # RGB uint8 H x W x 3
    maps = ccnet.explain_pixel(prediction, x, y)     # per-step and composed attention of a pixel

    video = ccnet.load_video_model("default:video")  # or any name above: its head over a clip
    clip = ccnet.VideoPredictor(video.net, video.protocol).predict(ccnet.decode_clip("clip.gif"))
    maps = ccnet.explain_clip_pixel(clip, t, x, y)   # (R, T, h, w) steps and (T, h, w) composed
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ccnet.inference.clips import decode_clip
    from ccnet.inference.explain import explain_pixel
    from ccnet.inference.predictor import Predictor
    from ccnet.inference.video import VideoPredictor, explain_clip_pixel
    from ccnet.nn.attention import CrissCrossAttention, NonLocal2d
    from ccnet.nn.attention3d import CrissCrossAttention3d
    from ccnet.nn.model import CCNet
    from ccnet.weights.load import load_model
    from ccnet.weights.video import load_video_model

# Each name's module, imported on the name's first use: a process that only reads `ccnet.limits` or
# decodes an image (ccnet.inference.images) does not import torch (0.7 CPU-s).
_HOMES = {
    "decode_clip": "ccnet.inference.clips", "explain_pixel": "ccnet.inference.explain",
    "Predictor": "ccnet.inference.predictor", "VideoPredictor": "ccnet.inference.video",
    "explain_clip_pixel": "ccnet.inference.video", "CrissCrossAttention": "ccnet.nn.attention",
    "NonLocal2d": "ccnet.nn.attention", "CrissCrossAttention3d": "ccnet.nn.attention3d", "CCNet": "ccnet.nn.model",
    "load_model": "ccnet.weights.load", "load_video_model": "ccnet.weights.video",
}

__version__ = "0.1.0"
__all__ = [
    "CCNet", "CrissCrossAttention", "CrissCrossAttention3d", "NonLocal2d", "Predictor", "explain_pixel", "load_model",
    "VideoPredictor", "decode_clip", "explain_clip_pixel", "load_video_model",
]


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'ccnet' has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(_HOMES[name]), name)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})

"""The app's video mode without Gradio: a clip (animated GIF, PNG or WebP) decoded and segmented once
per (model, clip) by a head trained on clips (ccnet.weights.video), kept in a bounded cache, and one
position's maps answered from it; the JSON and the pictures of /segment_video and /attention_video.

The page (ccnet/app/ui/video_page.py) and the endpoints (ccnet/app/ui/video_api.py) are thin
wrappers around a VideoExplorer, so the behaviour is tested here without a server. What the page
receives to draw the maps itself is ccnet/app/video_maps.py.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ccnet import limits
from ccnet.app import inputs
from ccnet.app.analysis import Display
from ccnet.app.cache import LRUCache
from ccnet.app.explorer import image_key
from ccnet.app.links import LinkKeys
from ccnet.app.present import md_text
from ccnet.app.server.zerogpu import gpu_task, network_seconds
from ccnet.errors import CCNetError, ImageError, shown
from ccnet.inference.clips import decode_clip
from ccnet.inference.predictor import resolve_device
from ccnet.inference.video import ClipPixelAttention, VideoPredictor, explain_clip_attention
from ccnet.nn.attention_maps3d import reach
from ccnet.viz import pictures as viz
from ccnet.weights.load import LoadedModel
from ccnet.weights.video import VIDEO, load_video_model, video_heads

VIDEO_MODELS = video_heads()  # the heads trained on clips, name -> label; the first is the page's default
STRIP_GAP = 4  # pixels between two frames of a strip picture
ClipSource = str | Path | bytes


@dataclass
class ClipAnalysis:
    """One network run on a clip, kept compactly: class and confidence per pixel, not the logits."""

    model: str
    key: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    masks: np.ndarray  # (T, H, W) class indices
    confidence: np.ndarray  # (T, H, W) float16
    attention: list[torch.Tensor]  # per step (T, h, w, T + h + w); a non-local head's one (N, N)
    grid: tuple[int, int, int]  # (T, h, w)
    kind: str  # criss-cross-3d or non-local-3d
    seconds: float
    device: str

    @property
    def size(self) -> tuple[int, int]:
        return self.frames.shape[1], self.frames.shape[2]

    @property
    def mask(self) -> np.ndarray:
        """Every frame's classes, (T, H, W): what a legend counts."""
        return self.masks

    @property
    def steps(self) -> int:
        """Recurrence steps of the head (a non-local head: one)."""
        return len(self.attention) if self.kind != "non-local-3d" else 1

    @property
    def nbytes(self) -> int:
        arrays = (self.frames, self.masks, self.confidence)
        return sum(a.nbytes for a in arrays) + sum(t.numel() * t.element_size() for t in self.attention)


def _clip_seconds(predictor: VideoPredictor, frames: np.ndarray) -> float:
    """GPU seconds to ask for one clip: the image estimate's FLOPs once per frame."""
    return float(min(120.0, 10.0 + (network_seconds(predictor, frames[0]) - 10.0) * len(frames)))


@gpu_task(_clip_seconds)
def _run_network(predictor: VideoPredictor, frames: np.ndarray):  # noqa: ANN202
    return predictor.predict(frames, with_attention=True)


class VideoExplorer:
    """One per app: the video heads loaded once per name, one network run per (model, clip), cached."""

    def __init__(self, device: str = "auto", amp: str | None = None, max_entries: int = limits.CLIP_ANALYSES,
                 max_bytes: int = limits.CLIP_ANALYSES_BYTES,
                 loader: Callable[..., LoadedModel] = load_video_model) -> None:
        self.device, self.amp, self.loader = resolve_device(device).type, amp, loader
        self.cache = LRUCache(max_entries, max_bytes)
        self.links = LinkKeys()  # the uploaded clips' link keys
        self.network_runs = 0
        self._models: dict[str, tuple[LoadedModel, VideoPredictor]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def name_of(model: str | None) -> str:
        """The head a request names ("" or None: the default), or one line listing them."""
        name = model or VIDEO
        if not isinstance(name, str) or name not in VIDEO_MODELS:  # a list or a number from a crafted call too
            raise CCNetError(f"unknown video model {shown(name)}; choose one of: {', '.join(VIDEO_MODELS)}")
        return name

    def model(self, name: str | None = None) -> tuple[LoadedModel, VideoPredictor]:
        """The loaded head and its predictor, loaded once per name (from assets/, no download)."""
        name = self.name_of(name)
        with self._lock:
            if name not in self._models:
                loaded = self.loader(name)
                self._models[name] = (loaded, VideoPredictor(loaded.net, loaded.protocol, self.device, self.amp))
            return self._models[name]

    def classes(self, name: str | None = None) -> tuple[str, ...]:
        return self.model(name)[0].classes

    def palette(self, name: str | None = None) -> tuple[tuple[int, int, int], ...]:
        return self.model(name)[0].palette

    # -- the one network run per (model, clip) -----------------------------------------------------
    def analyse(self, source: ClipSource | None, model: str | None = None) -> ClipAnalysis:
        """The cached analysis of this clip under this head, running the network if needed; a file
        that is no clip gets decode_clip's one line."""
        if source is None:
            raise ImageError("no clip yet: upload one (animated GIF, PNG or WebP) or pick a demo clip")
        name = self.name_of(model)
        key = image_key(source)
        return self.cache.get_or_create((name, key), lambda: self._run(name, key, source))

    def _run(self, name: str, key: str, source: ClipSource) -> tuple[ClipAnalysis, int]:
        frames = decode_clip(source)
        predictor = self.model(name)[1]
        prediction = _run_network(predictor, frames)
        with self._lock:
            self.network_runs += 1
        masks, confidence = [], []
        for logits in prediction.logits:  # one frame at a time: the probabilities of all would double the memory
            top, label = torch.softmax(logits, dim=0).max(dim=0)
            masks.append(label.numpy().astype(np.uint8))
            confidence.append(top.numpy().astype(np.float16))
        analysis = ClipAnalysis(name, key, frames, np.stack(masks), np.stack(confidence), prediction.attention,
                                prediction.grid, prediction.kind, prediction.seconds, predictor.device.type)
        return analysis, analysis.nbytes

    # -- one position ------------------------------------------------------------------------------
    def explain(self, analysis: ClipAnalysis, t: object, x: object, y: object) -> ClipPixelAttention:
        """The maps of the position under pixel (x, y) of frame t (the network does not run again)."""
        frame = inputs.whole_number(t)
        if frame is None:
            raise CCNetError(f"the frame t must be a whole number, got {shown(t)}")
        x, y = inputs.pixel(x, y)
        return explain_clip_attention(analysis.attention, analysis.kind, analysis.grid, analysis.size, frame, x, y)

    def reach_counts(self, analysis: ClipAnalysis, cell: tuple[int, int, int]) -> list[int]:
        """How many positions can carry weight to `cell` after each step: the support, not the weights."""
        frames, height, width = analysis.grid
        if analysis.kind == "non-local-3d":
            return [frames * height * width]
        return [int(support.sum()) for support in reach(frames, height, width, analysis.steps, cell)]

    # -- what the endpoints return -----------------------------------------------------------------
    def segment_json(self, analysis: ClipAnalysis) -> dict:
        loaded = self.model(analysis.model)[0]
        return {"model": analysis.model, "frames": int(analysis.grid[0]), "frame_size": list(analysis.size),
                "grid": list(analysis.grid), "kind": analysis.kind, "steps": analysis.steps,
                "seconds": analysis.seconds, "device": analysis.device,
                "legend": viz.legend(analysis.masks, loaded.classes, loaded.palette),
                "frame_legends": [[{k: row[k] for k in ("name", "share")} for row in viz.legend(
                    mask, loaded.classes, loaded.palette) if row["share"] > 0] for mask in analysis.masks]}

    def attention_json(self, analysis: ClipAnalysis, maps: ClipPixelAttention, x: int, y: int) -> dict:
        classes = self.classes(analysis.model)
        t = maps.cell[0]
        label = int(analysis.masks[t, y, x])
        return {"model": analysis.model, "frame": t, "pixel": [x, y], "frame_size": list(analysis.size),
                "grid": list(maps.grid), "cell": list(maps.cell), "kind": analysis.kind,
                "class": classes[label] if label < len(classes) else str(label),
                "confidence": round(float(analysis.confidence[t, y, x]), 4),
                "reach": self.reach_counts(analysis, maps.cell),
                "steps": maps.steps.tolist(), "composed": maps.composed.tolist()}

    def strip(self, analysis: ClipAnalysis, alpha: float = Display.alpha) -> np.ndarray:
        """Every frame with its segmentation over it, side by side."""
        palette = self.palette(analysis.model)
        return side_by_side([viz.overlay(frame, mask, palette, alpha)
                             for frame, mask in zip(analysis.frames, analysis.masks)])

    @staticmethod
    def attention_strip(analysis: ClipAnalysis, maps: ClipPixelAttention, x: int, y: int) -> np.ndarray:
        """The composed map over every frame on one colour scale (the clip's maximum; the page's
        defaults: magma, log, clip 0.2), the pixel marked in its frame."""
        shown = Display()
        # the frames side by side and their maps likewise: the pixel -> cell rule holds on each tile
        picture = viz.heatmap(np.concatenate(list(maps.composed), axis=1), np.concatenate(list(analysis.frames), 1),
                              shown.cmap, shown.clip, shown.scale)
        picture = viz.mark_pixel(picture, maps.cell[0] * analysis.size[1] + x, y)
        return side_by_side(np.split(picture, analysis.grid[0], axis=1))

    def status(self, analysis: ClipAnalysis | None = None, model: str | None = None) -> str:
        """The status line: device, head and the last run on a clip."""
        name = analysis.model if analysis else self.name_of(model)
        text = f"device **{self.device}** · model **{md_text(name)}**"
        if analysis:
            (frames, h, w), (height, width) = analysis.grid, analysis.size
            text += (f" · last inference {analysis.seconds * 1000:.0f} ms on {frames} frames of {width}×{height}"
                     f" (feature grid {frames}×{h}×{w})")
        return text


def side_by_side(pictures: list[np.ndarray], gap: int = STRIP_GAP) -> np.ndarray:
    """Pictures of one height in a row, `gap` white pixels apart."""
    height = pictures[0].shape[0]
    white = np.full((height, gap, 3), 255, np.uint8)
    row = [part for picture in pictures for part in (picture, white)][:-1]
    return np.concatenate(row, axis=1)


def display_frames(analysis: ClipAnalysis, longest: int) -> tuple[list[Image.Image], list[np.ndarray]]:
    """The frames and their masks at most `longest` pixels on the long side (for the page)."""
    height, width = analysis.size
    scale = min(1.0, longest / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    pictures, masks = [], []
    for frame, mask in zip(analysis.frames, analysis.masks):
        image = Image.fromarray(frame)
        pictures.append(image if scale == 1.0 else image.resize(size, Image.BILINEAR))
        masks.append(mask if scale == 1.0 else np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST)))
    return pictures, masks

"""What one network run of the app keeps (Analysis), what one click shows (Explanation), how the
maps are drawn (Display), and the analysis sizes a released model can run at."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ccnet.inference.domain import DomainVerdict
from ccnet.inference.explain import PixelAttention
from ccnet.inference.predictor import Protocol

THUMB_WIDTH = 360  # the side-by-side maps of a click are drawn this wide
INTERACTIVE_PIXELS = 512 * 512  # the interactive analysis size: R50-D8 in ~3 s, R101-D8 in ~4 s on 2 CPU cores
SIZES = ("interactive", "full")  # the analysis sizes: bounded whole image, or the preset's own protocol


@dataclass(frozen=True)
class Display:
    """How the attention is drawn; every field is a control in the app. The defaults are the page's
    (the server sends them to the viewer) and the API's pictures'."""

    view: str = "composed"  # "step 1" ... "step R" or "composed"
    cmap: str = "magma"
    clip: float = 0.2  # colours run from this share of the map's maximum down 4 decades (log)
    scale: str = "log"
    upsampling: str = "nearest"
    grid_lines: bool = False
    k: int = 5
    alpha: float = 0.5  # segmentation overlay opacity

    def for_page(self) -> dict:
        """What the viewers start from (the page's controls, before a link or a visitor changes them)."""
        return {"cmap": self.cmap, "scale": self.scale, "clip": self.clip, "opacity": self.alpha}


@dataclass
class Analysis:
    """One network run, kept compactly: class and confidence per pixel instead of the logits."""

    model: str
    key: str
    image: np.ndarray  # RGB uint8 at the analysed ("displayed") size
    mask: np.ndarray  # (H, W) class indices
    confidence: np.ndarray  # (H, W) float16 softmax probability of the winning class
    attention: list[torch.Tensor]  # per step (h, w, h + w) float32
    grid: tuple[int, int]
    seconds: float
    device: str
    note: str | None = None  # e.g. the downscale notice
    analysis_size: str = "full"  # the analysis size used: "interactive" or "full" (the model's own protocol)
    input_size: tuple[int, int] | None = None  # (h, w) the network saw
    domain: DomainVerdict | None = None  # the embedded model's out-of-domain check; None for other models
    dense: torch.Tensor | None = None  # a non-local head's (h*w, h*w) weights, row q = where cell q looks
    kind: str = "criss-cross"  # the head's attention, as its prediction says (ccnet/nn/variants.py KINDS)

    @property
    def out_of_domain(self) -> bool:
        return bool(self.domain and self.domain.out_of_domain)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    @functools.cached_property
    def thumbnail(self) -> np.ndarray:
        """The image at most THUMB_WIDTH wide, under the small side-by-side maps of a click."""
        height, width = self.size
        if width <= THUMB_WIDTH:
            return self.image
        size = (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width)))
        return np.asarray(Image.fromarray(self.image).resize(size, Image.BILINEAR))

    @property
    def views(self) -> list[str]:
        """The maps a click shows: every step and their composition; a non-local head's one map is
        its "composed" view (the whole image in one step); none for a head without attention."""
        if self.kind == "none":
            return []
        return [f"step {i + 1}" for i in range(len(self.attention))] + ["composed"]

    @property
    def nbytes(self) -> int:
        arrays = (self.image, self.mask, self.confidence)
        tensors = [*self.attention, *([self.dense] if self.dense is not None else [])]
        return sum(a.nbytes for a in arrays) + sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class Explanation:
    """Everything one click shows: the pixel, its cell's maps and the top-k of the chosen view."""

    analysis: Analysis
    x: int
    y: int
    maps: PixelAttention
    view: str
    topk: list[dict] = field(default_factory=list)

    @property
    def view_map(self) -> np.ndarray:
        return self.maps.composed if self.view == "composed" else self.maps.steps[int(self.view.split()[1]) - 1]

    @property
    def pixel_class(self) -> int:
        return int(self.analysis.mask[self.y, self.x])

    @property
    def confidence(self) -> float:
        return float(self.analysis.confidence[self.y, self.x])

    def to_json(self, classes: tuple[str, ...]) -> dict:
        """The /attention endpoint's JSON: maps as nested lists, cell as [row, col]."""
        return {
            "model": self.analysis.model,
            "image_size": list(self.analysis.size),
            "pixel": [self.x, self.y],
            "grid": list(self.maps.grid),
            "cell": list(self.maps.cell),
            "class": classes[self.pixel_class] if self.pixel_class < len(classes) else str(self.pixel_class),
            "confidence": round(self.confidence, 4),
            "view": self.view,
            "steps": [m.tolist() for m in self.maps.steps],
            "composed": self.maps.composed.tolist(),
            "topk": self.topk,
        }


def size_note(size: str, input_size: tuple[int, int], protocol: Protocol) -> str:
    """Which analysis size ran, and what the other one would do."""
    height, width = input_size
    full = "the whole image" if protocol.mode == "whole" else f"{protocol.crop[0]}×{protocol.crop[1]} sliding windows"
    if protocol.test_resize:
        full += f" resized to fit {protocol.test_resize[0]}×{protocol.test_resize[1]}"
    if size == "interactive":
        return f"interactive size: the whole image at {width}×{height} (the full protocol: {full})"
    return f"full protocol: {full} ({width}×{height})"

"""The 16 released mmsegmentation CCNet checkpoints as presets: data in zoo.json, one name each.

A preset fixes everything the published mIoU depends on: the weights (URL and sha256 prefix),
the dataset's classes and palette, and the test protocol (resize, whole or sliding window,
align_corners). ``python -m ccnet zoo`` lists them, ``python -m ccnet fetch NAME`` downloads one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ccnet.errors import CCNetError
from ccnet.inference.predictor import Protocol
from ccnet.nn.model import CCNet, CCNetConfig
from ccnet.weights import download
from ccnet.weights.datasets import dataset_info


@dataclass(frozen=True)
class Preset:
    """One released checkpoint and how mmsegmentation tested it."""

    name: str
    dataset: str
    backbone: str
    num_classes: int
    crop_size: tuple[int, int]
    train_iters: int
    miou_single_scale: float
    miou_multiscale_flip: float
    url: str
    sha256_prefix: str
    protocol: Protocol

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(dataset_info()[self.dataset]["classes"])

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return tuple(tuple(rgb) for rgb in dataset_info()[self.dataset]["palette"])

    @property
    def path(self) -> Path:
        """Where the file is cached (or must be put by hand)."""
        return download.cached_path(self.url)

    @property
    def depth(self) -> int:
        """The ResNet depth of the backbone ("R-101-D8" -> 101)."""
        return int(self.backbone.split("-")[1])

    @property
    def download_mb(self) -> float:
        """The checkpoint's size estimated from its parameter and buffer count (float32), in MB."""
        return _estimated_mb(self.depth, self.num_classes)

    @property
    def label(self) -> str:
        """The model menu's line: what a visitor needs to choose (the API still takes the name)."""
        crop = f"{self.crop_size[0]}×{self.crop_size[1]}"
        return (f"{DATASET_NAMES.get(self.dataset, self.dataset)} · {self.backbone} · {self.num_classes} classes · "
                f"crop {crop} · {self.train_iters // 1000}k iters · mIoU {self.miou_single_scale:.2f} · "
                f"≈{self.download_mb:.0f} MB download")

    def describe_protocol(self) -> str:
        p = self.protocol
        text = "whole" if p.mode == "whole" else f"slide {p.crop[0]}/{p.stride[0]}"
        if p.test_resize:
            text += f" @{p.test_resize[0]}x{p.test_resize[1]}"
        return text + (" ac" if p.align_corners else "")


DATASET_NAMES = {"cityscapes": "Cityscapes (street scenes)", "ade20k": "ADE20K (everyday scenes)",
                 "voc": "Pascal VOC (objects)"}


@lru_cache(maxsize=8)
def _estimated_mb(depth: int, num_classes: int) -> float:
    with torch.device("meta"):  # shapes only: no memory, no time
        net = CCNet(CCNetConfig(depth=depth, num_classes=num_classes))
    return sum(t.numel() for t in net.state_dict().values()) * 4 / 1e6


@lru_cache(maxsize=1)
def presets() -> dict[str, Preset]:
    """Every preset by name, in the order of zoo.json."""
    data = json.loads(Path(__file__).with_name("zoo.json").read_text())
    return {
        item["name"]: Preset(
            name=item["name"],
            dataset=item["dataset"],
            backbone=item["backbone"],
            num_classes=item["num_classes"],
            crop_size=tuple(item["crop_size"]),
            train_iters=item["train_iters"],
            miou_single_scale=item["miou"]["single_scale"],
            miou_multiscale_flip=item["miou"]["multiscale_flip"],
            url=item["url"],
            sha256_prefix=item["sha256_prefix"],
            protocol=Protocol.from_dict(item["protocol"]),
        )
        for item in data["presets"]
    }


def get(name: str) -> Preset:
    try:
        return presets()[name]
    except KeyError:
        raise CCNetError(f"unknown preset {name!r}: list them with `python -m ccnet zoo`") from None


def fetch(name: str, progress: download.ProgressFn | None = None) -> Path:
    """The preset's checkpoint file, downloaded and verified on first use."""
    return download.fetch(get(name).url, progress)

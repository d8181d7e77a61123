"""Is this image the kind the embedded model knows? Two statistics of the model's own output,
thresholds calibrated on held-out synthetic scenes (`python -m tools.calibrate_domain`):

- entropy: the mean per-pixel entropy of the class probabilities. The embedded model is sure of
  itself on street scenes (<= 0.17 nats on every held-out scene) and unsure on photos.
- layout: the mean log-probability of the predicted classes given their row band, under the
  training scenes' row-band class frequencies (sky on top, road at the bottom). A photo of a cat
  labelled "traffic light" and "truck" in the middle of the frame scores low.

An image is out of the domain when either statistic passes its threshold. Released models were
trained on real photos, so only models with a calibration file are checked.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ccnet.project import ASSETS

ROW_BANDS = 16  # the layout prior's vertical resolution
CALIBRATIONS = {"default": ASSETS / "domain_default.json"}


@dataclass(frozen=True)
class DomainScores:
    entropy: float  # mean per-pixel entropy of the class probabilities, in nats
    layout: float  # mean log p(predicted class | row band) under the training scenes' layout


@dataclass(frozen=True)
class DomainVerdict:
    out_of_domain: bool
    scores: DomainScores
    note: str | None  # what a visitor reads when out of the domain


@dataclass(frozen=True)
class DomainCheck:
    """A model's calibrated check: its training layout prior and the two thresholds."""

    log_prior: np.ndarray  # (ROW_BANDS, K) log p(class | row band)
    max_entropy: float
    min_layout: float
    known: str  # what the model knows, for the note ("synthetic street scenes")

    def scores(self, probabilities: Tensor) -> DomainScores:
        """The two statistics of (K, H, W) class probabilities."""
        return domain_scores(probabilities, self.log_prior)

    def assess(self, probabilities: Tensor) -> DomainVerdict:
        return self.verdict(self.scores(probabilities))

    def verdict(self, scores: DomainScores) -> DomainVerdict:
        """Out of the domain when either statistic passes its threshold; the note says which."""
        reasons = []
        if scores.entropy > self.max_entropy:
            reasons.append(f"the model is unsure (entropy {scores.entropy:.2f} > {self.max_entropy:.2f})")
        if scores.layout < self.min_layout:
            reasons.append(f"its classes are where no street scene has them (layout {scores.layout:.2f} "
                           f"< {self.min_layout:.2f})")
        if not reasons:
            return DomainVerdict(False, scores, None)
        note = (f"this does not look like the {self.known} the embedded model was trained on: "
                f"{' and '.join(reasons)}, so its labels mean little here")
        return DomainVerdict(True, scores, note)

    def to_dict(self) -> dict:
        return {"row_bands": int(self.log_prior.shape[0]), "log_prior": np.round(self.log_prior, 5).tolist(),
                "max_entropy": self.max_entropy, "min_layout": self.min_layout, "known": self.known}

    @classmethod
    def from_dict(cls, data: dict) -> DomainCheck:
        return cls(np.asarray(data["log_prior"], dtype=np.float64), float(data["max_entropy"]),
                   float(data["min_layout"]), str(data["known"]))


def row_bands(height: int, bands: int = ROW_BANDS) -> np.ndarray:
    """The band index of each row: the image's height cut into `bands` equal parts."""
    return np.arange(height) * bands // height


def log_row_prior(labels: list[np.ndarray], num_classes: int, bands: int = ROW_BANDS,
                  ignore_index: int = 255) -> np.ndarray:
    """log p(class | row band) counted over label maps, with one pseudo-count per cell (Laplace)."""
    counts = np.ones((bands, num_classes))
    for label in labels:
        band = np.broadcast_to(row_bands(label.shape[0], bands)[:, None], label.shape)
        keep = label != ignore_index
        np.add.at(counts, (band[keep], label[keep].astype(np.int64)), 1)
    return np.log(counts / counts.sum(axis=1, keepdims=True))


def domain_scores(probabilities: Tensor, log_prior: np.ndarray) -> DomainScores:
    """Mean entropy and mean layout log-probability of (K, H, W) class probabilities."""
    entropy = -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(0).mean()
    mask = probabilities.argmax(0).numpy()
    band = row_bands(mask.shape[0], log_prior.shape[0])[:, None]
    layout = log_prior[band, mask].mean()
    return DomainScores(round(float(entropy), 4), round(float(layout), 4))


@lru_cache(maxsize=4)
def domain_check(model: str) -> DomainCheck | None:
    """The calibrated check of a model by its name; None when it has none (released models)."""
    path = CALIBRATIONS.get(model)
    return load_check(path) if path is not None and path.is_file() else None


def load_check(path: Path) -> DomainCheck:
    return DomainCheck.from_dict(json.loads(Path(path).read_text())["check"])

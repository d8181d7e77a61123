"""Pure image functions for showing results: colour masks, overlays, heat maps."""
from __future__ import annotations

import numpy as np


def colorize(mask: np.ndarray, palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """Class-index mask (H, W) -> RGB uint8 (H, W, 3) with the dataset's palette."""
    table = np.zeros((max(len(palette), int(mask.max(initial=0)) + 1), 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[mask]


def overlay(image: np.ndarray, mask: np.ndarray, palette: tuple[tuple[int, int, int], ...], alpha: float = 0.5) -> np.ndarray:
    """Blend the colour mask over the image; alpha 0 shows the image, 1 the mask."""
    blend = (1.0 - alpha) * image.astype(np.float32) + alpha * colorize(mask, palette).astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)

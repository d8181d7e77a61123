"""The classes of the synthetic street scenes: 11 Cityscapes classes, their colours and ids."""
from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "pole", "traffic light", "traffic sign",
    "vegetation", "sky", "person", "car", "truck",
)
PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (153, 153, 153), (250, 170, 30), (220, 220, 0),
    (107, 142, 35), (70, 130, 180), (220, 20, 60), (0, 0, 142), (0, 0, 70),
)
CITYSCAPES_TRAIN_ID_OF_CLASS: tuple[int, ...] = (0, 1, 2, 5, 6, 7, 8, 10, 11, 13, 14)  # each class's Cityscapes trainId
CONTEXT_CLASSES: tuple[int, ...] = (9, 10)

ROAD, SIDEWALK, BUILDING, POLE, LIGHT, SIGN, VEGETATION, SKY, PERSON, CAR, TRUCK = range(11)

# Luminance texture per class (std of fine / mid / coarse noise, 0..255 units): gives a small
# CNN local texture cues, since colours alone overlap across classes. Keyed by class so that a new class cannot
# shift the columns (it did once: the panel got vegetation's texture; see assets/MODEL_CARD.md).
TEXTURE_BY_CLASS: dict[int, tuple[int, int, int]] = {
    ROAD: (5, 3, 8), SIDEWALK: (4, 6, 6), BUILDING: (3, 3, 10), POLE: (2, 1, 2), LIGHT: (1, 0, 1),
    SIGN: (1, 0, 1), VEGETATION: (12, 16, 8), SKY: (1, 0, 6), PERSON: (3, 2, 2), CAR: (2, 1, 2), TRUCK: (2, 1, 2),
}


def colorize_label(label: np.ndarray) -> np.ndarray:
    """Label map -> Cityscapes-coloured RGB uint8 (ignore pixels black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(PALETTE)] = PALETTE
    return lut[label]

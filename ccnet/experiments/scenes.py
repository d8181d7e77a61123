"""Seeded synthetic street scenes with a designed long-range cue.

Why this exists: one criss-cross attention step lets a pixel of the stride-8 feature grid see
only its own row and column; two steps reach every position.  These scenes make the
difference measurable, because the class of every vehicle is decided by evidence that lies
outside all of the vehicle's rows and columns.

The cue
    * Every scene has 1-4 vehicles on the road, all drawn by one class-agnostic process (box
      body, cabin, rear window, two dark wheels; colour and size from shared distributions).
      All of them are labelled ``car`` or ``truck`` together, decided only by the cue.
    * Exactly one big traffic sign (panel on a pole) stands high in the scene: its panel lies
      in the upper 45% of the image, over building, sky or vegetation.  A blue-ish panel (labelled
      traffic sign) means every vehicle is a car, a red/orange-ish one (labelled traffic light)
      means every vehicle is a truck.  Labelling the two panels as different classes makes the
      backbone keep their colour apart locally; reading it from afar is left to attention.  The panel
      shape (disc, square, diamond) and its white rim do not depend on the cue.
    * The panel's row span and column span are disjoint from every vehicle's, with a margin of
      ``max(8, H/16)`` px (2 feature cells at H=256), and the panel is at least W/4 away
      horizontally from every vehicle box, so from a vehicle pixel the panel is two
      criss-cross steps away (vehicle row -> panel column), never one.
    * Nothing else correlates with the cue: the random stream never depends on it, so flipping
      ``cue`` changes only the panel's inner pixels in the image, and in the label car <-> truck
      and traffic sign <-> traffic light on the panel,
      and no other object has the panel's saturated colours.

Scenes are keyed by (split, seed) through ``SeedSequence([SPLIT_CODES[split], seed])``, so
held-out ("eval") and "demo" scenes never coincide with training scenes.  Run
``python -m tools.demos demos/`` to write the example PNGs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ccnet.experiments.scene_classes import (
    BUILDING,
    CAR,
    CITYSCAPES_TRAIN_ID_OF_CLASS,
    CLASS_NAMES,
    CONTEXT_CLASSES,
    LIGHT,
    PALETTE,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    TRUCK,
    VEGETATION,
    colorize_label,
)
from ccnet.experiments.scene_drawing import (
    Box,
    Canvas,
    Street,
    draw_buildings,
    draw_ground,
    draw_lamp,
    draw_person,
    draw_sign,
    draw_sky,
    draw_tree,
    draw_vehicle,
    finish,
    hsv,
)

__all__ = [  # the classes are re-exported: scenes.CAR etc. is how the experiments name them
    "BUILDING", "CAR", "CITYSCAPES_TRAIN_ID_OF_CLASS", "CLASS_NAMES", "CONTEXT_CLASSES", "CUES", "LIGHT", "PALETTE",
    "PERSON", "POLE", "ROAD", "SIDEWALK", "SIGN", "SKY", "SPLIT_CODES", "TRUCK", "VEGETATION", "Box", "Scene",
    "colorize_label", "generate_scene", "scene_batch",
]

SPLIT_CODES: dict[str, int] = {"train": 1, "eval": 2, "demo": 3}


CUES: tuple[str, ...] = ("car", "truck")


@dataclass
class Scene:
    """One rendered scene; boxes are half-open pixel boxes (x0, y0, x1, y1)."""

    image: np.ndarray  # uint8 H x W x 3, RGB
    label: np.ndarray  # uint8 H x W, class indices 0..10 (CLASS_NAMES)
    cue: str  # "car" or "truck"
    sign_box: Box
    vehicle_boxes: list[Box]
    seed: int
    split: str


def far_apart(a: Box, b: Box, margin: int, gap: float) -> bool:
    """Disjoint row spans by >= margin and column spans by >= gap (half-open boxes)."""
    rows = max(b[1] - a[3], a[1] - b[3])
    cols = max(b[0] - a[2], a[0] - b[2])
    return rows >= margin and cols >= gap


def overlap(a: Box, b: Box) -> float:
    """Intersection area over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / small


def _layout(rng: np.random.Generator, h: int, w: int, aligned: bool = False) -> tuple[Street, Box, list[Box]]:
    """Street, sign panel and vehicle boxes satisfying the long-range constraint.

    ``aligned`` (training curriculum only) instead hangs the panel straight above one vehicle,
    sharing its columns, so that one attention step can reach the cue.
    """
    size = max(16, round(min(h, w) / 4))  # 4x4 feature cells: a cue two hops can learn quickly
    margin = max(8, round(h / 16))
    gap = -w if aligned else max(w / 4, margin)
    for _ in range(200):
        road = rng.uniform(0.5, 0.65) * w
        st = Street(h, w, rng.uniform(0.4, 0.5) * h, rng.uniform(0.35, 0.65) * w,
                     road, road * rng.uniform(1.25, 1.5))
        off = round(rng.uniform(0.015, 0.13) * w)
        x0 = off if rng.random() < 0.5 else w - off - size  # left or right edge
        y0 = round(rng.uniform(0.04 * h, max(0.04 * h, 0.45 * h - size)))
        sign = (x0, y0, x0 + size, y0 + size)
        vehicles: list[Box] = []
        for _ in range(int(rng.integers(1, 5))):
            for _ in range(30):
                d = rng.uniform(0.2, 0.97)
                vw = rng.uniform(1.7, 2.6) * st.ppm(d)
                vh = vw * rng.uniform(0.7, 1.25)
                cx, yb = st.ground_x(d, 1, rng.uniform(-0.75, 0.75)), st.row(d)
                box = (round(cx - vw / 2), round(yb - vh), round(cx + vw / 2), round(yb))
                if (box[0] >= 0 and box[1] >= 0 and box[2] <= w and box[3] <= h
                        and box[2] - box[0] >= 3 and far_apart(sign, box, margin, gap)
                        and all(overlap(box, v) < 0.4 for v in vehicles)):
                    vehicles.append(box)
                    break
        if vehicles:
            if aligned:
                over = vehicles[int(rng.integers(len(vehicles)))]
                x0 = int(np.clip(round((over[0] + over[2] - size) / 2), 0, w - size))
                sign = (x0, y0, x0 + size, y0 + size)
            return st, sign, vehicles
    raise RuntimeError(f"no valid layout for {h}x{w}")


def place_persons(rng: np.random.Generator, st: Street,
                   sign: Box) -> list[tuple[float, float, float]]:
    """0-3 (x, feet row, height): mostly on sidewalks, some crossing; never over the panel."""
    persons = []
    for _ in range(int(rng.integers(0, 4))):
        d = rng.uniform(0.15, 0.95)
        t = rng.uniform(1.15, 1.95) if rng.random() < 0.85 else rng.uniform(0, 0.9)
        x, yb = st.ground_x(d, int(rng.choice((-1, 1))), t), st.row(d)
        ph = rng.uniform(1.55, 1.9) * st.ppm(d)
        if overlap((int(x - ph / 4), int(yb - ph), int(x + ph / 4) + 1, int(yb) + 1), sign) == 0:
            persons.append((x, yb, ph))
    return persons


def generate_scene(seed: int, height: int = 256, width: int = 512, *, split: str = "train",
                   cue: str | None = None, aligned: bool = False) -> Scene:
    """Render scene (split, seed); ``cue`` overrides the sign's meaning without changing
    anything else (the RNG stream is the same for every cue).  ``aligned`` puts the panel in a
    vehicle's columns (one step away): only the training curriculum uses it."""
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_CODES)}")
    if cue not in (None, *CUES):
        raise ValueError(f"cue must be None, 'car' or 'truck', got {cue!r}")
    rng = np.random.default_rng(np.random.SeedSequence([SPLIT_CODES[split], seed]))
    st, sign, vehicles = _layout(rng, height, width, aligned)
    drawn_cue = CUES[int(rng.integers(2))]
    # Both panel colours are always drawn, so the stream never depends on the cue.
    blue = hsv(rng.uniform(0.58, 0.65), rng.uniform(0.75, 0.95), rng.uniform(0.55, 0.85))
    red = hsv(rng.uniform(-0.01, 0.08), rng.uniform(0.8, 0.97), rng.uniform(0.75, 0.95))
    cue = cue or drawn_cue

    cv = Canvas(height, width)
    draw_sky(cv, rng, st)
    draw_buildings(cv, rng, st)
    draw_ground(cv, rng, st)
    for _ in range(int(rng.integers(1, 6))):
        draw_tree(cv, rng, st)
    for _ in range(int(rng.integers(1, 4))):
        draw_lamp(cv, rng, st)
    draw_sign(cv, rng, st, sign, blue if cue == "car" else red)

    agents = [(b[3], draw_vehicle, (b,)) for b in vehicles]
    agents += [(p[1], draw_person, p) for p in place_persons(rng, st, sign)]
    for _, fn, args in sorted(agents, key=lambda a: a[0]):  # far to near: occlusion
        fn(cv, rng, *args)

    image = finish(cv, rng)
    if cue == "truck":  # the red panel is labelled a traffic light, the blue one a traffic sign
        cv.lab[cv.lab == CAR] = TRUCK
        cv.lab[cv.lab == SIGN] = LIGHT
    return Scene(image, cv.lab, cue, sign, vehicles, seed, split)


def scene_batch(seeds: Iterable[int], height: int, width: int, split: str,
                aligned: Iterable[bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x H x W x 3 uint8) and labels (N x H x W int64) for training loops."""
    seeds = list(seeds)
    flags = list(aligned) if aligned is not None else [False] * len(seeds)
    scenes = [generate_scene(s, height, width, split=split, aligned=a) for s, a in zip(seeds, flags)]
    return (np.stack([s.image for s in scenes]),
            np.stack([s.label for s in scenes]).astype(np.int64))

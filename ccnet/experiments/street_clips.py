"""Seeded synthetic street clips whose decisive cue only time can carry.

Why this exists: a 3D criss-cross step moves information along one axis of the clip (time, column
or row), so R steps reach the positions that differ from a position in at most R of t, h, w. These
clips make that measurable. They are ccnet.experiments.scenes' streets, drawn over T frames:

    * One street, one panel, 1-4 vehicles per clip. The vehicles move (along the road and across
      it, each with its own speed); the background, the persons and the lighting stay.
    * The panel's colour decides, as in the still scenes, whether every vehicle is a ``car`` (blue,
      the panel labelled traffic sign) or a ``truck`` (red, labelled traffic light), in every frame.
    * The panel is visible in ONE frame only (``panel_frame``, drawn at random); in the others a
      clump of foliage (labelled vegetation, drawn whatever the cue) hides it and its rim.
    * In every frame, every vehicle's rows lie at least ``max(16, H/8)`` px (2 feature cells at
      stride 8) from the panel's rows and its columns at least W/4 from the panel's columns. So
      from a vehicle cell of another frame the panel is a time step, a row step and a column step
      away: three criss-cross steps, never two. In the panel's own frame it is two steps away.
    * The random stream never depends on the cue: re-rendering with the other cue changes only
      the panel's inner pixels in the panel's frame, and in the labels car <-> truck and traffic
      sign <-> traffic light.

Clips are keyed by (split, seed) through ``SeedSequence([CLIP_SPLIT_CODES[split], seed])``, codes
apart from the still scenes', so held-out clips never coincide with training ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ccnet.experiments.scene_classes import CAR, LIGHT, SIGN, TRUCK, VEGETATION
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
from ccnet.experiments.scenes import CUES, far_apart, overlap, place_persons

CLIP_SPLIT_CODES: dict[str, int] = {"train": 11, "eval": 12, "demo": 13}
FRAMES = 5
HEIGHT, WIDTH = 128, 256  # the embedded model's scale: a 16 x 32 feature grid per frame


@dataclass
class Clip:
    """One rendered clip; boxes are half-open pixel boxes (x0, y0, x1, y1)."""

    frames: np.ndarray  # uint8 (T, H, W, 3), RGB
    labels: np.ndarray  # uint8 (T, H, W), class indices (scenes.CLASS_NAMES)
    cue: str  # "car" or "truck"
    panel_frame: int  # the one frame where the panel is visible
    sign_box: Box
    vehicle_boxes: list[list[Box]]  # per frame, each vehicle's box
    seed: int
    split: str


@dataclass(frozen=True)
class Track:
    """A vehicle's path: depth d and lateral place t (ccnet.experiments.scene_drawing.Street) move
    linearly per frame; width in metres and aspect ratio stay."""

    depth: float
    depth_speed: float
    lateral: float
    lateral_speed: float
    metres: float
    aspect: float

    def box(self, st: Street, frame: int) -> Box:
        d = self.depth + self.depth_speed * frame
        vw = self.metres * st.ppm(d)
        cx, yb = st.ground_x(d, 1, self.lateral + self.lateral_speed * frame), st.row(d)
        return round(cx - vw / 2), round(yb - vw * self.aspect), round(cx + vw / 2), round(yb)


def _track(rng: np.random.Generator) -> Track:
    return Track(rng.uniform(0.25, 0.95), rng.uniform(-0.05, 0.05), rng.uniform(-0.75, 0.75),
                 rng.uniform(-0.12, 0.12), rng.uniform(1.7, 2.6), rng.uniform(0.7, 1.25))


def _fits(box: Box, h: int, w: int) -> bool:
    return box[0] >= 0 and box[1] >= 0 and box[2] <= w and box[3] <= h and box[2] - box[0] >= 3


def _layout(rng: np.random.Generator, h: int, w: int, frames: int,
            aligned: bool = False) -> tuple[Street, Box, list[list[Box]]]:
    """Street, panel and per-frame vehicle boxes: every box, in every frame, inside the frame and
    three steps from the panel (rows and columns apart, see the module's docstring).

    ``aligned`` (the training curriculum only) hangs the panel over one vehicle's mean column
    instead, rows still apart: from that vehicle in another frame the panel is two steps away
    (time, then column), which teaches a head to look along time before it must also turn twice.
    """
    size = max(16, round(min(h, w) / 4))
    margin, gap = max(16, round(h / 8)), (-w if aligned else max(w / 4, 16))
    for _ in range(200):
        road = rng.uniform(0.5, 0.65) * w
        st = Street(h, w, rng.uniform(0.4, 0.5) * h, rng.uniform(0.35, 0.65) * w, road, road * rng.uniform(1.25, 1.5))
        off = round(rng.uniform(0.015, 0.13) * w)
        x0 = off if rng.random() < 0.5 else w - off - size
        y0 = round(rng.uniform(0.04 * h, max(0.04 * h, 0.45 * h - size)))
        sign = (x0, y0, x0 + size, y0 + size)
        paths: list[list[Box]] = []
        for _ in range(int(rng.integers(1, 5))):
            for _ in range(30):
                track = _track(rng)
                boxes = [track.box(st, t) for t in range(frames)]
                if all(_fits(b, h, w) and far_apart(sign, b, margin, gap) for b in boxes) and all(
                        overlap(b, other[t]) < 0.4 for other in paths for t, b in enumerate(boxes)):
                    paths.append(boxes)
                    break
        if paths:
            if aligned:
                over = paths[int(rng.integers(len(paths)))]
                x0 = int(np.clip(round(np.mean([b[0] + b[2] for b in over]) / 2 - size / 2), 0, w - size))
                sign = (x0, y0, x0 + size, y0 + size)
            return st, sign, [[path[t] for path in paths] for t in range(frames)]
    raise RuntimeError(f"no valid clip layout for {h}x{w}")


def _foliage(cv: Canvas, rng: np.random.Generator, sign: Box) -> None:
    """A clump of leaves over the panel and 3 px around it, so no panel pixel (nor its blur) shows."""
    x0, y0, x1, y1 = sign
    pad = 3 + (x1 - x0) * rng.uniform(0.05, 0.25, 4)
    box = (x0 - pad[0], y0 - pad[1], x1 + pad[2], y1 + pad[3])
    green = hsv(rng.uniform(0.2, 0.35), rng.uniform(0.35, 0.7), rng.uniform(0.2, 0.5))
    cv.paint(box, VEGETATION, lambda ys, xs: (True, green * (1.1 - 0.3 * (ys - box[1]) / (box[3] - box[1]))[..., None]))


def generate_clip(seed: int, height: int = HEIGHT, width: int = WIDTH, frames: int = FRAMES, *,
                  split: str = "train", cue: str | None = None, aligned: bool = False) -> Clip:
    """Render clip (split, seed); ``cue`` overrides the panel's meaning and nothing else; ``aligned``
    is the curriculum's layout (see ``_layout``)."""
    if split not in CLIP_SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(CLIP_SPLIT_CODES)}")
    if cue not in (None, *CUES):
        raise ValueError(f"cue must be None, 'car' or 'truck', got {cue!r}")
    if frames < 2:
        raise ValueError(f"a clip has at least 2 frames, got {frames}")
    rng = np.random.default_rng(np.random.SeedSequence([CLIP_SPLIT_CODES[split], seed]))
    st, sign, boxes = _layout(rng, height, width, frames, aligned)
    drawn_cue, panel_frame = CUES[int(rng.integers(2))], int(rng.integers(frames))
    blue = hsv(rng.uniform(0.58, 0.65), rng.uniform(0.75, 0.95), rng.uniform(0.55, 0.85))
    red = hsv(rng.uniform(-0.01, 0.08), rng.uniform(0.8, 0.97), rng.uniform(0.75, 0.95))
    cue = cue or drawn_cue
    background = Canvas(height, width)
    draw_sky(background, rng, st)
    draw_buildings(background, rng, st)
    draw_ground(background, rng, st)
    for _ in range(int(rng.integers(1, 6))):
        draw_tree(background, rng, st)
    for _ in range(int(rng.integers(1, 4))):
        draw_lamp(background, rng, st)
    draw_sign(background, rng, st, sign, blue if cue == "car" else red)
    persons = place_persons(rng, st, sign)
    leaves, looks, finish_seed = (int(v) for v in rng.integers(1 << 62, size=3))
    images, labels = [], []
    for t in range(frames):
        cv = Canvas(height, width)
        cv.img[:], cv.lab[:] = background.img, background.lab
        if t != panel_frame:
            _foliage(cv, np.random.default_rng(leaves), sign)
        agents = [(b[3], 0, i, b) for i, b in enumerate(boxes[t])] + [(p[1], 1, i, p) for i, p in enumerate(persons)]
        for _, kind, index, args in sorted(agents, key=lambda a: a[:3]):  # far to near: occlusion
            look = np.random.default_rng([looks, kind, index])  # each agent looks the same in every frame
            draw_person(cv, look, *args) if kind else draw_vehicle(cv, look, args)
        images.append(finish(cv, np.random.default_rng(finish_seed)))
        if cue == "truck":
            cv.lab[cv.lab == CAR] = TRUCK
            cv.lab[cv.lab == SIGN] = LIGHT
        labels.append(cv.lab)
    return Clip(np.stack(images), np.stack(labels), cue, panel_frame, sign, boxes, seed, split)

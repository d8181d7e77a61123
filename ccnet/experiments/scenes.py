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
``python -m ccnet.experiments.scenes --demos demos/`` to write example PNGs.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
from PIL import Image

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
SPLIT_CODES: dict[str, int] = {"train": 1, "eval": 2, "demo": 3}
CUES: tuple[str, ...] = ("car", "truck")

ROAD, SIDEWALK, BUILDING, POLE, LIGHT, SIGN, VEGETATION, SKY, PERSON, CAR, TRUCK = range(11)
ROAD_METRES = 13.0  # real-world road width that sets the pixels-per-metre scale

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), half-open pixel box

# Luminance texture per class (std of fine / mid / coarse noise, 0..255 units): gives a small
# CNN local texture cues, since colours alone overlap across classes. Keyed by class so that a new
# class cannot shift the columns (it did once: the panel got vegetation's texture, see docs/ablation.md).
_TEXTURE_BY_CLASS = {
    ROAD: (5, 3, 8), SIDEWALK: (4, 6, 6), BUILDING: (3, 3, 10), POLE: (2, 1, 2), LIGHT: (1, 0, 1),
    SIGN: (1, 0, 1), VEGETATION: (12, 16, 8), SKY: (1, 0, 6), PERSON: (3, 2, 2), CAR: (2, 1, 2), TRUCK: (2, 1, 2),
}
_TEXTURE = np.array([_TEXTURE_BY_CLASS[c] for c in range(len(CLASS_NAMES))], np.float32).T  # (3, classes)


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


@dataclass(frozen=True)
class _Street:
    """Perspective ground plane: everything on it converges at (vp_x, horizon)."""

    h: int
    w: int
    horizon: float
    vp_x: float
    road: float  # road half-width at the bottom row (depth 1), px
    walk: float  # sidewalk outer edge at the bottom row, px from vp_x

    def row(self, d: float) -> float:
        return self.horizon + d * (self.h - self.horizon)

    def depth(self, y):
        return (y - self.horizon) / (self.h - self.horizon)

    def ppm(self, d: float) -> float:
        """Pixels per metre at depth d."""
        return d * 2 * self.road / ROAD_METRES

    def ground_x(self, d: float, side: int, t: float) -> float:
        """x at depth d; t: 0 road centre, 1 kerb, 2 outer edge of the sidewalk."""
        off = self.road * t if t <= 1 else self.road + (t - 1) * (self.walk - self.road)
        return self.vp_x + side * d * off


class _Canvas:
    """Float RGB image plus label map, painted object by object inside bounding boxes."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.img = np.zeros((h, w, 3), np.float32)
        self.lab = np.full((h, w), SKY, np.uint8)

    def window(self, box):
        """Clipped slices of a float box plus pixel-centre coordinates (column/row vectors)."""
        x0, y0 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
        x1, y1 = min(int(np.ceil(box[2])), self.w), min(int(np.ceil(box[3])), self.h)
        if x0 >= x1 or y0 >= y1:
            return None
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
        return (slice(y0, y1), slice(x0, x1)), ys, xs

    def paint(self, box, cls: int, draw: Callable) -> None:
        """Paint where ``draw(ys, xs) -> (mask, colour)`` says; colour broadcasts to HxWx3."""
        win = self.window(box)
        if win is None:
            return
        sl, ys, xs = win
        mask, colour = draw(ys, xs)
        if mask is True:  # whole box: plain slice assignment is much cheaper
            self.img[sl] = colour
            self.lab[sl] = cls
            return
        shape = (ys.shape[0], xs.shape[1])
        mask = np.broadcast_to(mask, shape)
        self.img[sl][mask] = np.broadcast_to(colour, shape + (3,))[mask]
        self.lab[sl][mask] = cls

    def shade(self, box, factor: float, mask_fn: Callable) -> None:
        """Darken without relabelling (cast shadows)."""
        win = self.window(box)
        if win is not None:
            sl, ys, xs = win
            self.img[sl][np.broadcast_to(mask_fn(ys, xs), self.img[sl].shape[:2])] *= factor


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255


def _grey(rng: np.random.Generator, lo: float, hi: float, sat: float = 0.06) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(0, sat), rng.uniform(lo, hi))


def _ellipse(cx, cy, rx, ry):
    return lambda ys, xs: ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1


def _rect(colour):
    return lambda ys, xs: (True, colour)


def _far_apart(a: Box, b: Box, margin: int, gap: float) -> bool:
    """Disjoint row spans by >= margin and column spans by >= gap (half-open boxes)."""
    rows = max(b[1] - a[3], a[1] - b[3])
    cols = max(b[0] - a[2], a[0] - b[2])
    return rows >= margin and cols >= gap


def _overlap(a: Box, b: Box) -> float:
    """Intersection area over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / small


def _layout(rng: np.random.Generator, h: int, w: int, aligned: bool = False):
    """Street, sign panel and vehicle boxes satisfying the long-range constraint.

    ``aligned`` (training curriculum only) instead hangs the panel straight above one vehicle,
    sharing its columns, so that one attention step can reach the cue.
    """
    size = max(16, round(min(h, w) / 4))  # 4x4 feature cells: a cue two hops can learn quickly
    margin = max(8, round(h / 16))
    gap = -w if aligned else max(w / 4, margin)
    for _ in range(200):
        road = rng.uniform(0.5, 0.65) * w
        st = _Street(h, w, rng.uniform(0.4, 0.5) * h, rng.uniform(0.35, 0.65) * w,
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
                        and box[2] - box[0] >= 3 and _far_apart(sign, box, margin, gap)
                        and all(_overlap(box, v) < 0.4 for v in vehicles)):
                    vehicles.append(box)
                    break
        if vehicles:
            if aligned:
                over = vehicles[int(rng.integers(len(vehicles)))]
                x0 = int(np.clip(round((over[0] + over[2] - size) / 2), 0, w - size))
                sign = (x0, y0, x0 + size, y0 + size)
            return st, sign, vehicles
    raise RuntimeError(f"no valid layout for {h}x{w}")


def _draw_sky(cv: _Canvas, rng: np.random.Generator, st: _Street) -> None:
    if rng.random() < 0.7:
        hue, sat = rng.uniform(0.55, 0.62), rng.uniform(0.2, 0.45)
        top = _hsv(hue, sat, rng.uniform(0.7, 0.9))
        low = _hsv(hue, sat * 0.3, rng.uniform(0.85, 1.0))
    else:  # overcast
        top, low = _grey(rng, 0.55, 0.8), _grey(rng, 0.7, 0.9)
    t = np.clip(np.arange(cv.h, dtype=np.float32) / st.horizon, 0, 1)[:, None, None]
    cv.img[:] = top * (1 - t) + low * t


def _building_colour(rng: np.random.Generator) -> np.ndarray:
    kind = rng.random()
    if kind < 0.5:
        return _grey(rng, 0.3, 0.8, 0.08)
    if kind < 0.8:  # beige / brick, desaturated
        return _hsv(rng.uniform(0.04, 0.12), rng.uniform(0.15, 0.4), rng.uniform(0.35, 0.8))
    return _hsv(rng.random(), rng.uniform(0.08, 0.25), rng.uniform(0.35, 0.75))


def _facade(x0, x1, top, colour, glass, sx, sy, fx, fy):
    """Wall with a grid of windows, leaving a wall border around the grid."""
    def draw(ys, xs):
        win = (((xs - x0 - 0.3 * sx) % sx < fx * sx) & (xs < x1 - 0.3 * sx)
               & ((ys - top - 0.4 * sy) % sy < fy * sy) & (ys > top + 0.4 * sy))
        return True, np.where(win[..., None], glass, colour)
    return draw


def _draw_buildings(cv: _Canvas, rng: np.random.Generator, st: _Street) -> None:
    x = 0.0
    while x < cv.w:
        bw = rng.uniform(0.06, 0.2) * cv.w
        far = abs(x + bw / 2 - st.vp_x) / cv.w  # 0 near the vanishing point, ~0.6 at the sides
        top = st.horizon - cv.h * (rng.uniform(0.04, 0.15) + far * rng.uniform(0.4, 1.4))
        glass = _hsv(rng.uniform(0.5, 0.7), rng.uniform(0, 0.25), rng.uniform(0.1, 0.55))
        sx = cv.h * rng.uniform(0.03, 0.05) * (0.6 + 2 * far)
        draw = _facade(x, x + bw, top, _building_colour(rng), glass, sx,
                       sx * rng.uniform(0.9, 1.5), rng.uniform(0.35, 0.7), rng.uniform(0.4, 0.7))
        cv.paint((x, top, x + bw, cv.h), BUILDING, draw)
        x += bw


def _draw_ground(cv: _Canvas, rng: np.random.Generator, st: _Street) -> None:
    """Road trapezoid with lane dashes, kerbs and paved sidewalks, all in perspective."""
    sl, ys, xs = cv.window((0, st.horizon, cv.w, cv.h))
    d = np.maximum(st.depth(ys), 1e-3)
    dx = xs - st.vp_x
    ax = np.abs(dx)
    road = ax <= d * st.road
    walk = (ax <= d * st.walk) & ~road
    kerb = walk & (ax <= d * st.road * 1.04)
    slabs = walk & (((rng.uniform(3, 8) / d + rng.random()) % 1.0) < 0.08)
    dash = ((rng.uniform(3, 6) / d + rng.random()) % 1.0) < rng.uniform(0.35, 0.6)
    lanes = int(rng.integers(2, 5))
    marks = road & (np.abs(ax - 0.93 * d * st.road) <= d * st.road * 0.008 + 0.3)
    for k in range(1, lanes):
        off = (2 * k / lanes - 1) * d * st.road
        marks |= dash & (np.abs(dx - off) <= d * st.road * 0.012 + 0.3)
    colours = np.stack([_grey(rng, 0.75, 0.95), _grey(rng, 0.22, 0.55), _grey(rng, 0.6, 0.85),
                        _grey(rng, 0.35, 0.5, 0.1),
                        _hsv(rng.random(), rng.uniform(0, 0.12), rng.uniform(0.45, 0.78))])
    index = np.select([marks, road, kerb, slabs], [0, 1, 2, 3], 4).astype(np.uint8)
    ground = road | walk
    cv.img[sl][ground] = colours[index[ground]]
    cv.lab[sl][ground] = np.where(road, ROAD, SIDEWALK)[ground]


def _draw_tree(cv: _Canvas, rng: np.random.Generator, st: _Street) -> None:
    d = rng.uniform(0.12, 0.85)
    ppm, yb = st.ppm(d), st.row(d)
    x = st.ground_x(d, int(rng.choice((-1, 1))), rng.uniform(1.5, 2.0))
    trunk_h, r, tw = rng.uniform(2, 4) * ppm, rng.uniform(1.5, 3.2) * ppm, max(1.5, 0.35 * ppm)
    trunk = _hsv(rng.uniform(0.05, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.15, 0.35))
    cv.paint((x - tw / 2, yb - trunk_h - r * 0.3, x + tw / 2, yb), VEGETATION, _rect(trunk))
    n = int(rng.integers(4, 8))
    cx = x + rng.uniform(-0.8, 0.8, n) * r
    cy = yb - trunk_h - r * 0.4 + rng.uniform(-1, 0.6, n) * r * 0.6
    rad = r * rng.uniform(0.45, 0.75, n)
    green = _hsv(rng.uniform(0.2, 0.36), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.55))
    top = (cy - rad).min()
    span = (cy + rad).max() - top

    def crown(ys, xs):
        mask = np.zeros((ys.shape[0], xs.shape[1]), bool)
        for bx, by, br in zip(cx, cy, rad):
            mask |= (xs - bx) ** 2 + (ys - by) ** 2 <= br * br
        return mask, green * (1.15 - 0.35 * (ys - top) / span)[..., None]  # lit from above

    cv.paint(((cx - rad).min(), top, (cx + rad).max(), top + span), VEGETATION, crown)


def _draw_lamp(cv: _Canvas, rng: np.random.Generator, st: _Street) -> None:
    d = rng.uniform(0.15, 0.95)
    ppm, yb, side = st.ppm(d), st.row(d), int(rng.choice((-1, 1)))
    x = st.ground_x(d, side, rng.uniform(1.05, 1.25))
    top, pw = yb - rng.uniform(5, 8) * ppm, max(1.5, 0.2 * ppm)
    arm = x - side * rng.uniform(0.8, 1.5) * ppm
    colour = _grey(rng, 0.25, 0.6, 0.08)
    cv.paint((x - pw / 2, top, x + pw / 2, yb), POLE, _rect(colour))
    cv.paint((min(x, arm), top, max(x, arm), top + pw), POLE, _rect(colour))
    cv.paint((arm - 1.5 * pw, top, arm + 1.5 * pw, top + 1.5 * pw), POLE, _rect(colour * 0.6))


def _draw_sign(cv: _Canvas, rng: np.random.Generator, st: _Street, box: Box,
               panel: np.ndarray) -> None:
    """Pole down to the sidewalk, then the panel: cue colour inside a cue-independent rim.

    The rim is >= 2 px wide so the 3x3 blur never carries the cue colour outside the panel.
    """
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    d = abs(cx - st.vp_x) / (st.road + rng.uniform(0.4, 0.9) * (st.walk - st.road))
    pw = max(2.0, r / 5)
    cv.paint((cx - pw / 2, cy, cx + pw / 2, min(cv.h, st.row(d))), POLE,
             _rect(_grey(rng, 0.25, 0.6, 0.08)))
    rim_w = max(2.0, 0.1 * 2 * r)
    shape = rng.integers(3)
    rim = _hsv(rng.random(), rng.uniform(0, 0.05), rng.uniform(0.85, 0.97))

    def draw(ys, xs):
        u, v = np.abs(xs - cx), np.abs(ys - cy)
        dist = (np.sqrt(u * u + v * v), np.maximum(u, v), (u + v) / np.sqrt(2))[shape]
        outer = r if shape < 2 else r / np.sqrt(2)
        return dist <= outer, np.where((dist <= outer - rim_w)[..., None], panel, rim)

    cv.paint(box, SIGN, draw)


def _draw_person(cv: _Canvas, rng: np.random.Generator, x: float, yb: float, ph: float) -> None:
    skin = _hsv(rng.uniform(0.03, 0.1), rng.uniform(0.25, 0.5), rng.uniform(0.3, 0.9))
    shirt = _hsv(rng.random(), rng.uniform(0, 0.45), rng.uniform(0.1, 0.8))
    legs = _hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.08, 0.5))
    hair = _grey(rng, 0.05, 0.35, 0.3)
    stride, y0 = rng.uniform(0, 0.25), yb - ph

    def draw(ys, xs):
        u, v = (xs - x) / ph, (ys - y0) / ph
        head = (u / 0.055) ** 2 + ((v - 0.075) / 0.07) ** 2 <= 1
        torso = (u / 0.12) ** 4 + ((v - 0.34) / 0.2) ** 4 <= 1
        arms = (np.abs(np.abs(u) - 0.135) <= 0.03) & (v >= 0.17) & (v <= 0.5)
        swing = 0.05 + stride * np.clip(v - 0.52, 0, None)
        leg = (v >= 0.5) & ((np.abs(u + swing) <= 0.04) | (np.abs(u - swing) <= 0.04))
        colour = np.select([(head & (v < 0.055))[..., None], head[..., None],
                            (torso | arms)[..., None]], [hair, skin, shirt], legs)
        return head | torso | arms | leg, colour

    cv.paint((x - 0.25 * ph, y0, x + 0.25 * ph, yb), PERSON, draw)


def _place_persons(rng: np.random.Generator, st: _Street,
                   sign: Box) -> list[tuple[float, float, float]]:
    """0-3 (x, feet row, height): mostly on sidewalks, some crossing; never over the panel."""
    persons = []
    for _ in range(int(rng.integers(0, 4))):
        d = rng.uniform(0.15, 0.95)
        t = rng.uniform(1.15, 1.95) if rng.random() < 0.85 else rng.uniform(0, 0.9)
        x, yb = st.ground_x(d, int(rng.choice((-1, 1))), t), st.row(d)
        ph = rng.uniform(1.55, 1.9) * st.ppm(d)
        if _overlap((int(x - ph / 4), int(yb - ph), int(x + ph / 4) + 1, int(yb) + 1), sign) == 0:
            persons.append((x, yb, ph))
    return persons


def _vehicle_colour(rng: np.random.Generator) -> np.ndarray:
    """One distribution for every vehicle, whatever its class; never sign-saturated."""
    if rng.random() < 0.55:
        return _grey(rng, 0.08, 0.92)
    return _hsv(rng.random(), rng.uniform(0.15, 0.4), rng.uniform(0.25, 0.8))


def _draw_vehicle(cv: _Canvas, rng: np.random.Generator, box: Box) -> None:
    """Rear view: cabin (trapezoid, 'top' = 1 gives a box van), body, bumper, plate, wheels."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    body = _vehicle_colour(rng)
    cab, top, win = rng.uniform(0.3, 0.55), rng.uniform(0.55, 1.0), rng.uniform(0.35, 0.8)
    glass = _hsv(rng.uniform(0.5, 0.7), rng.uniform(0, 0.25), rng.uniform(0.08, 0.4))
    tyre = _grey(rng, 0.04, 0.14, 0.0)
    plate = _grey(rng, 0.7, 0.95, 0.2)
    cv.shade((x0 - 0.1 * bw, y1 - 0.1 * bh, x1 + 0.1 * bw, y1 + 0.06 * bh),
             rng.uniform(0.45, 0.7), _ellipse((x0 + x1) / 2, y1, 0.6 * bw, 0.08 * bh))

    def draw(ys, xs):
        u, v = np.abs((xs - x0) / bw - 0.5), (ys - y0) / bh
        half = top / 2 + (0.48 - top / 2) * v / cab
        cabin = (v < cab) & (u <= half)
        window = cabin & (v > 0.12 * cab) & (v < (0.12 + 0.8 * win) * cab) & (u <= half - 0.06)
        wheels = (v >= 0.78) & (np.abs(u - 0.34) <= 0.1)
        shell = (v >= cab) & (v < 0.86)
        colour = np.select(
            [window[..., None], wheels[..., None], (shell & (v >= 0.8))[..., None],
             ((u <= 0.1) & (v >= 0.68) & (v < 0.76))[..., None]],
            [glass, tyre, body * 0.55, plate], body * (1.1 - 0.2 * v)[..., None])
        return cabin | shell | wheels, colour

    cv.paint(box, CAR, draw)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    small = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2), dtype=np.float32)
    return np.asarray(Image.fromarray(small, "F").resize((w, h), Image.BILINEAR))


def _blur(img: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur (3x3 support), edges replicated."""
    for axis in (0, 1):
        src, img = img, img * 0.5
        a, b = [slice(None)] * 2, [slice(None)] * 2
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        img[tuple(a)] += 0.25 * src[tuple(b)]
        img[tuple(b)] += 0.25 * src[tuple(a)]
        for edge in (0, -1):
            a[axis] = edge
            img[tuple(a)] += 0.25 * src[tuple(a)]
    return img


def _finish(cv: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Per-class texture, global lighting and colour jitter, optional blur, sensor noise."""
    h, w = cv.h, cv.w
    amp = _TEXTURE * rng.uniform(0.7, 1.3, _TEXTURE.shape).astype(np.float32)
    lum = amp[0][cv.lab] * rng.standard_normal((h, w), dtype=np.float32)
    lum += amp[1][cv.lab] * _smooth_noise(rng, h, w, max(2.0, h / 64))
    lum += amp[2][cv.lab] * _smooth_noise(rng, h, w, max(4.0, h / 12))
    img = cv.img + lum[..., None]
    gain = rng.uniform(0.75, 1.2) * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    ramp = 1 + rng.uniform(-0.25, 0.25) * (np.arange(w, dtype=np.float32) / w - 0.5)
    img *= ramp[None, :, None] * gain
    if rng.random() < 0.35:
        img = _blur(img)
    # Uniform per-channel noise (cheaper than normal); with the gaussian texture it is gaussian-ish.
    img += rng.uniform(3.5, 20) * (rng.random((h, w, 3), dtype=np.float32) - 0.5)
    return np.clip(img, 0, 255).astype(np.uint8)


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
    blue = _hsv(rng.uniform(0.58, 0.65), rng.uniform(0.75, 0.95), rng.uniform(0.55, 0.85))
    red = _hsv(rng.uniform(-0.01, 0.08), rng.uniform(0.8, 0.97), rng.uniform(0.75, 0.95))
    cue = cue or drawn_cue

    cv = _Canvas(height, width)
    _draw_sky(cv, rng, st)
    _draw_buildings(cv, rng, st)
    _draw_ground(cv, rng, st)
    for _ in range(int(rng.integers(1, 6))):
        _draw_tree(cv, rng, st)
    for _ in range(int(rng.integers(1, 4))):
        _draw_lamp(cv, rng, st)
    _draw_sign(cv, rng, st, sign, blue if cue == "car" else red)

    agents = [(b[3], _draw_vehicle, (b,)) for b in vehicles]
    agents += [(p[1], _draw_person, p) for p in _place_persons(rng, st, sign)]
    for _, fn, args in sorted(agents, key=lambda a: a[0]):  # far to near: occlusion
        fn(cv, rng, *args)

    image = _finish(cv, rng)
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


def colorize_label(label: np.ndarray) -> np.ndarray:
    """Label map -> Cityscapes-coloured RGB uint8 (ignore pixels black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(PALETTE)] = PALETTE
    return lut[label]

"""Painting the synthetic street scenes: a perspective street, a canvas that paints image and
label together, and one painter per kind of object. ccnet.experiments.scenes lays a scene out
and calls these in order; nothing here decides the cue."""
from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ccnet.experiments import scene_classes as classes

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), half-open pixel box
Coords = np.ndarray  # a column (rows) or row (columns) vector of pixel centres
Painter = Callable[[Coords, Coords], tuple]  # (ys, xs) -> (mask or True, colour)


ROAD_METRES = 13.0  # real-world road width that sets the pixels-per-metre scale




TEXTURE = np.array([classes.TEXTURE_BY_CLASS[c] for c in range(len(classes.CLASS_NAMES))], np.float32).T  # (3, classes)


@dataclass(frozen=True)
class Street:
    """Perspective ground plane: everything on it converges at (vp_x, horizon)."""

    h: int
    w: int
    horizon: float
    vp_x: float
    road: float  # road half-width at the bottom row (depth 1), px
    walk: float  # sidewalk outer edge at the bottom row, px from vp_x

    def row(self, d: float) -> float:
        return self.horizon + d * (self.h - self.horizon)

    def depth(self, y: float) -> float:
        return (y - self.horizon) / (self.h - self.horizon)

    def ppm(self, d: float) -> float:
        """Pixels per metre at depth d."""
        return d * 2 * self.road / ROAD_METRES

    def ground_x(self, d: float, side: int, t: float) -> float:
        """x at depth d; t: 0 road centre, 1 kerb, 2 outer edge of the sidewalk."""
        off = self.road * t if t <= 1 else self.road + (t - 1) * (self.walk - self.road)
        return self.vp_x + side * d * off


class Canvas:
    """Float RGB image plus label map, painted object by object inside bounding boxes."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.img = np.zeros((h, w, 3), np.float32)
        self.lab = np.full((h, w), classes.SKY, np.uint8)

    def window(self, box: tuple[float, float, float, float]) -> tuple[tuple[slice, slice], Coords, Coords] | None:
        """Clipped slices of a float box plus pixel-centre coordinates (column/row vectors)."""
        x0, y0 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
        x1, y1 = min(int(np.ceil(box[2])), self.w), min(int(np.ceil(box[3])), self.h)
        if x0 >= x1 or y0 >= y1:
            return None
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
        return (slice(y0, y1), slice(x0, x1)), ys, xs

    def paint(self, box: tuple[float, float, float, float], cls: int, draw: Painter) -> None:
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

    def shade(self, box: tuple[float, float, float, float], factor: float, mask_fn: Callable) -> None:
        """Darken without relabelling (cast shadows)."""
        win = self.window(box)
        if win is not None:
            sl, ys, xs = win
            self.img[sl][np.broadcast_to(mask_fn(ys, xs), self.img[sl].shape[:2])] *= factor


def hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255


def grey(rng: np.random.Generator, lo: float, hi: float, sat: float = 0.06) -> np.ndarray:
    return hsv(rng.random(), rng.uniform(0, sat), rng.uniform(lo, hi))


def ellipse(cx: float, cy: float, rx: float, ry: float) -> Callable[[Coords, Coords], np.ndarray]:
    return lambda ys, xs: ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1


def rect(colour: np.ndarray) -> Painter:
    return lambda ys, xs: (True, colour)


def draw_sky(cv: Canvas, rng: np.random.Generator, st: Street) -> None:
    if rng.random() < 0.7:
        hue, sat = rng.uniform(0.55, 0.62), rng.uniform(0.2, 0.45)
        top = hsv(hue, sat, rng.uniform(0.7, 0.9))
        low = hsv(hue, sat * 0.3, rng.uniform(0.85, 1.0))
    else:  # overcast
        top, low = grey(rng, 0.55, 0.8), grey(rng, 0.7, 0.9)
    t = np.clip(np.arange(cv.h, dtype=np.float32) / st.horizon, 0, 1)[:, None, None]
    cv.img[:] = top * (1 - t) + low * t


def building_colour(rng: np.random.Generator) -> np.ndarray:
    kind = rng.random()
    if kind < 0.5:
        return grey(rng, 0.3, 0.8, 0.08)
    if kind < 0.8:  # beige / brick, desaturated
        return hsv(rng.uniform(0.04, 0.12), rng.uniform(0.15, 0.4), rng.uniform(0.35, 0.8))
    return hsv(rng.random(), rng.uniform(0.08, 0.25), rng.uniform(0.35, 0.75))


def facade(x0: float, x1: float, top: float, colour: np.ndarray, glass: np.ndarray, sx: float, sy: float,
           fx: float, fy: float) -> Painter:
    """Wall with a grid of windows, leaving a wall border around the grid."""
    def draw(ys: Coords, xs: Coords) -> tuple:
        win = (((xs - x0 - 0.3 * sx) % sx < fx * sx) & (xs < x1 - 0.3 * sx)
               & ((ys - top - 0.4 * sy) % sy < fy * sy) & (ys > top + 0.4 * sy))
        return True, np.where(win[..., None], glass, colour)
    return draw


def draw_buildings(cv: Canvas, rng: np.random.Generator, st: Street) -> None:
    x = 0.0
    while x < cv.w:
        bw = rng.uniform(0.06, 0.2) * cv.w
        far = abs(x + bw / 2 - st.vp_x) / cv.w  # 0 near the vanishing point, ~0.6 at the sides
        top = st.horizon - cv.h * (rng.uniform(0.04, 0.15) + far * rng.uniform(0.4, 1.4))
        glass = hsv(rng.uniform(0.5, 0.7), rng.uniform(0, 0.25), rng.uniform(0.1, 0.55))
        sx = cv.h * rng.uniform(0.03, 0.05) * (0.6 + 2 * far)
        draw = facade(x, x + bw, top, building_colour(rng), glass, sx,
                       sx * rng.uniform(0.9, 1.5), rng.uniform(0.35, 0.7), rng.uniform(0.4, 0.7))
        cv.paint((x, top, x + bw, cv.h), classes.BUILDING, draw)
        x += bw


def draw_ground(cv: Canvas, rng: np.random.Generator, st: Street) -> None:
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
    colours = np.stack([grey(rng, 0.75, 0.95), grey(rng, 0.22, 0.55), grey(rng, 0.6, 0.85),
                        grey(rng, 0.35, 0.5, 0.1),
                        hsv(rng.random(), rng.uniform(0, 0.12), rng.uniform(0.45, 0.78))])
    index = np.select([marks, road, kerb, slabs], [0, 1, 2, 3], 4).astype(np.uint8)
    ground = road | walk
    cv.img[sl][ground] = colours[index[ground]]
    cv.lab[sl][ground] = np.where(road, classes.ROAD, classes.SIDEWALK)[ground]


def draw_tree(cv: Canvas, rng: np.random.Generator, st: Street) -> None:
    d = rng.uniform(0.12, 0.85)
    ppm, yb = st.ppm(d), st.row(d)
    x = st.ground_x(d, int(rng.choice((-1, 1))), rng.uniform(1.5, 2.0))
    trunk_h, r, tw = rng.uniform(2, 4) * ppm, rng.uniform(1.5, 3.2) * ppm, max(1.5, 0.35 * ppm)
    trunk = hsv(rng.uniform(0.05, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.15, 0.35))
    cv.paint((x - tw / 2, yb - trunk_h - r * 0.3, x + tw / 2, yb), classes.VEGETATION, rect(trunk))
    n = int(rng.integers(4, 8))
    cx = x + rng.uniform(-0.8, 0.8, n) * r
    cy = yb - trunk_h - r * 0.4 + rng.uniform(-1, 0.6, n) * r * 0.6
    rad = r * rng.uniform(0.45, 0.75, n)
    green = hsv(rng.uniform(0.2, 0.36), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.55))
    top = (cy - rad).min()
    span = (cy + rad).max() - top

    def crown(ys: Coords, xs: Coords) -> tuple:
        mask = np.zeros((ys.shape[0], xs.shape[1]), bool)
        for bx, by, br in zip(cx, cy, rad):
            mask |= (xs - bx) ** 2 + (ys - by) ** 2 <= br * br
        return mask, green * (1.15 - 0.35 * (ys - top) / span)[..., None]  # lit from above

    cv.paint(((cx - rad).min(), top, (cx + rad).max(), top + span), classes.VEGETATION, crown)


def draw_lamp(cv: Canvas, rng: np.random.Generator, st: Street) -> None:
    d = rng.uniform(0.15, 0.95)
    ppm, yb, side = st.ppm(d), st.row(d), int(rng.choice((-1, 1)))
    x = st.ground_x(d, side, rng.uniform(1.05, 1.25))
    top, pw = yb - rng.uniform(5, 8) * ppm, max(1.5, 0.2 * ppm)
    arm = x - side * rng.uniform(0.8, 1.5) * ppm
    colour = grey(rng, 0.25, 0.6, 0.08)
    cv.paint((x - pw / 2, top, x + pw / 2, yb), classes.POLE, rect(colour))
    cv.paint((min(x, arm), top, max(x, arm), top + pw), classes.POLE, rect(colour))
    cv.paint((arm - 1.5 * pw, top, arm + 1.5 * pw, top + 1.5 * pw), classes.POLE, rect(colour * 0.6))


def draw_sign(cv: Canvas, rng: np.random.Generator, st: Street, box: Box,
               panel: np.ndarray) -> None:
    """Pole down to the sidewalk, then the panel: cue colour inside a cue-independent rim.

    The rim is >= 2 px wide so the 3x3 blur never carries the cue colour outside the panel.
    """
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    d = abs(cx - st.vp_x) / (st.road + rng.uniform(0.4, 0.9) * (st.walk - st.road))
    pw = max(2.0, r / 5)
    cv.paint((cx - pw / 2, cy, cx + pw / 2, min(cv.h, st.row(d))), classes.POLE,
             rect(grey(rng, 0.25, 0.6, 0.08)))
    rim_w = max(2.0, 0.1 * 2 * r)
    shape = rng.integers(3)
    rim = hsv(rng.random(), rng.uniform(0, 0.05), rng.uniform(0.85, 0.97))

    def draw(ys: Coords, xs: Coords) -> tuple:
        u, v = np.abs(xs - cx), np.abs(ys - cy)
        dist = (np.sqrt(u * u + v * v), np.maximum(u, v), (u + v) / np.sqrt(2))[shape]
        outer = r if shape < 2 else r / np.sqrt(2)
        return dist <= outer, np.where((dist <= outer - rim_w)[..., None], panel, rim)

    cv.paint(box, classes.SIGN, draw)


def draw_person(cv: Canvas, rng: np.random.Generator, x: float, yb: float, ph: float) -> None:
    skin = hsv(rng.uniform(0.03, 0.1), rng.uniform(0.25, 0.5), rng.uniform(0.3, 0.9))
    shirt = hsv(rng.random(), rng.uniform(0, 0.45), rng.uniform(0.1, 0.8))
    legs = hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.08, 0.5))
    hair = grey(rng, 0.05, 0.35, 0.3)
    stride, y0 = rng.uniform(0, 0.25), yb - ph

    def draw(ys: Coords, xs: Coords) -> tuple:
        u, v = (xs - x) / ph, (ys - y0) / ph
        head = (u / 0.055) ** 2 + ((v - 0.075) / 0.07) ** 2 <= 1
        torso = (u / 0.12) ** 4 + ((v - 0.34) / 0.2) ** 4 <= 1
        arms = (np.abs(np.abs(u) - 0.135) <= 0.03) & (v >= 0.17) & (v <= 0.5)
        swing = 0.05 + stride * np.clip(v - 0.52, 0, None)
        leg = (v >= 0.5) & ((np.abs(u + swing) <= 0.04) | (np.abs(u - swing) <= 0.04))
        colour = np.select([(head & (v < 0.055))[..., None], head[..., None],
                            (torso | arms)[..., None]], [hair, skin, shirt], legs)
        return head | torso | arms | leg, colour

    cv.paint((x - 0.25 * ph, y0, x + 0.25 * ph, yb), classes.PERSON, draw)


def vehicle_colour(rng: np.random.Generator) -> np.ndarray:
    """One distribution for every vehicle, whatever its class; never sign-saturated."""
    if rng.random() < 0.55:
        return grey(rng, 0.08, 0.92)
    return hsv(rng.random(), rng.uniform(0.15, 0.4), rng.uniform(0.25, 0.8))


def draw_vehicle(cv: Canvas, rng: np.random.Generator, box: Box) -> None:
    """Rear view: cabin (trapezoid, 'top' = 1 gives a box van), body, bumper, plate, wheels."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    body = vehicle_colour(rng)
    cab, top, win = rng.uniform(0.3, 0.55), rng.uniform(0.55, 1.0), rng.uniform(0.35, 0.8)
    glass = hsv(rng.uniform(0.5, 0.7), rng.uniform(0, 0.25), rng.uniform(0.08, 0.4))
    tyre = grey(rng, 0.04, 0.14, 0.0)
    plate = grey(rng, 0.7, 0.95, 0.2)
    cv.shade((x0 - 0.1 * bw, y1 - 0.1 * bh, x1 + 0.1 * bw, y1 + 0.06 * bh),
             rng.uniform(0.45, 0.7), ellipse((x0 + x1) / 2, y1, 0.6 * bw, 0.08 * bh))

    def draw(ys: Coords, xs: Coords) -> tuple:
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

    cv.paint(box, classes.CAR, draw)


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    small = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2), dtype=np.float32)
    return np.asarray(Image.fromarray(small, "F").resize((w, h), Image.BILINEAR))


def blur(img: np.ndarray) -> np.ndarray:
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


def finish(cv: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Per-class texture, global lighting and colour jitter, optional blur, sensor noise."""
    h, w = cv.h, cv.w
    amp = TEXTURE * rng.uniform(0.7, 1.3, TEXTURE.shape).astype(np.float32)
    lum = amp[0][cv.lab] * rng.standard_normal((h, w), dtype=np.float32)
    lum += amp[1][cv.lab] * smooth_noise(rng, h, w, max(2.0, h / 64))
    lum += amp[2][cv.lab] * smooth_noise(rng, h, w, max(4.0, h / 12))
    img = cv.img + lum[..., None]
    gain = rng.uniform(0.75, 1.2) * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    ramp = 1 + rng.uniform(-0.25, 0.25) * (np.arange(w, dtype=np.float32) / w - 0.5)
    img *= ramp[None, :, None] * gain
    if rng.random() < 0.35:
        img = blur(img)
    # Uniform per-channel noise (cheaper than normal); with the gaussian texture it is gaussian-ish.
    img += rng.uniform(3.5, 20) * (rng.random((h, w, 3), dtype=np.float32) - 0.5)
    return np.clip(img, 0, 255).astype(np.uint8)

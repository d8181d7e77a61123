"""Pure image functions for showing results: colour masks, overlays, attention heat maps.

Everything here is numpy (plus PIL for drawing markers and labels), so the app's pictures are
testable without Gradio and need no matplotlib: colormaps are 256-entry tables interpolated
from a few anchor colours of the published maps.
"""
from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image, ImageDraw

from ccnet.inference.geometry import cell_bounds

# Anchor colours at evenly spaced positions in [0, 1] (viridis/magma/inferno sampled at ninths of
# matplotlib's tables, jet at its piecewise-linear break points).
_ANCHORS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "viridis": ((68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
                (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)),
    "magma": ((0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129), (181, 54, 122),
              (229, 80, 100), (251, 135, 97), (254, 194, 135), (252, 253, 191)),
    "inferno": ((0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
                (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164)),
    "jet": ((0, 0, 128), (0, 0, 255), (0, 128, 255), (0, 255, 255), (128, 255, 128),
            (255, 255, 0), (255, 128, 0), (255, 0, 0), (128, 0, 0)),
    "gray": ((0, 0, 0), (255, 255, 255)),
}
COLORMAPS: tuple[str, ...] = tuple(_ANCHORS)
SCALES: tuple[str, ...] = ("linear", "log")
UPSAMPLING: tuple[str, ...] = ("nearest", "bilinear")
LOG_DECADES = 4  # the log scale shows 4 decades below the clip value
MARKER = (255, 255, 255)
MARKER_EDGE = (0, 0, 0)


def colorize(mask: np.ndarray, palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """Class-index mask (H, W) -> RGB uint8 (H, W, 3) with the dataset's palette."""
    table = np.zeros((max(len(palette), int(mask.max(initial=0)) + 1), 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[mask]


def palette_image(mask: np.ndarray, palette: tuple[tuple[int, int, int], ...]) -> Image.Image:
    """Class indices as a palette ("P") image: each pixel's value is its class index, and every
    image viewer shows the class colours (a plain 8-bit PNG of indices 0..10 opens as black)."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    flat = [channel for rgb in palette[:256] for channel in rgb]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return image


def overlay(image: np.ndarray, mask: np.ndarray, palette: tuple[tuple[int, int, int], ...],
            alpha: float = 0.5) -> np.ndarray:
    """Blend the colour mask over the image; alpha 0 shows the image, 1 the mask."""
    return blend(image, colorize(mask, palette), alpha)


def blend(under: np.ndarray, over: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - alpha) * under + alpha * over, rounded to uint8."""
    mixed = np.add(under * np.float32(1.0 - alpha), over * np.float32(alpha), dtype=np.float32)
    return np.clip(np.rint(mixed, out=mixed), 0, 255, out=mixed).astype(np.uint8)


def legend(mask: np.ndarray, classes: tuple[str, ...], palette: tuple[tuple[int, int, int], ...]) -> list[dict]:
    """Every class with its colour and share of the pixels, most frequent first (absent ones last)."""
    counts = np.bincount(mask.ravel(), minlength=len(classes))[: len(classes)]
    order = sorted(range(len(classes)), key=lambda i: (-counts[i], i))
    return [
        {"index": i, "name": classes[i], "color": "#{:02x}{:02x}{:02x}".format(*palette[i]),
         "share": float(counts[i] / max(mask.size, 1))}
        for i in order
    ]


@cache
def colormap(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of a named colormap, linear between its anchor colours."""
    if name not in _ANCHORS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}")
    anchors = np.asarray(_ANCHORS[name], dtype=np.float64)
    where = np.linspace(0.0, 1.0, len(anchors))
    ramp = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(ramp, where, anchors[:, ch]) for ch in range(3)], axis=1)
    table = np.rint(table).astype(np.uint8)
    table.flags.writeable = False
    return table


def normalise(values: np.ndarray, clip: float = 1.0, scale: str = "linear") -> np.ndarray:
    """Weights -> [0, 1] for display: saturate above ``clip`` x max (the paper's figures clip too).

    ``log`` maps the LOG_DECADES decades below the clip value onto [0, 1]; zeros map to 0.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose linear or log")
    if not 0.0 < clip <= 1.0:
        raise ValueError(f"clip must be in (0, 1], got {clip}")
    values = np.asarray(values, dtype=np.float64)
    top = float(values.max(initial=0.0)) * clip
    if top <= 0.0:
        return np.zeros(values.shape, np.float32)
    if scale == "linear":
        return np.clip(values / top, 0.0, 1.0).astype(np.float32)
    with np.errstate(divide="ignore"):
        decades = np.log10(np.maximum(values, 0.0) / top)
    return np.clip(1.0 + decades / LOG_DECADES, 0.0, 1.0).astype(np.float32)


def upsample(grid_map: np.ndarray, size: tuple[int, int], mode: str = "nearest") -> np.ndarray:
    """(h, w) cell map -> (H, W) pixel map. Nearest uses the app's pixel->cell rule y*h//H, x*w//W
    (and also takes (h, w, 3) colours); bilinear interpolates between cell centres, clamped."""
    height, width = size
    rows, cols = grid_map.shape[:2]
    if mode == "nearest":
        return grid_map[np.arange(height) * rows // height][:, np.arange(width) * cols // width]
    if mode != "bilinear":
        raise ValueError(f"unknown upsampling {mode!r}; choose nearest or bilinear")
    grid_map = np.asarray(grid_map, dtype=np.float32)

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        return lo, np.minimum(lo + 1, n_in - 1), (pos - lo).astype(np.float32)

    y0, y1, fy = axis(height, rows)
    x0, x1, fx = axis(width, cols)
    top = grid_map[y0][:, x0] * (1 - fx) + grid_map[y0][:, x1] * fx
    bottom = grid_map[y1][:, x0] * (1 - fx) + grid_map[y1][:, x1] * fx
    return top * (1 - fy[:, None]) + bottom * fy[:, None]


def apply_colormap(unit: np.ndarray, name: str = "viridis") -> np.ndarray:
    """[0, 1] floats (H, W) -> RGB uint8 (H, W, 3)."""
    index = (np.clip(unit, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return np.take(colormap(name), index, axis=0)


def heatmap(
    grid_map: np.ndarray,
    image: np.ndarray,
    cmap: str = "viridis",
    clip: float = 1.0,
    scale: str = "linear",
    mode: str = "nearest",
    alpha: float = 0.7,
    grid_lines: bool = False,
) -> np.ndarray:
    """An (h, w) attention map drawn over a greyed copy of the image at the image's size."""
    size = image.shape[:2]
    unit = normalise(grid_map, clip, scale)
    if mode == "nearest":  # colour the few cells, then repeat the colours: same picture, faster
        colours = upsample(apply_colormap(unit, cmap), size, mode)
    else:
        colours = apply_colormap(upsample(unit, size, mode), cmap)
    grey = (image @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    picture = blend(grey, colours, alpha)
    return draw_grid(picture, grid_map.shape) if grid_lines else picture


def draw_grid(image: np.ndarray, grid: tuple[int, int], colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Thin lines on the feature cells' borders, blended at half strength."""
    out = image.copy()
    ys = cell_bounds(grid[0], image.shape[0])[1:-1]
    xs = cell_bounds(grid[1], image.shape[1])[1:-1]
    line = np.asarray(colour, np.float32)
    out[ys] = blend(out[ys], np.broadcast_to(line, out[ys].shape), 0.5)
    out[:, xs] = blend(out[:, xs], np.broadcast_to(line, out[:, xs].shape), 0.5)
    return out


def topk(grid_map: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """The k largest weights as (row, col, weight), largest first; ties go to the lower index."""
    flat = np.asarray(grid_map, dtype=np.float64).ravel()
    k = max(0, min(int(k), flat.size))
    order = np.argsort(-flat, kind="stable")[:k]
    cols = grid_map.shape[1]
    return [(int(i // cols), int(i % cols), float(flat[i])) for i in order]


def mark_pixel(image: np.ndarray, x: int, y: int) -> np.ndarray:
    """A ring with a cross hair around pixel (x, y), white on a black edge so it shows on any colour."""
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    radius = max(4, round(min(image.shape[:2]) / 40))
    for colour, width in ((MARKER_EDGE, 4), (MARKER, 2)):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=colour, width=width)
        draw.line((x - 2 * radius, y, x - radius, y), fill=colour, width=width - 1)
        draw.line((x + radius, y, x + 2 * radius, y), fill=colour, width=width - 1)
        draw.line((x, y - 2 * radius, x, y - radius), fill=colour, width=width - 1)
        draw.line((x, y + radius, x, y + 2 * radius), fill=colour, width=width - 1)
    return np.asarray(picture)


def side_by_side(pictures: list[np.ndarray], captions: list[str], width: int = 360, gap: int = 8) -> np.ndarray:
    """Pictures scaled to ``width`` (never up) in one row, each above its caption: every view of
    a click in one image that shrinks with the page, unlike a gallery of square tiles."""
    scale = min(1.0, width / max(p.shape[1] for p in pictures))
    tiles = [Image.fromarray(p).resize((max(1, round(p.shape[1] * scale)), max(1, round(p.shape[0] * scale))),
                                       Image.BILINEAR) for p in pictures]
    bar = 20
    size = (sum(t.width for t in tiles) + gap * (len(tiles) - 1), bar + max(t.height for t in tiles))
    canvas = Image.new("RGB", size, (255, 255, 255))
    draw, left = ImageDraw.Draw(canvas), 0
    for tile, caption in zip(tiles, captions):
        canvas.paste(tile, (left, 0))
        draw.text((left + 2, tile.height + 3), caption, fill=(0, 0, 0))
        left += tile.width + gap
    return np.asarray(canvas)


def mark_cells(image: np.ndarray, cells: list[tuple[int, int]], grid: tuple[int, int]) -> np.ndarray:
    """Outline feature cells and number them 1, 2, ... (the top-k locations)."""
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    ys, xs = cell_bounds(grid[0], image.shape[0]), cell_bounds(grid[1], image.shape[1])
    for rank, (row, col) in enumerate(cells, start=1):
        box = (int(xs[col]), int(ys[row]), int(xs[col + 1]) - 1, int(ys[row + 1]) - 1)
        draw.rectangle(box, outline=MARKER_EDGE, width=3)
        draw.rectangle(box, outline=MARKER, width=1)
        # the number inside its own box (centred), never over a neighbouring cell
        draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), str(rank), fill=MARKER, anchor="mm",
                  stroke_width=2, stroke_fill=MARKER_EDGE)
    return np.asarray(picture)

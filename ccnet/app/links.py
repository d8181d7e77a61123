"""Deep links: the page's URL holds the image (a demo's file name, or the key of an upload while the
server holds it), the model, the pinned pixel, the view and the display settings. Opening the URL
restores them. Every parameter is checked here: a bad one is dropped with a one-line note naming it
(the note is plain text; the page escapes it), and the rest of the link still applies."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ccnet.errors import shown
from ccnet.viz.pictures import COLORMAPS

VIEWS = ("segmentation", "step1", "step2", "step3", "composed")
KEY_PATTERN = r"[0-9a-f]{40}"


@dataclass(frozen=True)
class Link:
    """What a URL asks for; None where it says nothing (or said something unusable, see `problems`)."""

    example: str | None = None
    key: str | None = None
    model: str | None = None
    pixel: tuple[int, int] | None = None
    view: str | None = None
    display: dict = field(default_factory=dict)  # cmap, scale, clip for the viewer
    problems: tuple[str, ...] = ()  # one note per parameter that was dropped


def _coordinate(value: str | None) -> int | None:
    return int(value) if value is not None and re.fullmatch(r"\d{1,6}", value) else None


def _clip(value: str) -> float | None:
    try:
        clip = float(value)
    except ValueError:
        return None
    return clip if 0 < clip <= 1 and math.isfinite(clip) else None


def parse_link(params: Mapping[str, str], examples: Iterable[str], models: Iterable[str]) -> Link:
    """A Link from the URL's query parameters; `examples` are the demo file names, `models` the menu."""
    examples, models = set(examples), list(models)
    problems: list[str] = []

    def checked(name: str, ok: bool, why: str) -> str | None:
        value = params.get(name)
        if value is None or ok:
            return value
        problems.append(f"{name}={shown(value)} ignored: {why}")
        return None

    example = checked("example", params.get("example") in examples, "not one of the examples")
    key = checked("key", bool(re.fullmatch(KEY_PATTERN, params.get("key") or "")), "not an image key")
    model = checked("model", params.get("model") in models, "not a model of this app")
    view = checked("view", params.get("view") in VIEWS, f"one of {', '.join(VIEWS)}")
    pixel = None
    if params.get("x") is not None or params.get("y") is not None:
        x, y = _coordinate(params.get("x")), _coordinate(params.get("y"))
        if x is None or y is None:
            problems.append(f"x={shown(params.get('x'))}, y={shown(params.get('y'))} ignored: "
                            "a pixel needs both coordinates, whole numbers from 0")
        else:
            pixel = (x, y)
    display = {}
    if (cmap := checked("cmap", params.get("cmap") in COLORMAPS, "not a colormap of this app")) is not None:
        display["cmap"] = cmap
    if (scale := checked("scale", params.get("scale") in ("log", "linear"), "log or linear")) is not None:
        display["scale"] = scale
    clip_text = params.get("clip")
    if checked("clip", clip_text is not None and _clip(clip_text) is not None, "a number in (0, 1]") is not None:
        display["clip"] = _clip(clip_text)
    return Link(example, key, model, pixel, view, display, tuple(problems))

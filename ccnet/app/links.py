"""Deep links: the page's URL holds the image (a demo's file name, or the cache key of an upload
while it is cached), the model, the pinned pixel, the view and the display settings. Opening the
URL restores them. Every parameter is checked here; a bad one is a one-line error, never a path."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ccnet.errors import CCNetError
from ccnet.viz.pictures import COLORMAPS

VIEWS = ("segmentation", "step1", "step2", "composed")
MAX_ECHO = 40  # characters of a bad parameter repeated in its message


@dataclass(frozen=True)
class Link:
    """What a URL asks for; None where it says nothing."""

    example: str | None = None
    key: str | None = None
    model: str | None = None
    pixel: tuple[int, int] | None = None
    view: str = "composed"
    display: dict = field(default_factory=dict)  # cmap, scale, clip for the viewer


def _echo(value: str) -> str:
    return repr(value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + "…")


def _integer(name: str, value: str) -> int:
    if not re.fullmatch(r"\d{1,6}", value or ""):
        raise CCNetError(f"link: {name} must be a pixel coordinate (0 or more), got {_echo(value)}")
    return int(value)


def parse_link(params: Mapping[str, str], examples: Iterable[str], models: Iterable[str]) -> Link:
    """A Link from the URL's query parameters; `examples` are the demo file names, `models` the menu."""
    examples, models = set(examples), list(models)
    example, key, model = params.get("example"), params.get("key"), params.get("model")
    if example is not None and example not in examples:
        raise CCNetError(f"link: unknown example {_echo(example)}; one of: {', '.join(sorted(examples))}")
    if key is not None and not re.fullmatch(r"[0-9a-f]{40}", key):
        raise CCNetError(f"link: {_echo(key)} is not an image key")
    if model is not None and model not in models:
        raise CCNetError(f"link: unknown model {_echo(model)}")
    pixel = None
    if params.get("x") is not None or params.get("y") is not None:
        pixel = (_integer("x", params.get("x", "")), _integer("y", params.get("y", "")))
    view = params.get("view", "composed")
    if view not in VIEWS:
        raise CCNetError(f"link: view must be one of {', '.join(VIEWS)}, got {_echo(view)}")
    display = {}
    if params.get("cmap") is not None:
        if params["cmap"] not in COLORMAPS:
            raise CCNetError(f"link: unknown colormap {_echo(params['cmap'])}")
        display["cmap"] = params["cmap"]
    if params.get("scale") is not None:
        if params["scale"] not in ("log", "linear"):
            raise CCNetError(f"link: scale must be log or linear, got {_echo(params['scale'])}")
        display["scale"] = params["scale"]
    if params.get("clip") is not None:
        try:
            clip = float(params["clip"])
        except ValueError:
            clip = math.nan
        if not 0 < clip <= 1:
            raise CCNetError(f"link: clip must be in (0, 1], got {_echo(params['clip'])}")
        display["clip"] = clip
    return Link(example, key, model, pixel, view, display)

"""Deep links of the video mode: /video?clip=<demo clip>&t=2&x=..&y=.. (or key=<an upload's key>),
with the model, the highlighted row and the colours. Every parameter is checked here as
ccnet.app.links checks an image's: a bad one is dropped with a one-line note naming it (plain
text; the page escapes it) and the rest of the link still applies. Whether t, x and y lie inside
the clip is known once it is decoded (ClipLink.place)."""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from ccnet import limits
from ccnet.app.links import KEY_PATTERN, LinkParams
from ccnet.errors import shown
from ccnet.nn.variants import VIDEO_HEADS

VIEWS = ("segmentation", *(f"step{i}" for i in range(1, max(head.steps for head in VIDEO_HEADS) + 1)), "composed",
         "reach")


@dataclass(frozen=True)
class ClipLink:
    """What a video URL asks for; None where it says nothing (or something unusable: `problems`)."""

    clip: str | None = None
    key: str | None = None
    model: str | None = None
    t: int | None = None
    pixel: tuple[int, int] | None = None
    view: str | None = None
    display: dict = field(default_factory=dict)  # cmap, scale
    problems: tuple[str, ...] = ()

    def place(self, frames: int, size: tuple[int, int]) -> ClipLink:
        """The link on a clip of `frames` frames of `size` (H, W): a frame or a pixel outside it is
        dropped with its note; a pixel without a frame is on frame 0."""
        problems, t, pixel = list(self.problems), self.t, self.pixel
        if t is not None and t >= frames:
            problems.append(f"t={t} ignored: the clip has {frames} frames (0 to {frames - 1})")
            t = None
        if pixel is not None and not (pixel[0] < size[1] and pixel[1] < size[0]):
            problems.append(f"x={pixel[0]}, y={pixel[1]} ignored: outside the {size[1]}x{size[0]} frames")
            pixel = None
        return replace(self, t=t if pixel is None else (t or 0), pixel=pixel, problems=tuple(problems))


def _whole(value: str | None, digits: int) -> int | None:
    return int(value) if value is not None and re.fullmatch(rf"[0-9]{{1,{digits}}}", value) else None


def parse_clip_link(params: Mapping[str, str], clips: Iterable[str], models: Iterable[str]) -> ClipLink:
    """A ClipLink from the URL's query parameters; `clips` are the demo clips' file names, `models`
    the video heads."""
    clips, models = set(clips), list(models)
    link = LinkParams(params)
    clip = link.checked("clip", params.get("clip") in clips, "not one of the demo clips")
    key = link.checked("key", bool(re.fullmatch(KEY_PATTERN, params.get("key") or "")), "not a clip key")
    model = link.checked("model", params.get("model") in models, f"one of {', '.join(models)}")
    view = link.checked("view", params.get("view") in VIEWS, f"one of {', '.join(VIEWS)}")
    t = _whole(params.get("t"), 2)
    if params.get("t") is not None and (t is None or t >= limits.MAX_FRAMES):
        link.problems.append(f"t={shown(params.get('t'))} ignored: a frame number from 0 to {limits.MAX_FRAMES - 1}")
        t = None
    pixel = link.pixel(lambda value: _whole(value, 6))
    display = link.display()
    return ClipLink(clip, key, model, t, pixel, view, display, tuple(link.problems))

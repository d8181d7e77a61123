"""Deep links: the page's URL holds the image (a demo's file name, or the key of an upload while the
server holds it), the model, the pinned pixel, the view and the display settings. Opening the URL
restores them. Every parameter is checked here: a bad one is dropped with a one-line note naming it
(the note is plain text; the page escapes it), and the rest of the link still applies. An upload's
key is a random token issued to its sender (LinkKeys), never a hash of its content."""
from __future__ import annotations

import math
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from ccnet import limits
from ccnet.errors import shown
from ccnet.nn.variants import IMAGE_HEADS
from ccnet.viz.pictures import COLORMAPS

# what a link may show: a step of the most steps a head in the table runs, or a view of the whole
VIEWS = ("segmentation", *(f"step{i}" for i in range(1, max(head.steps for head in IMAGE_HEADS) + 1)),
         "composed", "reach", "readers")
KEY_BYTES = 16  # an upload's link key: 128 random bits
KEY_PATTERN = r"[A-Za-z0-9_-]{22}"  # secrets.token_urlsafe(KEY_BYTES)
EXPIRED = (f"the image of this link is not on the server (uploads expire {limits.duration(limits.UPLOAD_MAX_AGE_S)} "
           "after their last use); upload it again")


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

    def place(self, size: tuple[int, int]) -> Link:
        """The link on an image of `size` (H, W): a pixel outside it is dropped with its note (known
        only once the image is read), the rest of the link kept."""
        if self.pixel is None or (self.pixel[0] < size[1] and self.pixel[1] < size[0]):
            return self
        note = f"x={self.pixel[0]}, y={self.pixel[1]} ignored: outside the {size[1]}x{size[0]} image"
        return replace(self, pixel=None, problems=(*self.problems, note))


def _coordinate(value: str | None) -> int | None:
    return int(value) if value is not None and re.fullmatch(r"[0-9]{1,6}", value) else None


def _clip(value: str) -> float | None:
    try:
        clip = float(value)
    except ValueError:
        return None
    return clip if 0 < clip <= 1 and math.isfinite(clip) else None


class LinkParams:
    """A URL's query parameters, each kept or dropped with a one-line note naming it (as text); the
    image and the video pages read their links through it."""

    def __init__(self, params: Mapping[str, str]) -> None:
        self.params, self.problems = params, []

    def checked(self, name: str, ok: bool, why: str) -> str | None:
        value = self.params.get(name)
        if value is None or ok:
            return value
        self.problems.append(f"{name}={shown(value)} ignored: {why}")
        return None

    def pixel(self, coordinate: Callable[[str | None], int | None]) -> tuple[int, int] | None:
        """x and y together, each read by ``coordinate``, or None (with a note when given but unusable)."""
        x_text, y_text = self.params.get("x"), self.params.get("y")
        if x_text is None and y_text is None:
            return None
        x, y = coordinate(x_text), coordinate(y_text)
        if x is None or y is None:
            self.problems.append(f"x={shown(x_text)}, y={shown(y_text)} ignored: "
                                 "a pixel needs both coordinates, whole numbers from 0")
            return None
        return x, y

    def display(self) -> dict:
        """The colormap and scale the link names, where they are the app's."""
        display = {}
        if (cmap := self.checked("cmap", self.params.get("cmap") in COLORMAPS, "not a colormap of this app")):
            display["cmap"] = cmap
        if (scale := self.checked("scale", self.params.get("scale") in ("log", "linear"), "log or linear")):
            display["scale"] = scale
        return display


def parse_link(params: Mapping[str, str], examples: Iterable[str], models: Iterable[str]) -> Link:
    """A Link from the URL's query parameters; `examples` are the demo file names, `models` the menu."""
    examples, models = set(examples), list(models)
    link = LinkParams(params)
    example = link.checked("example", params.get("example") in examples, "not one of the examples")
    key = link.checked("key", bool(re.fullmatch(KEY_PATTERN, params.get("key") or "")), "not an image key")
    model = link.checked("model", params.get("model") in models, "not a model of this app")
    view = link.checked("view", params.get("view") in VIEWS, f"one of {', '.join(VIEWS)}")
    pixel, display = link.pixel(_coordinate), link.display()
    clip_text = params.get("clip")
    if link.checked("clip", clip_text is not None and _clip(clip_text) is not None, "a number in (0, 1]"):
        display["clip"] = _clip(clip_text)
    return Link(example, key, model, pixel, view, display, tuple(link.problems))


class LinkKeys:
    """Unguessable keys that name an upload in a link: issued to the page that sent the upload (and
    shared by its links), never derived from the image's content or from where it is kept, so
    holding the same bytes is not enough to open someone's link: Gradio keeps two visitors' uploads
    of the same bytes under the same name at one path, and each still gets its own key. Asking for
    a key says nothing about what was uploaded. A key lives as long as its upload (UPLOAD_MAX_AGE_S
    since its last use, ccnet.app.server.uploads touches it on each use), at most `max_keys` of them,
    the least recently used going first; an unknown key and an expired one are answered alike. One
    client holds at most `per_client` keys: a client that asks for keys again and again turns over
    its own, not other visitors'."""

    def __init__(self, max_keys: int = limits.LINKS, max_age_s: float = limits.UPLOAD_MAX_AGE_S,
                 per_client: int = limits.LINKS_PER_CLIENT) -> None:
        self.max_keys, self.max_age_s, self.per_client = max_keys, max_age_s, per_client
        self._uploads: OrderedDict[str, tuple[str, str, str]] = OrderedDict()  # key -> (content key, path, client)
        self._lock = threading.Lock()

    def issue(self, content_key: str, path: str, held: str | None = None, client: str | None = None) -> str | None:
        """The page's key for this upload: `held`, the key the page already has, while it names this
        upload; else a new one for `client`, or None when no client is given (an event that does not
        keep the key must not make one)."""
        with self._lock:
            if held is not None and self._uploads.get(held, ("", "", ""))[1] == path:
                self._uploads.move_to_end(held)
                return held
            if client is None:
                return None
            own = [old for old, (*_, owner) in self._uploads.items() if owner == client]
            for old in own[:max(0, len(own) - self.per_client + 1)]:  # its least recently used first
                del self._uploads[old]
            key = secrets.token_urlsafe(KEY_BYTES)
            self._uploads[key] = (content_key, path, client)
            while len(self._uploads) > self.max_keys:
                self._uploads.popitem(last=False)
            return key

    def resolve(self, key: str) -> tuple[str, str] | None:
        """(content key, upload path) of a live key, else None (never issued, evicted, or its upload
        gone or unused for too long)."""
        with self._lock:
            entry = self._uploads.get(key)
        if entry is None:
            return None
        content_key, path, _ = entry
        try:
            alive = time.time() - os.stat(path).st_mtime <= self.max_age_s
        except OSError:
            alive = False
        with self._lock:
            if not alive:
                self._uploads.pop(key, None)
                return None
            self._uploads.move_to_end(key)
        return content_key, path

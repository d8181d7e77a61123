"""Which server files a request may name: only Gradio's uploads and the bundled examples.

Why: the app's events take their image unprocessed (so a broken file reaches ccnet.inference.images and
gets its one-line message), which means the payload's ``path`` comes straight from the client.
Without this check, a crafted request could make the server read any file it can see.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from ccnet.errors import ImageError
from ccnet.project import DEMOS


def checked_upload(payload: dict | str | None, roots: Iterable[Path]) -> str | None:
    """The payload's file path if it lies inside one of ``roots`` (links resolved), None for no
    image; anything else is refused with one line that does not echo the server's layout."""
    path = payload.get("path") if isinstance(payload, dict) else payload
    if path is None or path == "":
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise ImageError("the image must be sent as an uploaded file")
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(Path(root).resolve()) for root in roots):
        raise ImageError(f"{Path(path).name} was not uploaded to this app; upload the image instead of naming a path")
    if not resolved.is_relative_to(DEMOS):
        with contextlib.suppress(OSError):  # gone: the reader says so in one line
            os.utime(resolved)  # in use: its life (UPLOAD_MAX_AGE_S since the last use) starts again
    return str(resolved)


def foreign_file(data: Any, roots: Iterable[Path]) -> str | None:
    """The one-line refusal for the first file object (Gradio's FileData: a dict with ``path`` and
    ``meta._type == "gradio.FileData"``) in a request's data that names a path outside ``roots``
    (or a URL), else None."""
    if isinstance(data, dict):
        meta = data.get("meta")
        if isinstance(meta, dict) and meta.get("_type") == "gradio.FileData":
            try:
                checked_upload(data, roots)
            except ImageError as err:
                return str(err)
            return None
        data = list(data.values())
    if isinstance(data, (list, tuple)):
        return next((found for item in data if (found := foreign_file(item, roots))), None)
    return None


def refuse_foreign_files(queue: Any, roots: Callable[[], Iterable[Path]]) -> None:
    """Wrap a Gradio Queue's ``push``: a request whose files name server paths outside ``roots()``
    is refused (HTTP 400, one line) before it is queued. Gradio would refuse it later too, while
    preparing the inputs, but it then logs a traceback per request and tells the client only
    "error: null"."""
    push: Callable[..., Awaitable[tuple]] = queue.push

    async def checked_push(body: Any, request: Any, username: str | None) -> tuple:
        refusal = foreign_file(getattr(body, "data", None), roots())
        if refusal:
            return False, refusal, "error"
        return await push(body, request, username)

    queue.push = checked_push

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

from ccnet.errors import ImageError, shown
from ccnet.project import DEMOS


def checked_upload(payload: dict | str | None, roots: Iterable[Path]) -> str | None:
    """The payload's file path if it lies inside one of ``roots`` (links resolved), None for no
    image; anything else is refused with one line that does not echo the server's layout."""
    path = payload.get("path") if isinstance(payload, dict) else payload
    if path is None or path == "":
        return None
    if not isinstance(path, (str, os.PathLike)) or str(path).lower().startswith(("http:", "https:", "data:")):
        raise ImageError("the image must be sent as an uploaded file (or, to the MCP tools, as base64 data); "
                         "this server fetches no URL")
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


def malformed(body: Any, functions: dict) -> str | None:
    """The one-line refusal of a call the app cannot run: an unknown function (Gradio answers 500),
    or data that is not one value per input (Gradio answers {"error": null}); None if well formed."""
    function = functions.get(getattr(body, "fn_index", None))
    if function is None:
        return f"unknown function {shown(getattr(body, 'fn_index', None))}"
    data = getattr(body, "data", None)
    if not isinstance(data, list) or len(data) != len(function.inputs):
        count = len(data) if isinstance(data, list) else shown(data)
        return f"this function takes {len(function.inputs)} inputs, got {count}"
    return None


def refuse_bad_requests(queue: Any, roots: Callable[[], Iterable[Path]]) -> None:
    """Wrap a Gradio Queue's ``push``: a malformed call, or one whose files name server paths outside
    ``roots()`` (or URLs), is refused (HTTP 400, one line) before it is queued. Gradio would fail on
    it later, while preparing the inputs, logging a traceback per request and telling the client
    "error: null" or a 500."""
    push: Callable[..., Awaitable[tuple]] = queue.push

    async def checked_push(body: Any, request: Any, username: str | None) -> tuple:
        refusal = foreign_file(getattr(body, "data", None), roots()) or malformed(body, queue.blocks.fns)
        if refusal:
            return False, refusal, "error"
        return await push(body, request, username)

    queue.push = checked_push

"""Which server files a request may name: only Gradio's uploads and the bundled examples.

Why: the app's events take their image unprocessed (so a broken file reaches ccnet.inference.images and
gets its one-line message), which means the payload's ``path`` comes straight from the client.
Without this check, a crafted request could make the server read any file it can see.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ccnet.errors import ImageError


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
    return str(resolved)

"""Gradio routes a visitor gets only in part: upload progress and fetching URLs.

Why: Gradio's upload-progress table keeps an entry (an asyncio Event under the id) for every
`upload_id` a request names, whether an upload used it or not, and never drops it; 12,000 requests
naming 8 KB ids held 140 MiB. And its file route fetches any public URL it is given (`file=https://…`)
and streams it back: this server fetches no URL. So, before Gradio sees the request:
- an upload's `upload_id` is taken off its query (the upload is stored as before; the page's progress
  bar has no updates for it), and `/upload_progress` answers 404 at once;
- a file route naming a URL answers 403.
Plain ASGI, given at launch inside BodyLimit.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from ccnet.app.server.body_limit import UPLOAD_PATHS, ASGIApp, Receive, Send, answer

PROGRESS_PATHS = ("/gradio_api/upload_progress", "/upload_progress")
FILE_PREFIXES = ("/gradio_api/file=", "/file=")
NO_PROGRESS = b"Upload progress is not offered by this server.\n"
NO_URL = b"This server fetches no URL.\n"


def names_a_url(path: str) -> bool:
    """A file route whose file is a URL (its scheme spelled in any case, escaped or not)."""
    for prefix in FILE_PREFIXES:
        if path.startswith(prefix):
            named = unquote(path[len(prefix):]).strip().lower()
            return named.startswith(("http:", "https:", "//", "ftp:", "file:"))
    return False


def without_upload_id(query: bytes) -> bytes:
    """The query string with every `upload_id` taken off, the rest as it came."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return urlencode([(name, value) for name, value in pairs if name != "upload_id"]).encode("latin-1")


class RouteGuard:
    """ASGI middleware: see the module's docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            if path in PROGRESS_PATHS:
                await answer(send, 404, NO_PROGRESS)
                return
            if names_a_url(path):
                await answer(send, 403, NO_URL)
                return
            if path in UPLOAD_PATHS and scope.get("query_string"):  # upload%5Fid is upload_id too
                scope = {**scope, "query_string": without_upload_id(scope["query_string"])}
        await self.app(scope, receive, send)

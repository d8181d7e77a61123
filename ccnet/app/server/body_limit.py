"""A size limit on request bodies that are not uploads: the API's JSON is a few hundred bytes, so a
300 MB body is refused instead of being parsed into memory and kept.

Why: uploads (multipart) are streamed to disk and bounded by the upload space's own door
(upload_limit); every other body (JSON for /gradio_api/call, queue joins, the MCP server) is read
whole into memory by the web framework before any handler runs. Plain ASGI, given at launch.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from ccnet import limits
from ccnet.app.server.upload_limit import ASGIApp, Message, Receive, Send

TOO_LARGE = b"Request body too large (limit 1 MiB); upload images as files.\n"


class BodyLimit:
    """ASGI middleware: a non-multipart request whose declared Content-Length passes ``limit`` is
    answered 413 at once; one that streams past it (no or a false Content-Length) is cut off with
    the same answer, and the app sees a disconnect instead of the rest of the body."""

    def __init__(self, app: ASGIApp, limit: int = limits.BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_multipart(scope):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            await _too_large(send)
            return
        seen, cut, started = 0, False, False

        async def counted_receive() -> Message:
            nonlocal seen, cut, started
            message = await receive()
            if message["type"] == "http.request" and not cut:
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    cut = True
                    if not started:
                        started = True
                        await _too_large(send)
            return {"type": "http.disconnect"} if cut else message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not cut:
                started = True
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not cut:  # a cut body makes the app complain about the disconnect: expected
                raise


def _is_multipart(scope: MutableMapping[str, Any]) -> bool:
    content_type = dict(scope.get("headers") or ()).get(b"content-type", b"")
    return content_type.lower().startswith(b"multipart/")


async def _too_large(send: Send) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(TOO_LARGE)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": TOO_LARGE})

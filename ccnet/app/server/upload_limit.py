"""The upload space's door: an upload that would take the app's folder past its byte budget is refused
before it reaches the disk.

Why: Gradio caps each file (20 MB here) but not their number or total, so a flood of uploads fills
the disk in seconds. This is plain ASGI (no Gradio): it wraps the app Gradio serves, given at launch.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]
FULL = b"The server's upload space is full; please try again in a minute.\n"


class Usage(Protocol):
    """The folder's bytes now, and a way to count bytes that just arrived (disk.FolderUsage)."""

    def __call__(self) -> int: ...

    def add(self, nbytes: int) -> None: ...


class UploadLimit:
    """ASGI middleware for every multipart POST (the only requests Gradio writes to disk as they
    arrive, e.g. /gradio_api/upload). Refused with 507 and one line when the folder's bytes, plus the
    bytes of the uploads in flight, plus this request's Content-Length pass ``budget``; a request
    without Content-Length is cut off with the same answer once its bytes pass it. A request's bytes
    are added to ``usage`` when it ends, so the budget holds between the folder's rescans (bytes in
    flight may be counted twice for a moment: the error is on the side of refusing). ``failed`` is
    called when a multipart request ends without success, whose body Gradio may have left on disk."""

    def __init__(self, app: ASGIApp, usage: Usage, budget: int, failed: Callable[[], None] | None = None) -> None:
        self.app, self.usage, self.budget, self.failed = app, usage, budget, failed
        self.in_flight = 0  # bytes reserved by requests being received (one event loop: no lock)

    async def reserve(self, nbytes: int) -> bool:
        """Take ``nbytes`` of the budget for a request in flight, if they fit. The folder's bytes are
        read in a thread: a rescan walks the folder (tens of ms), too long to hold the event loop."""
        used = await asyncio.to_thread(self.usage)
        if used + self.in_flight + nbytes > self.budget:
            return False
        self.in_flight += nbytes
        return True

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if not _is_multipart_post(scope):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if not await self.reserve(declared):
            await _refuse(send)
            return
        request = _Metered(self, receive, send, reserved=declared)
        try:
            await self.app(scope, request.receive, request.send)
        except Exception:
            if not (request.cut or request.dropped):  # then the app's complaint about the lost body is expected
                raise
        finally:
            self.in_flight -= request.reserved
            self.usage.add(request.seen)
            if self.failed is not None and (request.cut or request.dropped or not 200 <= request.status < 300):
                self.failed()  # its body may lie on disk as a loose file: have it swept soon


class _Metered:
    """One request's body, counted as it arrives; past the budget the client gets the refusal and
    the app sees a disconnect (Gradio then drops the request; its partial file is the sweeper's).
    ``dropped``: the client went away mid-body (no traceback is logged for that)."""

    def __init__(self, limit: UploadLimit, receive: Receive, send: Send, reserved: int) -> None:
        self.limit, self._receive, self._send = limit, receive, send
        self.reserved, self.seen, self.status = reserved, 0, 0
        self.started = self.cut = self.dropped = False

    async def receive(self) -> Message:
        message = await self._receive()
        self.dropped = self.dropped or message["type"] == "http.disconnect"
        if message["type"] != "http.request" or self.cut:
            return {"type": "http.disconnect"} if self.cut else message
        self.seen += len(message.get("body", b""))
        if self.seen > self.reserved:
            if not await self.limit.reserve(self.seen - self.reserved):
                self.cut = True
                if not self.started:
                    self.started = True
                    await _refuse(self._send)
                return {"type": "http.disconnect"}
            self.reserved = self.seen
        return message

    async def send(self, message: Message) -> None:
        if self.cut:
            return
        self.started = True
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)


def _is_multipart_post(scope: MutableMapping[str, Any]) -> bool:
    if scope["type"] != "http" or scope.get("method") != "POST":
        return False
    content_type = dict(scope.get("headers") or ()).get(b"content-type", b"")
    return content_type.lower().startswith(b"multipart/")


def _content_length(scope: MutableMapping[str, Any]) -> int:
    """The declared body size (0 when absent or unreadable: the streamed bytes are counted anyway)."""
    value = dict(scope.get("headers") or ()).get(b"content-length", b"")
    return int(value) if value.isdigit() else 0


async def _refuse(send: Send) -> None:
    """507 Insufficient Storage, one line; the connection is closed (the body is not read)."""
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(FULL)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 507, "headers": headers})
    await send({"type": "http.response.body", "body": FULL})

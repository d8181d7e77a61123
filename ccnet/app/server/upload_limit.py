"""The upload space's door: an upload that would take the app's folder past its byte budget, or its
client past its share of it, is refused before its bytes reach the disk.

Why: Gradio caps each file (ccnet.limits.FILE_BYTES) but not their number, their total, who sends
them or how slowly, so a flood fills the disk in seconds and a few slow uploads can hold the door.
Here, for every multipart POST to the upload route: a client may send OPEN_UPLOADS_PER_CLIENT at
once (429 past it); a request declaring more than fits is refused at once (507); the bytes are
charged as they arrive, not as declared, so an upload that trickles holds only what it sent (and
body_limit drops it once it falls behind the minimum pace); a request of more than UPLOAD_PARTS
files is cut (413), and one with a part that is not a file (a form field, which Gradio would keep in
memory whatever its size) is refused once that part's headers are read (400); and the paths
Gradio answers are recorded with their client (UploadRegistry), so that a client's uploads stay
within 1/UPLOAD_SHARE of the budget and the sweeper knows which files are visitors' uploads.
Plain ASGI, given at launch inside BodyLimit.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ccnet import limits
from ccnet.app.server.body_limit import ASGIApp, Message, Receive, Send, answer, declared_length, header, is_upload
from ccnet.app.server.clients import bridge_upload, client_of_scope, proxy_hops
from ccnet.app.server.registry import BRIDGE, UploadRegistry

FULL = b"The server's upload space is full; please try again in a minute.\n"
SHARE_FULL = (f"Your uploads use your share of the server's upload space; they expire "
              f"{limits.duration(limits.UPLOAD_MAX_AGE_S)} after their last use.\n").encode()
TOO_MANY_OPEN = b"You are already sending uploads; wait until they finish.\n"
TOO_MANY_PARTS = b"Too many files in one upload; send one image at a time.\n"
NOT_A_FILE = b"An upload holds files only; send the image as a file.\n"
MALFORMED = b"The upload is not a well-formed multipart body.\n"
ANSWER_BYTES = 1 << 16  # the upload route's answer (its files' paths) is read up to this size


class Usage(Protocol):
    """The folder's bytes now, and a way to count bytes that just arrived (disk.FolderUsage)."""

    def __call__(self) -> int: ...

    def add(self, nbytes: int) -> None: ...


class UploadLimit:
    """ASGI middleware for the upload route (see the module's docstring). ``failed`` is called when
    an upload ends without success, whose body Gradio may have left on disk as a loose file."""

    def __init__(self, app: ASGIApp, usage: Usage, budget: int, failed: Callable[[], None] | None = None,
                 registry: UploadRegistry | None = None, hops: int | None = None) -> None:
        self.app, self.usage, self.budget, self.failed = app, usage, budget, failed
        self.registry = registry or UploadRegistry()
        self.hops = proxy_hops() if hops is None else hops
        self.in_flight = 0  # bytes of uploads being received (one event loop: no lock)
        self.open: dict[str, int] = {}  # uploads being received, per client
        self.client_in_flight: dict[str, int] = {}  # their bytes so far, per client

    async def take(self, nbytes: int, client: str, keep: bool = True) -> bytes | None:
        """Charge ``nbytes`` more to the bytes in flight if they fit the budget and the client's
        share (None), else the refusal. The bytes are charged first and given back if they do not
        fit: uploads checking at the same time then see each other (the folder's bytes are read in a
        thread, a rescan walks the folder: tens of ms). ``keep=False`` only checks."""
        self.in_flight += nbytes
        self.client_in_flight[client] = self.client_in_flight.get(client, 0) + nbytes
        used = await asyncio.to_thread(self.usage)
        refusal = None
        if used + self.in_flight > self.budget:
            refusal = FULL
        else:
            mine = self.client_in_flight[client] + await asyncio.to_thread(self.registry.client_bytes, client)
            refusal = SHARE_FULL if mine > self.budget // limits.UPLOAD_SHARE else None
        if refusal or not keep:
            self.in_flight -= nbytes
            self.client_in_flight[client] -= nbytes
        return refusal

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if not is_upload(scope):
            await self.app(scope, receive, send)
            return
        client = BRIDGE if bridge_upload(scope) else client_of_scope(scope, self.hops)
        if self.open.get(client, 0) >= limits.OPEN_UPLOADS_PER_CLIENT:
            await answer(send, 429, TOO_MANY_OPEN)
            return
        self.open[client] = self.open.get(client, 0) + 1
        refusal = await self.take(declared_length(scope) or 0, client, keep=False)
        if refusal:
            self._close(client)
            await answer(send, 507, refusal)
            return
        if [name for name, _ in scope.get("headers") or () if name == b"content-type"] != [b"content-type"]:
            self._close(client)
            await answer(send, 400, MALFORMED)  # two: the framework reads the first, a check might read the last
            return
        request = _Metered(self, client, _boundary(scope), receive, send)
        try:
            await self.app(scope, request.receive, request.send)
        except Exception:
            if not (request.cut or request.dropped):  # then the app's complaint about the lost body is expected
                raise
        finally:
            self.in_flight -= request.seen
            self.client_in_flight[client] -= request.seen
            self._close(client)
            self.usage.add(request.seen)
            if request.status == 200:
                self.registry.record(request.paths(), client)
            elif self.failed is not None:
                self.failed()  # its body may lie on disk as a loose file: have it swept soon


    def _close(self, client: str) -> None:
        self.open[client] -= 1
        if not self.open[client]:
            del self.open[client], self.client_in_flight[client]


class _Metered:
    """One upload's body, charged as it arrives and its parts counted; past the budget, the share
    or the parts, the client gets the refusal and the app a disconnect (Gradio then drops the
    request; its partial file is the sweeper's). ``dropped``: the client went away mid-body."""

    def __init__(self, limit: UploadLimit, client: str, boundary: bytes, receive: Receive, send: Send) -> None:
        self.limit, self.client, self._receive, self._send = limit, client, receive, send
        self.parts = _Parts(boundary)
        self.seen, self.status, self.answer = 0, 0, b""
        self.started = self.cut = self.dropped = False

    async def receive(self) -> Message:
        message = await self._receive()
        self.dropped = self.dropped or message["type"] == "http.disconnect"
        if message["type"] != "http.request" or self.cut:
            return {"type": "http.disconnect"} if self.cut else message
        chunk = message.get("body", b"")
        refusal = self.parts.feed(chunk) or await self.limit.take(len(chunk), self.client)
        if refusal:
            self.cut = True
            if not self.started:
                self.started = True
                await answer(self._send, {TOO_MANY_PARTS: 413, NOT_A_FILE: 400}.get(refusal, 507), refusal)
            return {"type": "http.disconnect"}
        self.seen += len(chunk)
        return message

    async def send(self, message: Message) -> None:
        if self.cut:
            return
        self.started = True
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body" and len(self.answer) < ANSWER_BYTES:
            self.answer += message.get("body", b"")[:ANSWER_BYTES]
        await self._send(message)

    def paths(self) -> list[str]:
        """The stored files' paths, from the upload route's answer (a JSON list of strings)."""
        try:
            found = json.loads(self.answer)
        except ValueError:
            return []
        return [path for path in found if isinstance(path, str)] if isinstance(found, list) else []


def _boundary(scope: MutableMapping[str, Any]) -> bytes:
    """The body's boundary, read by the parser Gradio reads it with (python-multipart's)."""
    return parse_options_header(header(scope, b"content-type"))[1].get(b"boundary") or b"\x00no boundary\x00"


class _Parts:
    """An upload's parts as Gradio sees them: read by the parser Gradio uses (python-multipart's), so
    that no body reads one way here and another there. ``feed`` gives the refusal once a part is a
    form field (no filename among its Content-Disposition's options, the last such header counting,
    as Gradio decides: it keeps a field in memory whatever its size), once there are more than
    UPLOAD_PARTS. A body that does not parse is left to Gradio, whose parser fails at the same byte
    and keeps nothing."""

    def __init__(self, boundary: bytes) -> None:
        self.count, self.refusal = 0, None
        self.field = self.value = self.disposition = b""
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self.on_part_begin, "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished})

    def feed(self, chunk: bytes) -> bytes | None:
        if self.refusal is None and self.parser is not None:
            try:
                self.parser.write(chunk)
            except MultipartParseError:
                self.parser = None
        return self.refusal

    def on_part_begin(self) -> None:
        self.count, self.disposition = self.count + 1, b""
        if self.count > limits.UPLOAD_PARTS:
            self.refusal = self.refusal or TOO_MANY_PARTS

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def on_header_end(self) -> None:
        if self.field.lower() == b"content-disposition":
            self.disposition = self.value
        self.field = self.value = b""

    def on_headers_finished(self) -> None:
        if b"filename" not in parse_options_header(self.disposition)[1]:
            self.refusal = self.refusal or NOT_A_FILE

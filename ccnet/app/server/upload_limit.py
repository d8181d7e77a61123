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

from python_multipart.multipart import parse_options_header

from ccnet import limits
from ccnet.app.server.body_limit import ASGIApp, Message, Receive, Send, answer, declared_length, header, is_upload
from ccnet.app.server.clients import client_of_scope, proxy_hops
from ccnet.app.server.registry import UploadRegistry

FULL = b"The server's upload space is full; please try again in a minute.\n"
SHARE_FULL = (f"Your uploads use your share of the server's upload space; they expire "
              f"{limits.duration(limits.UPLOAD_MAX_AGE_S)} after their last use.\n").encode()
TOO_MANY_OPEN = b"You are already sending uploads; wait until they finish.\n"
TOO_MANY_PARTS = b"Too many files in one upload; send one image at a time.\n"
NOT_A_FILE = b"An upload holds files only; send the image as a file.\n"
PART_HEAD_BYTES = 4096  # a part's headers (its name, filename and content type) fit in this
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
        client = client_of_scope(scope, self.hops)
        if self.open.get(client, 0) >= limits.OPEN_UPLOADS_PER_CLIENT:
            await answer(send, 429, TOO_MANY_OPEN)
            return
        self.open[client] = self.open.get(client, 0) + 1
        refusal = await self.take(declared_length(scope) or 0, client, keep=False)
        if refusal:
            self._close(client)
            await answer(send, 507, refusal)
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
        self.delimiter, self.pending, self.parts = b"\r\n--" + boundary, b"\r\n", 0
        self.in_head = self.closed = False  # reading a part's headers; past the closing delimiter
        self.seen, self.status, self.answer = 0, 0, b""
        self.started = self.cut = self.dropped = False

    async def receive(self) -> Message:
        message = await self._receive()
        self.dropped = self.dropped or message["type"] == "http.disconnect"
        if message["type"] != "http.request" or self.cut:
            return {"type": "http.disconnect"} if self.cut else message
        chunk = message.get("body", b"")
        refusal = self._check_parts(chunk) or await self.limit.take(len(chunk), self.client)
        if refusal:
            self.cut = True
            if not self.started:
                self.started = True
                await answer(self._send, {TOO_MANY_PARTS: 413, NOT_A_FILE: 400}.get(refusal, 507), refusal)
            return {"type": "http.disconnect"}
        self.seen += len(chunk)
        return message

    def _check_parts(self, chunk: bytes) -> bytes | None:
        """Counts the parts as they stream past and reads each one's headers: a part without a
        filename is a form field, which Gradio keeps in memory whatever its size, so it is refused.
        A delimiter or a part's headers may straddle two chunks."""
        if self.closed:  # what follows the closing delimiter (an epilogue) holds no parts
            return None
        window, at = self.pending + chunk, 0
        while True:
            if self.in_head:
                if window.startswith(b"--", at):  # the closing delimiter: the files have all come
                    self.pending, self.in_head, self.closed = b"", False, True
                    return None
                end = window.find(b"\r\n\r\n", at)
                if end < 0:
                    self.pending = window[at:]
                    return NOT_A_FILE if len(self.pending) > PART_HEAD_BYTES else None
                if not is_file_part(window[at:end]):
                    return NOT_A_FILE
                self.in_head, at = False, end + 4
            found = window.find(self.delimiter, at)
            if found < 0:
                self.pending = window[max(at, len(window) - len(self.delimiter) + 1):]
                return None
            self.parts += 1
            # the closing delimiter ("--boundary--") is counted too, so a request of n files has n + 1
            if self.parts > limits.UPLOAD_PARTS + 1:
                return TOO_MANY_PARTS
            self.in_head, at = True, found + len(self.delimiter)

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


def is_file_part(head: bytes) -> bool:
    """Whether Gradio stores this part (its headers, after the delimiter's line) as a file: a
    filename among its Content-Disposition's options, parsed as Gradio parses them (the last such
    header counts); else it is a form field, held in memory."""
    disposition = b""
    for line in head.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"content-disposition":
            disposition = value.strip()
    return b"filename" in parse_options_header(disposition)[1]

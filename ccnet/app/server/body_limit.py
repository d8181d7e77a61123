"""One body limit for every route and every content type, and a minimum pace for every body.

Why: every body but an upload's (JSON for the queue and the API, the MCP server's, anything
labelled multipart that is posted anywhere else) is read whole into memory by the web framework
before any handler runs, so a 200 MB body costs 200 MB whatever its label; and nothing times out a
body that trickles in, so a client can hold a connection (and what it reserved) for as long as it
likes, or open many that each hold up to BODY_BYTES. Here a body that passes BODY_BYTES (declared or
streamed) is answered 413 before it is read; a client may be sending BODIES_PER_CLIENT bodies at once
(429 past it); and any body, uploads included, that falls behind BODY_MIN_RATE on average after its
first BODY_GRACE_S seconds, or pauses longer than BODY_GRACE_S, is dropped (408): the app sees a
disconnect. Uploads to UPLOAD_PATHS are
bounded by their own door (upload_limit). Plain ASGI, given at launch.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ccnet import limits
from ccnet.app.server.clients import client_of_scope, proxy_hops

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]
UPLOAD_PATHS = ("/gradio_api/upload",)  # the only route whose (multipart) body goes to disk, not memory
TOO_LARGE = b"Request body too large (limit 1 MiB); upload images as files.\n"
TOO_SLOW = b"Request body too slow; the connection was dropped.\n"
TOO_MANY = b"You are already sending requests; wait until they are sent.\n"


def is_upload(scope: MutableMapping[str, Any]) -> bool:
    """A multipart POST to the upload route: the one body that may pass BODY_BYTES."""
    if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in UPLOAD_PATHS:
        return False
    return header(scope, b"content-type").lower().startswith(b"multipart/")


def has_body(scope: MutableMapping[str, Any]) -> bool:
    """A request that sends a body: declared, or chunked."""
    return bool(declared_length(scope)) or b"chunked" in header(scope, b"transfer-encoding").lower()


def header(scope: MutableMapping[str, Any], name: bytes) -> bytes:
    return dict(scope.get("headers") or ()).get(name, b"")


def declared_length(scope: MutableMapping[str, Any]) -> int | None:
    value = header(scope, b"content-length")
    return int(value) if value.isdigit() else None


async def answer(send: Send, status: int, text: bytes) -> None:
    """One line, and the connection closed (the rest of the body is not read)."""
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})


class Paced:
    """A request's `receive`, dropping a body that falls behind the minimum pace: after BODY_GRACE_S
    seconds, its bytes must keep up with BODY_MIN_RATE bytes a second since it began, and with it
    over every BODY_GRACE_S seconds after that (a burst buys no long trickle), and it may never pause
    longer than BODY_GRACE_S. `slow` is set when it was dropped; the caller then answers 408 (if it
    can) and the app sees a disconnect."""

    SAMPLE_S = 0.1  # arrivals closer than this share one sample: at most 100 a window, whatever the chunks

    def __init__(self, receive: Receive) -> None:
        self._receive, self.grace_s, self.rate = receive, limits.BODY_GRACE_S, limits.BODY_MIN_RATE
        self.start, self.seen, self.slow, self.done = time.monotonic(), 0, False, False
        self.last = self.start  # when bytes last arrived
        self.samples: deque[tuple[float, int]] = deque([(self.start, 0)])  # (when, bytes by then)

    def deadline(self) -> float:
        """When the next bytes must have arrived: the average since the start, the pause, and the
        window, which falls short once the bytes that came before the sample of the first byte past
        `seen - rate * window` are a window old."""
        window, short_of = self.grace_s, self.seen - self.rate * self.grace_s
        first_past = next(when for when, total in self.samples if total > short_of)
        return min(self.start + self.grace_s + self.seen / self.rate, self.last + self.grace_s,
                   max(self.start + self.grace_s + window, first_past + window))

    def _record(self, nbytes: int) -> None:
        now = time.monotonic()
        self.seen, self.last = self.seen + nbytes, now
        if now - self.samples[-1][0] < self.SAMPLE_S:
            self.samples[-1] = (self.samples[-1][0], self.seen)
        else:
            self.samples.append((now, self.seen))
        while len(self.samples) > 1 and self.samples[1][0] <= now - self.grace_s:
            self.samples.popleft()  # out of every window still to come

    async def receive(self) -> Message:
        if self.slow:
            return {"type": "http.disconnect"}
        if self.done:  # the body is in: what follows is the client going away, whenever it does
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), max(0.0, self.deadline() - time.monotonic()))
        except TimeoutError:
            self.slow = True
            return {"type": "http.disconnect"}
        if message["type"] == "http.request":
            self._record(len(message.get("body", b"")))
            self.done = not message.get("more_body", False)
        return message


class BodyLimit:
    """ASGI middleware: every HTTP request but an upload is cut at ``limit`` bytes (413), and every
    body, uploads included, is paced (408 when too slow)."""

    def __init__(self, app: ASGIApp, limit: int = limits.BODY_BYTES, hops: int | None = None) -> None:
        self.app, self.limit = app, limit
        self.hops = proxy_hops() if hops is None else hops
        self.sending: dict[str, int] = {}  # bodies (not uploads) being received, per client (one event loop)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = is_upload(scope)
        if not upload and (declared_length(scope) or 0) > self.limit:
            await answer(send, 413, TOO_LARGE)
            return
        client = client_of_scope(scope, self.hops) if not upload and has_body(scope) else None
        request = _Limited(self, Paced(receive), send, None if upload else self.limit, client)
        try:
            await self.app(scope, request.receive, request.send)
        except asyncio.CancelledError:  # the server stopping cancels what still runs (an upload hanging):
            return  # the request ends here, quietly, instead of a traceback per request in the log
        except Exception:
            if not request.cut:  # a cut body makes the app complain about the disconnect: expected
                raise
        finally:
            request.release()


class _Limited:
    """One request's body through BodyLimit: cut past ``limit`` bytes (None: an upload, left to its
    door) or when too slow; when it names a ``client``, counted from its first bytes until it is in
    (a body that comes whole at once is never held; one that stalls is, up to BODIES_PER_CLIENT a
    client), and never counted again after."""

    def __init__(self, owner: BodyLimit, paced: Paced, send: Send, limit: int | None, client: str | None) -> None:
        self.owner, self.paced, self._send, self.limit, self.client = owner, paced, send, limit, client
        self.started = self.cut = self.counted = False

    async def refuse(self, status: int, text: bytes) -> Message:
        """Answer once (if nothing was sent yet); the app sees a disconnect from now on."""
        self.cut = True
        if not self.started:
            self.started = True
            await answer(self._send, status, text)
        return {"type": "http.disconnect"}

    async def receive(self) -> Message:
        if self.cut:
            return {"type": "http.disconnect"}
        sending = self.owner.sending
        if self.client is not None and not self.counted and not self.paced.done and self.paced.seen == 0:
            if sending.get(self.client, 0) >= limits.BODIES_PER_CLIENT:
                return await self.refuse(429, TOO_MANY)
            self.counted, sending[self.client] = True, sending.get(self.client, 0) + 1
        message = await self.paced.receive()
        if self.paced.done or message["type"] == "http.disconnect":
            self.release()
        if self.paced.slow:
            return await self.refuse(408, TOO_SLOW)
        if self.limit is not None and self.paced.seen > self.limit:
            return await self.refuse(413, TOO_LARGE)
        return message

    def release(self) -> None:
        """The body is in (or gone): its client may send another."""
        if self.counted:
            self.counted = False
            self.owner.sending[self.client] -= 1
            if not self.owner.sending[self.client]:
                del self.owner.sending[self.client]

    async def send(self, message: Message) -> None:
        if not self.cut:
            self.started = True
            await self._send(message)

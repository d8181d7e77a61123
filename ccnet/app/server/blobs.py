"""Payloads the page fetches by an unguessable token instead of receiving them in a component's
value: Gradio keeps every output value in the visitor's session state, so a picture or a map
sent that way stays in the server's memory for as long as the session lives (4.7 MB a session
measured with an image of 2048 px). Here one bounded LRU holds each payload once, whoever views
it, and an ASGI route serves it: GET PREFIX/<token>. Whoever holds a token may fetch its payload
(tokens are only handed to those who sent, or hold a link to, the image)."""
from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any

from ccnet import limits

PREFIX = "/ccnet/data/"


class BlobStore:
    """Payloads (bytes) by token, at most ``max_bytes`` of them, the least recently used going first;
    one payload per key, so that everyone viewing the same analysis fetches the same one."""

    def __init__(self, max_bytes: int = limits.VIEWER_DATA_BYTES) -> None:
        self.max_bytes, self.nbytes = max_bytes, 0
        self._by_token: OrderedDict[str, tuple[Hashable, bytes]] = OrderedDict()
        self._tokens: dict[Hashable, str] = {}
        self._lock = threading.Lock()

    def url(self, key: Hashable, make: Callable[[], bytes]) -> str:
        """The URL of ``key``'s payload, made (once) by ``make`` if it is not held."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None:
                self._by_token.move_to_end(token)
                return PREFIX.lstrip("/") + token
        data = make()
        with self._lock:
            token = self._tokens.get(key) or secrets.token_urlsafe(18)
            if token not in self._by_token:
                self._by_token[token] = (key, data)
                self._tokens[key] = token
                self.nbytes += len(data)
            while self.nbytes > self.max_bytes and len(self._by_token) > 1:
                old_key, old_data = self._by_token.popitem(last=False)[1]
                self._tokens.pop(old_key, None)
                self.nbytes -= len(old_data)
            return PREFIX.lstrip("/") + token  # relative: the page resolves it against its own address

    def get(self, token: str) -> bytes | None:
        with self._lock:
            found = self._by_token.get(token)
            if found is None:
                return None
            self._by_token.move_to_end(token)
            return found[1]


BLOBS = BlobStore()  # the process's one store: the page's handlers fill it, the route serves it


class BlobRoute:
    """ASGI middleware: GET PREFIX/<token> answers the payload (JSON), or 404 for a token it does
    not hold (unknown and evicted alike); every other request passes."""

    def __init__(self, app: Any, store: BlobStore = BLOBS) -> None:
        self.app, self.store = app, store

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        prefix = scope.get("root_path", "").rstrip("/") + PREFIX
        if not path.startswith((PREFIX, prefix)):
            await self.app(scope, receive, send)
            return
        token = path[len(prefix if path.startswith(prefix) else PREFIX):]
        data = self.store.get(token) if scope.get("method") in ("GET", "HEAD") else None
        status, body = (200, data) if data is not None else (404, b"not here (expired or unknown)\n")
        kind = b"application/json" if data is not None else b"text/plain; charset=utf-8"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"private, max-age=3600")]})
        await send({"type": "http.response.body", "body": body if scope.get("method") != "HEAD" else b""})

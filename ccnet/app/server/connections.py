"""Connections: a request's head must be in within BODY_GRACE_S of the connection's opening (or of
its first byte after a response), a request body must state its length (chunked: 411), and a
server on the open web (no proxy in front) keeps at most CONNECTIONS_PER_CLIENT open from one
client (an IPv4 address, an IPv6 /64).

Why: uvicorn gives a request's head no deadline, and a header byte now and then keeps a connection
open for ever; connections that did so held every file descriptor of the process (20,000 here), from
two addresses and, once those were counted, from 316, and nobody else could connect. The body limits
(body_limit) act only once a head is in. Behind a reverse proxy (CCNET_PROXY_HOPS or a Space) every
connection comes from the proxy, so there the count is off (the proxy's own limits apply) and the
deadline stays.

uvicorn builds its protocol from a name in `uvicorn.config.HTTP_PROTOCOLS`, and Gradio creates the
uvicorn config itself: `use_guarded_connections()` points the default name ("auto") at
`GuardedHTTP` for this process, before the app is launched.
"""
from __future__ import annotations

import asyncio
from typing import ClassVar

import uvicorn.config
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from ccnet import limits
from ccnet.app.server.body_limit import header
from ccnet.app.server.clients import network_of, proxy_hops

_REFUSAL = b"A request body must state its length (Content-Length); chunked bodies are not read.\n"
LENGTH_REQUIRED = (b"HTTP/1.1 411 Length Required\r\ncontent-type: text/plain; charset=utf-8\r\n"
                   b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_REFUSAL), _REFUSAL))


class GuardedHTTP(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol (h11's or httptools', whichever it picked), refusing a connection past
    CONNECTIONS_PER_CLIENT from its client (closed at once, before any byte is read) when no proxy is
    in front, closing one whose request head takes longer than BODY_GRACE_S, and answering 411 to a
    chunked request body (its parser pays for every chunk, 1-byte chunks included, before any limit
    on bodies sees them: 8 such connections held the event loop and a visitor waited 7 s). A head is
    in when uvicorn starts its request cycle (``self.cycle``, both implementations)."""

    open: ClassVar[dict[str, int]] = {}  # connections per address (one event loop: no lock)
    counting: ClassVar[bool] = True  # no proxy in front (set once, by use_guarded_connections)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.peer, self.refused, self.head_timer = None, False, None
        address = network_of(str((transport.get_extra_info("peername") or ("?",))[0]))
        if self.counting:
            if self.open.get(address, 0) >= limits.CONNECTIONS_PER_CLIENT:
                self.refused = True
                transport.close()
                return
            self.peer, self.open[address] = address, self.open.get(address, 0) + 1
        super().connection_made(transport)
        self._head_due()  # a connection that never sends a byte is held as long as one that trickles

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        between = self.cycle is None or self.cycle.response_complete  # no request under way: a head begins
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle and self.cycle is not None:  # its head is in
            self._head_done()
            if b"chunked" in header(self.cycle.scope, b"transfer-encoding").lower():
                self.transport.write(LENGTH_REQUIRED)  # before the app has run: nothing else was written
                self.transport.close()
        elif between:
            self._head_due()

    def _head_due(self) -> None:
        """A head must be in within BODY_GRACE_S from now (unless one is already due sooner)."""
        if self.head_timer is None:
            self.head_timer = asyncio.get_running_loop().call_later(limits.BODY_GRACE_S, self._head_late)

    def _head_done(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_late(self) -> None:
        self.head_timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return  # closed in connection_made: uvicorn never saw it
        self._head_done()
        if self.peer is not None:
            self.open[self.peer] -= 1
            if not self.open[self.peer]:
                del self.open[self.peer]
        super().connection_lost(exc)


def use_guarded_connections() -> None:
    """Make uvicorn's default HTTP protocol GuardedHTTP in this process (see the module's docstring);
    whether a proxy stands in front is read here, once, not on every connection."""
    GuardedHTTP.counting = proxy_hops() == 0
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:GuardedHTTP"


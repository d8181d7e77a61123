"""Connections per client: a server on the open web (no proxy in front) keeps at most
CONNECTIONS_PER_CLIENT open from one address.

Why: uvicorn gives a request's head no deadline, and a header byte now and then keeps a connection
open for ever; a client that opens thousands such held every file descriptor of the process (20,000
here) and nobody else could connect. The body limits (body_limit) act only once a head is in. Behind
a reverse proxy (CCNET_PROXY_HOPS or a Space) every connection comes from the proxy, whose own
connection limits and header timeout apply instead, so there the count is off.

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
from ccnet.app.server.clients import proxy_hops


class GuardedHTTP(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol, refusing a connection past CONNECTIONS_PER_CLIENT from its address
    (closed at once, before any byte is read) when no proxy is in front."""

    open: ClassVar[dict[str, int]] = {}  # connections per address (one event loop: no lock)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.peer, self.refused = None, False
        address = (transport.get_extra_info("peername") or ("?",))[0]
        if proxy_hops() == 0:
            if self.open.get(address, 0) >= limits.CONNECTIONS_PER_CLIENT:
                self.refused = True
                transport.close()
                return
            self.peer, self.open[address] = address, self.open.get(address, 0) + 1
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.refused:
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return  # closed in connection_made: uvicorn never saw it
        if self.peer is not None:
            self.open[self.peer] -= 1
            if not self.open[self.peer]:
                del self.open[self.peer]
        super().connection_lost(exc)


def use_guarded_connections() -> None:
    """Make uvicorn's default HTTP protocol GuardedHTTP in this process (see the module's docstring)."""
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:GuardedHTTP"


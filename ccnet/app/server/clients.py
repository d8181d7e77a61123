"""Who a request is: the client every per-client limit counts against.

A client is its connection's address; behind `hops` reverse proxies (a hosted Space) it is the
address the nearest proxy appended to X-Forwarded-For, `hops` entries from the end, since entries
further left are whatever the client chose to send. Gradio's MCP bridge calls the app back over
loopback with its caller's headers copied, so the MCP route vouches for its caller: it writes the
caller's address, signed with this process's secret, into a header that the loopback call carries
and that nobody outside can forge.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

VOUCH_HEADER = "x-ccnet-client"
_SECRET = secrets.token_bytes(32)  # per process: a vouch is only good for the server that wrote it


def proxy_hops() -> int:
    """How many reverse proxies stand in front of the app: CCNET_PROXY_HOPS, else 1 on a Hugging
    Face Space (SPACE_ID is set there), else 0."""
    value = os.environ.get("CCNET_PROXY_HOPS")
    if value is not None and value.strip().isdigit():
        return int(value)
    return 1 if os.environ.get("SPACE_ID") else 0


def client_address(headers: Mapping[str, str], peer: str | None, hops: int) -> str:
    """The client behind a request's headers (lower-case names) and its connection's address."""
    vouched = _vouched(headers.get(VOUCH_HEADER, ""))
    if vouched:
        return vouched
    if hops > 0:
        forwarded = [part.strip() for part in headers.get("x-forwarded-for", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return network_of(forwarded[-hops])
    return network_of(peer) if peer else "unknown"


def network_of(address: str) -> str:
    """An IPv4 address as it is; an IPv6 address as its /64, which one host holds whole (an IPv4
    address mapped into IPv6 as the IPv4 address)."""
    try:
        parsed = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def bridge_upload(scope: MutableMapping[str, Any]) -> bool:
    """An upload by Gradio's MCP bridge: its own client, on loopback, with no proxy's address (an
    outside request behind a proxy always has one) and marked as the bridge marks it. The bridge
    uploads a tool call's image without the caller's address, so its uploads get an account of
    their own (registry.BRIDGE), and a short life, instead of counting against loopback's share."""
    headers = _headers(scope.get("headers") or ())
    peer = (scope.get("client") or (None,))[0]
    try:
        loopback = peer is not None and ipaddress.ip_address(peer).is_loopback
    except ValueError:
        loopback = False
    return loopback and "x-forwarded-for" not in headers and headers.get("x-gradio-user") == "mcp"


def client_of(request: Any, hops: int) -> str:
    """The client of a Starlette or Gradio request (None: unknown)."""
    if request is None:
        return "unknown"
    peer = getattr(getattr(request, "client", None), "host", None)
    return client_address({k.lower(): v for k, v in request.headers.items()}, peer, hops)


def client_of_scope(scope: MutableMapping[str, Any], hops: int) -> str:
    """The client of an ASGI request scope."""
    peer = (scope.get("client") or (None,))[0]
    return client_address(_headers(scope.get("headers") or ()), peer, hops)


def vouch(client: str) -> str:
    """The header value that names `client` for a loopback call made on its behalf."""
    return f"{client};{_signature(client)}"


def _vouched(value: str) -> str | None:
    client, _, signature = value.rpartition(";")
    return client if client and hmac.compare_digest(signature, _signature(client)) else None


def _signature(client: str) -> str:
    return hmac.new(_SECRET, client.encode(), hashlib.sha256).hexdigest()


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


class VouchForMcpCallers:
    """ASGI middleware: a request to the MCP route carries its caller's address, vouched for, in
    VOUCH_HEADER (whatever it sent there is replaced), so that the bridge's loopback call on its
    behalf counts against that caller, not against loopback or a header the caller wrote."""

    def __init__(self, app: Any, hops: int | None = None, prefix: str = "/gradio_api/mcp") -> None:
        self.app, self.prefix = app, prefix
        self.hops = proxy_hops() if hops is None else hops

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(self.prefix):
            name = VOUCH_HEADER.encode()
            headers = [(k, v) for k, v in scope.get("headers") or () if k.lower() != name]
            scope = {**scope, "headers": [*headers, (name, vouch(client_of_scope(scope, self.hops)).encode())]}
        await self.app(scope, receive, send)

"""A per-client cap on waiting requests, so that one client cannot fill the queue everyone shares.

Gradio's queue has a single global bound (`max_size`): a client that posts requests faster than
they run fills it, and every other visitor is then refused until it drains. Here each client may
have at most `limit` events waiting; its next one is refused (HTTP 503) with one line telling it to
retry, while other clients keep their places. A client is its address; behind a reverse proxy
(a hosted Space) it is the address the proxy appended to X-Forwarded-For, `proxy_hops` entries from
the end, since entries further left are whatever the client chose to send.
"""
from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from ccnet import limits


def proxy_hops() -> int:
    """How many reverse proxies stand in front of the app: CCNET_PROXY_HOPS, else 1 on a Hugging
    Face Space (SPACE_ID is set there), else 0."""
    value = os.environ.get("CCNET_PROXY_HOPS")
    if value is not None and value.strip().isdigit():
        return int(value)
    return 1 if os.environ.get("SPACE_ID") else 0


def client_of(request: Any, hops: int) -> str:
    """The client a request counts against: the proxy-appended X-Forwarded-For entry when behind
    `hops` proxies, else the connection's own address."""
    if hops > 0 and request is not None:
        forwarded = [part.strip() for part in request.headers.get("x-forwarded-for", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    client = getattr(request, "client", None)
    return client.host if client else "unknown"


def waiting(queue: Any, client: str, hops: int) -> int:
    """Events of this client waiting in any of the queue's lanes (running ones are not waiting)."""
    return sum(client_of(event.request, hops) == client
               for lane in queue.event_queue_per_concurrency_id.values() for event in lane.queue)


def cap_per_client(queue: Any, limit: int = limits.WAITING_PER_CLIENT, hops: int | None = None) -> None:
    """Wrap a Gradio Queue's `push` so that a client with `limit` events waiting is refused."""
    hops = proxy_hops() if hops is None else hops
    push: Callable[..., Awaitable[tuple]] = queue.push

    async def fair_push(body: Any, request: Any, username: str | None) -> tuple:
        if waiting(queue, client_of(request, hops), hops) >= limit:
            return False, (f"you already have {limit} requests waiting; retry when they are answered "
                           "(a few seconds)"), "queue_full"
        return await push(body, request, username)

    queue.push = fair_push

"""Fair queueing: no handful of clients can fill the queue everyone shares, or push a newcomer's
request behind all of theirs.

Gradio's queue has one global bound (`max_size`) and serves each lane first come, first served: a
client that posts faster than the server runs fills it, and every other visitor is refused or waits
behind everything it posted. Here, wrapping the queue's `push`:
- admission: a client may have at most `cap(n)` events waiting, n being the number of clients with
  events waiting (it included): WAITING_PER_CLIENT while few wait, QUEUE_SIZE // (2 n) as more do, so
  the clients already waiting hold at most half of the queue and a newcomer always finds room;
- order: each lane is served by the work a client already has ahead of a job (each job weighs one
  plus its image's megapixels, a clip's frames all counted), then by arrival: everyone's first job
  before anyone's second, and a client of many large images waits behind those who sent few.
A refused request gets HTTP 503 and one line telling it to retry.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ccnet import limits
from ccnet.app.server.clients import client_of, proxy_hops
from ccnet.errors import CCNetError
from ccnet.inference.clips import clip_pixels
from ccnet.inference.images import image_pixels

Cost = Callable[[Any], float]


def cap(clients_waiting: int) -> int:
    """How many events one client may have waiting while `clients_waiting` clients (it included) do."""
    return max(1, min(limits.WAITING_PER_CLIENT, limits.QUEUE_SIZE // (2 * max(1, clients_waiting))))


def job_cost(event: Any) -> float:
    """The work of one queued event: 1, plus the megapixels of each image it names (of all its
    frames for a clip)."""
    data = getattr(getattr(event, "data", None), "data", None)
    return 1.0 + sum(_megapixels(path) for path in _paths(data))


def _paths(data: Any) -> Iterable[str]:
    """The files a call names: Gradio's FileData objects (the upload check has refused any outside the
    upload folder); another object's "path" is not opened."""
    if isinstance(data, dict):
        meta = data.get("meta")
        if isinstance(data.get("path"), str) and isinstance(meta, dict) and meta.get("_type") == "gradio.FileData":
            yield data["path"]
        return
    if isinstance(data, (list, tuple)):
        for item in data:
            yield from _paths(item)


def read_sizes(body: Any) -> None:
    """Read (and cache) the pixels of the files a call names. Pillow can take seconds on a crafted
    file, so this runs off the event loop: the queue's ordering then finds every size cached."""
    for path in _paths(getattr(body, "data", None)):
        _megapixels(path)


@functools.lru_cache(maxsize=256)
def _megapixels(path: str) -> float:
    try:
        pixels = clip_pixels(path)  # None: no clip
        return (image_pixels(path) if pixels is None else pixels) / 1e6
    except (CCNetError, OSError):
        return 0.0  # not an image we read: the handler will say so, cheaply


def fair_order(events: list[Any], client: Callable[[Any], str], cost: Cost) -> list[Any]:
    """The events in serving order: by the work their client has ahead of them, then by arrival."""
    ahead: dict[str, float] = {}
    keyed = []
    for arrival, event in enumerate(events):
        who = client(event)
        keyed.append((ahead.get(who, 0.0), arrival, event))
        ahead[who] = ahead.get(who, 0.0) + cost(event)
    return [event for *_, event in sorted(keyed, key=lambda item: item[:2])]


def waiting_by_client(queue: Any, hops: int) -> dict[str, int]:
    """Events waiting in any of the queue's lanes, per client (running ones are not waiting)."""
    counts: dict[str, int] = {}
    for lane in queue.event_queue_per_concurrency_id.values():
        for event in lane.queue:
            who = client_of(event.request, hops)
            counts[who] = counts.get(who, 0) + 1
    return counts


def cap_per_client(queue: Any, hops: int | None = None, cost: Cost = job_cost) -> None:
    """Wrap a Gradio Queue's `push`: admission by the number of clients waiting, fair order after it."""
    hops = proxy_hops() if hops is None else hops
    push: Callable[..., Awaitable[tuple]] = queue.push
    admitted: dict[str, int] = {}  # admitted, still reading their files: not in a lane yet, but counted

    async def fair_push(body: Any, request: Any, username: str | None) -> tuple:
        waiting = waiting_by_client(queue, hops)
        for client, count in admitted.items():
            waiting[client] = waiting.get(client, 0) + count
        who = client_of(request, hops)
        allowed = cap(len(waiting.keys() | {who}))
        if waiting.get(who, 0) >= allowed:
            return False, (f"you already have {waiting[who]} requests waiting (the limit is {allowed} while "
                           f"{len(waiting)} visitors wait); retry when they are answered"), "queue_full"
        admitted[who] = admitted.get(who, 0) + 1

        def release(read: asyncio.Future | None = None) -> None:
            if read is not None and not read.cancelled():
                read.exception()  # seen: the call that wanted it is gone
            admitted[who] -= 1
            if not admitted[who]:
                del admitted[who]

        # a slow file stalls its own call, not the server; a call cancelled meanwhile (its client gone)
        # keeps its place until the read ends, or a client could keep many reads running past its cap
        reading = asyncio.ensure_future(asyncio.to_thread(read_sizes, body))
        try:
            await asyncio.shield(reading)
            result = await push(body, request, username)
        finally:
            if reading.done():
                release()
            else:
                reading.add_done_callback(release)
        for lane in queue.event_queue_per_concurrency_id.values():
            lane.queue[:] = fair_order(lane.queue, lambda event: client_of(event.request, hops), cost)
        return result

    queue.push = fair_push

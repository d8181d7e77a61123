"""No handful of clients fills the shared queue or pushes a newcomer behind all of its jobs: each
client's cap shrinks with the number of clients waiting, each lane is served by the work a client
already has ahead (weighed by pixels), and a client is the address a proxy appended, or the
caller the MCP route vouched for, never a header the client wrote."""
from __future__ import annotations

import asyncio
import itertools
import threading
import time
from types import SimpleNamespace

import pytest

from ccnet.app.server import fairness
from ccnet.app.server.clients import VOUCH_HEADER, VouchForMcpCallers, client_of, proxy_hops, vouch
from ccnet.app.server.fairness import cap, cap_per_client, fair_order
from ccnet.limits import QUEUE_SIZE, WAITING_PER_CLIENT


def request(host: str, forwarded: str | None = None, **headers: str) -> SimpleNamespace:
    if forwarded:
        headers["x-forwarded-for"] = forwarded
    return SimpleNamespace(client=SimpleNamespace(host=host), headers=headers)


class FakeQueue:
    """Gradio's Queue as far as fairness sees it: lanes of waiting events, and a push that queues
    with Gradio's own global bound."""

    def __init__(self) -> None:
        self.event_queue_per_concurrency_id = {"views": SimpleNamespace(queue=[]), "cost": SimpleNamespace(queue=[])}
        self.arrivals = itertools.count()

    async def push(self, body, request, username):
        if sum(len(lane.queue) for lane in self.event_queue_per_concurrency_id.values()) >= QUEUE_SIZE:
            return False, "Queue is full.", "queue_full"
        lane, cost = body
        event = SimpleNamespace(request=request, cost=cost, arrival=next(self.arrivals))
        self.event_queue_per_concurrency_id[lane].queue.append(event)
        return True, event, "success"


def fair_queue(hops: int = 0) -> FakeQueue:
    queue = FakeQueue()
    cap_per_client(queue, hops=hops, cost=lambda event: event.cost)
    return queue


def push(queue, req, lane: str = "views", cost: float = 1.0) -> tuple:
    return asyncio.run(queue.push((lane, cost), req, None))


def test_the_published_caps():
    assert (WAITING_PER_CLIENT, QUEUE_SIZE) == (8, 64)
    assert [cap(n) for n in (1, 2, 4, 5, 8, 9, 20, 32, 64, 500)] == [8, 8, 8, 6, 4, 3, 1, 1, 1, 1]


def test_a_client_at_its_cap_is_refused_and_another_is_still_queued():
    queue = fair_queue()
    attacker, visitor = request("10.0.0.2"), request("10.0.0.3")
    results = [push(queue, attacker, "views" if i % 2 else "cost") for i in range(WAITING_PER_CLIENT + 5)]
    assert [ok for ok, _, _ in results] == [True] * WAITING_PER_CLIENT + [False] * 5  # counted over every lane
    ok, message, state = results[-1]
    assert state == "queue_full" and "retry" in message and "\n" not in message
    assert push(queue, visitor)[0]
    queue.event_queue_per_concurrency_id["cost"].queue.pop(0)  # one of the attacker's ran
    assert push(queue, attacker)[0]


@pytest.mark.parametrize("attackers", [9, 20])
def test_a_flood_from_many_addresses_leaves_room_and_the_first_place_to_a_newcomer(attackers):
    """Each attacker posts expensive jobs (a 2048x1024 image: 3.1 units each) until refused, round
    after round: they hold at most half the queue, and a newcomer is admitted and served after at
    most one job of each other client."""
    queue = fair_queue()
    clients = [request(f"10.0.1.{i}") for i in range(attackers)]
    for _ in range(WAITING_PER_CLIENT + 2):
        for client in clients:
            push(queue, client, cost=1 + 2048 * 1024 / 1e6)
    waiting = queue.event_queue_per_concurrency_id["views"].queue
    assert len(waiting) == attackers * cap(attackers) <= QUEUE_SIZE // 2
    ok, event, _ = push(queue, request("10.0.2.1"), cost=1.3)
    assert ok and waiting.index(event) <= attackers  # behind at most the others' first jobs


def test_the_lane_is_served_by_the_work_each_client_has_ahead_then_by_arrival():
    a, b, c = (SimpleNamespace(client=name) for name in "abc")
    events = [SimpleNamespace(who=who, cost=cost) for who, cost in
              [(a, 5), (a, 5), (a, 5), (b, 1), (b, 1), (c, 1)]]
    order = fair_order(events, lambda e: e.who.client, lambda e: e.cost)
    assert [(e.who.client, e.cost) for e in order] == [("a", 5), ("b", 1), ("c", 1), ("b", 1), ("a", 5), ("a", 5)]
    assert [next(i for i, x in enumerate(events) if x is e) for e in order] == [0, 3, 5, 4, 1, 2]


def test_behind_a_proxy_the_proxy_appended_address_counts_not_the_clients_own_claims():
    assert client_of(request("10.9.9.9", "1.2.3.4, 5.6.7.8"), hops=1) == "5.6.7.8"
    assert client_of(request("10.9.9.9", "5.6.7.8"), hops=1) == "5.6.7.8"
    assert client_of(request("10.9.9.9", "1.2.3.4, 5.6.7.8"), hops=0) == "10.9.9.9"  # no proxy: header ignored
    assert client_of(request("10.9.9.9"), hops=1) == "10.9.9.9"
    queue = fair_queue(hops=1)
    spoofed = [request("10.9.9.9", f"{i}.{i}.{i}.{i}, 5.6.7.8") for i in range(WAITING_PER_CLIENT + 3)]
    assert sum(push(queue, r)[0] for r in spoofed) == WAITING_PER_CLIENT  # varying the left part changes nothing


def test_an_ipv6_client_is_its_slash_64_which_one_host_holds_whole():
    """One host gets a whole /64: counted per address, it would be 2**64 clients to every cap."""
    host = [request(f"2001:db8:1:2::{i:x}") for i in (1, 2, 0xFFFF)]
    assert {client_of(r, hops=0) for r in host} == {"2001:db8:1:2::/64"}
    assert client_of(request("2001:db8:1:3::1"), hops=0) == "2001:db8:1:3::/64"  # the next /64: another client
    assert client_of(request("10.9.9.9", "2001:db8:1:2::7"), hops=1) == "2001:db8:1:2::/64"  # behind a proxy too
    assert client_of(request("::ffff:10.0.0.2"), hops=0) == client_of(request("10.0.0.2"), hops=0) == "10.0.0.2"
    queue = fair_queue()
    assert sum(push(queue, r)[0] for r in host * WAITING_PER_CLIENT) == WAITING_PER_CLIENT


def test_an_mcp_caller_counts_as_itself_through_the_loopback_call():
    """The MCP route writes its caller's address, signed, into the vouch header; the bridge's loopback
    call (from 127.0.0.1, the caller's headers copied) then counts against that caller. A vouch
    the caller forges, or one for another address, counts for nothing."""
    seen = []

    async def app(scope, receive, send):
        seen.append(dict(scope["headers"]))

    forged = (VOUCH_HEADER.encode(), b"6.6.6.6;0000")
    scope = {"type": "http", "path": "/gradio_api/mcp/messages/", "client": ("5.6.7.8", 1),
             "headers": [forged, (b"x-forwarded-for", b"1.1.1.1")]}
    asyncio.run(VouchForMcpCallers(app, hops=0)(scope, None, None))
    header = seen[0][VOUCH_HEADER.encode()].decode()
    loopback = request("127.0.0.1", "1.1.1.1", **{VOUCH_HEADER: header})
    assert client_of(loopback, hops=0) == "5.6.7.8" == client_of(loopback, hops=1)
    assert client_of(request("127.0.0.1", **{VOUCH_HEADER: "6.6.6.6;0000"}), hops=0) == "127.0.0.1"
    tampered = vouch("5.6.7.8").replace("5.6.7.8", "5.6.7.9", 1)
    assert client_of(request("127.0.0.1", **{VOUCH_HEADER: tampered}), hops=0) == "127.0.0.1"
    asyncio.run(VouchForMcpCallers(app, hops=0)({**scope, "path": "/gradio_api/queue/join"}, None, None))
    assert seen[1][VOUCH_HEADER.encode()] == b"6.6.6.6;0000"  # other routes pass as sent (and the forgery fails)


@pytest.mark.parametrize("env, expected", [({}, 0), ({"SPACE_ID": "user/app"}, 1),
                                           ({"SPACE_ID": "user/app", "CCNET_PROXY_HOPS": "2"}, 2),
                                           ({"CCNET_PROXY_HOPS": "x"}, 0)])
def test_proxy_hops_from_the_environment(monkeypatch, env, expected):
    for name in ("SPACE_ID", "CCNET_PROXY_HOPS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert proxy_hops() == expected


class Body(tuple):
    """A call as the fake queue takes it, (lane, cost), naming a file as Gradio's bodies do."""

    data = [{"path": "/uploads/slow.gif", "meta": {"_type": "gradio.FileData"}}]


def test_a_files_size_is_read_off_the_event_loop(monkeypatch):
    """Reading the pixels of a crafted file can take Pillow seconds: while it does, the server's event
    loop keeps serving (before, the read ran inside the queue's push and stalled every visitor)."""
    read = []

    def slow_megapixels(path: str) -> float:
        time.sleep(0.5)
        read.append(path)
        return 1.0

    monkeypatch.setattr(fairness, "_megapixels", slow_megapixels)
    queue = fair_queue()

    async def push_while_ticking() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        ok, _, _ = await queue.push(Body(("views", 1.0)), request("10.0.0.2"), None)
        ticker.cancel()
        assert ok
        return ticks

    assert asyncio.run(push_while_ticking()) >= 20 and read == ["/uploads/slow.gif"]  # ~50 ticks in 0.5 s


def test_calls_posted_at_once_are_counted_while_their_files_are_read(monkeypatch):
    """Calls from one client that arrive together, each waiting for its file's size to be read, are
    admitted up to the cap and no further (before, each passed the check while the others were still
    reading, and a client of many connections got past its cap)."""
    monkeypatch.setattr(fairness, "_megapixels", lambda path: time.sleep(0.05) or 1.0)
    queue = fair_queue()

    async def flood() -> list[bool]:
        calls = [queue.push(Body(("views", 1.0)), request("10.0.0.2"), None) for _ in range(WAITING_PER_CLIENT + 6)]
        return [ok for ok, _, _ in await asyncio.gather(*calls)]

    assert asyncio.run(flood()) == [True] * WAITING_PER_CLIENT + [False] * 6
    assert push(queue, request("10.0.0.3"))[0]


def test_a_cancelled_call_keeps_its_place_until_its_files_are_read(monkeypatch):
    """A client that drops its calls while their files are read cannot start more reads than its cap:
    each dropped call is counted until its read ends (before, it was let go at once while its read
    went on in a thread, and dropping calls one after another kept any number of reads running)."""
    release = threading.Event()
    monkeypatch.setattr(fairness, "_megapixels", lambda path: release.wait(10) and 1.0)
    queue = fair_queue()
    attacker = request("10.0.0.2")

    async def drop_calls_then_call_again() -> tuple[bool, bool]:
        calls = [asyncio.create_task(queue.push(Body(("views", 1.0)), attacker, None))
                 for _ in range(WAITING_PER_CLIENT)]
        await asyncio.sleep(0.05)  # every call is reading its file
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        refused = not (await queue.push(Body(("views", 1.0)), attacker, None))[0]  # the reads still run
        release.set()
        for _ in range(200):  # the reads end and give their places back
            await asyncio.sleep(0.01)
            if (await queue.push(Body(("views", 1.0)), attacker, None))[0]:
                return refused, True
        return refused, False

    assert asyncio.run(drop_calls_then_call_again()) == (True, True)

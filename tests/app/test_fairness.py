"""One client cannot fill the shared queue: past its cap its requests are refused in one line,
while another client's are still queued; behind a proxy the proxy-appended address counts."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from ccnet.app.server.fairness import cap_per_client, client_of, proxy_hops
from ccnet.limits import WAITING_PER_CLIENT


def request(host: str, forwarded: str | None = None) -> SimpleNamespace:
    headers = {"x-forwarded-for": forwarded} if forwarded else {}
    return SimpleNamespace(client=SimpleNamespace(host=host), headers=headers)


class FakeQueue:
    """Gradio's Queue as far as the cap sees it: lanes of waiting events, and a push that queues."""

    def __init__(self) -> None:
        self.event_queue_per_concurrency_id = {"views": SimpleNamespace(queue=[]), "cost": SimpleNamespace(queue=[])}

    async def push(self, body, request, username):
        self.event_queue_per_concurrency_id[body].queue.append(SimpleNamespace(request=request))
        return True, "event", "success"


def push(queue, lane: str, req) -> tuple:
    return asyncio.run(queue.push(lane, req, None))


def test_the_published_cap_is_eight_waiting_requests():
    assert WAITING_PER_CLIENT == 8


def test_a_client_at_its_cap_is_refused_and_another_is_still_queued():
    queue = FakeQueue()
    cap_per_client(queue, hops=0)
    attacker, visitor = request("10.0.0.2"), request("10.0.0.3")
    results = [push(queue, "views" if i % 2 else "cost", attacker) for i in range(WAITING_PER_CLIENT + 5)]
    assert [ok for ok, _, _ in results] == [True] * WAITING_PER_CLIENT + [False] * 5  # counted over every lane
    ok, message, state = results[-1]
    assert state == "queue_full" and "retry" in message and "\n" not in message
    assert push(queue, "views", visitor)[0]
    queue.event_queue_per_concurrency_id["cost"].queue.pop(0)  # one of the attacker's ran
    assert push(queue, "views", attacker)[0]


def test_behind_a_proxy_the_proxy_appended_address_counts_not_the_clients_own_claims():
    assert client_of(request("10.9.9.9", "1.2.3.4, 5.6.7.8"), hops=1) == "5.6.7.8"
    assert client_of(request("10.9.9.9", "5.6.7.8"), hops=1) == "5.6.7.8"
    assert client_of(request("10.9.9.9", "1.2.3.4, 5.6.7.8"), hops=0) == "10.9.9.9"  # no proxy: header ignored
    assert client_of(request("10.9.9.9"), hops=1) == "10.9.9.9"
    queue = FakeQueue()
    cap_per_client(queue, limit=2, hops=1)
    spoofed = [request("10.9.9.9", f"{i}.{i}.{i}.{i}, 5.6.7.8") for i in range(5)]  # varying the left part
    assert [push(queue, "views", r)[0] for r in spoofed] == [True, True, False, False, False]


@pytest.mark.parametrize("env, expected", [({}, 0), ({"SPACE_ID": "user/app"}, 1),
                                           ({"SPACE_ID": "user/app", "CCNET_PROXY_HOPS": "2"}, 2),
                                           ({"CCNET_PROXY_HOPS": "x"}, 0)])
def test_proxy_hops_from_the_environment(monkeypatch, env, expected):
    for name in ("SPACE_ID", "CCNET_PROXY_HOPS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert proxy_hops() == expected

"""Request bodies that are not uploads are bounded: declared or streamed past the limit, the
client gets 413 in one line and the app never holds the body; small bodies and uploads pass."""
from __future__ import annotations

import asyncio

import pytest

from ccnet.app.server.body_limit import BodyLimit
from ccnet.limits import BODY_BYTES
from ccnet.project import ROOT


class EchoApp:
    """Reads the whole body (as a JSON route does), then answers 200 with its length."""

    def __init__(self) -> None:
        self.bodies: list[int] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RuntimeError("client went away")
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(len(body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


def call(app, chunks: list[bytes], headers: dict[str, str], path: str = "/gradio_api/call/cost",
         gaps_s: float | list[float] = 0.0) -> tuple[int | None, bytes]:
    """(status, answer) of one request whose body comes in `chunks`, each after `gaps_s` (or its own gap)."""
    gaps = list(gaps_s) if isinstance(gaps_s, list) else [gaps_s] * (len(chunks) + 1)
    scope = {"type": "http", "method": "POST", "path": path,
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict] = []

    async def receive():
        await asyncio.sleep(gaps.pop(0) if gaps else 0.0)  # the client's pace
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_the_docs_publish_the_limit_the_middleware_enforces():
    assert f"| {BODY_BYTES / 2**20:g} MiB | 413 before it is read |" in (ROOT / "docs" / "robustness.md").read_text()


def test_a_body_at_the_limit_passes_and_one_byte_more_is_refused_by_its_length():
    inner = EchoApp()
    app = BodyLimit(inner, limit=1000)
    assert call(app, [b"x" * 1000], {"content-type": "application/json", "content-length": "1000"}) == (200, b"1000")
    status, text = call(app, [b"x" * 1001], {"content-type": "application/json", "content-length": "1001"})
    assert status == 413 and text.count(b"\n") == 1 and b"too large" in text
    assert inner.bodies == [1000]  # the refused body never reached the app


def test_a_body_streaming_past_the_limit_without_a_length_is_cut_off():
    inner = EchoApp()
    app = BodyLimit(inner, limit=1000)
    status, text = call(app, [b"x" * 600, b"x" * 600, b"x" * 600], {"content-type": "application/json"})
    assert status == 413 and b"too large" in text and inner.bodies == []


def test_a_false_small_length_does_not_get_a_large_body_through():
    inner = EchoApp()
    status, _ = call(BodyLimit(inner, limit=1000), [b"x" * 800, b"x" * 800], {"content-length": "10"})
    assert status == 413 and inner.bodies == []


def test_uploads_are_left_to_the_upload_space_limit():
    inner = EchoApp()
    headers = {"content-type": "multipart/form-data; boundary=x", "content-length": "5000"}
    assert call(BodyLimit(inner, limit=1000), [b"x" * 5000], headers, path="/gradio_api/upload") == (200, b"5000")


@pytest.mark.parametrize("path", ["/gradio_api/queue/join", "/gradio_api/call/segment", "/gradio_api/mcp/messages/",
                                  "/gradio_api/component_server", "/anything"])
def test_a_multipart_label_gets_no_body_past_the_limit_on_any_other_route(path):
    """The same 2 MB labelled multipart: only the upload route's door may take it."""
    inner = EchoApp()
    headers = {"content-type": "multipart/form-data; boundary=x", "content-length": str(2 << 20)}
    status, text = call(BodyLimit(inner), [b"x" * (2 << 20)], headers, path=path)
    assert status == 413 and inner.bodies == []
    status, _ = call(BodyLimit(inner), [b"x" * 600_000] * 4, {"content-type": "multipart/form-data; boundary=x"},
                     path=path)  # no length: cut as it streams past the limit
    assert status == 413 and inner.bodies == []


def test_the_published_limit_holds_to_the_byte():
    inner = EchoApp()
    exact = {"content-type": "application/json", "content-length": str(1 << 20)}
    assert call(BodyLimit(inner), [b"x" * (1 << 20)], exact) == (200, str(1 << 20).encode())
    over = {"content-type": "application/json", "content-length": str((1 << 20) + 1)}
    assert call(BodyLimit(inner), [b"x" * ((1 << 20) + 1)], over)[0] == 413


def test_a_body_slower_than_the_minimum_pace_is_dropped_and_a_steady_one_passes(monkeypatch):
    from ccnet import limits

    monkeypatch.setattr(limits, "BODY_GRACE_S", 0.2)
    monkeypatch.setattr(limits, "BODY_MIN_RATE", 10_000)  # bytes a second
    inner = EchoApp()
    slow = call(BodyLimit(inner), [b"x"] * 8, {"content-type": "application/json"}, gaps_s=0.1)  # 10 B/s
    assert slow[0] == 408 and b"too slow" in slow[1] and inner.bodies == []
    upload = call(BodyLimit(inner), [b"x"] * 8, {"content-type": "multipart/form-data; boundary=x"},
                  path="/gradio_api/upload", gaps_s=0.1)  # uploads are paced too
    assert upload[0] == 408 and inner.bodies == []
    steady = call(BodyLimit(inner), [b"x" * 3000] * 4, {"content-type": "application/json"}, gaps_s=0.1)
    assert steady == (200, b"12000")


def test_the_launch_settings_carry_the_published_limits():
    """Gradio is launched with the published limits (ccnet.limits, docs/robustness.md's table)."""
    from ccnet import limits
    from ccnet.app.server.launch import launch_options
    from ccnet.project import DEMOS

    options = launch_options()
    assert options["state_session_capacity"] == limits.SESSIONS and options["max_file_size"] == limits.FILE_BYTES
    assert options["ssr_mode"] is False and options["allowed_paths"] == [str(DEMOS)]  # from any working folder
    names = [m.cls.__name__ for m in options["app_kwargs"]["middleware"]]
    assert names == ["BodyLimit", "RouteGuard", "VouchForMcpCallers", "BlobRoute"]  # the upload door: with a sweeper


def test_a_burst_buys_no_long_pause(monkeypatch):
    """Ahead of the average pace by a burst, a body still may not pause past BODY_GRACE_S (before, a
    burst of N bytes bought N / BODY_MIN_RATE seconds of stall: 250 MiB, four hours)."""
    from ccnet import limits

    monkeypatch.setattr(limits, "BODY_GRACE_S", 0.3)
    monkeypatch.setattr(limits, "BODY_MIN_RATE", 1000)  # bytes a second: 900 bytes buy 0.9 s on average
    inner = EchoApp()
    paused = call(BodyLimit(inner), [b"x" * 900, b"x"], {"content-type": "application/json"}, gaps_s=[0.0, 0.6])
    assert paused[0] == 408 and inner.bodies == []  # on average it was ahead: 901 bytes in 0.6 s
    brisk = call(BodyLimit(inner), [b"x" * 900, b"x"], {"content-type": "application/json"}, gaps_s=[0.0, 0.1])
    assert brisk == (200, b"901")


def test_a_burst_buys_no_long_trickle(monkeypatch):
    """Ahead of the average by a burst, a body must still keep the pace over every window: a 76 MiB
    burst earned 80 minutes of one byte every 5 s, holding the upload space meanwhile."""
    from ccnet import limits

    monkeypatch.setattr(limits, "BODY_GRACE_S", 0.3)
    monkeypatch.setattr(limits, "BODY_MIN_RATE", 1000)  # bytes a second: 5000 bytes are 5 s on average
    inner = EchoApp()
    trickle = call(BodyLimit(inner), [b"x" * 5000] + [b"x"] * 10, {"content-type": "application/json"},
                   gaps_s=[0.0] + [0.2] * 10)
    assert trickle[0] == 408 and inner.bodies == []
    steady = call(BodyLimit(inner), [b"x" * 5000] + [b"x" * 200] * 10, {"content-type": "application/json"},
                  gaps_s=[0.0] + [0.1] * 10)  # 2000 B/s after the burst
    assert steady == (200, b"7000")


def test_one_client_sends_at_most_the_published_number_of_bodies_at_once():
    """Each body may hold BODY_BYTES until it is in: 300 stalled ones from one client held 318 MiB."""
    from ccnet.limits import BODIES_PER_CLIENT

    app, release = BodyLimit(EchoApp(), hops=0), asyncio.Event()

    async def send_body(client: str, stall: bool) -> int:
        scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "client": (client, 1),
                 "headers": [(b"content-type", b"application/json"), (b"content-length", b"4")]}
        pending = [{"type": "http.request", "body": b"{}", "more_body": True},
                   {"type": "http.request", "body": b"  ", "more_body": False}]
        sent = []

        async def receive():
            if stall and len(pending) == 1:
                await release.wait()
            return pending.pop(0) if pending else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        return next(m["status"] for m in sent if m["type"] == "http.response.start")

    async def flood() -> tuple[list[int], int, int, int]:
        held = [asyncio.create_task(send_body("10.0.0.2", stall=True)) for _ in range(BODIES_PER_CLIENT)]
        await asyncio.sleep(0.05)
        refused, other = await send_body("10.0.0.2", stall=False), await send_body("10.0.0.3", stall=False)
        release.set()
        statuses = list(await asyncio.gather(*held))
        return statuses, refused, other, await send_body("10.0.0.2", stall=False)

    statuses, refused, other, after = asyncio.run(flood())
    assert statuses == [200] * BODIES_PER_CLIENT and (refused, other, after) == (429, 200, 200)
    assert app.sending == {}

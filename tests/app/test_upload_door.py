"""The upload door under uploads in flight at once (ASGI level, an app that stores what it reads):
bytes are charged as they arrive, so a slow upload declaring the whole budget does not hold the
door; uploads in progress count, so two that fit alone cannot overfill it together; a client sends
at most the published number at once; and the sweeper never deletes a visitor's upload to make
room, only the server's own files."""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from ccnet.app.server.body_limit import BodyLimit
from ccnet.app.server.disk import AppFolder, FolderUsage, Sweeper
from ccnet.app.server.registry import UploadRegistry
from ccnet.app.server.upload_limit import FULL, TOO_MANY_OPEN, UploadLimit
from ccnet.limits import OPEN_UPLOADS_PER_CLIENT

BUDGET = 1_000_000


class StoringApp:
    """Reads the body (as Gradio's upload route streams it to disk), then answers its file's path."""

    def __init__(self, folder) -> None:
        self.folder, self.stored = folder, []

    async def __call__(self, scope, receive, send) -> None:
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RuntimeError("client went away")
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        path = self.folder / f"upload{len(self.stored)}.bin"
        path.write_bytes(b"x" * size)
        self.stored.append(size)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps([str(path)]).encode()})


def scope(client: str, declared: int | None) -> dict:
    headers = [(b"content-type", b"multipart/form-data; boundary=b")]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    return {"type": "http", "method": "POST", "path": "/gradio_api/upload", "client": (client, 1), "headers": headers}


async def upload(door, client: str, chunks: list[bytes], declared: int | None = None, pause_s: float = 0.0,
                 stall: asyncio.Event | None = None) -> int:
    """Send the chunks (pausing between them, or stalling after the first until `stall` is set)."""
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent = []

    async def receive():
        if stall is not None and len(pending) < len(chunks):
            await stall.wait()
        await asyncio.sleep(pause_s)
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await door(scope(client, declared if declared is not None else sum(map(len, chunks))), receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def door_for(tmp_path, registry=None, budget: int = BUDGET) -> tuple[UploadLimit, StoringApp]:
    app = StoringApp(tmp_path)
    return UploadLimit(app, usage=FolderUsage(tmp_path, ttl_s=3600), budget=budget, hops=0,
                       registry=registry), app


def test_slow_uploads_declaring_the_whole_budget_do_not_hold_the_door(tmp_path):
    """Four clients declare a quarter of the budget each (their share: the whole budget together)
    and stall after 1 KB: another visitor's upload is accepted meanwhile."""
    door, app = door_for(tmp_path)

    async def scenario():
        stall = asyncio.Event()
        slow = [asyncio.create_task(upload(door, f"10.0.0.{i}", [b"x" * 1000, b"x" * 1000], declared=BUDGET // 4,
                                           stall=stall)) for i in range(4)]
        await asyncio.sleep(0.05)
        assert door.in_flight == 4000  # charged what arrived, not what they declared
        other = await upload(door, "10.0.0.9", [b"y" * 200_000])
        stall.set()
        return other, await asyncio.gather(*slow)

    assert asyncio.run(scenario()) == (200, [200] * 4)
    assert sorted(app.stored) == [2000] * 4 + [200_000] and door.in_flight == 0


def test_uploads_in_flight_together_cannot_pass_the_budget(tmp_path):
    """Five uploads that fit alone (200 KB each, 900 KB of budget): whichever passes it first is cut."""
    door, app = door_for(tmp_path, budget=900_000)

    async def scenario():
        chunks = [b"x" * 40_000] * 5
        return await asyncio.gather(*(upload(door, f"10.0.0.{i}", chunks, pause_s=0.01) for i in range(5)))

    statuses = asyncio.run(scenario())
    assert sorted(statuses) == [200] * 4 + [507] and app.stored == [200_000] * 4 and door.in_flight == 0


def test_one_client_sends_at_most_the_published_number_of_uploads_at_once(tmp_path):
    door, app = door_for(tmp_path)

    async def scenario():
        stall = asyncio.Event()
        held = [asyncio.create_task(upload(door, "10.0.0.1", [b"x" * 10, b"x" * 10], stall=stall))
                for _ in range(OPEN_UPLOADS_PER_CLIENT)]
        await asyncio.sleep(0.05)
        sent = []

        async def send(message):
            sent.append(message)

        await door(scope("10.0.0.1", 20), None, send)  # refused before its body is read
        other = await upload(door, "10.0.0.2", [b"z" * 10])
        stall.set()
        return sent, other, await asyncio.gather(*held)

    sent, other, held = asyncio.run(scenario())
    assert sent[0]["status"] == 429 and sent[1]["body"] == TOO_MANY_OPEN
    assert other == 200 and held == [200] * OPEN_UPLOADS_PER_CLIENT


def test_a_trickling_upload_is_dropped_by_the_pace_and_releases_what_it_held(tmp_path, monkeypatch):
    from ccnet import limits

    monkeypatch.setattr(limits, "BODY_GRACE_S", 0.2)
    monkeypatch.setattr(limits, "BODY_MIN_RATE", 10_000)
    door, app = door_for(tmp_path)
    paced = BodyLimit(door)
    status = asyncio.run(upload(paced, "10.0.0.1", [b"x"] * 10, declared=BUDGET // 4, pause_s=0.1))
    assert status == 408 and app.stored == [] and door.in_flight == 0 and door.open == {}
    assert asyncio.run(upload(paced, "10.0.0.2", [b"y" * 200_000])) == 200


def test_the_sweeper_makes_room_from_the_servers_files_never_from_visitors_uploads(tmp_path):
    folder = AppFolder(tmp_path / "app")
    folder.gradio.mkdir(parents=True)
    folder.results.mkdir()
    registry = UploadRegistry()
    uploads = []
    for i in range(3):
        (folder.gradio / f"u{i}").mkdir()
        uploads.append(folder.gradio / f"u{i}" / "photo.png")
        uploads[-1].write_bytes(b"u" * 300)
        os.utime(uploads[-1], (time.time() - 600 + i, time.time() - 600 + i))  # older than the results
    registry.record(map(str, uploads), "10.0.0.1")
    results = [folder.results / f"r{i}.png" for i in range(3)]
    for path in results:
        path.write_bytes(b"r" * 300)
    each = registry.client_bytes("10.0.0.1") // 3  # a 300-byte file's blocks and its folder's
    swept = Sweeper(folder, budget=4 * each, registry=registry).sweep()  # 6 files > 3/4 of 4
    assert all(p.exists() for p in uploads) and not any(p.exists() for p in results)
    assert swept.remaining == 3 * each and registry.client_bytes("10.0.0.1") == 3 * each
    os.utime(uploads[0], (time.time() - 7200, time.time() - 7200))  # unused for two hours
    Sweeper(folder, budget=4 * each, registry=registry).sweep()
    assert not uploads[0].exists() and registry.client_bytes("10.0.0.1") == 2 * each


def test_a_full_upload_space_refuses_the_newcomer(tmp_path):
    registry = UploadRegistry()
    door, app = door_for(tmp_path, registry)
    statuses = [asyncio.run(upload(door, f"10.0.0.{i}", [b"x" * 240_000])) for i in range(5)]
    assert statuses == [200, 200, 200, 200, 507] and len(app.stored) == 4
    assert all(registry.is_upload(str(tmp_path / f"upload{i}.bin")) for i in range(4))
    assert FULL.startswith(b"The server's upload space is full")


def multipart(*parts: tuple[str, bytes]) -> bytes:
    """A body with boundary "b" (as `scope` declares): each part a file when it names one, else a field."""
    body = b""
    for disposition, content in parts:
        body += f'--b\r\nContent-Disposition: form-data; {disposition}\r\n\r\n'.encode() + content + b"\r\n"
    return body + b"--b--\r\n"


def test_a_form_field_on_the_upload_route_is_refused_before_gradio_holds_it(tmp_path):
    """Gradio keeps a part without a filename in memory, whatever its size (four 250 MiB fields held
    944 MiB): such a part is refused (400) once its headers are read, wherever the chunks split them;
    files pass as before."""
    field = multipart(('name="files"; filename="a.png"', b"\x89PNG" * 10), ('name="note"', b"y" * 100_000))
    files = multipart(('name="files"; filename="a.png"', b"\x89PNG" * 10),
                      ('name="files"; filename="b;c.png"', b"--b-ish\r\n--" * 50))
    for cut in range(1, 220, 7):  # the second part's headers split at every place, in turn
        door, app = door_for(tmp_path)
        assert asyncio.run(upload(door, "10.0.0.2", [field[:cut], field[cut:cut + 200], field[cut + 200:]])) == 400
        assert app.stored == []
        door, app = door_for(tmp_path)
        assert asyncio.run(upload(door, "10.0.0.2", [files[:cut], files[cut:]])) == 200
        assert app.stored == [len(files)]
    for disguised in ('name="filename"', "name=\"x\"; filename*=UTF-8''b.png"):  # fields to Gradio's parser too
        door, app = door_for(tmp_path)
        assert asyncio.run(upload(door, "10.0.0.2", [multipart((disguised, b"y" * 1000))])) == 400
    for lead in (b"\n", b"\r", b"\r\n"):  # Gradio's parser skips line breaks before the first boundary
        door, app = door_for(tmp_path)
        assert asyncio.run(upload(door, "10.0.0.2", [lead + multipart(('name="note"', b"y" * 1000))])) == 400


def test_an_upload_naming_two_content_types_is_refused():
    """The framework reads the first Content-Type, a check reading the last would look for another
    boundary and see no part at all: such a request is refused before its body is read."""
    door, app = door_for(Path(tempfile.mkdtemp()))
    sent = []

    async def receive():
        return {"type": "http.request", "body": multipart(('name="note"', b"y" * 1000)), "more_body": False}

    async def send(message):
        sent.append(message)

    request = scope("10.0.0.2", 2000)
    request["headers"].append((b"content-type", b"multipart/form-data; boundary=z"))
    asyncio.run(door(request, receive, send))
    assert sent[0]["status"] == 400 and app.stored == [] and door.open == {}


def test_the_mcp_bridges_uploads_have_an_account_and_a_life_of_their_own(tmp_path):
    """Gradio's MCP bridge uploads a tool call's image from loopback without the caller's address:
    counted as loopback's, 30 calls under a 64 MiB budget locked every MCP caller out for an hour.
    Its uploads get their own account and live BRIDGE_UPLOAD_S unused; the same marks from another
    address, or behind a proxy's address, are an ordinary client's."""
    from ccnet.app.server.clients import bridge_upload
    from ccnet.app.server.registry import BRIDGE
    from ccnet.limits import BRIDGE_UPLOAD_S

    def marked(host: str, *extra: tuple[bytes, bytes]) -> dict:
        request = scope(host, None)
        request["headers"] += [(b"x-gradio-user", b"mcp"), *extra]
        return request

    assert bridge_upload(marked("127.0.0.1")) and bridge_upload(marked("::1"))
    assert not bridge_upload(marked("203.0.113.9")) and not bridge_upload(scope("127.0.0.1", None))
    assert not bridge_upload(marked("127.0.0.1", (b"x-forwarded-for", b"203.0.113.9")))
    registry = UploadRegistry()
    door, app = door_for(tmp_path, registry)
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"x" * 1000, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(door(marked("127.0.0.1"), receive, send))
    assert sent[0]["status"] == 200 and registry.client_bytes(BRIDGE) > 0 == registry.client_bytes("127.0.0.1")
    bridged, visitor = tmp_path / "upload0.bin", tmp_path / "visitor" / "photo.png"
    visitor.parent.mkdir()
    visitor.write_bytes(b"v" * 1000)
    registry.record([str(visitor)], "10.0.0.2")
    for path in (bridged, visitor):
        os.utime(path, (time.time() - BRIDGE_UPLOAD_S - 5, time.time() - BRIDGE_UPLOAD_S - 5))
    assert registry.client_bytes(BRIDGE) == 0 and registry.client_bytes("10.0.0.2") > 0
    folder = AppFolder(tmp_path)
    Sweeper(folder, budget=10**9, registry=registry).sweep()
    assert not bridged.exists() and visitor.exists()

"""A request may name only files uploaded to the app (or the demos): any Gradio file object in its
data, however nested, that names another server path or a URL is refused before it is queued."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from ccnet.app.server.uploads import foreign_file, refuse_foreign_files
from ccnet.project import DEMOS


def file_object(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def test_only_files_inside_the_roots_pass(tmp_path):
    inside = tmp_path / "uploads" / "abc" / "scene.png"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"x")
    roots = (tmp_path / "uploads", DEMOS)
    assert foreign_file([file_object(str(inside)), "default", ""], roots) is None
    assert foreign_file([file_object(str(DEMOS / "street_seed1_car.png"))], roots) is None
    assert foreign_file(["/etc/passwd", {"path": "/etc/passwd"}], roots) is None  # not file objects: values
    for bad in ("/etc/passwd", str(tmp_path / "uploads" / ".." / "secret.png"), "http://10.0.0.1/x.png"):
        for data in ([file_object(bad)], [{"image": file_object(bad)}], [[0, file_object(bad)]]):
            refusal = foreign_file(data, roots)
            assert refusal and "was not uploaded to this app" in refusal and "\n" not in refusal


def test_the_queue_refuses_before_queueing():
    queued = []

    async def push(body, request, username):
        queued.append(body)
        return True, "event", "success"

    queue = SimpleNamespace(push=push)
    refuse_foreign_files(queue, lambda: (DEMOS,))
    good = SimpleNamespace(data=[file_object(str(DEMOS / "street_seed1_car.png")), ""])
    bad = SimpleNamespace(data=[file_object("/etc/hostname"), ""])
    assert asyncio.run(queue.push(good, None, None)) == (True, "event", "success")
    ok, message, state = asyncio.run(queue.push(bad, None, None))
    assert (ok, state) == (False, "error") and "hostname was not uploaded" in message
    assert queued == [good]

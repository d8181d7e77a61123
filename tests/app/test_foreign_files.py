"""A request may name only files uploaded to the app (or the demos): any Gradio file object in its
data, however nested, that names another server path or a URL is refused before it is queued."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from ccnet.app.server.uploads import foreign_file, refuse_bad_requests
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
    for bad in ("/etc/passwd", str(tmp_path / "uploads" / ".." / "secret.png")):
        for data in ([file_object(bad)], [{"image": file_object(bad)}], [[0, file_object(bad)]]):
            refusal = foreign_file(data, roots)
            assert refusal and "was not uploaded to this app" in refusal and "\n" not in refusal
    for url in ("http://10.0.0.1/x.png", "HTTPS://127.0.0.1:7860/gradio_api/file=/tmp/x.png", "data:image/png;base64,"):
        refusal = foreign_file([file_object(url)], roots)
        assert refusal and "fetches no URL" in refusal and "127.0.0.1" not in refusal and "\n" not in refusal


def test_the_queue_refuses_before_queueing():
    queued = []

    async def push(body, request, username):
        queued.append(body)
        return True, "event", "success"

    queue = SimpleNamespace(push=push, blocks=SimpleNamespace(fns={7: SimpleNamespace(inputs=[1, 2])}))
    refuse_bad_requests(queue, lambda: (DEMOS,))
    good = SimpleNamespace(fn_index=7, data=[file_object(str(DEMOS / "street_seed1_car.png")), ""])
    assert asyncio.run(queue.push(good, None, None)) == (True, "event", "success")
    outside = SimpleNamespace(fn_index=7, data=[file_object("/etc/hostname"), ""])
    for bad, words in ((outside, "hostname was not uploaded"),
                       (SimpleNamespace(fn_index=99, data=[]), "unknown function 99"),
                       (SimpleNamespace(fn_index=None, data=[]), "unknown function None"),
                       (SimpleNamespace(fn_index=7, data=[1]), "takes 2 inputs, got 1"),
                       (SimpleNamespace(fn_index=7, data={"a": 1}), "takes 2 inputs, got {'a': 1}")):
        ok, message, state = asyncio.run(queue.push(bad, None, None))
        assert (ok, state) == (False, "error") and words in message and "\n" not in message
    assert queued == [good]

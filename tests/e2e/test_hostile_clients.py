"""The served app against hostile clients, on loopback with the app's own launch settings: one
client's flood of unread requests does not lock another out, a body of tens of MB is refused
before it is read, and sessionless calls by the hundred leave a bounded number of sessions."""
from __future__ import annotations

import contextlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ccnet.limits import BODY_BYTES, SESSIONS, WAITING_PER_CLIENT
from ccnet.project import DEMOS
from tools import hostile
from tools.loadtest import status_mib
from tools.ports import free_port

ATTACKER, VICTIM = "127.0.0.2", "127.0.0.3"


def closed_by_server(sock, trickle: bytes = b"", tries: int = 0) -> bool:
    """Whether the server closed the connection (its end, or a reset with unread bytes in its
    buffer), after sending ``trickle`` every 0.1 s ``tries`` times."""
    try:
        for _ in range(tries):
            sock.sendall(trickle)
            time.sleep(0.1)
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(port, demo, image path on the server): the app with a cost measurement slowed to 0.3 s, so
    that requests queue up behind each other as on a busy server."""
    from ccnet.app.explorer import Explorer
    from ccnet.app.exports import Exports
    from ccnet.app.ui import build_app, launch_options

    class SlowCost(Explorer):
        def cost(self, *args, **kwargs):
            time.sleep(0.3)
            return super().cost(*args, **kwargs)

    demo = build_app(SlowCost("default", device="cpu"), Exports(tmp_path_factory.mktemp("exports")))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        status, path = hostile.upload(port, "scene.png", (DEMOS / "street_seed1_car.png").read_bytes())
        assert status == 200, path
        yield port, demo, {"path": path, "meta": {"_type": "gradio.FileData"}}
    finally:
        demo.close()


def test_one_client_flooding_the_queue_does_not_lock_another_out(server):
    """70 unread requests from one address: without a per-client cap they would fill the whole
    queue (64) and the next visitor would be refused; with it, the flood stops at the cap."""
    port, _, image = server
    with ThreadPoolExecutor(8) as pool:
        posted = list(pool.map(lambda _: hostile.submit(port, "cost", [image, ""], ATTACKER), range(70)))
    statuses = [status for status, _ in posted]
    assert statuses.count(200) <= WAITING_PER_CLIENT + 2  # + those already running when the rest arrived
    refusal = next(text for status, text in posted if status != 200)
    assert "retry" in refusal and "\n" not in refusal.strip()
    victim = hostile.call(port, "cost", [image, ""], VICTIM)
    assert victim.status == 200 and victim.outcome == "complete", victim.text
    # the admitted calls run to their end; read them, so that none still runs (and allocates) in the next test
    assert all(hostile.result(port, "cost", event, ATTACKER)[0] == "complete" for status, event in posted
               if status == 200)


def test_a_huge_body_is_refused_before_it_is_read(server):
    port, _, _ = server
    before = status_mib(os.getpid(), "VmRSS")
    status, text = hostile.huge_body(port, "segment", 64 << 20)
    assert status in (413, 0), text  # 0: the server answered and hung up while the body was still being sent
    assert status_mib(os.getpid(), "VmRSS") - before < 32  # the 64 MB were never held
    status, text = hostile.huge_body(port, "segment", BODY_BYTES + 1)
    assert status == 413 and "too large" in text


def test_sessionless_calls_keep_a_bounded_number_of_sessions(server):
    port, demo, image = server
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: hostile.call(port, "attention_maps", [image, 10, 10, "", "", ""]),
                                range(SESSIONS + 16)))
    assert all(a.outcome == "complete" for a in answers)
    assert len(demo.state_holder.session_data) <= SESSIONS


def test_a_request_naming_a_server_file_is_refused_in_one_line_without_a_traceback(server, capfd):
    port, _, image = server
    capfd.readouterr()
    status, text = hostile.submit(port, "segment", [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}},
                                                    "", ""], ATTACKER)
    assert status == 400 and "passwd was not uploaded to this app" in text
    assert hostile.call(port, "segment", [image, "", ""], VICTIM).outcome == "complete"
    assert "Traceback" not in capfd.readouterr().err


def test_a_session_keeps_no_picture_or_map_of_the_image_it_shows(tmp_path):
    """The page's upload event on a 2048 px image, in fresh sessions as Gradio runs it: what each
    session keeps (every output's last value) stays within the published bound; the picture and
    the maps are fetched from the blob route instead (4.7 MB a session before)."""
    import asyncio
    import json

    import gradio as gr
    from gradio.state_holder import SessionState
    from PIL import Image

    from ccnet.app.explorer import Explorer
    from ccnet.app.exports import Exports
    from ccnet.app.ui import build_app
    from ccnet.experiments.scenes import generate_scene
    from ccnet.limits import SESSION_STATE_BYTES

    demo = build_app(Explorer("default", device="cpu"), Exports(tmp_path / "exports"))
    upload = next(fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "on_upload")
    photo = Path(gr.utils.get_upload_folder()) / "session-test" / "wide.png"  # where Gradio keeps uploads
    photo.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(generate_scene(3, 1024, 2048, split="eval").image).save(photo)
    for _ in range(2):
        state = SessionState(demo)
        before = len(json.dumps(state.config_values, default=str))
        asyncio.run(demo.process_api(block_fn=upload, inputs=[{"path": str(photo)}, "default", "interactive"],
                                     state=state))
        viewer = next(v["props"]["value"] for v in state.config_values.values()
                      if v.get("props", {}).get("elem_id") == "viewer")
        assert viewer["size"] == [1024, 2048] and viewer["data"].startswith("ccnet/data/")  # the image is shown
        kept = len(json.dumps(state.config_values, default=str)) - before
        assert 0 < kept <= SESSION_STATE_BYTES, kept


def test_a_pin_keeps_a_view_name_in_the_session_not_what_the_event_sent(tmp_path):
    """A crafted pin event whose view is 900 KB of text: the session keeps the view a page could
    have sent (before, the raw string, and 250 such sessions held 220 MiB)."""
    import asyncio
    import json

    from gradio.events import EventData
    from gradio.state_holder import SessionState

    from ccnet.app.explorer import Explorer
    from ccnet.app.exports import Exports
    from ccnet.app.ui import build_app
    from ccnet.limits import SESSION_STATE_BYTES
    from ccnet.project import DEMOS

    demo = build_app(Explorer("default", device="cpu"), Exports(tmp_path / "exports"))
    pin = next(fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "on_pin")
    state = SessionState(demo)

    def kept() -> int:
        return len(json.dumps([state.config_values, state.state_data], default=str))

    before = kept()
    image = {"path": str(DEMOS / "street_seed2_truck.png")}
    for view in ("step2", "x" * 900_000):
        asyncio.run(demo.process_api(block_fn=pin, inputs=[image, None, "default", "interactive", 5], state=state,
                                     event_data=EventData(None, {"x": 210, "y": 170, "view": view})))
        [click] = [value for value in state.state_data.values() if isinstance(value, list) and value[:2] == [210, 170]]
        assert click == [210, 170, "step2" if view == "step2" else "composed"]
        assert kept() - before <= SESSION_STATE_BYTES


def test_upload_ids_leave_no_trace_and_the_file_route_fetches_no_url(server):
    """Gradio keeps an entry for every upload_id named, used or not (12,000 ids of 8 KB held 140 MiB),
    and its file route would fetch a URL: ids are taken off uploads, progress answers 404 at once,
    and a URL 403, each in one line."""
    from gradio.routes import file_upload_statuses

    port, _, _ = server
    tracked = len(file_upload_statuses._signals), len(file_upload_statuses._statuses)
    started = time.monotonic()
    for i in range(20):
        assert hostile.get(port, f"/gradio_api/upload_progress?upload_id={i}{'x' * 8000}") == (
            "Upload progress is not offered by this server.\n")
    assert time.monotonic() - started < 3  # Gradio waited 3 s for each before its 404
    boundary = "b0undary"
    body = hostile._multipart("scene.png", (DEMOS / "street_seed1_car.png").read_bytes(), boundary)
    for query in ("upload_id=abc" + "y" * 8000, "upload%5Fid=def" + "z" * 8000):
        status, answer = hostile.post(port, "/gradio_api/upload?" + query, body,
                                      {"content-type": f"multipart/form-data; boundary={boundary}"})
        assert status == 200 and Path(json.loads(answer)[0]).is_file()  # stored as before
    assert (len(file_upload_statuses._signals), len(file_upload_statuses._statuses)) == tracked
    for url in ("https://example.com/x.png", "HTTPS%3A//example.com/x.png", "http://127.0.0.1:1/x"):
        assert hostile.get(port, f"/gradio_api/file={url}") == "This server fetches no URL.\n"


def test_one_address_holding_connections_with_trickling_heads_leaves_the_door_open(server):
    """uvicorn gives a request's head no deadline: connections that send a header byte now and then
    held every file descriptor (20,000) and nobody else was answered. One address keeps
    CONNECTIONS_PER_CLIENT open; past them it is closed at once, and another address is served."""
    import socket

    from ccnet.limits import CONNECTIONS_PER_CLIENT

    port, _, _ = server

    def trickling() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(ATTACKER, 0))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-a: ")
        return sock

    held = [trickling() for _ in range(CONNECTIONS_PER_CLIENT)]
    try:
        time.sleep(0.3)
        assert all(sock.fileno() >= 0 for sock in held)
        with trickling() as extra:
            assert closed_by_server(extra)  # before it read a byte
        started = time.monotonic()
        assert '"version"' in hostile.get(port, "/config", source=VICTIM)
        assert time.monotonic() - started < 5
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while True:  # the server sees the connections go, then serves the address again
        try:
            assert '"version"' in hostile.get(port, "/config", source=ATTACKER)
            break
        except (OSError, AssertionError):
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_a_request_head_that_trickles_is_closed_and_a_slow_whole_one_is_served(server, monkeypatch):
    """A head must be in within BODY_GRACE_S of the connection's opening (behind a proxy too): one
    that trickles, or a connection that sends nothing, is closed then, whoever holds it; a head that
    pauses but comes whole in time is answered."""
    import socket

    from ccnet import limits

    monkeypatch.setattr(limits, "BODY_GRACE_S", 0.5)
    port, _, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(VICTIM, 0)) as slow:
        slow.sendall(b"GET /config HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3)
        slow.sendall(b"\r\n")
        assert slow.recv(12) == b"HTTP/1.1 200"
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(ATTACKER, 0)) as trickle:
        started = time.monotonic()
        trickle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert closed_by_server(trickle, b"X", tries=20)  # a header byte now and then
        assert time.monotonic() - started < 3
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(ATTACKER, 0)) as silent:
        started = time.monotonic()
        assert closed_by_server(silent) and time.monotonic() - started < 3  # it sends nothing at all


def test_a_chunked_request_body_is_refused_before_its_chunks_are_parsed(server):
    """The HTTP parser pays for every chunk before any body limit sees it: a stream of 1-byte chunks
    to a route that never reads its body held the event loop (a visitor waited 7 s). Bodies must state
    their length; a chunked one is answered 411 and its connection closed, and others are served."""
    import socket

    port, _, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(ATTACKER, 0)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * 1000)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(4096):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 411") and answer.endswith(b"chunked bodies are not read.\n")
    assert '"version"' in hostile.get(port, "/config", source=VICTIM)

"""Raw HTTP against the served app on loopback, as a hostile client sends it: calls with no session,
posts whose answers are never read, uploads that are misnamed or cut off, bodies far too large, and
requests from other loopback addresses (127.0.0.2, ...) to stand for other clients.

Only 127.0.0.0/8 is ever contacted: every function takes a port on 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
import uuid
from dataclasses import dataclass

HOST = "127.0.0.1"


@dataclass
class Answer:
    """What one call got: its HTTP status, its outcome ("complete", "error", "refused") and text."""

    status: int
    outcome: str
    text: str
    seconds: float


def _connection(port: int, source: str, timeout: float) -> http.client.HTTPConnection:
    if not source.startswith("127."):
        raise ValueError(f"loopback only, not {source}")
    return http.client.HTTPConnection(HOST, port, timeout=timeout, source_address=(source, 0))


def post(port: int, path: str, body: bytes | list[bytes], headers: dict[str, str], source: str = HOST,
         timeout: float = 60) -> tuple[int, bytes]:
    """(status, body); the body is bytes or the list of its parts (a huge body made of one part
    repeated, never held whole). A server that refuses before reading the whole body may hang up
    while it is still being sent: its answer is read if it came, else the status is 0."""
    parts = [body] if isinstance(body, bytes) else body
    connection = _connection(port, source, timeout)
    try:
        connection.putrequest("POST", path)
        for name, value in {**headers, "content-length": str(sum(map(len, parts)))}.items():
            connection.putheader(name, value)
        connection.endheaders()
        with contextlib.suppress(OSError):  # a refusal may come before the whole body is sent
            for part in parts:
                connection.send(part)
        try:
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return 0, b"connection closed by the server"
    finally:
        connection.close()


def submit(port: int, api: str, data: list, source: str = HOST) -> tuple[int, str]:
    """POST /gradio_api/call/API with no session: (status, event id or the refusal's text)."""
    status, body = post(port, f"/gradio_api/call/{api}", json.dumps({"data": data}).encode(),
                        {"content-type": "application/json"}, source)
    text = body.decode(errors="replace")
    return status, (json.loads(text)["event_id"] if status == 200 else text)


def result(port: int, api: str, event_id: str, source: str = HOST, timeout: float = 120) -> tuple[str, str]:
    """Read a submitted call's server-sent events until it completes or fails: (outcome, data)."""
    connection = _connection(port, source, timeout)
    try:
        connection.request("GET", f"/gradio_api/call/{api}/{event_id}")
        response, event = connection.getresponse(), ""
        for raw in response:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event in ("complete", "error"):
                return event, line[6:]
        return "error", "the stream ended without an answer"
    finally:
        connection.close()


def call(port: int, api: str, data: list, source: str = HOST, timeout: float = 120) -> Answer:
    """One sessionless call, submitted and read, timed."""
    start = time.perf_counter()
    status, event_id = submit(port, api, data, source)
    if status != 200:
        return Answer(status, "refused", event_id, time.perf_counter() - start)
    outcome, text = result(port, api, event_id, source, timeout)
    return Answer(status, outcome, text, time.perf_counter() - start)


def _multipart(name: str, content: bytes, boundary: str) -> bytes:
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode()


def upload(port: int, name: str, content: bytes, source: str = HOST) -> tuple[int, str]:
    """POST /gradio_api/upload with one file: (status, the server's path of it or the refusal)."""
    boundary = uuid.uuid4().hex
    status, body = post(port, "/gradio_api/upload", _multipart(name, content, boundary),
                        {"content-type": f"multipart/form-data; boundary={boundary}"}, source)
    text = body.decode(errors="replace")
    return status, (json.loads(text)[0] if status == 200 else text.strip())


def aborted_upload(port: int, size: int, sent: int, source: str = HOST) -> None:
    """Declare an upload of `size` bytes, send `sent` of them, and hang up."""
    boundary = uuid.uuid4().hex
    body = _multipart("partial.png", b"\0" * size, boundary)
    with socket.create_connection((HOST, port), timeout=30, source_address=(source, 0)) as sock:
        sock.sendall((f"POST /gradio_api/upload HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n").encode())
        with contextlib.suppress(OSError):  # the server may refuse (and hang up) before the half is sent
            sock.sendall(body[:sent])
            time.sleep(0.2)  # let the server write what it got before the connection drops


def huge_body(port: int, api: str, size: int, source: str = HOST) -> tuple[int, str]:
    """A JSON body of `size` bytes (spaces), sent 1 MiB at a time so that the client never holds it
    (a test measuring the server in its own process sees the server alone): (status, text), status 0
    when the server hung up."""
    whole, rest = divmod(size, 1 << 20)
    parts = [b" " * (1 << 20)] * whole + [b" " * rest]  # one MiB object, repeated
    status, body = post(port, f"/gradio_api/call/{api}", parts, {"content-type": "application/json"}, source,
                        timeout=120)
    return status, body.decode(errors="replace").strip()




def get(port: int, path: str, source: str = HOST) -> str:
    connection = _connection(port, source, 60)
    try:
        connection.request("GET", path)
        return connection.getresponse().read().decode(errors="replace")
    finally:
        connection.close()


def join(port: int, fn_index: int, data: list, session: str, source: str = HOST, timeout: float = 120) -> str:
    """Run one of the page's own events as the page does (queue/join, then the session's event
    stream): 'complete', 'error' or the refusal."""
    status, body = post(port, "/gradio_api/queue/join",
                        json.dumps({"data": data, "fn_index": fn_index, "session_hash": session}).encode(),
                        {"content-type": "application/json"}, source)
    if status != 200:
        return f"refused {status}"
    connection = _connection(port, source, timeout)
    try:
        connection.request("GET", f"/gradio_api/queue/data?session_hash={session}")
        for raw in connection.getresponse():
            line = raw.decode(errors="replace").strip()
            if line.startswith("data:") and '"process_completed"' in line:
                return "complete" if json.loads(line[5:]).get("success") else "error"
        return "error"
    finally:
        connection.close()

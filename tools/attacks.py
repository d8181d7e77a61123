"""`python -m tools.loadtest --adversarial`: the attacks of a public Space's worst day, replayed on
loopback against `python app.py`, with what they cost the server and its other visitors.

Each attack reports the server's memory (RSS) and disk before and after, and how a victim (another
client, from another loopback address) fared meanwhile: sessionless calls by the thousand, a slow
model download, a flood of unread requests from one client, decoding bombs, a body of hundreds of
MB, echoed and non-finite input, and a disk flood ended by a shutdown. Bounded (counts and sizes
fixed below) and loopback only.
"""
from __future__ import annotations

import io
import os
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

from ccnet import limits
from ccnet.app.explorer import PHOTO_MODEL
from ccnet.app.server.disk import folder_bytes, scan
from ccnet.project import DEMOS
from tools import hostile
from tools.attacks_limits import print_round_two, round_two
from tools.loadtest import serve_app, status_mib
from tools.ports import free_port

SESSIONS_WARM, SESSIONS = 200, 2000  # sessionless calls before the first and between the two RSS readings
FLOOD = 100  # unread requests one client posts at once
TEST_DISK_MB = 256  # the served app's upload space in this run
TRICKLE_BYTES_PER_S = 128 << 10
IDLE_WAIT_S = 75  # two of IdleRelease's 30 s looks and some
VICTIM, ATTACKER = "127.0.0.3", "127.0.0.2"


class Trickle(ThreadingHTTPServer):
    """A model host on a slow link: every file is 400 MB, sent at TRICKLE_BYTES_PER_S."""

    daemon_threads = True

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(400 << 20))
                self.end_headers()
                try:
                    while True:
                        self.wfile.write(b"\0" * (TRICKLE_BYTES_PER_S // 8))
                        time.sleep(0.125)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        super().__init__((hostile.HOST, 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def _file(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def _median_ms(answers: list[hostile.Answer]) -> float:
    return round(statistics.median(a.seconds for a in answers) * 1000, 1)


def sessions(port: int, pid: int, image: str) -> dict:
    """Thousands of calls that each open a new session: RSS after warm-up, then after SESSIONS more."""
    for _ in range(SESSIONS_WARM):
        hostile.call(port, "cost", [_file(image), ""])
    before = status_mib(pid, "VmRSS")
    failed = sum(hostile.call(port, "cost", [_file(image), ""]).outcome != "complete" for _ in range(SESSIONS))
    after = status_mib(pid, "VmRSS")
    return {"calls": SESSIONS, "failed": failed, "rss_before_mib": round(before, 1), "rss_after_mib": round(after, 1),
            "rss_growth_mib": round(after - before, 1)}


def slow_download(port: int, image: str) -> dict:
    """One visitor asks for a released model whose host trickles; another clicks on a cached image."""
    hostile.call(port, "attention", [_file(image), 165, 182, "", "", ""], VICTIM)  # cached from now on
    started = time.perf_counter()
    asker = hostile.call(port, "segment", [_file(image), PHOTO_MODEL, ""], ATTACKER)
    victim = [hostile.call(port, "attention", [_file(image), 40 + 30 * i, 150, "", "", ""], VICTIM)
              for i in range(10)]
    return {"asker_seconds": round(asker.seconds, 2), "asker_answer": asker.text[:160],
            "victim_median_ms": _median_ms(victim), "victim_max_ms": round(max(a.seconds for a in victim) * 1000, 1),
            "victim_errors": sum(a.outcome != "complete" for a in victim),
            "download_still_running": time.perf_counter() - started < (400 << 20) / TRICKLE_BYTES_PER_S}


def queue_flood(port: int, image: str) -> dict:
    """One client posts FLOOD requests at once and reads none; another then calls once."""
    with ThreadPoolExecutor(16) as pool:
        posted = list(pool.map(lambda _: hostile.submit(port, "segment", [_file(image), "", ""], ATTACKER),
                               range(FLOOD)))
    victim = hostile.call(port, "attention", [_file(image), 300, 120, "", "", ""], VICTIM)
    accepted = sum(status == 200 for status, _ in posted)
    return {"posted": FLOOD, "accepted": accepted, "refused": FLOOD - accepted,
            "victim_outcome": victim.outcome, "victim_ms": round(victim.seconds * 1000, 1),
            "refusal_text": next((text for status, text in posted if status != 200), "")[:160]}


def _bomb(mode: str) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    if mode == "I;16":
        Image.new("I;16", (6320, 6320), 1000).save(buffer, "PNG")
        return "bomb16.png", buffer.getvalue()
    Image.new("F", (6320, 6320), 0.5).save(buffer, "TIFF", compression="tiff_adobe_deflate")
    return "bombf.tif", buffer.getvalue()


def decoding(port: int, pid: int, small: str) -> dict:
    """A 16-bit PNG and a float TIFF of 6320x6320 (KBs on disk), then a small image; then the
    server idles until it gives back the memory its allocator kept (ccnet.app.server.allocator)."""
    rows, start = {}, status_mib(pid, "VmRSS")
    for mode in ("I;16", "F"):
        name, content = _bomb(mode)
        status, path = hostile.upload(port, name, content)
        before = status_mib(pid, "VmRSS")
        answer = hostile.call(port, "segment", [_file(path), "", ""])
        rows[mode] = {"file_kb": round(len(content) / 1024, 1), "upload_status": status, "outcome": answer.outcome,
                      "answer": answer.text[:160] if answer.outcome != "complete" else "",
                      "rss_after_minus_before_mib": round(status_mib(pid, "VmRSS") - before, 1)}
    rows["next_small_image"] = hostile.call(port, "segment", [_file(small), "", ""]).outcome
    served, deadline = status_mib(pid, "VmRSS"), time.monotonic() + IDLE_WAIT_S
    idle = served
    while time.monotonic() < deadline and idle > start + 100:
        time.sleep(1)
        idle = min(idle, status_mib(pid, "VmRSS"))
    rows["rss_growth_served_mib"] = round(served - start, 1)
    rows["rss_growth_after_idle_mib"] = round(idle - start, 1)
    rows["idle_wait_s"] = round(IDLE_WAIT_S - max(0.0, deadline - time.monotonic()), 1)
    return rows


def bodies(port: int, pid: int, image: str) -> dict:
    """A 300 MB JSON body, a 1 MiB coordinate echoed back, and non-finite coordinates."""
    before = status_mib(pid, "VmRSS")
    status, text = hostile.huge_body(port, "segment", 300 << 20)
    grown = status_mib(pid, "VmRSS") - before
    echo = hostile.call(port, "attention", [_file(image), "x" * (1 << 20), 3, "", "", ""])
    infinite = hostile.call(port, "attention", [_file(image), float("inf"), 3, "", "", ""])
    return {"huge_body_status": status, "huge_body_answer": text[:120], "huge_body_rss_growth_mib": round(grown, 1),
            "echo_answer_chars": len(echo.text), "infinite_outcome": infinite.outcome,
            "infinite_answer": infinite.text[:160]}


def disk_flood(port: int, folder: Path) -> dict:
    """Misnamed and aborted uploads (bodies Gradio leaves behind), a few seconds for the app to sweep
    them, then more uploads than the upload space holds."""
    before = folder_bytes(folder)
    content = b"\0" * (limits.FILE_BYTES - (64 << 10))  # just under the app's limit per file
    misnamed = [hostile.upload(port, "..", content)[0] for _ in range(10)]
    for _ in range(10):
        hostile.aborted_upload(port, len(content), len(content) // 2)
    after_failures = folder_bytes(folder)
    time.sleep(5)
    after_sweep = folder_bytes(folder)
    normal = [hostile.upload(port, f"u{i}.png", content)[0] for i in range(30)]
    return {"before_mib": round(before / 2**20, 1), "misnamed_statuses": sorted(set(misnamed)), "aborted": 10,
            "after_failed_uploads_mib": round(after_failures / 2**20, 1),
            "five_seconds_later_mib": round(after_sweep / 2**20, 1),
            "uploads": 30, "uploads_accepted": normal.count(200), "uploads_refused": len(normal) - normal.count(200),
            "after_flood_mib": round(folder_bytes(folder) / 2**20, 1), "budget_mib": TEST_DISK_MB}


def shutdown(server: object, folder: Path, sig: int = signal.SIGTERM) -> dict:
    start = time.perf_counter()
    server.send_signal(sig)
    try:
        code = server.wait(timeout=30)
    except Exception:  # noqa: BLE001 - still running: counted, then killed
        server.kill()
        code = None
    return {"signal": signal.Signals(sig).name, "exit_code": code, "seconds": round(time.perf_counter() - start, 2),
            "files_left_mib": round(folder_bytes(folder) / 2**20, 1),
            "files_left": len(scan(folder))}


def run_attacks(app_py: Path, workdir: Path, log: Callable[[str], None] = print) -> dict:
    """Serve the app with a trickling model host and a small upload space, replay every attack."""
    trickle = Trickle()
    temp = workdir / "gradio-temp"
    env = {"CCNET_ZOO_URL": f"http://{hostile.HOST}:{trickle.server_address[1]}/",
           "CCNET_CACHE": str(workdir / "cache"), "GRADIO_TEMP_DIR": str(temp),
           "CCNET_DISK_BUDGET_MB": str(TEST_DISK_MB)}
    port = free_port()
    server = serve_app(app_py, port, env=env)
    result: dict = {"machine": f"{os.cpu_count()} CPUs", "load_average": os.getloadavg()[0]}
    try:
        _, image = hostile.upload(port, "scene.png", (DEMOS / "street_seed1_car.png").read_bytes())
        _, small = hostile.upload(port, "small.png", (DEMOS / "street_seed2_truck.png").read_bytes())
        for name, attack in (("sessions", lambda: sessions(port, server.pid, image)),
                             ("slow_download", lambda: slow_download(port, image)),
                             ("queue_flood", lambda: queue_flood(port, image)),
                             ("decoding", lambda: decoding(port, server.pid, small)),
                             ("bodies", lambda: bodies(port, server.pid, image))):
            log(f"attack: {name}")
            result[name] = attack()
            time.sleep(2)  # let the queue drain before the next attack
        result["round_two"] = round_two(port, server.pid, workdir, image, (DEMOS / "street_seed3_car.png").read_bytes())
        log("attack: disk_flood")
        result["disk_flood"] = disk_flood(port, temp)
        hanging = [hanging_upload(port, f"127.0.5.{i}") for i in range(1, 4)]
        result["shutdown"] = shutdown(server, temp)
        for sock in hanging:
            sock.close()
        result["tracebacks_in_the_server_log"] = tracebacks(server.log_text())
    finally:
        if server.poll() is None:
            server.kill()
        trickle.shutdown()
    return result


def print_attacks(result: dict) -> None:
    """One line per attack: what the server kept (memory, disk) and how the victim fared."""
    s, d, q, b, k = (result[n] for n in ("sessions", "slow_download", "queue_flood", "bodies", "disk_flood"))
    shut = result["shutdown"]
    print(f"load average {result['load_average']:.2f} on {result['machine']}")
    print(f"sessions      {s['calls']} sessionless calls: RSS {s['rss_before_mib']} -> {s['rss_after_mib']} MiB "
          f"({s['rss_growth_mib']:+} MiB), {s['failed']} failed")
    print(f"slow download victim median {d['victim_median_ms']} ms, max {d['victim_max_ms']} ms, "
          f"{d['victim_errors']} errors; the asker waited {d['asker_seconds']} s: {d['asker_answer']}")
    print(f"queue flood   {q['posted']} unread posts: {q['accepted']} queued, {q['refused']} refused; "
          f"victim {q['victim_outcome']} in {q['victim_ms']} ms")
    for mode in ("I;16", "F"):
        row = result["decoding"][mode]
        print(f"decoding {mode:<5}{row['file_kb']} KB file: {row['outcome']} ({row['answer'][:80]}), "
              f"RSS {row['rss_after_minus_before_mib']:+} MiB")
    dec = result["decoding"]
    print(f"              next small image: {dec['next_small_image']}; RSS {dec['rss_growth_served_mib']:+} MiB "
          f"since the first, {dec['rss_growth_after_idle_mib']:+} MiB after {dec['idle_wait_s']} s idle")
    print(f"bodies        300 MB body: {b['huge_body_status']} {b['huge_body_answer'][:60]}, RSS "
          f"{b['huge_body_rss_growth_mib']:+} MiB; 1 MiB echo answered in {b['echo_answer_chars']} chars; "
          f"inf: {b['infinite_outcome']} {b['infinite_answer'][:60]}")
    print(f"disk flood    {k['before_mib']} MiB; after 10 misnamed ({k['misnamed_statuses']}) and 10 aborted uploads "
          f"{k['after_failed_uploads_mib']} MiB, 5 s later {k['five_seconds_later_mib']} MiB; then "
          f"{k['uploads_accepted']}/{k['uploads']} uploads accepted: {k['after_flood_mib']} MiB "
          f"(budget {k['budget_mib']})")
    print_round_two(result["round_two"])
    print(f"shutdown      {shut['signal']} with 3 uploads hanging: exit {shut['exit_code']} in {shut['seconds']} s, "
          f"{shut['files_left']} files ({shut['files_left_mib']} MiB) left")
    print(f"server log    {len(result['tracebacks_in_the_server_log'])} tracebacks: "
          f"{sorted(set(result['tracebacks_in_the_server_log']))}")


def tracebacks(log: str) -> list[str]:
    """The exception line ending each traceback of a log (what went wrong, without the frames)."""
    found, inside = [], False
    for line in log.splitlines():
        if line.startswith("Traceback"):
            inside = True
        elif inside and line and not line.startswith((" ", "\t")):
            found.append(line[:160])
            inside = False
    return found


def hanging_upload(port: int, source: str) -> socket.socket:
    """An upload that declares 1 MB, sends 64 KB and waits: open while the server is asked to stop."""
    sock = socket.create_connection((hostile.HOST, port), timeout=10, source_address=(source, 0))
    sock.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                 b"Content-Length: 1000000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"files\"; "
                 b"filename=\"h.bin\"\r\n\r\n" + b"\0" * 65536)
    return sock

"""The second round of attacks on a public Space (issue 24), replayed by `python -m tools.loadtest
--adversarial` after the first round (tools/attacks.py): metadata bombs, slow uploads holding the
door, a flood deleting a victim's upload, many addresses filling the queue, a multipart label on a
huge body, memory per session, the queue-skipping routes, malformed calls, and a shutdown with
uploads hanging. Each reports what it cost the server and how a victim fared. Loopback only.
"""
from __future__ import annotations

import json
import socket
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from ccnet import limits
from tools import hostile
from tools.bombs import metadata_bombs
from tools.loadtest import status_mib

SLOW_UPLOADS = 9  # connections sending one byte every SLOW_GAP_S
SLOW_GAP_S = 5.0
FLOOD_WAVES, FLOOD_WAVE = 4, 13  # uploads of nearly FILE_BYTES each, wave after wave
QUEUE_ADDRESSES = (9, 20)
SMALL = 32 << 10  # a cheap upload that is an expensive job: 2048 x 1024 pixels in a 32 KB file


def _file(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def _address(i: int) -> str:
    return f"127.0.{10 + i // 250}.{1 + i % 250}"


def metadata(port: int, pid: int) -> dict:
    """Each metadata bomb uploaded and segmented: its outcome and what the server's memory did."""
    rows = {}
    for name, content in metadata_bombs().items():
        status, path = hostile.upload(port, name, content)
        before, peak_before = status_mib(pid, "VmRSS"), status_mib(pid, "VmHWM")
        answer = hostile.call(port, "segment", [_file(path), "", ""]) if status == 200 else None
        rows[name] = {"file_kb": round(len(content) / 1024, 1), "outcome": answer.outcome if answer else status,
                      "answer": (answer.text if answer and answer.outcome != "complete" else "")[:120],
                      "rss_growth_mib": round(status_mib(pid, "VmRSS") - before, 1),
                      "peak_growth_mib": round(status_mib(pid, "VmHWM") - peak_before, 1)}
    return rows


def _trickle(port: int, source: str, declared: int, stop: threading.Event, dropped: list) -> None:
    """Declare an upload of `declared` bytes and send one byte every SLOW_GAP_S until dropped."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="slow.png"\r\n\r\n').encode()
    with socket.create_connection((hostile.HOST, port), timeout=60, source_address=(source, 0)) as sock:
        sock.sendall((f"POST /gradio_api/upload HTTP/1.1\r\nHost: {hostile.HOST}\r\nContent-Type: multipart/form-data; "
                      f"boundary={boundary}\r\nContent-Length: {declared}\r\n\r\n").encode() + head)
        started = time.monotonic()
        try:
            while not stop.wait(SLOW_GAP_S):
                sock.sendall(b"x")
        except OSError:
            dropped.append(round(time.monotonic() - started, 1))


def slow_uploads(port: int, image: bytes) -> dict:
    """Nine slow uploads (one declaring the whole disk budget), then a victim's upload, timed."""
    stop, dropped = threading.Event(), []
    declared = [limits.DISK_BUDGET_MB << 20] + [limits.FILE_BYTES] * (SLOW_UPLOADS - 1)
    threads = [threading.Thread(target=_trickle, args=(port, _address(i), size, stop, dropped), daemon=True)
               for i, size in enumerate(declared)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    start = time.perf_counter()
    status, _ = hostile.upload(port, "victim.png", image, source=_address(99))
    victim_s = time.perf_counter() - start
    time.sleep(limits.BODY_GRACE_S + 2 * SLOW_GAP_S)  # past the grace, every trickle falls behind the pace
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    return {"slow_uploads": SLOW_UPLOADS, "victim_status": status, "victim_seconds": round(victim_s, 2),
            "dropped_by_the_server": len(dropped), "dropped_after_s": sorted(dropped)}


def flood_keeps_victims_upload(port: int, image: bytes) -> dict:
    """A victim uploads and segments; waves of near-limit uploads from other addresses; the victim's
    next call on the same upload."""
    status, path = hostile.upload(port, "mine.png", image, source=_address(200))
    first = hostile.call(port, "segment", [_file(path), "", ""], _address(200))
    content, statuses = b"\0" * (limits.FILE_BYTES - (64 << 10)), []
    for wave in range(FLOOD_WAVES):
        with ThreadPoolExecutor(FLOOD_WAVE) as pool:
            statuses += list(pool.map(lambda i, w=wave: hostile.upload(port, f"f{w}_{i}.png", content,
                                                                        source=_address(w * FLOOD_WAVE + i))[0],
                                      range(FLOOD_WAVE)))
        time.sleep(2)
    again = hostile.call(port, "segment", [_file(path), "", ""], _address(200))
    return {"victim_first": first.outcome, "flood_uploads": len(statuses), "accepted": statuses.count(200),
            "refused_507": statuses.count(507), "victim_file_still_there": Path(path).exists(),
            "victim_again": again.outcome,
            "victim_again_answer": again.text[:120] if again.outcome != "complete" else ""}


def queue_addresses(port: int, expensive: str, cheap: str) -> dict:
    """For 9 and 20 addresses: each posts expensive jobs (2048 x 1024 px in 32 KB) unread until refused;
    then a newcomer's call: admitted, and how long it waited."""
    rows = {}
    for count in QUEUE_ADDRESSES:
        posted = []
        with ThreadPoolExecutor(16) as pool:
            for _ in range(limits.WAITING_PER_CLIENT + 2):
                posted += list(pool.map(lambda i: hostile.submit(port, "segment", [_file(expensive), "", ""],
                                                                 _address(i))[0], range(count)))
        victim = hostile.call(port, "segment", [_file(cheap), "", ""], _address(300))
        rows[str(count)] = {"addresses": count, "posted": len(posted), "queued": posted.count(200),
                            "refused": len(posted) - posted.count(200), "newcomer": victim.outcome,
                            "newcomer_seconds": round(victim.seconds, 2)}
        time.sleep(3 + 0.2 * posted.count(200))  # the queue drains before the next count
    return rows


def multipart_label(port: int, pid: int) -> dict:
    """200 MB labelled multipart/form-data, posted where no upload goes (the queue)."""
    before = status_mib(pid, "VmRSS")
    status, body = hostile.post(port, "/gradio_api/queue/join", [b" " * (1 << 20)] * 200,
                                {"content-type": "multipart/form-data; boundary=x"}, timeout=120)
    return {"status": status, "answer": body.decode(errors="replace").strip()[:80],
            "rss_growth_mib": round(status_mib(pid, "VmRSS") - before, 1)}


def session_memory(port: int, pid: int, path: str) -> dict:
    """As many sessions as the server keeps (limits.SESSIONS), each shown the same 2048 px image by the
    page's own upload event."""
    config = json.loads(hostile.get(port, "/config"))
    image_id = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "input")
    upload = next(d["id"] for d in config["dependencies"] if [image_id, "upload"] in d.get("targets", []))
    hostile.join(port, upload, [_file(path), "default", "interactive"], "warm-up")
    time.sleep(3)
    before = status_mib(pid, "VmRSS")
    for i in range(limits.SESSIONS):
        hostile.join(port, upload, [_file(path), "default", "interactive"], f"session-{i}")
    time.sleep(5)
    return {"sessions": limits.SESSIONS, "rss_before_mib": round(before, 1),
            "rss_growth_mib": round(status_mib(pid, "VmRSS") - before, 1),
            "per_session_kib": round((status_mib(pid, "VmRSS") - before) * 1024 / limits.SESSIONS, 1)}


def queue_skipping_routes(port: int, path: str) -> dict:
    """Thirty parallel posts to Gradio's /run and /api routes, which skip the queue when open."""
    body = json.dumps({"data": [_file(path), "", ""]}).encode()
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda i: hostile.post(port, f"/gradio_api/{('run', 'api')[i % 2]}/segment", body,
                                                        {"content-type": "application/json"})[0], range(30)))
    return {"posts": 30, "accepted": statuses.count(200), "statuses": sorted(set(statuses))}


def malformed_calls(port: int, path: str) -> dict:
    """Floats, booleans, NaN and null where numbers go; an unknown function; the wrong input count."""
    answers = {name: hostile.call(port, "attention", [_file(path), x, 3, "", "", ""]).text[:100]
               for name, x in (("float", 1.5), ("boolean", True), ("nan", float("nan")), ("null", None))}
    config = json.loads(hostile.get(port, "/config"))
    segment = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "segment")
    for name, body in (("unknown function", {"data": [], "fn_index": 9999, "session_hash": "m"}),
                       ("one input of three", {"data": [_file(path)], "fn_index": segment, "session_hash": "m"})):
        status, text = hostile.post(port, "/gradio_api/queue/join", json.dumps(body).encode(),
                                    {"content-type": "application/json"})
        answers[name] = f"{status} {text.decode(errors='replace').strip()[:100]}"
    return answers


def expensive_image(folder: Path) -> Path:
    """2048 x 1024 pixels of flat colour bands: a file of a few KB, the job of a full-size image."""
    path = folder / "expensive.png"
    picture = Image.new("RGB", (2048, 1024), (70, 130, 180))
    for band, colour in enumerate(((128, 64, 128), (107, 142, 35), (70, 70, 70))):
        picture.paste(colour, (0, 400 + 200 * band, 2048, 600 + 200 * band))
    picture.save(path, optimize=True)
    return path


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else float("nan")


def round_two(port: int, pid: int, folder: Path, image: str, picture: bytes) -> dict:
    """Every attack of this module, in order, each after the queue drained from the last."""
    expensive = hostile.upload(port, "expensive.png", expensive_image(folder).read_bytes())[1]
    attacks = {"metadata": lambda: metadata(port, pid), "slow_uploads": lambda: slow_uploads(port, picture),
               "queue_addresses": lambda: queue_addresses(port, expensive, image),
               "multipart_label": lambda: multipart_label(port, pid),
               "session_memory": lambda: session_memory(port, pid, expensive),
               "queue_skipping_routes": lambda: queue_skipping_routes(port, image),
               "malformed_calls": lambda: malformed_calls(port, image),
               "flood_keeps_victims_upload": lambda: flood_keeps_victims_upload(port, picture)}
    result = {}
    for name, attack in attacks.items():
        print(f"attack: {name}", flush=True)
        result[name] = attack()
        time.sleep(2)
    return result


def print_round_two(result: dict) -> None:
    """One line (or a few) per attack of this module."""
    for name, row in result["metadata"].items():
        print(f"metadata      {name:<10}{row['file_kb']:>8} KB: {row['outcome']} {row['answer'][:70]}; "
              f"peak {row['peak_growth_mib']:+} MiB")
    slow = result["slow_uploads"]
    print(f"slow uploads  {slow['slow_uploads']} trickling: victim {slow['victim_status']} in "
          f"{slow['victim_seconds']} s; {slow['dropped_by_the_server']} dropped after {slow['dropped_after_s']} s")
    for row in result["queue_addresses"].values():
        print(f"queue         {row['addresses']} addresses: {row['queued']} queued, {row['refused']} refused; "
              f"newcomer {row['newcomer']} in {row['newcomer_seconds']} s")
    label, memory = result["multipart_label"], result["session_memory"]
    print(f"multipart     200 MB labelled multipart to the queue: {label['status']} ({label['answer'][:50]}), "
          f"RSS {label['rss_growth_mib']:+} MiB")
    print(f"sessions      {memory['sessions']} sessions on a 2048 px image: RSS {memory['rss_growth_mib']:+} MiB "
          f"({memory['per_session_kib']} KiB each)")
    routes = result["queue_skipping_routes"]
    print(f"routes        {routes['posts']} posts to /run and /api: {routes['accepted']} accepted {routes['statuses']}")
    for name, text in result["malformed_calls"].items():
        print(f"malformed     {name}: {text[:100]}")
    flood = result["flood_keeps_victims_upload"]
    print(f"disk flood    {flood['flood_uploads']} uploads ({flood['accepted']} accepted, {flood['refused_507']} 507): "
          f"the victim's upload there: {flood['victim_file_still_there']}, its next call {flood['victim_again']}")

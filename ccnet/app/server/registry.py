"""Which files in the app's folder are visitors' uploads, and whose: recorded from the upload route's
answers (upload_limit), read by the door (a client's share of the disk) and by the sweeper (uploads
are deleted only once unused for UPLOAD_MAX_AGE_S, never to make room for someone else's)."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable

from ccnet import limits

FOLDER_BYTES = 4096  # the folder Gradio makes for each upload (a block), charged with its file
BRIDGE = "mcp-bridge"  # the account of the images Gradio's MCP bridge uploads (ccnet.app.server.clients)


def charged_bytes(status: os.stat_result) -> int:
    """What a file costs the disk: its blocks (at least its size) and its folder's block, so that
    thousands of 1-byte uploads count as the 8 KiB each they take, not as 1 byte."""
    return max(status.st_size, getattr(status, "st_blocks", 0) * 512) + FOLDER_BYTES


class UploadRegistry:
    """Uploaded paths with their client; a path whose file is gone, or unused for the upload's life
    (its modification time: each use touches it, ccnet.app.server.uploads), no longer counts."""

    def __init__(self, max_age_s: float = limits.UPLOAD_MAX_AGE_S) -> None:
        self.max_age_s = max_age_s
        self._owners: dict[str, str] = {}  # real path -> client
        self._lock = threading.Lock()

    def record(self, paths: Iterable[str], client: str) -> None:
        with self._lock:
            for path in paths:
                self._owners[os.path.realpath(path)] = client

    def is_upload(self, path: str) -> bool:
        return os.path.realpath(path) in self._owners

    def life_s(self, path: str) -> float:
        """How long an upload lives unused: BRIDGE_UPLOAD_S for the MCP bridge's, else ``max_age_s``."""
        return self._life(self._owners.get(os.path.realpath(path)))

    def _life(self, owner: str | None) -> float:
        return min(self.max_age_s, limits.BRIDGE_UPLOAD_S) if owner == BRIDGE else self.max_age_s

    def client_bytes(self, client: str) -> int:
        """The bytes of this client's uploads still on disk and alive."""
        return sum(size for owner, size in self._live() if owner == client)

    def _live(self) -> list[tuple[str, int]]:
        now, alive, gone = time.time(), [], []
        with self._lock:
            owners = list(self._owners.items())
        for path, owner in owners:
            try:
                status = os.stat(path)
            except OSError:
                gone.append(path)
                continue
            if now - status.st_mtime <= self._life(owner):
                alive.append((owner, charged_bytes(status)))
        with self._lock:
            for path in gone:
                self._owners.pop(path, None)
        return alive

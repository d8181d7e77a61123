"""Fetching released checkpoints into a local cache: verified, atomic, resumable by hand.

The cache folder is ``$CCNET_CACHE`` when set, else ``$TORCH_HOME/ccnet``, else ``$HF_HOME/ccnet``
(a Hugging Face Space points HF_HOME at its persistent storage), else torch.hub's own default
(``$XDG_CACHE_HOME/torch/ccnet``, i.e. ``~/.cache/torch/ccnet``), beside the other PyTorch downloads.

A file in the cache is trusted (it was renamed there only after its hash was checked), so a
cache hit makes no request. A download goes to a temporary file in the cache folder and is
renamed only once complete and verified against the sha256 prefix in its name
(mmsegmentation's rule: the 8 hex characters after the last '-').
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from ccnet.errors import CCNetError, DownloadError

ProgressFn = Callable[[int, int | None], None]  # (bytes done, total bytes or None when unknown)

CHUNK = 1 << 20
TIMEOUT_S = 60
USER_AGENT = "ccnet-explorer (urllib)"
HASH_IN_NAME = re.compile(r"-([0-9a-f]{8})\.[A-Za-z0-9]+$")


def cache_dir() -> Path:
    """Where checkpoints are kept; see the module docstring for the order of precedence."""
    if os.environ.get("CCNET_CACHE"):
        return Path(os.environ["CCNET_CACHE"]).expanduser()
    for variable in ("TORCH_HOME", "HF_HOME"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser() / "ccnet"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "torch" / "ccnet"


def file_name(url: str) -> str:
    return Path(urlsplit(url).path).name


def cached_path(url: str) -> Path:
    """The path a URL's file has (or will have) in the cache; also where to put it by hand."""
    return cache_dir() / file_name(url)


def source_url(url: str) -> str:
    """The URL actually requested: ``$CCNET_ZOO_URL`` replaces everything but the file name."""
    base = os.environ.get("CCNET_ZOO_URL")
    return f"{base.rstrip('/')}/{file_name(url)}" if base else url


def sha256_prefix(name: str) -> str:
    """The hash prefix a file name carries; a name without one cannot be verified, so is refused."""
    match = HASH_IN_NAME.search(name)
    if not match:
        raise CCNetError(f"cannot verify {name}: its name carries no '-<8 hex of sha256>' before the suffix")
    return match.group(1)


class ConsoleProgress:
    """One updating line on stderr, redrawn at most ten times a second."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.last = 0.0
        self.drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done != total:
            return
        self.last = now
        text = f"{done / 2**20:.1f} MiB"
        if total:
            text += f" / {total / 2**20:.1f} MiB ({100 * done // total}%)"
        sys.stderr.write(f"\rdownloading {self.label}: {text}   ")
        sys.stderr.flush()
        self.drawn = True

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def fetch(url: str, progress: ProgressFn | None = None) -> Path:
    """The cached file for ``url``, downloading and verifying it first if it is not there.

    ``progress(done, total)`` is called as bytes arrive (total is None if the server does not
    say) and once more with ``done == total`` at the end; without it a line is drawn on stderr.
    Every failure raises a one-line CCNetError; network failures name the URL and the exact
    path where the file can be put by hand.
    """
    dest = cached_path(url)
    if dest.is_file():
        return dest
    expected = sha256_prefix(dest.name)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as err:
        raise DownloadError(f"cannot write to the cache folder {dest.parent} ({err.strerror}); set CCNET_CACHE",
                            f"the server cannot store {dest.name} (its weight cache is not writable)") from None
    console = ConsoleProgress(dest.name) if progress is None else None
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _download(source_url(url), out, progress or console, dest)
        if not digest.startswith(expected):
            raise DownloadError(
                f"{dest.name}: downloaded file's sha256 starts with {digest[:8]}, not {expected} as its name "
                f"says; the corrupt download was deleted",
                f"the download of {dest.name} was corrupt and was deleted; try again later",
            )
        os.replace(tmp, dest)
    finally:
        if console is not None:
            console.end()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _download(url: str, out: BinaryIO, progress: ProgressFn, dest: Path) -> str:
    """Stream ``url`` into ``out``; returns the sha256 hex digest of what was written."""
    by_hand = f"without network, put the file by hand at {dest}"
    offline = f"cannot download {dest.name} now (the server cannot reach its host); try again later"
    digest = hashlib.sha256()
    done = 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            _check_space(dest, total)
            progress(0, total)
            while chunk := response.read(CHUNK):
                try:
                    out.write(chunk)
                except OSError as err:  # e.g. the disk filled up while downloading
                    raise DownloadError(f"cannot save {dest.name} in {dest.parent} ({err.strerror or err}); "
                                        "free some space or set CCNET_CACHE to another disk",
                                        f"the server has no room to store {dest.name}") from None
                digest.update(chunk)
                done += len(chunk)
                progress(done, total)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"cannot download {url}: HTTP {err.code} {err.reason}; {by_hand}",
                            f"cannot download {dest.name} now (HTTP {err.code}); try again later") from None
    except urllib.error.URLError as err:
        raise DownloadError(f"cannot download {url}: {_reason(err.reason)}; {by_hand}", offline) from None
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(f"cannot download {url}: {_reason(err)}; {by_hand}", offline) from None
    if total is not None and done != total:
        raise DownloadError(f"download of {url} was cut short: {done} of {total} bytes; try again, or {by_hand}",
                            f"the download of {dest.name} was cut short; try again")
    progress(done, done)
    return digest.hexdigest()


def _check_space(dest: Path, total: int | None) -> None:
    """Refuse before downloading when the server's announced size does not fit the cache disk."""
    if total is None:
        return
    free = shutil.disk_usage(dest.parent).free
    if free < total:
        raise DownloadError(f"{dest.name} needs {total / 2**20:.1f} MiB but {dest.parent} has "
                            f"{free / 2**20:.1f} MiB free; free some space or set CCNET_CACHE to another disk",
                            f"the server has no room for {dest.name} ({total / 2**20:.0f} MiB)")


def _reason(err: object) -> str:
    text = (getattr(err, "strerror", None) or str(err) or type(err).__name__).splitlines()[0]
    return text[:120]


def prune_cache(budget_bytes: int, room_for: int = 0, keep: frozenset[str] = frozenset()) -> list[Path]:
    """Delete the least recently used files of the cache (their modification time: a server touches
    a checkpoint when it loads it) until the rest and ``room_for`` more bytes fit ``budget_bytes``;
    ``keep`` names files to spare. Returns what it deleted."""
    folder = cache_dir()
    try:
        files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                       key=lambda p: p.stat().st_mtime)
    except OSError:  # no cache yet
        return []
    total, deleted = sum(p.stat().st_size for p in files), []
    for path in files:
        if total + room_for <= budget_bytes:
            break
        if path.name in keep:
            continue
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        total -= size
        deleted.append(path)
    return deleted

"""Where the command line may write: every output path is checked before any work starts (its
suffix, that it is not a folder, that its folder exists and is writable) and opened without
following a symbolic link, so a planted link cannot redirect a result onto another file."""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ccnet.errors import CCNetError


def checked_output(value: str | os.PathLike | None, option: str, suffixes: tuple[str, ...]) -> Path | None:
    """The path an option names, or a one-line CCNetError saying what is wrong with it."""
    if value is None:
        return None
    path = Path(value)
    if str(value).endswith(os.sep) or path.is_dir():
        raise CCNetError(f"{option} must name a file, not a folder: {value}")
    if path.suffix.lower() not in suffixes:
        wanted = " or ".join(suffixes)
        raise CCNetError(f"{option} must end in {wanted}, got {path.name!r}")
    if path.is_symlink():
        raise CCNetError(f"{option} {value} is a symbolic link; remove it or choose another name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise CCNetError(f"{option}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise CCNetError(f"{option}: cannot write in {folder}")
    return path


@contextlib.contextmanager
def open_output(path: Path) -> Iterator[BinaryIO]:
    """The file opened for writing, refusing (O_NOFOLLOW) a link that appeared after the check."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as err:
        raise CCNetError(f"cannot write {path}: {err.strerror}") from None
    with os.fdopen(descriptor, "wb") as handle:
        yield handle


def write_text(path: Path, text: str) -> None:
    with open_output(path) as handle:
        handle.write(text.encode())


def check_fraction(value: float, option: str) -> float:
    """A finite number in [0, 1], or a one-line CCNetError."""
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise CCNetError(f"{option} must be a number from 0 to 1, got {value}")
    return value

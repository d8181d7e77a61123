"""Decoding user clips safely: an animated GIF, PNG (APNG) or WebP to (T, H, W, 3) RGB uint8.

The same guards as a still image (ccnet.inference.images): the metadata is checked before Pillow
opens the file, only the three animated decoders may open it, a frame's header is checked against
the image limits and the decode budget before it is decoded. A clip adds its own limits
(ccnet.limits: MIN_FRAMES, MAX_FRAMES, MAX_CLIP_PIXELS, MAX_CLIP_SECONDS), checked frame by frame before each frame
is decoded: a GIF's frames are not counted ahead (that would read the whole file, which may hold
millions of empty frames). Every refusal is one ImageError line.
"""
from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from ccnet import limits
from ccnet.errors import ImageError
from ccnet.inference.decode_budget import check_budget
from ccnet.inference.images import check_size
from ccnet.inference.metadata import TRANSPOSES, check_metadata, orientation

CLIP_FORMATS = ("GIF", "PNG", "WEBP")  # the animated formats Pillow decodes frame by frame
T = TypeVar("T")
DECODE_ERRORS = (OSError, ValueError, SyntaxError, struct.error, EOFError, IndexError)  # a cut frame header: IndexError


def _name(source: str | Path | bytes) -> str:
    return "clip" if isinstance(source, bytes) else Path(source).name


def _stream(source: str | Path | bytes) -> tuple[io.IOBase, int]:
    """The file (or bytes) opened for reading and its size; a missing or empty file is an ImageError."""
    if isinstance(source, bytes):
        size = len(source)
    elif not Path(source).is_file():
        raise ImageError(f"clip not found: {source}")
    else:
        size = Path(source).stat().st_size
    if size == 0:
        raise ImageError(f"{_name(source)} is empty (0 bytes)")
    return (io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")), size


def is_clip(source: str | Path | bytes) -> bool:
    """Whether a file is an animated GIF, PNG or WebP of two frames or more. Anything else (a still
    image, a broken file, no image at all) is False, so that decode_image says what it is."""
    return _read_clip_header(source, lambda img: True) is not None  # reads at most frame 2's header


def clip_pixels(source: str | Path | bytes) -> int | None:
    """Pixels of all of a clip's frames, read from its headers (no frame decoded), or None when the
    file is no clip (a still image, a broken file): what a job on a clip weighs in the server's
    queue. Frames are counted up to MAX_FRAMES (a longer clip is refused when it is decoded): an
    animated WebP or PNG states its count in its header; a GIF's frames are skipped unread."""
    return _read_clip_header(source, lambda img: img.width * img.height * _frame_count(img))


def _read_clip_header(source: str | Path | bytes, read: Callable[[Image.Image], T]) -> T | None:
    """``read`` of the opened clip (its metadata checked first, the clip decoders only), or None when
    the file is no clip or cannot be read."""
    try:
        stream, size = _stream(source)
        with stream:
            check_metadata(stream, size, _name(source))
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(stream, formats=CLIP_FORMATS) as img:
                    return read(img) if getattr(img, "is_animated", False) else None
    except (ImageError, UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            MemoryError, *DECODE_ERRORS):
        return None


def _frame_count(img: Image.Image) -> int:
    """A clip's frames, at most MAX_FRAMES, without decoding any (a damaged one ends the count)."""
    if img.format != "GIF":
        return min(int(img.n_frames), limits.MAX_FRAMES)
    count = 1
    try:
        while count < limits.MAX_FRAMES:
            img._seek(img.tell() + 1, False)  # how Pillow's own n_frames skips a GIF frame unread
            count += 1
    except (EOFError, *DECODE_ERRORS):
        pass
    return count


def decode_clip(source: str | Path | bytes) -> np.ndarray:
    """RGB uint8 frames (T, H, W, 3) of an animated GIF, PNG or WebP, MIN_FRAMES <= T <= MAX_FRAMES;
    EXIF orientation applied, alpha dropped. Anything else raises ImageError with a one-line reason."""
    name = _name(source)
    try:
        return _decode(source, name)
    except MemoryError:
        pass  # raised below, outside this block, so the error does not keep the decoded frames alive
    raise ImageError(f"not enough memory to decode {name}; try a shorter or smaller clip")


def _decode(source: str | Path | bytes, name: str) -> np.ndarray:
    stream, file_size = _stream(source)
    try:
        with stream:
            metadata_bytes = check_metadata(stream, file_size, name)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(stream, formats=CLIP_FORMATS) as img:
                    if img.width * img.height > limits.MAX_PIXELS:
                        raise ImageError(f"{name} is too large: {img.width}x{img.height} pixels a frame "
                                         f"(limit {limits.MAX_PIXELS:,})")
                    check_budget(img, name, file_size, metadata_bytes)
                    return _frames(img, name)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name} is too large to decode safely (limit {limits.MAX_PIXELS:,} pixels a frame)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not a clip we can read (animated GIF, PNG or WebP)") from None
    except DECODE_ERRORS as err:
        raise ImageError(f"{name} is damaged or truncated ({str(err).splitlines()[0][:80]})") from None


def _frames(img: Image.Image, name: str) -> np.ndarray:
    """Each frame checked from its header (count, size, the clip's pixels), then decoded."""
    size, turn = img.size, TRANSPOSES.get(orientation(img))
    width, height = (size[1], size[0]) if orientation(img) in (5, 6, 7, 8) else size  # as displayed
    check_size((width, height))
    frames: list[np.ndarray] = []
    milliseconds = 0  # the playing time so far
    for index in range(limits.MAX_FRAMES + 1):
        try:
            img.seek(index)
        except EOFError:
            break
        except DECODE_ERRORS as err:
            raise ImageError(f"{name}: frame {index + 1} is damaged ({str(err).splitlines()[0][:80]})") from None
        if index == limits.MAX_FRAMES:
            raise ImageError(f"{name} has more than {limits.MAX_FRAMES} frames (a clip may have "
                             f"{limits.MIN_FRAMES} to {limits.MAX_FRAMES})")
        if img.size != size:
            raise ImageError(f"{name}: frame {index + 1} is {img.width}x{img.height} pixels but frame 1 is "
                             f"{size[0]}x{size[1]}; a clip's frames must have one size")
        if (index + 1) * width * height > limits.MAX_CLIP_PIXELS:
            raise ImageError(f"{name} is too large: {index + 1} frames of {width}x{height} pixels pass the "
                             f"{limits.MAX_CLIP_PIXELS:,} pixels a clip may have; try a shorter or smaller clip")
        try:
            frame = img.convert("RGB")
        except DECODE_ERRORS as err:
            raise ImageError(f"{name}: frame {index + 1} is damaged or truncated "
                             f"({str(err).splitlines()[0][:80]})") from None
        duration = img.info.get("duration")  # known once the frame is read (a WebP frame's: once decoded)
        milliseconds += duration if isinstance(duration, (int, float)) and duration > 0 else 0
        if milliseconds > 1000 * limits.MAX_CLIP_SECONDS:
            raise ImageError(f"{name} plays too long: {index + 1} frames last {milliseconds / 1000:g} s, past the "
                             f"{limits.MAX_CLIP_SECONDS} s a clip may last; try a shorter clip")
        frames.append(np.asarray(frame.transpose(turn) if turn is not None else frame))
    if len(frames) < limits.MIN_FRAMES:
        raise ImageError(f"{name} has only one frame: a clip needs at least {limits.MIN_FRAMES} "
                         "(a single image is segmented as an image)")
    return np.stack(frames)

"""Decoding user images safely: any common format to RGB uint8, EXIF honoured, size and memory bounded."""
from __future__ import annotations

import contextlib
import io
import math
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ccnet import limits
from ccnet.errors import ImageError
from ccnet.inference.decode_budget import check_budget, strips
from ccnet.inference.metadata import TRANSPOSES, check_metadata, orientation

WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # 16-bit and float: scaled to 8 bits by us
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # the only decoders a file may reach (MPO is JPEG's)


def decode_image(source: str | Path | bytes | Image.Image | np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) from a path, bytes, a PIL image or an array; first frame of animations.

    EXIF orientation is applied, 16-bit and float images are scaled to 8 bits, alpha is dropped
    (as OpenCV's reader in mmseg does). A file whose decode would need more than the memory budget
    is refused from its header. Anything else raises ImageError with a one-line reason.
    """
    return decode_reduced(source, None)[0]


def decode_reduced(source: str | Path | bytes | Image.Image | np.ndarray,
                   max_side: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """``decode_image``, but a JPEG at least twice ``max_side`` is decoded at a reduced scale (1/2,
    1/4 or 1/8, never below ``max_side``): for callers that downscale anyway, a fraction of the
    memory and time. Also returns the image's own (width, height) as displayed, from its header."""
    try:
        return _decode(source, max_side)
    except MemoryError:
        pass  # raised below, outside this block, so the error does not keep the failed decode's arrays alive
    raise ImageError(f"not enough memory to decode {_name(source)}; try a smaller image")


def _name(source: object) -> str:
    return Path(source).name if isinstance(source, (str, Path)) else "image"


def _decode(source: str | Path | bytes | Image.Image | np.ndarray,
            max_side: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source), (source.shape[1], source.shape[0])
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source, owned=False), _turned(source)
    with _opened(source) as (img, name, file_size, metadata_bytes):
        check_budget(img, name, file_size, metadata_bytes)
        img.seek(0)
        size = _turned(img)
        _reduce_jpeg(img, max_side)
        rgb = _pil_to_rgb(img, owned=True)
        # a JPEG may be decoded reduced: its size is the header's; others are decoded whole (and a
        # PNG's EXIF may follow its pixels, so the decoded image says how it was turned)
        return rgb, size if img.format in ("JPEG", "MPO") else (rgb.shape[1], rgb.shape[0])


def image_pixels(source: str | Path | bytes) -> int:
    """Pixels an image file's header claims, read as safely as a decode reads it (nothing decoded):
    what a job on this image weighs in the server's queue."""
    with _opened(source) as (img, *_):
        return img.width * img.height


@contextlib.contextmanager
def _opened(source: str | Path | bytes) -> Iterator[tuple[Image.Image, str, int, int]]:
    """(the opened image, its name, the file's bytes, the bytes its metadata claims): the file checked
    before Pillow opens it (ccnet.inference.metadata), opened by the supported decoders only, its
    pixel count bounded; any failure is one ImageError line."""
    name = _name(source)
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise ImageError(f"image not found: {source}")
    file_size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
    if file_size == 0:
        raise ImageError(f"{name} is empty (0 bytes)")
    try:
        with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as stream:
            metadata_bytes = check_metadata(stream, file_size, name)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(stream, formats=FORMATS) as img:
                    if img.width * img.height > limits.MAX_PIXELS:
                        raise ImageError(f"{name} is too large: {img.width}x{img.height} pixels "
                                         f"(limit {limits.MAX_PIXELS:,})")
                    yield img, name, file_size, metadata_bytes
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name} is too large to decode safely (limit {limits.MAX_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image file we can read (PNG, JPEG, WebP, GIF, BMP, TIFF)") from None
    except (OSError, ValueError, SyntaxError, struct.error) as err:
        raise ImageError(f"{name} is damaged or truncated ({str(err).splitlines()[0][:80]})") from None


def _reduce_jpeg(img: Image.Image, max_side: int | None) -> None:
    """Ask the JPEG decoder for the largest reduced scale whose longest side stays >= max_side."""
    longest = max(img.size)
    if max_side is None or img.format != "JPEG" or longest < 2 * max_side:
        return
    scale = max_side / longest
    img.draft(img.mode, (math.ceil(img.width * scale), math.ceil(img.height * scale)))


def _pil_to_rgb(img: Image.Image, owned: bool) -> np.ndarray:
    """Filled a strip of rows at a time, so the peak is the decoded image plus the result: a whole
    convert() and numpy's copies would hold several full-size copies at once. An image we opened
    ourselves gives its pixels up once it is turned upright; a caller's image is left as it was."""
    img.load()
    method = TRANSPOSES.get(orientation(img))
    if method is not None:
        turned = img.transpose(method)
        if owned:
            img.close()  # the peak is two copies while turning, as decode_budget counts
        img = turned
    scale = _scale(img.getextrema()[1]) if img.mode in WIDE_MODES else None
    out = np.empty((img.height, img.width, 3), np.uint8)
    for top, bottom in strips(img.height, img.width):
        rows = img.crop((0, top, img.width, bottom))
        out[top:bottom] = _rgb_rows(np.asarray(rows), scale) if scale is not None else np.asarray(rows.convert("RGB"))
    return out


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape:
        raise ImageError(f"expected an H x W (x 3 or 4) image array, got shape {array.shape}")
    scale = None if array.dtype == np.uint8 else _scale(array.max(initial=0))
    height, width = array.shape[:2]
    out = np.empty((height, width, 3), np.uint8)
    for top, bottom in strips(height, width):
        out[top:bottom] = _rgb_rows(array[top:bottom], scale)
    return out


def _scale(maximum: float) -> float:
    """255 over the full scale the values use: 1 (floats in 0-1), 65535 (16-bit) or 255."""
    return 255.0 / (1.0 if maximum <= 1.0 else 65535.0 if maximum > 255 else 255.0)


def _rgb_rows(rows: np.ndarray, scale: float | None) -> np.ndarray:
    """A strip of an H x W (x C) array as uint8 that broadcasts to RGB. Scaled in one float64 copy of
    the strip, in place: the result is that of the whole-image formula, at a strip's memory."""
    rows = rows[..., :3] if rows.ndim == 3 else rows[..., None]
    if scale is None:
        return rows
    data = rows.astype(np.float64)
    data *= scale
    np.rint(data, out=data)
    np.clip(data, 0, 255, out=data)
    return data.astype(np.uint8)


def check_size(image: np.ndarray | tuple[int, int]) -> None:
    """Refuse images too small or too elongated for a stride-8 feature grid, in one line; takes an
    image or its (width, height)."""
    width, height = image if isinstance(image, tuple) else (image.shape[1], image.shape[0])
    if min(height, width) < limits.MIN_SIDE:
        raise ImageError(f"image is too small: {width}x{height} pixels (at least {limits.MIN_SIDE} on each side)")
    if max(height, width) > limits.MAX_ASPECT * min(height, width):
        ratio = max(height, width) / min(height, width)
        raise ImageError(f"image is too elongated: {width}x{height} pixels, {ratio:.0f}:1 "
                         f"(at most {limits.MAX_ASPECT}:1)")


def _turned(img: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed: EXIF orientations 5-8 swap the sides."""
    swapped = orientation(img) in (5, 6, 7, 8)  # EXIF orientations that swap the sides
    return (img.height, img.width) if swapped else img.size


def limit_size(image: np.ndarray, max_side: int = limits.MAX_SIDE,
               original: tuple[int, int] | None = None) -> tuple[np.ndarray, str | None]:
    """Downscale so the longest side is at most ``max_side``; returns (image, note for the user).
    ``original`` (width, height) is the file's size when it was decoded at a reduced scale."""
    height, width = image.shape[:2]
    was = original or (width, height)
    if max(was) <= max_side:
        return image, None
    scale = max_side / max(was)
    size = (max(1, round(was[0] * scale)), max(1, round(was[1] * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)) if size != (width, height) else image
    return small, f"downscaled from {was[0]}x{was[1]} to {size[0]}x{size[1]} (longest side limit {max_side})"

"""Decoding user images safely: any common format to RGB uint8, EXIF honoured, sizes bounded."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ccnet.errors import ImageError

MAX_PIXELS = 40_000_000  # refuse headers claiming more (decompression bombs)
MAX_SIDE = 2048  # larger images are downscaled to this longest side before inference
MIN_SIDE = 32  # below this the stride-8 feature grid has fewer than 4 cells per side
MAX_ASPECT = 16  # longer/shorter side; beyond it the grid is a sliver (and MAX_SIDE/16 >= MIN_SIDE)


def decode_image(source: str | Path | bytes | Image.Image | np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) from a path, bytes, a PIL image or an array; first frame of animations.

    EXIF orientation is applied, 16-bit and float images are scaled to 8 bits, alpha is dropped
    (as OpenCV's reader in mmseg does). Anything else raises ImageError with a one-line reason.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source)
    name = "image" if isinstance(source, bytes) else Path(source).name
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise ImageError(f"image not found: {source}")
    if (len(source) if isinstance(source, bytes) else Path(source).stat().st_size) == 0:
        raise ImageError(f"{name} is empty (0 bytes)")
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageError(f"{name} is too large: {img.width}x{img.height} pixels (limit {MAX_PIXELS:,})")
                img.seek(0)
                return _pil_to_rgb(img)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name} is too large to decode safely (limit {MAX_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image file we can read (PNG, JPEG, WebP, GIF, BMP, TIFF)") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"{name} is damaged or truncated ({str(err).splitlines()[0][:80]})") from None


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    img.load()
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(img))
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape:
        raise ImageError(f"expected an H x W (x 3 or 4) image array, got shape {array.shape}")
    if array.dtype != np.uint8:
        data = array.astype(np.float64)
        peak = 1.0 if data.max(initial=0) <= 1.0 else 65535.0 if data.max() > 255 else 255.0
        array = np.clip(np.rint(data / peak * 255.0), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def check_size(image: np.ndarray) -> None:
    """Refuse images too small or too elongated for a stride-8 feature grid, in one line."""
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ImageError(f"image is too small: {width}x{height} pixels (at least {MIN_SIDE} on each side)")
    if max(height, width) > MAX_ASPECT * min(height, width):
        ratio = max(height, width) / min(height, width)
        raise ImageError(f"image is too elongated: {width}x{height} pixels, {ratio:.0f}:1 (at most {MAX_ASPECT}:1)")


def limit_size(image: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, str | None]:
    """Downscale so the longest side is at most ``max_side``; returns (image, note for the user)."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image, None
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    return small, f"downscaled from {width}x{height} to {size[0]}x{size[1]} (longest side limit {max_side})"

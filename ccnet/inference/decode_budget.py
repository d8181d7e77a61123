"""The memory a decode will need at its peak, read from the image's header alone, so that an image
too costly for this process is refused before any pixel is decoded.

The peak is that of ccnet.inference.images: the decoded image in Pillow's own storage, whatever the
format's decoder holds meanwhile, and the RGB result filled a strip of rows at a time. The factors
are upper bounds of peak RSS measured on Pillow 12 (tests/inference/test_decode_budget.py).
"""
from __future__ import annotations

from collections.abc import Iterator

from PIL import Image

from ccnet import limits
from ccnet.errors import ImageError

STRIP_PIXELS = 1 << 18  # the RGB result is converted this many pixels (whole rows, at least one) at a time
STRIP_BYTES_PER_PIXEL = 24  # a strip's temporaries: its crop, convert() or float64 copy, numpy's bytes
FIXED_BYTES = limits.CODEC_BYTES  # the codecs' own working buffers (zlib, libjpeg, libtiff), whatever the size

# Bytes per pixel a format's decoder holds besides the image: (at most, while decoding; kept until closed).
_DECODER_BYTES = {
    "PNG": (0, 0),  # row by row
    "GIF": (0, 0),
    "BMP": (2, 0),  # an RLE-compressed file is gathered whole, then copied once
    "WEBP": (limits.WORST_DECODER_BYTES_PER_PIXEL, 8),  # two canvases (kept) and a copy as bytes: 12.0 measured
}
_UNKNOWN_DECODER = _DECODER_BYTES["WEBP"]  # any other format: assume WebP's, the largest measured


def stored_bytes_per_pixel(mode: str) -> int:
    """Bytes per pixel in Pillow's memory: 1 for L, P and 1-bit, 2 for I;16, 4 for the rest (RGB too)."""
    return 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4


def strip_rows(width: int) -> int:
    """Rows per strip of the RGB conversion: STRIP_PIXELS of them, at least one row."""
    return max(1, STRIP_PIXELS // max(width, 1))


def strips(height: int, width: int) -> Iterator[tuple[int, int]]:
    """(top, bottom) of each strip of rows, top to bottom."""
    rows = strip_rows(width)
    for top in range(0, height, rows):
        yield top, min(top + rows, height)


def _decoder_bytes(img: Image.Image) -> tuple[float, float]:
    """(at most, while decoding; kept until closed) bytes per pixel of this file's decoder, from its header."""
    if img.format in ("JPEG", "MPO"):  # a progressive JPEG keeps every DCT coefficient (2 bytes each)
        return (2.0 * len(img.getbands()) if img.info.get("progressive") else 0.0), 0.0
    if img.format == "TIFF":  # libtiff reads a whole strip or tile: at worst the whole image, as stored
        tags = img.tag_v2
        bits = tags.get(258, 8)
        total_bits = sum(bits) if isinstance(bits, tuple) else bits * tags.get(277, 1)
        return -(-total_bits // 8), 0.0
    return _DECODER_BYTES.get(img.format or "", _UNKNOWN_DECODER)


def peak_bytes(img: Image.Image, file_size: int) -> int:
    """Upper bound of the bytes decode_image will hold at once for this opened (not loaded) image:
    the file, the codecs' buffers, the decoded image and the largest of: the decoder's buffers while decoding, then what
    it keeps plus either an EXIF rotation's second copy or the RGB result and one strip's temporaries."""
    width, height = img.size
    pixels = width * height
    stored = pixels * stored_bytes_per_pixel(img.mode)
    transient, kept = (factor * pixels for factor in _decoder_bytes(img))
    strip = min(height, strip_rows(width)) * width * STRIP_BYTES_PER_PIXEL
    return int(FIXED_BYTES + file_size + stored + max(transient, kept + max(stored, 3 * pixels + strip)))


def check_budget(img: Image.Image, name: str, file_size: int, metadata_bytes: int = 0) -> None:
    """Refuse, in one line, an image whose decode would need more than limits.DECODE_BUDGET_BYTES, counting
    the bytes its metadata made Pillow read (ccnet.inference.metadata)."""
    need = peak_bytes(img, file_size) + metadata_bytes
    if need > limits.DECODE_BUDGET_BYTES:
        raise ImageError(f"{name} needs about {need >> 20} MiB of memory to decode ({img.width}x{img.height} "
                         f"{img.mode} pixels; limit {limits.DECODE_BUDGET_BYTES >> 20} MiB); try a smaller image")

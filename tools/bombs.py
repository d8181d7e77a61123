"""Metadata bombs: image files whose directories (EXIF, TIFF, MPF) hold many entries pointing at one
shared blob, each placed where a directory reaches Pillow. The adversarial load test uploads them
(tools/attacks_limits.py) and the tests decode them (tests/inference/test_metadata.py)."""
from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image


def _picture() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def _encoded(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def tiff_directory(entries: list[tuple[int, int, int, bytes]], blob: bytes, start: int = 0) -> tuple[bytes, int]:
    """A little-endian TIFF structure (header, one directory, then ``blob``) as it lies ``start``
    bytes into its container; (tag, type, count, inline value or b"") entries with no inline value
    point at the blob. Returns the bytes and the blob's offset."""
    table = 2 + 12 * len(entries) + 4
    blob_at = start + 8 + table
    out = bytearray(b"II*\x00" + struct.pack("<L", start + 8) + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        inline = value.ljust(4, b"\x00") if value else struct.pack("<L", blob_at)
        out += struct.pack("<HHL", tag, kind, count) + inline
    return bytes(out + b"\x00\x00\x00\x00" + blob), blob_at


def exif_bomb(tags: int, blob_bytes: int) -> bytes:
    """An EXIF block whose first directory has ``tags`` UNDEFINED entries all pointing at one blob
    of ``blob_bytes`` bytes (and an orientation of 6, so that a transpose rewrites the block)."""
    entries = [(ORIENTATION, 3, 1, struct.pack("<H", 6))] + [(0x9000 + i, 7, blob_bytes, b"") for i in range(tags)]
    return b"Exif\x00\x00" + tiff_directory(entries, b"\x01" * blob_bytes)[0]


ORIENTATION = 0x0112


def tiff_bomb(tags: int, blob_bytes: int, side: int = 64) -> bytes:
    """A valid 8-bit grey TIFF whose first directory also holds ``tags`` entries over one blob."""
    pixels = bytes(range(256)) * (side * side // 256)
    blob = b"\x02" * blob_bytes
    size = 8 + 2 + 12 * (8 + tags) + 4
    image_at = size + blob_bytes
    entries = [(256, 3, 1, struct.pack("<H", side)), (257, 3, 1, struct.pack("<H", side)),
               (258, 3, 1, struct.pack("<H", 8)), (259, 3, 1, struct.pack("<H", 1)),
               (262, 3, 1, struct.pack("<H", 1)), (273, 4, 1, struct.pack("<L", image_at)),
               (278, 3, 1, struct.pack("<H", side)), (279, 4, 1, struct.pack("<L", len(pixels)))]
    entries += [(40000 + i, 7, blob_bytes, b"") for i in range(tags)]
    structure, _ = tiff_directory(entries, blob)
    return structure + pixels


def mpf_bomb(tags: int, blob_bytes: int) -> bytes:
    """A JPEG whose APP2 MPF block has ``tags`` LONG entries over one blob (Pillow unpacks them all)."""
    entries = [(0xB000, 7, 4, b"0100"), (0xB001, 4, 1, struct.pack("<L", 1))]
    entries += [(0xB100 + i, 4, blob_bytes // 4, b"") for i in range(tags)]
    mpf = b"MPF\x00" + tiff_directory(entries, b"\x03" * blob_bytes)[0]
    jpeg = _encoded(Image.fromarray(_picture()), "JPEG")
    return jpeg[:2] + b"\xff\xe2" + struct.pack(">H", len(mpf) + 2) + mpf + jpeg[2:]


def gif_comment_bomb(comment_bytes: int) -> bytes:
    """A two-frame GIF with a comment of ``comment_bytes`` before its first frame (Pillow joins a
    comment's 255-byte pieces one by one: 10 MB of them take it a minute)."""
    frames = [Image.fromarray(_picture()).convert("P"), Image.fromarray(_picture()[::-1]).convert("P")]
    gif = _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    start = 13 + (3 << ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0)  # after the header and colour table
    pieces = b"".join(bytes([255]) + b"c" * 255 for _ in range(comment_bytes // 255))
    return gif[:start] + b"\x21\xfe" + pieces + b"\x00" + gif[start:]


def metadata_bombs() -> dict[str, bytes]:
    """One file per way metadata reaches Pillow: PNG eXIf, JPEG APP1, JPEG MPF, TIFF IFD, WebP EXIF,
    a GIF comment."""
    image = Image.fromarray(_picture())
    big, small = exif_bomb(1500, 1 << 20), exif_bomb(1300, 48 << 10)  # a JPEG segment holds 64 KiB at most
    return {
        "exif.png": _encoded(image, "PNG", exif=big),
        "exif.webp": _encoded(image, "WEBP", exif=big, lossless=True),
        "exif.jpg": _encoded(image, "JPEG", exif=small),
        "mpf.jpg": mpf_bomb(1000, 48 << 10),
        "ifd.tif": tiff_bomb(1500, 1 << 20),
        "comment.gif": gif_comment_bomb(1 << 20),
    }

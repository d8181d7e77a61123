"""Image metadata (TIFF, EXIF and MPF directories) read without trusting it.

Why: a directory's entries point at their values by offset, and nothing stops thousands of entries
from pointing at one shared blob. Pillow reads every entry's value separately (a TIFF's first
directory and a JPEG's EXIF and MPF blocks as it opens the file; any EXIF block when asked for it),
so a 1 MB file can claim gigabytes of memory. Here a directory is walked entry by entry without
reading any value: the bytes its values claim are summed, and a file whose metadata claims more
than the file holds (plus ccnet.limits.METADATA_SLACK_BYTES) is refused before Pillow opens it. The one value
the app needs, the orientation, is read on its own, so Pillow's EXIF parser is never called.
"""
from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image

from ccnet import limits
from ccnet.errors import ImageError

ORIENTATION_TAG = 0x0112
# bytes per value of each TIFF type Pillow reads (TiffImagePlugin's loaders); other types it skips
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8}
TRANSPOSES = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
              7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(?:="|>)([1-8])')
Reader = Callable[[int, int], bytes]  # (offset, size) -> at most size bytes


@dataclass(frozen=True)
class Directory:
    """One directory as its entries describe it: how many, the bytes their values claim outside
    the entries, and the orientation entry's value (None without one)."""

    entries: int
    claimed: int
    orientation: int | None


def _bytes_reader(data: bytes) -> Reader:
    return lambda offset, size: data[offset:offset + size] if offset >= 0 else b""


def _file_reader(stream: BinaryIO) -> Reader:
    def read(offset: int, size: int) -> bytes:
        stream.seek(offset)
        return stream.read(size)

    return read


def _tiff_header(read: Reader) -> tuple[str, bool, int] | None:
    """(struct byte order, BigTIFF, offset of the first directory), or None if this is no TIFF."""
    head = read(0, 16)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 8:
        return None
    magic = struct.unpack_from(order + "H", head, 2)[0]
    if magic == 42:
        return order, False, struct.unpack_from(order + "L", head, 4)[0]
    if magic == 43 and len(head) >= 16:
        return order, True, struct.unpack_from(order + "Q", head, 8)[0]
    return None


def directory(read: Reader, order: str, big: bool, offset: int) -> Directory:
    """The directory at ``offset``, walked without reading any value."""
    count_format, entry_format, entry_size, inline = ("Q", "HHQ", 20, 8) if big else ("H", "HHL", 12, 4)
    raw = read(offset, struct.calcsize(count_format))
    if len(raw) < struct.calcsize(count_format):
        return Directory(0, 0, None)
    (count,) = struct.unpack(order + count_format, raw)
    table = read(offset + len(raw), min(count, 1 << 16) * entry_size)  # Pillow stops where the file does
    claimed, orientation = 0, None
    for start in range(0, len(table) - entry_size + 1, entry_size):
        tag, kind, values = struct.unpack_from(order + entry_format, table, start)
        size = values * TYPE_SIZES.get(kind, 0)
        if size > inline:
            claimed += size
        if tag == ORIENTATION_TAG and kind in (3, 4) and values == 1:
            orientation = struct.unpack_from(order + ("H" if kind == 3 else "L"), table, start + entry_size - inline)[0]
    return Directory(count, claimed, orientation)


def embedded_directory(block: bytes) -> Directory:
    """The first directory of a TIFF structure inside a block (EXIF, with or without its
    "Exif\\0\\0" prefix, or MPF)."""
    block = block[6:] if block.startswith(b"Exif\x00\x00") else block
    read = _bytes_reader(block)
    header = _tiff_header(read)
    return directory(read, *header) if header else Directory(0, 0, None)


def _jpeg_blocks(read: Reader) -> list[bytes]:
    """The EXIF and MPF blocks Pillow parses when it opens a JPEG: its segments before the scan."""
    blocks, position, exif_seen = [], 2, False
    while True:
        head = read(position, 4)
        if len(head) < 2 or head[0] != 0xFF:
            return blocks
        marker = head[1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill byte, or a segment without length
            position += 1 if marker == 0xFF else 2
            continue
        if marker in (0xDA, 0xD9) or len(head) < 4:  # the scan (or the end): no metadata after it
            return blocks
        length = struct.unpack(">H", head[2:])[0]
        if marker in (0xE1, 0xE2):
            payload = read(position + 4, max(0, length - 2))
            if marker == 0xE1 and payload.startswith(b"Exif\x00\x00") and not exif_seen:
                blocks.append(payload)
                exif_seen = True  # Pillow keeps the first EXIF block only
            elif marker == 0xE2 and payload.startswith(b"MPF\x00"):
                blocks.append(payload[4:])
        position += 2 + length


def gif_extension_bytes(data: bytes) -> int:
    """The bytes of a GIF's extension blocks (comments, application data, plain text), frames skipped
    unread. Pillow joins each block's pieces one by one, in time that grows with the square of the
    block: 10 MB of comment takes it a minute. A damaged file ends the walk (the decoder says why)."""
    view, extensions = memoryview(data), 0
    position = 13 + (3 << ((data[10] & 7) + 1) if len(data) > 10 and data[10] & 0x80 else 0)
    while position < len(view):
        kind = view[position]
        if kind == 0x21:  # extension: label, then sub-blocks of data
            position += 2
            counted = True
        elif kind == 0x2C:  # image: descriptor, local colour table, LZW code size, then sub-blocks
            packed = view[position + 9] if position + 9 < len(view) else 0
            position += 11 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
            counted = False
        else:  # the trailer, or damage
            break
        while position < len(view) and (size := view[position]):
            extensions += size if counted else 0
            position += size + 1
        position += 1
    return extensions


def check_metadata(stream: BinaryIO, file_size: int, name: str) -> int:
    """The bytes the file's metadata makes Pillow read when it opens it (0 for the formats that
    parse none then); refuses in one line a file whose directories claim more than it holds, or a
    GIF with more than METADATA_SLACK_BYTES of extension blocks."""
    read = _file_reader(stream)
    if read(0, 6) in (b"GIF87a", b"GIF89a"):
        extensions = gif_extension_bytes(read(0, file_size))
        stream.seek(0)
        if extensions > limits.METADATA_SLACK_BYTES:
            raise ImageError(f"{name} holds {extensions / 2**20:.1f} MB of comments and other extension data "
                             f"(at most {limits.METADATA_SLACK_BYTES >> 10} KiB); refused")
        return extensions
    try:
        header = _tiff_header(read)
        if header is not None:
            found, limit = [directory(read, *header)], file_size
        elif read(0, 2) == b"\xff\xd8":
            blocks = _jpeg_blocks(read)
            found, limit = [embedded_directory(block) for block in blocks], sum(len(b) for b in blocks)
        else:
            found, limit = [], 0
    finally:
        stream.seek(0)
    claimed = sum(d.claimed for d in found)
    if claimed > limit + limits.METADATA_SLACK_BYTES:
        entries = sum(d.entries for d in found)
        raise ImageError(f"{name}'s metadata claims {claimed / 2**20:.0f} MB in {entries:,} entries, more than the "
                         f"file holds ({file_size / 2**20:.1f} MB); refused")
    return claimed


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened image, read without parsing the rest of its
    metadata: a TIFF's own entry (its directory was checked before opening), else the orientation
    entry of the EXIF block's first directory, else XMP's tiff:Orientation."""
    if img.format == "TIFF":
        value = img.tag_v2.get(ORIENTATION_TAG, 1)
    else:
        exif = img.info.get("exif")
        value = embedded_directory(exif).orientation if isinstance(exif, bytes) else None
        if value is None:
            xmp = img.info.get("XML:com.adobe.xmp") or img.info.get("xmp") or b""
            xmp = xmp.encode() if isinstance(xmp, str) else xmp if isinstance(xmp, bytes) else b""
            match = _XMP_ORIENTATION.search(xmp)
            value = int(match[1]) if match else 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1

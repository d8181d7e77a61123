"""Image files for the robustness tests, one builder per case: broken files with the words of their
one-line message, and odd but valid files with the RGB array they must decode to."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from tools.bombs import exif_bomb, metadata_bombs, tiff_directory  # noqa: F401 - the tests' bombs too


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    """A tiny PNG whose header claims width x height RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def flat_png(width: int, height: int, bit_depth: int = 16, color_type: int = 0) -> bytes:
    """A complete, valid PNG of one constant colour: huge sizes in a file of a few KB (built row by row)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row = b"\x00" + b"\x5a" * (width * channels * bit_depth // 8)
    packer = zlib.compressobj()
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))


def encoded(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


RNG = np.random.default_rng(7)
PHOTO = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def palette_with_transparency() -> bytes:
    image = Image.fromarray(PHOTO).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encoded(image, "PNG", transparency=0)


BAD_FILES = {  # name -> (bytes, the one-line message's key words)
    "empty.png": (b"", "is empty"),
    "truncated.png": (encoded(Image.fromarray(PHOTO), "PNG")[:300], "damaged or truncated"),
    "page.png": (b"<!doctype html><html><body>not an image</body></html>", "not an image file"),
    "bomb.png": (bomb_png(), "too large"),
    "one.png": (encoded(Image.new("RGB", (1, 1)), "PNG"), "too small: 1x1"),
    "stride.png": (encoded(Image.new("RGB", (7, 7)), "PNG"), "too small: 7x7"),
    "sliver.png": (encoded(Image.new("RGB", (2000, 40)), "PNG"), "too elongated: 2000x40"),
}


def odd_files() -> dict[str, tuple[bytes, np.ndarray]]:
    """Valid but unusual files -> (bytes, the RGB array we expect to segment)."""
    gray16 = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    gray16_rgb = np.repeat(np.rint(gray16 / 65535 * 255).astype(np.uint8)[..., None], 3, axis=2)
    rgba = np.dstack([PHOTO, RNG.integers(0, 256, (48, 64), dtype=np.uint8)])
    pal = Image.open(io.BytesIO(palette_with_transparency()))
    cmyk = Image.new("CMYK", (64, 48), (255, 0, 0, 0))  # pure cyan ink
    frames = [Image.new("RGB", (64, 48), c) for c in ("red", "blue")]
    return {
        "gray16.png": (encoded(Image.fromarray(gray16), "PNG"), gray16_rgb),
        "gray8.png": (encoded(Image.fromarray(PHOTO[..., 1]), "PNG"), np.repeat(PHOTO[..., 1:2], 3, axis=2)),
        "palette.png": (palette_with_transparency(), np.asarray(pal.convert("RGB"))),
        "rgba.png": (encoded(Image.fromarray(rgba), "PNG"), PHOTO),
        "cmyk.jpg": (encoded(cmyk, "JPEG", quality=95), np.broadcast_to(np.uint8([0, 255, 255]), (48, 64, 3))),
        "anim.webp": (encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True),
                      np.broadcast_to(np.uint8([255, 0, 0]), (48, 64, 3))),
        "anim.gif": (encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]),
                     np.broadcast_to(np.uint8([255, 0, 0]), (48, 64, 3))),
    }


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    return encoded(Image.fromarray(PHOTO), "JPEG", exif=exif)


# ---- clips: animated GIF, PNG and WebP ----------------------------------------------------------

def clip_frames(count: int, height: int = 40, width: int = 48, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) frames of 8 grey levels, distinct frame to frame (an encoder may merge equal ones)
    and exact in a GIF's palette."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 8, (count, height, width), dtype=np.uint8) * 32
    levels[:, 0, 0] = np.arange(count) % 8 * 32  # neighbours always differ somewhere
    levels[:, 0, 1] = (np.arange(count) + 1) % 8 * 32
    return np.repeat(levels[..., None], 3, axis=-1)


def animated(frames: np.ndarray, fmt: str, **kwargs: object) -> bytes:
    """An animated file of these frames (lossless where the format allows)."""
    images = [Image.fromarray(frame) for frame in frames]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return encoded(images[0], fmt, save_all=True, append_images=images[1:], duration=100, **extra, **kwargs)


def gif_of_two_sizes() -> bytes:
    """A GIF whose second frame reaches past the first's (and the logical screen's) size."""
    from PIL import GifImagePlugin

    first = Image.fromarray(np.zeros((40, 48), np.uint8), "P")
    second = Image.fromarray(np.ones((40, 64), np.uint8), "P")
    return (b"".join(GifImagePlugin.getheader(first)[0]) + b"".join(GifImagePlugin.getdata(first))
            + b"".join(GifImagePlugin.getdata(second)) + b";")


def cut_gif() -> bytes:
    """A four-frame GIF cut inside its third frame's pixel data."""
    data = animated(clip_frames(4, seed=3), "GIF")
    third = [i for i in range(len(data)) if data[i:i + 1] == b"," and data[i - 8:i - 6] == b"!\xf9"][2]
    return data[:third + 200]


def slow_clip(fmt: str, count: int, milliseconds: int) -> bytes:
    """`count` frames of `milliseconds` each (lossless where the format allows)."""
    images = [Image.fromarray(frame) for frame in clip_frames(count)]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return encoded(images[0], fmt, save_all=True, append_images=images[1:], duration=milliseconds, **extra)


BAD_CLIPS = {  # name -> (bytes, the one-line message's key words)
    "still.gif": (animated(clip_frames(1), "GIF"), "has only one frame"),
    "long.gif": (animated(clip_frames(17), "GIF"), "more than 16 frames"),
    "sizes.gif": (gif_of_two_sizes(), "frame 2 is 64x40 pixels but frame 1 is 48x40"),
    "cut.gif": (cut_gif(), "frame 3 is damaged"),
    "tiny.webp": (animated(clip_frames(3, 20, 20), "WEBP"), "too small: 20x20"),
    "slow.webp": (slow_clip("WEBP", 3, 8000), "3 frames last 24 s, past the 20 s a clip may last"),
}

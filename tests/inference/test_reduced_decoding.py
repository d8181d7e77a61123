"""A JPEG much larger than the app's working size is decoded at a reduced scale (the decoder's
1/2, 1/4, 1/8), which the app then downscales as before: the same picture within a few levels, at
a fraction of the memory, and the note still names the file's own size."""
from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image

from ccnet.app.explorer import load_image
from ccnet.inference.images import decode_image, decode_reduced, limit_size


@functools.cache
def photo_like(width: int, height: int) -> Image.Image:
    """Smooth gradients with some texture: what a camera JPEG holds, not noise. Each channel is made
    from a row and a column (the texture is separable), and each size once: read-only for the tests."""
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[..., 0] = (x / width * 255).astype(np.uint8)
    rgb[..., 1] = (y / height * 255).astype(np.uint8)
    rgb[..., 2] = ((np.sin(x / 37) * np.cos(y / 53) + 1) * 127).astype(np.uint8)
    return Image.fromarray(rgb)


def jpeg(image: Image.Image, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, **kwargs)
    return buffer.getvalue()


def test_a_big_jpeg_is_decoded_at_a_reduced_scale_and_downscaled_the_same():
    data = jpeg(photo_like(6000, 4000))
    assert decode_image(data).shape == (4000, 6000, 3)
    assert decode_reduced(data, 2048)[0].shape == (2000, 3000, 3)  # 1/2: 4x fewer pixels held
    assert decode_reduced(data, 2048)[1] == (6000, 4000)  # the file's own size, from the same header read
    assert decode_reduced(data, 1000)[0].shape == (1000, 1500, 3)  # 1/4
    reduced, note = load_image(data)
    full, full_note = limit_size(decode_image(data))
    assert reduced.shape == full.shape == (1365, 2048, 3)
    assert note == full_note == "downscaled from 6000x4000 to 2048x1365 (longest side limit 2048)"
    difference = np.abs(reduced.astype(int) - full.astype(int))
    assert difference.mean() < 1.5 and np.percentile(difference, 99) < 8


def test_small_jpegs_and_other_formats_are_decoded_whole():
    data = jpeg(photo_like(3000, 2000))  # under twice the limit: no reduction
    assert decode_reduced(data, 2048)[0].shape == (2000, 3000, 3)
    png = io.BytesIO()
    photo_like(6000, 4000).save(png, "PNG", compress_level=1)
    assert decode_reduced(png.getvalue(), 2048)[0].shape == (4000, 6000, 3)


def test_a_turned_jpeg_names_its_displayed_size():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when displayed: 6000x4000 stored, 4000x6000 shown
    image, note = load_image(jpeg(photo_like(6000, 4000), exif=exif))
    assert image.shape == (2048, 1365, 3)
    assert note == "downscaled from 4000x6000 to 1365x2048 (longest side limit 2048)"

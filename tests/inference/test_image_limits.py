"""The published limits, each at its value (accepted) and just past it (refused): 32 pixels a side,
16:1, 40 megapixels, and the downscale to 2048 pixels (issue 17, item 8). The numbers are literals
on purpose: changing a constant of ccnet.inference.images must fail a test here."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile

from ccnet import limits
from ccnet.app.explorer import load_image
from ccnet.errors import ImageError
from ccnet.inference.images import check_size, decode_image, limit_size
from tests.files import bomb_png


def blank(width: int, height: int) -> np.ndarray:
    return np.zeros((height, width, 3), np.uint8)


# ---- 32 pixels a side, 16:1 ----------------------------------------------------------------------
@pytest.mark.parametrize("width, height", [(32, 32), (512, 32), (32, 512), (2048, 128), (128, 2048)])
def test_sizes_at_the_limits_are_accepted(width, height):
    check_size(blank(width, height))


@pytest.mark.parametrize("width, height", [(31, 32), (32, 31), (31, 31)])
def test_a_side_under_32_pixels_is_too_small(width, height):
    with pytest.raises(ImageError) as info:
        check_size(blank(width, height))
    assert str(info.value) == f"image is too small: {width}x{height} pixels (at least 32 on each side)"


@pytest.mark.parametrize("width, height", [(513, 32), (32, 513), (2048, 127)])
def test_more_than_16_to_1_is_too_elongated(width, height):
    with pytest.raises(ImageError) as info:
        check_size(blank(width, height))
    assert str(info.value) == f"image is too elongated: {width}x{height} pixels, 16:1 (at most 16:1)"


def test_the_app_applies_the_limits():
    assert load_image(blank(32, 32))[0].shape == (32, 32, 3)
    assert load_image(blank(512, 32))[0].shape == (32, 512, 3)
    for width, height in [(31, 32), (513, 32)]:
        with pytest.raises(ImageError, match=f"{width}x{height} pixels"):
            load_image(blank(width, height))


# ---- 40 megapixels, checked on the header -------------------------------------------------------
class DecodeReachedError(Exception):
    """Raised where the pixels would be decoded: the header checks let the image through."""


@pytest.fixture()
def header_checks_only(monkeypatch):
    """Pillow's own bomb guard off (so a refusal can only be the project's) and no pixel decoded."""
    def decoded(*args, **kwargs):
        raise DecodeReachedError

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setattr(ImageFile.ImageFile, "load", decoded)


def test_a_header_of_exactly_40_megapixels_passes_the_checks(header_checks_only):
    assert limits.MAX_PIXELS == 8000 * 5000
    with pytest.raises(DecodeReachedError):
        decode_image(bomb_png(8000, 5000))


@pytest.mark.parametrize("width, height", [(754_717, 53), (40_000, 40_000)])
def test_a_header_over_40_megapixels_is_refused_by_the_project(header_checks_only, width, height):
    assert width * height >= limits.MAX_PIXELS + 1 == 754_717 * 53
    with pytest.raises(ImageError) as info:
        decode_image(bomb_png(width, height))
    assert str(info.value) == f"image is too large: {width}x{height} pixels (limit {limits.MAX_PIXELS:,})"


# ---- downscaled to 2048 pixels ------------------------------------------------------------------
@pytest.mark.parametrize("width, height, size", [
    (3000, 1000, (2048, 683)),  # 1000 * 2048 / 3000 = 682.7
    (1000, 5000, (410, 2048)),  # 1000 * 2048 / 5000 = 409.6
    (2049, 1000, (2048, 1000)),  # 1000 * 2048 / 2049 = 999.5
    (4096, 256, (2048, 128)),
])
def test_a_longest_side_over_2048_is_downscaled_to_2048_keeping_the_aspect(width, height, size):
    small, note = limit_size(blank(width, height))
    assert (small.shape[1], small.shape[0]) == size
    assert note == f"downscaled from {width}x{height} to {size[0]}x{size[1]} (longest side limit 2048)"
    assert load_image(blank(width, height))[0].shape == (size[1], size[0], 3)


@pytest.mark.parametrize("width, height", [(2048, 2048), (2048, 128), (100, 2048)])
def test_a_longest_side_of_2048_is_kept(width, height):
    image = blank(width, height)
    small, note = limit_size(image)
    assert small is image and note is None

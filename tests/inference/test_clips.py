"""Decoding clips: animated GIF, APNG and animated WebP round trips, and every refusal in one line
(one frame, too many frames, frames of two sizes, a damaged frame, too many pixels together, too long
a playing time)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ccnet import limits
from ccnet.errors import ImageError
from ccnet.inference.clips import decode_clip, is_clip
from ccnet.inference.images import decode_image
from tests.files import BAD_CLIPS, BAD_FILES, animated, clip_frames, encoded, slow_clip


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_files_decode_to_their_frames(fmt, tmp_path):
    frames = clip_frames(5, 40, 48)
    path = tmp_path / f"clip.{fmt.lower()}"
    path.write_bytes(animated(frames, fmt))
    assert is_clip(path) and is_clip(path.read_bytes())
    decoded = decode_clip(path)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, frames)  # lossless in all three
    assert np.array_equal(decode_image(path), frames[0])  # as an image: its first frame, as before


def test_the_frame_limit_is_inclusive():
    frames = clip_frames(limits.MAX_FRAMES)
    assert limits.MAX_FRAMES == 16 and np.array_equal(decode_clip(animated(frames, "GIF")), frames)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_the_playing_time_limit_is_inclusive_and_read_in_every_format(fmt):
    assert limits.MAX_CLIP_SECONDS == 20
    assert decode_clip(slow_clip(fmt, 4, 5000)).shape[0] == 4  # 20 s exactly
    with pytest.raises(ImageError, match="5 frames last 25 s, past the 20 s a clip may last"):
        decode_clip(slow_clip(fmt, 6, 5000))


@pytest.mark.parametrize("name", sorted(BAD_CLIPS))
def test_bad_clips_are_refused_in_one_line(name, tmp_path):
    data, words = BAD_CLIPS[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageError) as info:
        decode_clip(path)
    message = str(info.value)
    assert words in message and "\n" not in message and (name in message or "image is too small" in message)


def test_a_clip_with_too_many_pixels_is_refused_before_its_frame_is_decoded():
    side = 2000  # 4,000,000 pixels a frame: the fifth frame passes 16,000,000
    frames = [Image.new("L", (side, side), 40 * (i % 2)) for i in range(6)]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(ImageError, match=f"5 frames of 2000x2000 pixels pass the {limits.MAX_CLIP_PIXELS:,} pixels"):
        decode_clip(data)
    assert 4 * side * side <= limits.MAX_CLIP_PIXELS < 5 * side * side


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_still_images_and_broken_files_are_not_clips(name):
    assert not is_clip(BAD_FILES[name][0] or b"x")


def test_still_images_are_not_clips(tmp_path):
    path = tmp_path / "still.png"
    path.write_bytes(encoded(Image.fromarray(clip_frames(1)[0]), "PNG"))
    assert not is_clip(path) and not is_clip(tmp_path / "missing.gif")
    with pytest.raises(ImageError, match="still.png has only one frame"):
        decode_clip(path)
    with pytest.raises(ImageError, match="clip not found"):
        decode_clip(tmp_path / "missing.gif")

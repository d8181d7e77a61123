"""Metadata cannot multiply memory: directories are walked without reading their values, a file
whose entries claim more than it holds is refused before Pillow opens it, and the orientation is
read on its own (issue 24, item 1). Orientation is checked against Pillow's own reading."""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image, ImageOps

from ccnet import limits
from ccnet.errors import ImageError
from ccnet.inference.images import decode_image
from ccnet.inference.metadata import check_metadata, embedded_directory, orientation
from ccnet.limits import METADATA_SLACK_BYTES
from ccnet.project import ROOT
from tests.files import PHOTO, encoded, exif_bomb, metadata_bombs, tiff_directory

LINUX_PEAK = sys.platform == "linux" and os.access("/proc/self/clear_refs", os.W_OK)


def test_a_directory_is_summed_from_its_entries_alone():
    entries = [(0x0112, 3, 1, struct.pack("<H", 8)), (0x010E, 2, 3, b"ab\x00"),  # both inline
               (0x9000, 7, 100, b""), (0x9001, 3, 50, b""), (0x9002, 5, 2, b""), (0x9003, 99, 1000, b"")]
    block, _ = tiff_directory(entries, b"\x00" * 100)
    found = embedded_directory(block)
    assert (found.entries, found.orientation) == (6, 8)
    assert found.claimed == 100 + 50 * 2 + 2 * 8  # inline values and unknown types (Pillow skips them) claim none
    assert embedded_directory(b"Exif\x00\x00" + block) == found
    assert embedded_directory(b"not a tiff") .entries == 0


@pytest.mark.parametrize("value", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_the_orientation_and_the_turned_image_are_pillows(fmt, value):
    exif = Image.Exif()
    exif[0x0112] = value
    data = encoded(Image.fromarray(PHOTO), fmt, exif=exif, **({"lossless": True} if fmt == "WEBP" else {}))
    with Image.open(io.BytesIO(data)) as img:
        assert orientation(img) == value
        expected = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    np.testing.assert_array_equal(decode_image(data), expected)


def test_an_xmp_orientation_is_honoured_as_pillow_does():
    image = Image.fromarray(PHOTO)
    data = encoded(image, "PNG", pnginfo=_xmp('<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'))
    with Image.open(io.BytesIO(data)) as img:
        assert orientation(img) == 6 == img.getexif()[0x0112]
    assert decode_image(data).shape == (64, 48, 3)


def _xmp(text: str):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", text)
    return info


@pytest.mark.parametrize("name", ["mpf.jpg", "exif.jpg", "ifd.tif"])
def test_a_file_whose_directories_claim_more_than_it_holds_is_refused_before_pillow_opens_it(name, monkeypatch):
    data = metadata_bombs()[name]

    def opened(*args, **kwargs):
        raise AssertionError("Pillow opened the file")

    monkeypatch.setattr(Image, "open", opened)
    with pytest.raises(ImageError) as info:
        decode_image(data)
    message = str(info.value)
    assert message.startswith("image's metadata claims ") and "more than the file holds" in message
    assert "\n" not in message


def test_a_gif_with_megabytes_of_comment_is_refused_before_pillow_opens_it(monkeypatch):
    """Pillow joins a comment's pieces one by one, in time that grows with the square of its size (a
    10 MB comment held the server's event loop for seconds); a GIF's extension blocks are summed
    first, frames skipped unread, and past the slack the file is refused in one line."""
    data = metadata_bombs()["comment.gif"]
    with io.BytesIO(data) as stream, pytest.raises(ImageError) as info:
        check_metadata(stream, len(data), "comment.gif")
    assert str(info.value) == "comment.gif holds 1.0 MB of comments and other extension data (at most 64 KiB); refused"
    plain = encoded(Image.fromarray(PHOTO).convert("P"), "GIF", save_all=True, comment=b"made here", loop=0,
                    append_images=[Image.fromarray(PHOTO[::-1]).convert("P")])
    with io.BytesIO(plain) as stream:  # the loop count (11 + 3), the comment (9), the second frame's control (4)
        assert check_metadata(stream, len(plain), "plain.gif") == 14 + 9 + 4
    monkeypatch.setattr(Image, "open", lambda *a, **k: (_ for _ in ()).throw(AssertionError("Pillow opened it")))
    with pytest.raises(ImageError, match="extension data"):
        decode_image(data)


def test_honest_overlap_within_the_slack_is_accepted():
    entries = [(0x9000 + i, 7, 1024, b"") for i in range(METADATA_SLACK_BYTES // 1024)]  # 64 KiB over 1 KiB
    block = b"Exif\x00\x00" + tiff_directory(entries, b"\x00" * 1024)[0]
    jpeg = encoded(Image.fromarray(PHOTO), "JPEG", exif=block)
    with io.BytesIO(jpeg) as stream:
        assert check_metadata(stream, len(jpeg), "x") == METADATA_SLACK_BYTES
    assert decode_image(jpeg).shape == (48, 64, 3)
    with io.BytesIO(bomb := encoded(Image.fromarray(PHOTO), "JPEG", exif=exif_bomb(80, 1024))) as stream, \
            pytest.raises(ImageError):
        check_metadata(stream, len(bomb), "x")


PEAK = textwrap.dedent("""
    import json, sys
    from ccnet.errors import ImageError
    from ccnet.inference.images import decode_image

    def kib(key):
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key)) << 10

    decode_image(sys.argv[2])  # the code paths warmed up on a plain image
    open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
    before = kib("VmRSS")
    try:
        shape, message = list(decode_image(sys.argv[1]).shape), None
    except ImageError as err:
        shape, message = None, str(err)
    print(json.dumps({"peak": kib("VmHWM") - before, "shape": shape, "message": message}))
""")


@pytest.mark.skipif(not LINUX_PEAK, reason="peak RSS is read from Linux's /proc")
@pytest.mark.parametrize("name", sorted(metadata_bombs()))
def test_every_metadata_amplification_stays_within_the_file_and_the_published_budget(tmp_path, name):
    """1,000+ entries over one shared blob, in each place a directory reaches Pillow: the peak of the
    whole decode stays within the decode budget and within a few times the file's own size (before:
    a 1 MB PNG took 1.4 GiB, a 1 MB TIFF 1.9 GiB)."""
    path, plain = tmp_path / name, tmp_path / "plain.png"
    path.write_bytes(metadata_bombs()[name])
    plain.write_bytes(encoded(Image.fromarray(PHOTO), "PNG"))
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}  # big blocks go back to the system when freed
    run = subprocess.run([sys.executable, "-c", PEAK, str(path), str(plain)], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["peak"] <= limits.DECODE_BUDGET_BYTES
    assert result["peak"] <= 4 * path.stat().st_size + (16 << 20), f"{name}: {result['peak'] >> 20} MiB"
    if name.endswith((".png", ".webp")):  # no directory is read on opening these: the pixels are segmented
        assert result["shape"] == [64, 48, 3]  # turned by the block's own orientation (6)
    elif name.endswith(".gif"):
        assert "1.0 MB of comments and other extension data (at most 64 KiB); refused" in result["message"]
    else:
        assert "more than the file holds" in result["message"]

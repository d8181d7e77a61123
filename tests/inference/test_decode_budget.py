"""Decoding memory: estimated from the header, bounded before decoding, and an out-of-memory is one
line after which the next image is served (issue 17, item 5).

Peaks are measured as the process's peak RSS (VmHWM, reset through /proc/self/clear_refs) in a
fresh interpreter: Pillow allocates its images outside Python's allocator, so tracemalloc would see
only numpy's share of a decode.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image, ImageFile

from ccnet import limits
from ccnet.app.ui.common import OUT_OF_MEMORY, api_guard, ui_guard
from ccnet.errors import ImageError
from ccnet.inference import decode_budget
from ccnet.inference.images import decode_image
from ccnet.project import ROOT
from tests.files import encoded, flat_png

BIG = 6320  # the finding: a 77 KB 16-bit PNG of 6320x6320 peaked at 1143 MiB, a float TIFF at 1372 MiB
LINUX_PEAK = sys.platform == "linux" and os.access("/proc/self/clear_refs", os.W_OK)


@pytest.fixture(scope="module")
def big_gray16(tmp_path_factory):
    """A 6320 x 6320 16-bit grayscale PNG of 92 KB."""
    path = tmp_path_factory.mktemp("big") / "big16.png"
    path.write_bytes(flat_png(BIG, BIG))
    return path


def _moderate_files(folder):
    """Files of 2000 x 1500 in each storage mode, plus the formats whose decoders buffer more."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: a second copy of the decoded image
    images = {
        "rgb.png": encoded(Image.fromarray(rgb), "PNG", compress_level=1),
        "rgba.png": encoded(Image.fromarray(np.dstack([rgb, rgb[..., 0]])), "PNG", compress_level=1),
        "gray.png": encoded(Image.fromarray(rgb[..., 1]), "PNG", compress_level=1),
        "gray16.png": encoded(Image.fromarray(rng.integers(0, 65536, (1500, 2000), dtype=np.uint16)), "PNG",
                              compress_level=1),
        "float.tif": encoded(Image.fromarray(rng.random((1500, 2000), dtype=np.float32)), "TIFF",
                             compression="tiff_adobe_deflate"),
        "progressive.jpg": encoded(Image.fromarray(rgb), "JPEG", progressive=True, subsampling=0),
        "rotated.jpg": encoded(Image.fromarray(rgb), "JPEG", exif=exif),
        "photo.webp": encoded(Image.fromarray(rgb), "WEBP", quality=80),
    }
    for name, data in images.items():
        (folder / name).write_bytes(data)
    return sorted(folder.iterdir())


PEAKS = textwrap.dedent("""
    import json, sys
    from PIL import Image
    from ccnet.inference.decode_budget import peak_bytes
    from ccnet.inference.images import decode_image

    def kib(key):
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key)) << 10

    Image.init()
    for path in sys.argv[1:]:
        with open(path, "rb") as f, Image.open(f) as img:
            estimate = peak_bytes(img, f.seek(0, 2))
        open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
        before = kib("VmRSS")
        decoded = decode_image(path)
        print(json.dumps([path, kib("VmHWM") - before, estimate]))
        del decoded
""")


@pytest.mark.skipif(not LINUX_PEAK, reason="peak RSS is read from Linux's /proc")
def test_the_estimate_bounds_the_measured_peak(tmp_path, big_gray16):
    files = [*_moderate_files(tmp_path), big_gray16]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}  # big blocks go back to the system when freed
    run = subprocess.run([sys.executable, "-c", PEAKS, *map(str, files)], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    peaks = {os.path.basename(p): (peak, estimate) for p, peak, estimate in map(json.loads, run.stdout.splitlines())}
    assert len(peaks) == len(files)
    for name, (peak, estimate) in peaks.items():
        assert 0 < peak <= estimate, f"{name}: measured {peak >> 20} MiB, estimated {estimate >> 20} MiB"
    peak, estimate = peaks[big_gray16.name]
    assert estimate <= limits.DECODE_BUDGET_BYTES  # decoded within the budget, not refused ...
    assert peak < 5.5 * BIG * BIG  # ... in 5 bytes a pixel (image 2, RGB 3): 200 MiB, was 1143 MiB


def test_an_image_over_the_budget_is_refused_from_its_header(big_gray16, monkeypatch):
    def decoded(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(limits, "DECODE_BUDGET_BYTES", 64 << 20)
    monkeypatch.setattr(ImageFile.ImageFile, "load", decoded)
    tracemalloc.start()
    try:
        with pytest.raises(ImageError) as info:
            decode_image(big_gray16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert message.startswith(f"{big_gray16.name} needs about ") and "\n" not in message
    assert f"{BIG}x{BIG} I;16 pixels; limit 64 MiB); try a smaller image" in message
    assert peak < 1 << 20  # nothing decoded (Pillow's load fails the test), nothing big allocated


def test_the_budget_admits_every_8_bit_image_of_40_megapixels():
    """The worst decoder measured (WebP) on an 8000 x 5000 image from a 20 MB file (the upload limit)."""
    header = SimpleNamespace(size=(8000, 5000), mode="RGB", format="WEBP", info={})
    assert decode_budget.peak_bytes(header, limits.FILE_BYTES) <= limits.DECODE_BUDGET_BYTES


@pytest.mark.parametrize("stage", ["load", "crop"])
def test_running_out_of_memory_is_one_line_and_the_next_image_is_served(picture, monkeypatch, stage):
    def full(*args, **kwargs):
        raise MemoryError

    owner = ImageFile.ImageFile if stage == "load" else Image.Image
    with monkeypatch.context() as patch:
        patch.setattr(owner, stage, full)
        with pytest.raises(ImageError) as info:
            decode_image(picture)
    assert str(info.value) == "not enough memory to decode scene.png; try a smaller image"
    assert info.value.__context__ is None  # the failed decode's frames (and arrays) are not kept alive
    assert decode_image(picture).shape == (64, 96, 3)


MEMORY_LIMIT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from ccnet.errors import ImageError
    from ccnet.inference.images import decode_image

    size = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize")) << 10
    resource.setrlimit(resource.RLIMIT_AS, (size + (100 << 20), size + (100 << 20)))
    for _ in range(2):
        try:
            decode_image(sys.argv[1])
        except ImageError as err:
            print(err)
        print(decode_image(sys.argv[2]).shape)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="reads the address space from Linux's /proc")
def test_under_a_real_memory_limit_a_big_image_is_one_line_and_small_ones_still_decode(big_gray16, picture):
    run = subprocess.run([sys.executable, "-c", MEMORY_LIMIT, str(big_gray16), str(picture)], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    refused = f"not enough memory to decode {big_gray16.name}; try a smaller image"
    assert run.stdout.splitlines() == [refused, "(64, 96, 3)"] * 2


def test_the_app_turns_a_memory_error_into_one_line():
    class Page:
        status = "status"

    @ui_guard
    def handler(page):
        raise MemoryError

    @api_guard
    def endpoint():
        raise MemoryError

    assert handler(Page()) == {"status": f"⚠️ {OUT_OF_MEMORY}"}
    with pytest.raises(gr.Error) as info:
        endpoint()
    assert info.value.message == OUT_OF_MEMORY and "\n" not in OUT_OF_MEMORY
    assert info.value.__context__ is None


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "CMYK", "YCbCr", "1", "L", "I;16", "I", "F"])
def test_converting_strip_by_strip_equals_the_whole_image_conversion(mode):
    """4096 pixels wide: strips of 64 rows, the last one shorter."""
    rng = np.random.default_rng(3)
    if mode in ("I;16", "I", "F"):
        values = {"I;16": rng.integers(0, 65536, (150, 4096)).astype(np.uint16),
                  "I": rng.integers(0, 256, (150, 4096)).astype(np.int32),
                  "F": rng.random((150, 4096), dtype=np.float32)}[mode]
        image = Image.fromarray(values)
        peak = 1.0 if values.max() <= 1 else 65535.0 if values.max() > 255 else 255.0
        gray = np.clip(np.rint(values.astype(np.float64) / peak * 255.0), 0, 255).astype(np.uint8)
        expected = np.repeat(gray[..., None], 3, axis=2)
    else:
        rgba = Image.fromarray(rng.integers(0, 256, (150, 4096, 4), dtype=np.uint8))
        image = rgba.convert("RGB").quantize(64) if mode == "P" else rgba.convert(mode)
        expected = np.asarray(image.convert("RGB"))
    assert decode_budget.strip_rows(4096) == 64
    assert image.mode == mode
    np.testing.assert_array_equal(decode_image(image), expected)
    if mode != "YCbCr":  # Pillow cannot read back its own YCbCr TIFF
        np.testing.assert_array_equal(decode_image(encoded(image, "TIFF")), expected)


def test_arrays_convert_strip_by_strip_as_the_whole_image_formula():
    rng = np.random.default_rng(4)
    for values in [rng.random((150, 4096)), rng.integers(0, 65536, (150, 4096)).astype(np.uint16),
                   rng.integers(0, 256, (150, 4096, 4)).astype(np.float32)]:
        peak = 1.0 if values.max() <= 1 else 65535.0 if values.max() > 255 else 255.0
        rgb = np.clip(np.rint(values.astype(np.float64) / peak * 255.0), 0, 255).astype(np.uint8)
        expected = rgb[..., :3] if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2)
        np.testing.assert_array_equal(decode_image(values), expected)

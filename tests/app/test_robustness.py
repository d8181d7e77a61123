"""Bad and odd input, click edge cases, many users, path safety and faults, without a server.

The same cases through the running app are in test_app_api.py; the README's robustness table
lists what the user sees for each.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ccnet.app.explorer import Explorer
from ccnet.app.exports import Exports
from ccnet.app.server.uploads import checked_upload
from ccnet.errors import CCNetError, ImageError
from ccnet.inference.images import decode_image
from ccnet.inference.predictor import predict_or_fall_back
from ccnet.limits import MAX_ASPECT, MAX_SIDE, MIN_SIDE
from ccnet.project import DEMOS, ROOT
from ccnet.weights import download
from tests.cli.runner import run_cli
from tests.files import BAD_FILES, exif_rotated, odd_files
from tests.helpers import tiny_checkpoint


# ---- bad and odd images ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_images_are_refused_with_a_specific_line(explorer, tmp_path, name):
    data, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageError, match=message) as info:
        explorer.analyse(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 160
    assert explorer.network_runs == 0 and len(explorer.cache) == 0


@pytest.mark.parametrize("name", sorted(odd_files()))
def test_odd_but_valid_images_decode_to_the_expected_rgb_and_segment(explorer, tmp_path, name):
    data, expected = odd_files()[name]
    path = tmp_path / name
    path.write_bytes(data)
    rgb = decode_image(path)
    tolerance = 6 if name.endswith(".jpg") else 0  # JPEG is lossy
    assert rgb.dtype == np.uint8 and rgb.shape == expected.shape
    assert np.abs(rgb.astype(int) - expected.astype(int)).max() <= tolerance
    analysis = explorer.analyse(path)
    assert analysis.size == expected.shape[:2] and analysis.mask.shape == expected.shape[:2]


def test_exif_rotated_images_are_segmented_as_displayed(explorer, tmp_path):
    path = tmp_path / "turned.jpg"
    path.write_bytes(exif_rotated())
    assert explorer.analyse(path).size == (64, 48)  # 64 wide x 48 high on disk, shown turned


def test_the_limits_are_consistent():

    assert MAX_SIDE // MAX_ASPECT >= MIN_SIDE  # a downscaled image that passed the aspect check is never too small


@pytest.mark.parametrize("name", ["empty.png", "page.png", "bomb.png", "one.png", "sliver.png"])
def test_the_cli_refuses_bad_images_in_one_line(tmp_path, name):
    data, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    run = run_cli("predict", str(path))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and message.split(":")[0] in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("name", ["gray16.png", "cmyk.jpg", "anim.webp"])
def test_the_cli_segments_odd_images_at_their_size(tmp_path, name):
    data, expected = odd_files()[name]
    path, mask = tmp_path / name, tmp_path / "mask.png"
    path.write_bytes(data)
    run = run_cli("predict", str(path), "--out-mask", str(mask))
    assert run.returncode == 0, run.stderr
    # an animated file of two frames is a clip on the command line: one mask per frame (docs/video.md)
    masks = [tmp_path / "mask_00.png", tmp_path / "mask_01.png"] if name.startswith("anim") else [mask]
    assert all(Image.open(m).size == (expected.shape[1], expected.shape[0]) for m in masks)


# ---- clicks ---------------------------------------------------------------------------------------
@pytest.fixture()
def scene(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (70, 100, 3), dtype=np.uint8)).save(path)
    return path


def test_a_click_before_any_image_asks_for_one(explorer):
    with pytest.raises(ImageError, match="no image yet"):
        explorer.explain(None, 3, 4)


def test_the_last_row_and_column_map_to_the_last_cell(explorer, scene):
    explanation = explorer.explain(scene, 99, 69)
    grid = explanation.analysis.grid
    assert explanation.maps.cell == (grid[0] - 1, grid[1] - 1)
    assert explorer.explain(scene, 0, 0).maps.cell == (0, 0)


def test_a_click_after_switching_model_uses_the_new_model(explorer, scene, tmp_path):
    other = tiny_checkpoint(tmp_path / "other.pt", seed=5)
    first = explorer.explain(scene, 50, 30)
    second = explorer.explain(scene, 50, 30, model=str(other))
    assert first.analysis.model != second.analysis.model == str(other)
    assert not np.array_equal(first.maps.composed, second.maps.composed)
    assert explorer.network_runs == 2


def test_a_click_on_a_cached_example_does_not_rerun_the_network(explorer):
    demo = ROOT / "demos" / "street_seed1_car.png"
    explorer.analyse(demo)
    for x, y in [(0, 0), (511, 255), (200, 100)]:
        explorer.explain(demo, x, y)
    assert explorer.network_runs == 1


def test_a_click_on_an_expired_upload_says_to_upload_again(explorer, scene):
    explorer.analyse(scene)
    scene.unlink()  # Gradio's delete_cache removed the upload
    with pytest.raises(ImageError, match="no longer on the server.*upload it again"):
        explorer.explain(scene, 5, 5)


# ---- many users -----------------------------------------------------------------------------------
def test_concurrent_users_get_their_own_results(checkpoint, tmp_path):
    """Eight threads, eight different images, interleaved clicks: every answer equals the one a
    fresh explorer gives for that image alone."""
    images = []
    for i in range(8):
        path = tmp_path / f"user{i}.png"
        Image.fromarray(np.random.default_rng(100 + i).integers(0, 256, (48 + 8 * i, 80, 3), dtype=np.uint8)).save(path)
        images.append(path)
    reference = Explorer(str(checkpoint), device="cpu")
    expected = {p: (reference.analyse(p).mask.copy(), reference.explain(p, 40, 20).maps.composed.copy())
                for p in images}
    shared = Explorer(str(checkpoint), device="cpu", max_entries=3, max_bytes=1 << 20)  # evictions on purpose
    failures, barrier = [], threading.Barrier(len(images))

    def user(path: Path) -> None:
        barrier.wait()
        for _ in range(3):
            mask = shared.analyse(path).mask
            composed = shared.explain(path, 40, 20).maps.composed
            if not (np.array_equal(mask, expected[path][0]) and np.allclose(composed, expected[path][1], atol=1e-6)):
                failures.append(path.name)

    threads = [threading.Thread(target=user, args=(p,)) for p in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock: a user never finished"
    assert failures == []
    assert len(shared.cache) <= 3 and shared.cache.nbytes <= 1 << 20


def test_exports_of_two_users_never_share_a_file_and_the_folder_is_bounded(explorer, scene, tmp_path):
    exports = Exports(tmp_path / "exports", max_files=4)
    analysis = explorer.analyse(scene)
    first = exports.picture(analysis, "overlay", explorer.overlay(analysis, 0.2))
    second = exports.picture(analysis, "overlay", explorer.overlay(analysis, 0.9))
    assert first != second and first.name == second.name  # same download name, separate files
    assert not np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))
    for _ in range(6):
        exports.mask_png(analysis, explorer.models.model()[0].palette)
    assert len(list((tmp_path / "exports").rglob("*.png"))) == 4


# ---- security -------------------------------------------------------------------------------------
def test_only_uploads_and_examples_may_be_read(tmp_path):
    uploads, demos = tmp_path / "gradio", ROOT / "demos"
    (uploads / "abc").mkdir(parents=True)
    inside = uploads / "abc" / "photo.png"
    inside.write_bytes(b"x")
    roots = (uploads, demos)
    assert checked_upload({"path": str(inside)}, roots) == str(inside.resolve())
    assert checked_upload(str(demos / "street_seed1_car.png"), roots).endswith("street_seed1_car.png")
    assert checked_upload(None, roots) is None and checked_upload({"path": None}, roots) is None
    link = uploads / "abc" / "link.png"
    link.symlink_to(ROOT / "assets" / "ccnet_default.pt")
    for sneaky in ["/etc/passwd", str(uploads / ".." / "secret.png"), str(link), str(ROOT / "app.py")]:
        with pytest.raises(ImageError, match="was not uploaded to this app") as info:
            checked_upload({"path": sneaky}, roots)
        assert str(ROOT) not in str(info.value) and "/etc" not in str(info.value)
    with pytest.raises(ImageError, match="uploaded file"):
        checked_upload({"path": 42}, roots)


def test_the_app_reads_only_its_own_upload_folder_and_the_examples(tmp_path):
    """upload_path with the roots the app really passes (Gradio's upload folder and demos/): a wider
    root, say "/" or the temp folder, would let a crafted request read any file the server sees."""
    import gradio as gr

    from ccnet.app.ui.common import upload_path

    uploads = Path(gr.utils.get_upload_folder()).resolve()
    outside = tmp_path / "photo.png"  # under the temp folder, but not under Gradio's upload folder
    outside.write_bytes(b"x")
    assert not outside.resolve().is_relative_to(uploads)
    made = not uploads.exists()
    uploads.mkdir(parents=True, exist_ok=True)
    upload = Path(tempfile.mkdtemp(dir=uploads)) / "photo.png"
    try:
        upload.write_bytes(b"x")
        assert upload_path({"path": str(upload)}) == str(upload.resolve())
    finally:
        shutil.rmtree(uploads if made else upload.parent)
    example = DEMOS / "street_seed1_car.png"
    assert upload_path(str(example)) == str(example.resolve())
    for path in [outside, "/", "/etc/hostname", ROOT / "app.py"]:
        with pytest.raises(ImageError, match="was not uploaded to this app") as info:
            upload_path({"path": str(path)})
        assert "\n" not in str(info.value) and str(tmp_path) not in str(info.value)


def test_model_names_outside_the_menu_are_refused(explorer, checkpoint, scene):
    explorer.models.restrict(["default"])
    for name in ["/etc/passwd", str(ROOT / "assets" / "ccnet_default.pt"), "../x.pt"]:
        with pytest.raises(CCNetError, match="unknown model"):
            explorer.analyse(scene, name)
    assert explorer.analyse(scene).model == str(checkpoint)  # the start-up model stays allowed


# ---- faults ---------------------------------------------------------------------------------------
class _OutOfMemoryOnce:
    """Stands in for a CUDA predictor whose GPU is full."""

    device = torch.device("cuda")

    def predict(self, image, with_attention=True):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_gpu_out_of_memory_falls_back_to_the_cpu_with_a_note(explorer, scene):
    expected = Explorer(explorer.default_model, device="cpu").analyse(scene).mask
    loaded, _ = explorer.models.model()
    explorer.models._models[explorer.default_model] = (loaded, _OutOfMemoryOnce())
    analysis = explorer.analyse(scene)
    assert analysis.device == "cpu" and "GPU ran out of memory" in analysis.note
    np.testing.assert_array_equal(analysis.mask, expected)
    assert "GPU ran out of memory" in explorer.status(analysis)


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("out of memory"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"),  # torch's CPU
    MemoryError(),  # numpy, Pillow
])
def test_cpu_out_of_memory_is_a_clear_error(error):
    class CpuFull:
        device = torch.device("cpu")

        def predict(self, image, with_attention=True):
            raise error

    with pytest.raises(CCNetError, match="out of memory segmenting a 5x4 image"):
        predict_or_fall_back(CpuFull(), np.zeros((4, 5, 3), np.uint8), True, lambda: None)


def test_other_runtime_errors_of_a_prediction_are_not_taken_for_out_of_memory():
    class Broken:
        device = torch.device("cpu")

        def predict(self, image, with_attention=True):
            raise RuntimeError("shapes do not match")

    with pytest.raises(RuntimeError, match="shapes do not match"):
        predict_or_fall_back(Broken(), np.zeros((4, 5, 3), np.uint8), True, lambda: None)


def test_a_full_disk_while_exporting_is_a_clear_error(explorer, scene, tmp_path, monkeypatch):
    exports = Exports(tmp_path / "exports")
    analysis = explorer.analyse(scene)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(CCNetError, match="could not write the mask.png file.*No space left"):
        exports.mask_png(analysis, explorer.models.model()[0].palette)


@pytest.fixture()
def served_file(tmp_path):
    """A 64 KiB file named like a zoo checkpoint, served on loopback; yields (url, cache dir)."""
    import hashlib
    import http.server
    import socketserver

    data = os.urandom(1 << 16)
    name = f"model-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / name).write_bytes(data)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "www"), **k)  # noqa: E731
    with socketserver.TCPServer(("127.0.0.1", 0), handler) as server:
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}/{name}", tmp_path / "cache"
        server.shutdown()


def test_a_disk_that_fills_up_during_a_download_leaves_nothing_behind(served_file, monkeypatch):
    url, cache = served_file
    monkeypatch.setenv("CCNET_CACHE", str(cache))
    real_fdopen = os.fdopen

    class FillsUp:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, chunk):
            if self.written + len(chunk) > 1000:  # the disk holds the first KB only
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(chunk)
            return self.f.write(chunk)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(download.os, "fdopen", lambda fd, mode: FillsUp(real_fdopen(fd, mode)))
    with pytest.raises(CCNetError, match="No space left on device.*CCNET_CACHE") as info:
        download.fetch(url, progress=lambda done, total: None)
    assert "\n" not in str(info.value)
    assert [p.name for p in download.cache_dir().iterdir()] == []  # no partial file, no final file


def test_a_download_larger_than_the_free_space_is_refused_before_it_starts(served_file, monkeypatch):
    url, cache = served_file
    monkeypatch.setenv("CCNET_CACHE", str(cache))
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1000})())
    with pytest.raises(CCNetError, match="needs 0.1 MiB but .* has 0.0 MiB free"):
        download.fetch(url, progress=lambda done, total: None)
    assert [p.name for p in download.cache_dir().iterdir()] == []



@pytest.mark.parametrize("x", [float("inf"), float("nan"), "1e999", "Infinity"])
def test_coordinates_that_are_not_finite_numbers_are_one_line(explorer, picture, x):
    with pytest.raises(CCNetError, match="pixel coordinates must be whole numbers"):
        explorer.explain(picture, x, 3)


def test_a_huge_echoed_input_is_cut(explorer):
    from ccnet.errors import VISITOR_MESSAGE_LIMIT, for_visitor

    explorer.models.restrict(["default"])
    with pytest.raises(CCNetError) as err:
        explorer.models.model("x" * (1 << 20))
    message = for_visitor(err.value)
    assert len(str(err.value)) < 300 and f"({(1 << 20) + 2} characters)" in message
    assert len(for_visitor(CCNetError("y" * 5000))) == VISITOR_MESSAGE_LIMIT == 1000


def test_every_endpoint_describes_each_argument_whole_to_the_api_page_and_the_mcp_tools():
    """Gradio keeps an argument's first docstring line only: each description is one line, whole."""
    from gradio.utils import get_function_description

    from ccnet.app.ui.api import IMAGE, MODEL, SIZE, attention_endpoint, cost_endpoint, segment_endpoint

    for make in (segment_endpoint, attention_endpoint, cost_endpoint):
        summary, arguments, returns = get_function_description(make(None, None))
        assert summary.endswith(".") and len(returns) == 1 and returns[0].endswith(").")
        assert arguments["image"].startswith(IMAGE) and "2048 px" in IMAGE and "fetches no URL" in IMAGE
        assert arguments["model"].startswith(MODEL)
        assert all(text for text in arguments.values()), arguments
        if "size" in arguments:
            assert arguments["size"] == SIZE

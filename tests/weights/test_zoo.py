"""Presets, downloads and the zoo/fetch commands, against a local HTTP server only (127.0.0.1)."""
from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from ccnet.cli import main
from ccnet.errors import CCNetError
from ccnet.inference.predictor import Protocol
from ccnet.nn.model import CCNetConfig
from ccnet.weights import download
from ccnet.weights import presets as zoo
from ccnet.weights.datasets import dataset_info
from ccnet.weights.load import load_model
from tests.helpers import tiny_model
from tools.ports import free_port

TINY_19 = CCNetConfig(num_classes=19, depth=18, stem_channels=(8, 8, 16), base_channels=8,
                      head_channels=16, aux_channels=8)

# name -> (sha256 prefix, single-scale mIoU, ms+flip mIoU), as published by mmsegmentation.
PUBLISHED = {
    "ccnet_r50-d8_512x1024_40k_cityscapes": ("4123f401", 77.76, 78.87),
    "ccnet_r101-d8_512x1024_40k_cityscapes": ("a3b84ba6", 76.35, 78.19),
    "ccnet_r50-d8_769x769_40k_cityscapes": ("76d11884", 78.46, 79.93),
    "ccnet_r101-d8_769x769_40k_cityscapes": ("4f57c8d0", 76.94, 78.62),
    "ccnet_r50-d8_512x1024_80k_cityscapes": ("869a3423", 79.03, 80.16),
    "ccnet_r101-d8_512x1024_80k_cityscapes": ("ffae8917", 78.87, 79.90),
    "ccnet_r50-d8_769x769_80k_cityscapes": ("73eed8ca", 79.29, 81.08),
    "ccnet_r101-d8_769x769_80k_cityscapes": ("ad3cd481", 79.45, 80.66),
    "ccnet_r50-d8_512x512_80k_ade20k": ("aa37f61e", 41.78, 42.98),
    "ccnet_r101-d8_512x512_80k_ade20k": ("1f4929a3", 43.97, 45.13),
    "ccnet_r50-d8_512x512_160k_ade20k": ("7c97193b", 42.08, 43.13),
    "ccnet_r101-d8_512x512_160k_ade20k": ("e849e007", 43.71, 45.04),
    "ccnet_r50-d8_512x512_20k_voc12aug": ("fad81784", 76.17, 77.51),
    "ccnet_r101-d8_512x512_20k_voc12aug": ("0007b61d", 77.27, 79.02),
    "ccnet_r50-d8_512x512_40k_voc12aug": ("c2a15f02", 75.96, 77.04),
    "ccnet_r101-d8_512x512_40k_voc12aug": ("c30da577", 77.87, 78.90),
}


class Server:
    """Serves ``routes[path] = (status, body, declared length)`` and records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, int | None]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                status, body, length = server.routes.get(self.path, (404, b"", None))
                if status != 200:
                    self.send_error(status)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)  # HTTP/1.0: the connection closes after, short or not

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("CCNET_CACHE", str(folder))
    monkeypatch.delenv("CCNET_ZOO_URL", raising=False)
    return folder


@pytest.fixture(scope="module")
def tiny_file() -> tuple[str, bytes]:
    """A small 19-class CCNet checkpoint and its hash-carrying name."""
    buffer = io.BytesIO()
    torch.save({"meta": {}, "state_dict": tiny_model(config=TINY_19).state_dict()}, buffer)
    data = buffer.getvalue()
    return f"tiny_ccnet-{hashlib.sha256(data).hexdigest()[:8]}.pth", data


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---- the registry ----------------------------------------------------------------------------

def test_sixteen_presets_with_the_published_data():
    presets = zoo.presets()
    assert list(presets) == list(PUBLISHED)
    for name, (sha, single, multi) in PUBLISHED.items():
        p = presets[name]
        assert (p.sha256_prefix, p.miou_single_scale, p.miou_multiscale_flip) == (sha, single, multi)
        assert p.url.startswith("https://download.openmmlab.com/mmsegmentation/v0.5/ccnet/")
        assert p.url.endswith(f"-{sha}.pth") and download.sha256_prefix(download.file_name(p.url)) == sha
        assert p.dataset in name and p.backbone == ("R-101-D8" if "r101" in name else "R-50-D8")
        assert len(p.classes) == len(p.palette) == p.num_classes == len(dataset_info()[p.dataset]["classes"])
        assert p.protocol.mean == (123.675, 116.28, 103.53) and p.protocol.std == (58.395, 57.12, 57.375)
        assert not p.protocol.bgr


@pytest.mark.parametrize("name, resize, mode, align, crop", [
    ("ccnet_r50-d8_512x1024_40k_cityscapes", (2048, 1024), "whole", False, (512, 1024)),
    ("ccnet_r101-d8_769x769_80k_cityscapes", (2049, 1025), "slide", True, (769, 769)),
    ("ccnet_r50-d8_512x512_160k_ade20k", (2048, 512), "whole", False, (512, 512)),
    ("ccnet_r101-d8_512x512_20k_voc12aug", (2048, 512), "whole", False, (512, 512)),
])
def test_preset_protocols(name, resize, mode, align, crop):
    protocol = zoo.get(name).protocol
    assert isinstance(protocol, Protocol)
    assert (protocol.test_resize, protocol.mode, protocol.align_corners) == (resize, mode, align)
    assert zoo.get(name).crop_size == crop
    if mode == "slide":
        assert (protocol.crop, protocol.stride) == ((769, 769), (513, 513))
    else:
        assert protocol.crop is None and protocol.stride is None


def test_unknown_preset_is_one_line_error():
    with pytest.raises(CCNetError, match="python -m ccnet zoo"):
        zoo.get("ccnet_r18")
    with pytest.raises(CCNetError, match=r"did you mean ccnet_r50-d8_512x1024_40k_cityscapes\?.*ccnet zoo"):
        load_model("ccnet_r50-d8_512x1024_40k_cityscape")


# ---- cache folder ----------------------------------------------------------------------------

def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CCNET_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "t"))
    assert download.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("CCNET_CACHE")
    assert download.cache_dir() == tmp_path / "t" / "ccnet"
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert download.cache_dir() == tmp_path / "hf" / "ccnet"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert download.cache_dir() == tmp_path / "x" / "torch" / "ccnet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert download.cache_dir() == Path("~/.cache/torch/ccnet").expanduser()


# ---- downloads -------------------------------------------------------------------------------

def test_download_verifies_then_cache_hit_makes_no_request(server, cache, tiny_file):
    name, data = tiny_file
    server.routes[f"/zoo/{name}"] = (200, data, None)
    url = f"{server.base}/zoo/{name}"
    calls = []
    path = download.fetch(url, progress=lambda done, total: calls.append((done, total)))
    assert path == cache / name and path.read_bytes() == data
    assert leftovers(cache) == [name]  # no temporary file left behind
    assert calls[0] == (0, len(data)) and calls[-1] == (len(data), len(data))
    assert server.requests == [f"/zoo/{name}"]
    assert download.fetch(url) == path
    assert server.requests == [f"/zoo/{name}"]  # the cache hit asked nothing


def test_console_progress_goes_to_stderr(server, tiny_file, capsys):
    name, data = tiny_file
    server.routes[f"/{name}"] = (200, data, None)
    download.fetch(f"{server.base}/{name}")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"downloading {name}" in captured.err and "(100%)" in captured.err and captured.err.endswith("\n")


def test_truncated_transfer_is_detected(server, cache, tiny_file):
    name, data = tiny_file
    server.routes[f"/{name}"] = (200, data[:1000], len(data))
    with pytest.raises(CCNetError, match=f"cut short: 1000 of {len(data)} bytes") as err:
        download.fetch(f"{server.base}/{name}", progress=lambda *a: None)
    assert "\n" not in str(err.value) and str(cache / name) in str(err.value)
    assert leftovers(cache) == []


def test_hash_mismatch_deletes_the_download(server, cache, tiny_file):
    _, data = tiny_file
    name = "tiny_ccnet-00000000.pth"
    server.routes[f"/{name}"] = (200, data, None)
    with pytest.raises(CCNetError, match="sha256 starts with .*not 00000000.*deleted"):
        download.fetch(f"{server.base}/{name}", progress=lambda *a: None)
    assert leftovers(cache) == []


@pytest.mark.parametrize("status", [404, 500])
def test_server_errors_name_url_and_manual_path(server, cache, status):
    name = "ccnet_test-12345678.pth"
    if status != 404:
        server.routes[f"/{name}"] = (status, b"", None)
    url = f"{server.base}/{name}"
    with pytest.raises(CCNetError) as err:
        download.fetch(url, progress=lambda *a: None)
    message = str(err.value)
    assert f"HTTP {status}" in message and url in message and str(cache / name) in message
    assert "\n" not in message
    assert leftovers(cache) == []


def test_no_server_names_url_and_manual_path(cache):
    url = f"http://127.0.0.1:{free_port()}/ccnet_test-12345678.pth"
    with pytest.raises(CCNetError) as err:
        download.fetch(url, progress=lambda *a: None)
    message = str(err.value)
    assert message.startswith(f"cannot download {url}: ")
    assert "refused" in message.lower() and f"put the file by hand at {cache / 'ccnet_test-12345678.pth'}" in message
    assert "\n" not in message


def test_name_without_hash_is_refused(server):
    with pytest.raises(CCNetError, match="no '-<8 hex of sha256>'"):
        download.fetch(f"{server.base}/weights.pth")
    assert server.requests == []


def test_zoo_url_override_keeps_the_file_name(server, monkeypatch, tiny_file):
    name, data = tiny_file
    server.routes[f"/mirror/{name}"] = (200, data, None)
    monkeypatch.setenv("CCNET_ZOO_URL", f"{server.base}/mirror/")
    path = download.fetch(f"https://download.example.invalid/some/where/{name}", progress=lambda *a: None)
    assert path.read_bytes() == data and server.requests == [f"/mirror/{name}"]


# ---- presets through the model registry and the command line --------------------------------

@pytest.fixture
def tiny_preset(monkeypatch, tiny_file) -> zoo.Preset:
    """A 17th preset pointing at the tiny checkpoint (real presets cannot be served: their hash)."""
    name, _ = tiny_file
    base = zoo.get("ccnet_r50-d8_769x769_40k_cityscapes")
    preset = replace(base, name="tiny_preset", url=f"https://download.example.invalid/{name}",
                     sha256_prefix=download.sha256_prefix(name))
    monkeypatch.setitem(zoo.presets(), preset.name, preset)
    return preset


def test_load_model_fetches_a_preset_with_its_protocol_and_classes(server, monkeypatch, tiny_file, tiny_preset):
    name, data = tiny_file
    server.routes[f"/{name}"] = (200, data, None)
    monkeypatch.setenv("CCNET_ZOO_URL", server.base)
    loaded = load_model("tiny_preset", progress=lambda *a: None)
    assert loaded.name == "tiny_preset"
    assert loaded.protocol == tiny_preset.protocol and loaded.protocol.mode == "slide"
    assert loaded.classes == tuple(dataset_info()["cityscapes"]["classes"])
    assert loaded.palette[0] == (128, 64, 128)
    assert loaded.net.config.num_classes == 19
    load_model("tiny_preset")  # second time from the cache
    assert server.requests == [f"/{name}"]


def test_cli_zoo_lists_sixteen_presets_and_what_is_cached(capsys, cache):
    cache.mkdir(parents=True)
    cached = zoo.get("ccnet_r50-d8_512x512_80k_ade20k")
    cached.path.write_bytes(b"placed by hand")
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("ccnet_")]
    assert [row.split()[0] for row in rows] == list(PUBLISHED)
    assert {row.split()[0]: row.split()[-1] for row in rows} == {
        name: "yes" if name == cached.name else "no" for name in PUBLISHED
    }
    assert "79.45" in out and "slide 769/513" in out and str(cache) in out


def test_cli_fetch_prints_the_path(server, monkeypatch, tiny_file, tiny_preset, capsys, cache):
    name, data = tiny_file
    server.routes[f"/{name}"] = (200, data, None)
    monkeypatch.setenv("CCNET_ZOO_URL", server.base + "/")
    assert main(["fetch", "tiny_preset"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(cache / name)
    assert "downloading" in captured.err


def test_cli_fetch_of_a_real_preset_uses_the_override_and_verifies(server, monkeypatch, capsys, cache):
    preset = zoo.get("ccnet_r101-d8_512x512_40k_voc12aug")
    filename = download.file_name(preset.url)
    server.routes[f"/{filename}"] = (200, b"not the real checkpoint", None)
    monkeypatch.setenv("CCNET_ZOO_URL", server.base)
    assert main(["fetch", preset.name]) == 2
    err = capsys.readouterr().err
    assert server.requests == [f"/{filename}"]
    assert "not c30da577" in err and "deleted" in err
    assert leftovers(cache) == []


def test_cli_fetch_unknown_name(capsys):
    assert main(["fetch", "nope"]) == 2
    assert "python -m ccnet zoo" in capsys.readouterr().err


def test_every_preset_has_a_label_a_visitor_can_choose_by():
    sizes = {}
    for preset in zoo.presets().values():
        label = preset.label
        assert preset.backbone in label and f"{preset.num_classes} classes" in label and "MB download" in label
        assert f"mIoU {preset.miou_single_scale:.2f}" in label and zoo.DATASET_NAMES[preset.dataset] in label
        sizes.setdefault(preset.backbone, set()).add(round(preset.download_mb))
    # parameter count x 4 bytes: mmseg's R50-D8 CCNet files are about 190-200 MB, R101-D8 about 270-280 MB
    assert all(180 <= s <= 215 for s in sizes["R-50-D8"]) and all(260 <= s <= 290 for s in sizes["R-101-D8"])

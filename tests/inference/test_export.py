"""ONNX export checked with onnxruntime: the graph's logits and attention equal PyTorch's on the
embedded model and on random-weight R50-D8 and R101-D8 checkpoints in mmseg's layout, at two odd
sizes; the ONNX predictor equals the PyTorch one under a preset's protocol; the CLI round-trips.
Each graph is exported once (an export takes seconds) and read by every test that needs it."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

from ccnet.errors import CCNetError
from ccnet.inference.export import ExportGraph, export_onnx
from ccnet.inference.predictor import Predictor, Protocol
from ccnet.inference.runtime import OnnxPredictor
from ccnet.nn.model import CCNet, CCNetConfig
from ccnet.weights.checkpoints import save_checkpoint
from ccnet.weights.load import load_file, load_model
from tests.cli.runner import run_cli

ODD_SIZES = [(75, 131), (97, 65)]
# R50 is exported under a preset-like protocol (BGR, a test size) with metadata, R101 under the default
PROTOCOLS = {50: Protocol(test_resize=(96, 64), bgr=True), 101: Protocol()}
METADATA = {50: {"ccnet.classes": '["a", "b"]'}, 101: None}


def _relative(got: np.ndarray, expected: torch.Tensor) -> float:
    return float(np.abs(got - expected.numpy()).max() / expected.abs().max())


def _check_graph(net: CCNet, protocol: Protocol, path, names: list[str]) -> None:
    """The graph in ``path`` against the PyTorch model at two odd sizes: logits and each step's attention."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == names
    reference = ExportGraph(net, protocol, with_attention=True)
    for height, width in ODD_SIZES:
        image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(height)) * 255
        ordered = image.flip(1) if protocol.bgr else image
        with torch.no_grad():
            logits, steps = net(((ordered - torch.tensor(protocol.mean).view(1, 3, 1, 1))
                                  / torch.tensor(protocol.std).view(1, 3, 1, 1)), return_attention=True)
            expected = torch.nn.functional.interpolate(logits, size=(height, width), mode="bilinear",
                                                       align_corners=protocol.align_corners)
        got = session.run(None, {"image": image.numpy()})
        assert got[0].shape == (1, net.config.num_classes, height, width)
        assert _relative(got[0], expected) < 1e-4
        assert len(got) - 1 == len(steps) == net.decode_head.recurrence
        h, w = (height - 1) // 8 + 1, (width - 1) // 8 + 1
        for got_step, step in zip(got[1:], steps):
            assert got_step.shape == (1, h, w, h + w)
            np.testing.assert_allclose(got_step, step.numpy(), atol=1e-5)
        with torch.no_grad():
            assert _relative(got[0], reference(image)[0]) < 1e-5


@pytest.fixture(scope="module")
def default_onnx(tmp_path_factory):
    """The embedded model exported once, by the command line, for the tests that read the file."""
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    return path, run_cli("export", "--model", "default", "--out", str(path), "--with-attention")


def test_the_embedded_model_exports_with_dynamic_sizes(default_onnx):
    path, result = default_onnx
    assert result.returncode == 0, result.stderr
    loaded = load_model("default")
    _check_graph(loaded.net, loaded.protocol, path, ["logits", "attention_step1", "attention_step2"])


@pytest.fixture(scope="module")
def mmseg_onnx(tmp_path_factory):
    """depth -> (the loaded random R<depth>-D8 checkpoint in mmseg's layout, its graph, the graph's
    outputs), each exported on first use."""
    exported = {}

    def export(depth: int):
        if depth not in exported:
            folder = tmp_path_factory.mktemp(f"r{depth}")
            torch.manual_seed(depth)
            net = CCNet(CCNetConfig(depth=depth, num_classes=19)).eval()
            with torch.no_grad():
                net.decode_head.cca.gamma.scale.fill_(0.5)  # a zero gamma would hide the attention
            save_checkpoint(folder / "r.pth", {"state_dict": net.state_dict()})  # mmseg's layout, no meta
            loaded = load_file(folder / "r.pth")
            names = export_onnx(loaded.net, PROTOCOLS[depth], folder / "r.onnx", with_attention=True,
                                metadata=METADATA[depth])
            exported[depth] = loaded, folder / "r.onnx", names
        return exported[depth]

    return export


@pytest.mark.parametrize("depth", [50, 101])
def test_random_mmseg_checkpoints_export(mmseg_onnx, depth):
    loaded, path, names = mmseg_onnx(depth)
    _check_graph(loaded.net, PROTOCOLS[depth], path, names)


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_the_onnx_predictor_equals_the_pytorch_one_under_a_protocol(mmseg_onnx, mode):
    loaded, path, _ = mmseg_onnx(50)
    protocol = PROTOCOLS[50]
    if mode == "slide":
        protocol = Protocol(bgr=True, mode="slide", crop=(48, 48), stride=(32, 32))
    image = np.random.default_rng(3).integers(0, 256, (70, 110, 3), dtype=np.uint8)
    expected = Predictor(loaded.net, protocol, "cpu").predict(image)
    got = OnnxPredictor(path, protocol).predict(image)
    assert got.grid == expected.grid and got.input_size == expected.input_size
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-4, atol=1e-4)
    for a, b in zip(got.attention, expected.attention, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_file_carries_its_protocol_and_metadata(mmseg_onnx):
    _, path, _ = mmseg_onnx(50)
    predictor = OnnxPredictor(path)
    assert predictor.protocol == PROTOCOLS[50] and json.loads(predictor.metadata["ccnet.classes"]) == ["a", "b"]


def test_a_file_that_is_not_onnx_is_one_line(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not a graph")
    with pytest.raises(CCNetError, match=r"cannot load bad.onnx as an ONNX model \(INVALID_PROTOBUF\)"):
        OnnxPredictor(tmp_path / "bad.onnx")


def test_export_and_predict_with_onnxruntime_from_the_command_line(tmp_path, default_onnx):
    path, result = default_onnx
    assert result.returncode == 0, result.stderr
    assert "outputs logits, attention_step1, attention_step2" in result.stdout
    metadata = onnxruntime.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
    assert json.loads(metadata["ccnet.classes"]) == list(load_model("default").classes)
    image = np.random.default_rng(5).integers(0, 256, (90, 170, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "img.png")
    masks = {}
    for runtime in ("torch", "onnx"):
        result = run_cli("predict", str(tmp_path / "img.png"), "--runtime", runtime, "--device", "cpu",
                         "--out-mask", str(tmp_path / f"{runtime}.png"))
        assert result.returncode == 0, result.stderr
        masks[runtime] = np.asarray(Image.open(tmp_path / f"{runtime}.png"))
    assert (masks["onnx"] == masks["torch"]).mean() > 0.999


@pytest.mark.parametrize("args, message", [
    (["--out", "model.pt"], "--out must end in .onnx, got 'model.pt'"),
    (["--out", "m.onnx", "--opset", "9"], "--opset must be 18..23"),
])
def test_bad_export_options_are_one_line(tmp_path, args, message):
    result = run_cli("export", "--model", "default", *args)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1

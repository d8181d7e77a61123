"""ONNX export of the 3D criss-cross block: one file with dynamic T, H and W, run by onnxruntime at
sizes other than the traced one, equals PyTorch's output and weights."""
from __future__ import annotations

import onnx
import onnxruntime
import pytest
import torch

from ccnet.inference.export import ATTENTION3D_SAMPLE, export_attention3d
from ccnet.nn.attention3d import CrissCrossAttention3d

SIZES = [(2, 5, 7), (4, 6, 3), (1, 3, 4)]  # none is the traced (3, 8, 10)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    block = CrissCrossAttention3d(16).eval()
    with torch.no_grad():
        block.gamma.scale.fill_(0.7)  # a zero gamma would hide the aggregation
    path = tmp_path_factory.mktemp("onnx") / "cca3d.onnx"
    names = export_attention3d(block, path)
    return block, path, names


def test_the_graph_has_dynamic_t_h_w_and_plain_ops(exported):
    _, path, names = exported
    model = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[:2] == [1, 16] and all(isinstance(d, str) for d in dims[2:]), dims
    assert [o.name for o in model.graph.output] == names == ["output", "attention"]
    ops = {node.op_type for node in model.graph.node}
    assert {"MatMul", "Where", "Softmax"} <= ops and not ops & {"Einsum", "EyeLike"}, ops


@pytest.mark.parametrize("size", SIZES)
def test_onnxruntime_equals_pytorch_at_sizes_other_than_the_traced_one(exported, size):
    block, path, _ = exported
    assert size != ATTENTION3D_SAMPLE
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    clip = torch.randn(1, 16, *size, generator=torch.Generator().manual_seed(sum(size)))
    got_out, got_attn = session.run(None, {"clip": clip.numpy()})
    for impl in ("fast", "reference"):
        block.impl = impl
        with torch.no_grad():
            out, attn = block(clip, return_attention=True)
        assert got_attn.shape == (1, *size, sum(size))
        torch.testing.assert_close(torch.from_numpy(got_attn), attn, rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(got_out), out, rtol=0, atol=1e-5)

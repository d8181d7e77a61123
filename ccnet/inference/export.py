"""ONNX export of a CCNet: one graph from an RGB image in 0-255 to logits at the image's size,
optionally with every criss-cross step's attention weights.

Inputs and outputs (docs/deploy.md):
    image            float32 (1, 3, H, W), RGB, 0-255; H and W dynamic (each at least 32)
    logits           float32 (1, K, H, W): the whole image in one pass, bilinearly resized back
    attention_step1 … attention_stepR   float32 (1, h, w, h + w) with --with-attention, in the
                     layout of ccnet.nn.attention (column half first, centre counted once)

Normalisation (mean, std, channel order) is inside the graph; a test resize or sliding window is
not (the checkpoint-file protocol: the caller picks the size). The criss-cross blocks run their
plain-MatMul formulation (ccnet.nn.cross_matmul): the same numbers, ops every runtime has. BatchNorm
is folded into the convs before tracing: the exporter would fold it into the same graph (129 nodes
for the embedded model either way), but traces a fifth faster without it.
torch's dynamo-based exporter (torch.export) writes the graph; it needs the `onnx` and
`onnxscript` packages (requirements-dev.txt).
"""
from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccnet.errors import CCNetError
from ccnet.inference.predictor import Protocol, normalise
from ccnet.nn.attention import CrissCrossAttention
from ccnet.nn.attention3d import CrissCrossAttention3d
from ccnet.nn.model import CCNet
from ccnet.nn.optimize import fold_batchnorm

EXPORT_SAMPLE = (1, 3, 96, 160)  # the traced example; H and W stay dynamic
ATTENTION3D_SAMPLE = (3, 8, 10)  # the traced clip's T, H, W; all three stay dynamic


class ExportGraph(nn.Module):
    """The exported computation: normalise, the network, logits back at the input's size."""

    def __init__(self, net: CCNet, protocol: Protocol, with_attention: bool = False,
                 attention_impl: str = "export") -> None:
        super().__init__()
        self.net = copy.deepcopy(net).eval().float()
        for module in self.net.modules():
            if isinstance(module, CrissCrossAttention):
                module.impl = attention_impl
        self.protocol, self.with_attention = protocol, with_attention

    @property
    def output_names(self) -> list[str]:
        steps = self.net.decode_head.recurrence if self.with_attention and self.net.config.attention == "cca" else 0
        return ["logits", *(f"attention_step{i + 1}" for i in range(steps))]

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        x = normalise(image, self.protocol)
        if len(self.output_names) > 1:
            logits, attention = self.net(x, return_attention=True)
        else:
            logits, attention = self.net(x), []
        logits = F.interpolate(logits, size=image.shape[2:], mode="bilinear", align_corners=self.protocol.align_corners)
        return (logits, *attention)


def export_onnx(net: CCNet, protocol: Protocol, path: str | Path, with_attention: bool = False,
                opset: int | None = None, metadata: dict[str, str] | None = None) -> list[str]:
    """Write the graph to `path`, with `metadata` (e.g. classes and palette as JSON) in the file's
    metadata_props; returns its output names."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise CCNetError("ONNX export needs the onnx and onnxscript packages: pip install onnx onnxscript") from None
    if with_attention and net.head_variant.kind != "criss-cross":
        raise CCNetError(f"--with-attention needs criss-cross attention; this model's head is "
                         f"{net.head_variant.label!r}")
    graph = ExportGraph(net, protocol, with_attention)
    fold_batchnorm(graph.net)  # the graph's own copy
    sample = torch.rand(*EXPORT_SAMPLE) * 255
    dynamic = {"image": {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter, not ours
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
        program = torch.onnx.export(graph, (sample,), dynamo=True, input_names=["image"],
                                    output_names=graph.output_names, dynamic_shapes=dynamic,
                                    opset_version=opset, verbose=False, report=False)
    program.model.metadata_props.update({**(metadata or {}), "ccnet.protocol": json.dumps(protocol.to_dict()),
                                         "ccnet.kind": net.head_variant.kind})
    program.save(str(path))  # once: the metadata goes in before the file is written
    return graph.output_names


class Attention3dGraph(nn.Module):
    """A ``CrissCrossAttention3d`` block on its own, in its export formulation: clip -> (output, weights)."""

    def __init__(self, block: CrissCrossAttention3d) -> None:
        super().__init__()
        self.block = copy.deepcopy(block).eval().float()
        self.block.impl = "export"

    def forward(self, clip: Tensor) -> tuple[Tensor, Tensor]:
        return self.block(clip, return_attention=True)


def export_attention3d(block: CrissCrossAttention3d, path: str | Path, opset: int | None = None) -> list[str]:
    """Write one 3D criss-cross step to ``path``: input ``clip`` float32 (1, C, T, H, W), T, H and W
    dynamic; outputs ``output`` (1, C, T, H, W) and ``attention`` (1, T, H, W, T + H + W) in the
    layout of ccnet.nn.attention3d. Returns the output names."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise CCNetError("ONNX export needs the onnx and onnxscript packages: pip install onnx onnxscript") from None
    sample = torch.randn(1, block.in_channels, *ATTENTION3D_SAMPLE)
    dynamic = {"clip": dict.fromkeys((2, 3, 4), torch.export.Dim.DYNAMIC)}
    names = ["output", "attention"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter, not ours
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(Attention3dGraph(block), (sample,), dynamo=True, input_names=["clip"],
                                    output_names=names, dynamic_shapes=dynamic, opset_version=opset,
                                    verbose=False, report=False)
    program.save(str(path))
    return names

"""Running an exported graph (ccnet/inference/export.py) with onnxruntime, behind the Predictor's
interface: the same protocol (test resize, sliding window) around the graph, the same Prediction."""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from ccnet.errors import CCNetError
from ccnet.inference.export import export_onnx
from ccnet.inference.predictor import Predictor, Protocol
from ccnet.nn.model import CCNet


class OnnxPredictor(Predictor):
    """A Predictor whose network is an ONNX graph run by onnxruntime on the CPU."""

    def __init__(self, path: str | Path, protocol: Protocol | None = None, threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise CCNetError("the onnx runtime needs the onnxruntime package: pip install onnxruntime") from None
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except (state.Fail, state.InvalidProtobuf, state.NoSuchFile, state.InvalidGraph, OSError) as err:
            reason = re.search(r": \d+ : (\w+) :", str(err))
            raise CCNetError(f"cannot load {Path(path).name} as an ONNX model"
                             f" ({reason.group(1) if reason else type(err).__name__})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        stored = self.metadata.get("ccnet.protocol")
        self.protocol = protocol or (Protocol.from_dict(json.loads(stored)) if stored else Protocol())
        self.device, self.amp, self.net = torch.device("cpu"), None, None
        self.kind = self.metadata.get("ccnet.kind", "criss-cross")  # the head's, written at export
        self.outputs = [output.name for output in self.session.get_outputs()]

    def _forward(self, x: Tensor, with_attention: bool) -> tuple[Tensor, list[Tensor]]:
        """The graph normalises and resizes its logits itself; attention only if it has it."""
        results = self.session.run(None, {"image": x.contiguous().numpy()})
        attention = [torch.from_numpy(a[0]) for a in results[1:]] if with_attention else []
        return torch.from_numpy(results[0]), attention


def exported_predictor(net: CCNet, protocol: Protocol, with_attention: bool = False,
                       threads: int | None = None) -> OnnxPredictor:
    """`net` exported to a temporary ONNX file and loaded by onnxruntime; the session holds the
    graph, so the file goes once it is loaded."""
    with tempfile.TemporaryDirectory(prefix="ccnet-onnx-") as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(net, protocol, path, with_attention=with_attention)
        return OnnxPredictor(path, protocol, threads=threads)


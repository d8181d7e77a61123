"""Turn a model name into a ready network: `default` (embedded), a released preset, or a file."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from pathlib import Path

from ccnet.errors import CCNetError
from ccnet.inference.predictor import Protocol
from ccnet.nn.model import CCNet
from ccnet.nn.video import VideoCCNet
from ccnet.project import DEFAULT_CHECKPOINT
from ccnet.weights import family, presets
from ccnet.weights.checkpoints import build_model, read_checkpoint
from ccnet.weights.datasets import class_info
from ccnet.weights.download import ProgressFn


@dataclass
class LoadedModel:
    """A network with everything needed to run and show it."""

    name: str
    net: CCNet | VideoCCNet  # a VideoCCNet from ccnet.weights.video.load_video_model
    protocol: Protocol
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]


def load_file(path: str | Path, protocol: Protocol | None = None, name: str | None = None) -> LoadedModel:
    """Load a checkpoint file; its own meta may carry classes, palette and protocol."""
    state_dict, meta = read_checkpoint(path)
    net = build_model(state_dict, meta)
    if protocol is None:
        protocol = Protocol.from_dict(meta["protocol"]) if isinstance(meta.get("protocol"), dict) else Protocol()
    classes, palette = class_info(net.config.num_classes, meta)
    return LoadedModel(name or Path(path).name, net, protocol, classes, palette)


def load_model(spec: str, protocol: Protocol | None = None, progress: ProgressFn | None = None) -> LoadedModel:
    """``default`` -> the embedded model (``default:ARM`` its siblings, ccnet/weights/family.py); a
    preset name -> its (cached) release; a file; else an error.

    ``progress(done, total)`` reports a preset's first download (a line on stderr if omitted).
    """
    if spec == "default" or family.is_sibling(spec):
        if not DEFAULT_CHECKPOINT.is_file():
            raise CCNetError(f"the embedded default model is missing: {DEFAULT_CHECKPOINT}")
        loaded = load_file(DEFAULT_CHECKPOINT, protocol, name="default")
        if spec == "default":
            return loaded
        return replace(loaded, name=spec, net=family.load_sibling(loaded.net, spec.split(":", 1)[1]))
    preset = presets.presets().get(spec)
    if preset is not None:
        loaded = load_file(presets.fetch(spec, progress), protocol or preset.protocol, name=spec)
        return replace(loaded, classes=preset.classes, palette=preset.palette)
    if Path(spec).suffix in (".pt", ".pth", ".bin") or Path(spec).exists():
        return load_file(spec, protocol)
    close = difflib.get_close_matches(spec, list(presets.presets()), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise CCNetError(
        f"unknown model {spec!r}{hint}: use 'default', a preset name (python -m ccnet zoo) or a checkpoint file"
    )

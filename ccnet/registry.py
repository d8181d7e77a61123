"""Turn a model name into a ready network: `default` (embedded), a released preset, or a file."""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from ccnet.checkpoints import build_model, read_checkpoint
from ccnet.download import ProgressFn
from ccnet.errors import CCNetError
from ccnet.inference import Protocol
from ccnet.model import CCNet

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "ccnet_default.pt"
DATASET_BY_CLASSES = {19: "cityscapes", 150: "ade20k", 21: "voc"}


@dataclass
class LoadedModel:
    """A network with everything needed to run and show it."""

    name: str
    net: CCNet
    protocol: Protocol
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]


@lru_cache(maxsize=1)
def dataset_info() -> dict:
    """Class names and palettes of Cityscapes, ADE20K and VOC as mmsegmentation defines them."""
    return json.loads((Path(__file__).with_name("datasets.json")).read_text())


def class_info(num_classes: int, meta: dict) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """Names and colours from the checkpoint's meta, else from the dataset its class count implies."""
    if meta.get("classes") and meta.get("palette") and len(meta["classes"]) == num_classes:
        return tuple(meta["classes"]), tuple(tuple(int(c) for c in rgb) for rgb in meta["palette"])
    if num_classes in DATASET_BY_CLASSES:
        info = dataset_info()[DATASET_BY_CLASSES[num_classes]]
        return tuple(info["classes"]), tuple(tuple(rgb) for rgb in info["palette"])
    golden = [((i * 97) % 256, (i * 57 + 80) % 256, (i * 181 + 30) % 256) for i in range(num_classes)]
    return tuple(f"class {i}" for i in range(num_classes)), tuple(golden)


def load_file(path: str | Path, protocol: Protocol | None = None, name: str | None = None) -> LoadedModel:
    """Load a checkpoint file; its own meta may carry classes, palette and protocol."""
    state_dict, meta = read_checkpoint(path)
    net = build_model(state_dict, meta)
    if protocol is None:
        protocol = Protocol.from_dict(meta["protocol"]) if isinstance(meta.get("protocol"), dict) else Protocol()
    classes, palette = class_info(net.config.num_classes, meta)
    return LoadedModel(name or Path(path).name, net, protocol, classes, palette)


def load_model(spec: str, protocol: Protocol | None = None, progress: ProgressFn | None = None) -> LoadedModel:
    """``default`` -> the embedded model; a preset name -> its (cached) release; a file; else an error.

    ``progress(done, total)`` reports a preset's first download (a line on stderr if omitted).
    """
    from ccnet import zoo  # zoo reads this module's dataset_info

    if spec == "default":
        if not DEFAULT_CHECKPOINT.is_file():
            raise CCNetError(f"the embedded default model is missing: {DEFAULT_CHECKPOINT}")
        return load_file(DEFAULT_CHECKPOINT, protocol, name="default")
    preset = zoo.presets().get(spec)
    if preset is not None:
        loaded = load_file(zoo.fetch(spec, progress), protocol or preset.protocol, name=spec)
        return replace(loaded, classes=preset.classes, palette=preset.palette)
    if Path(spec).suffix in (".pt", ".pth", ".bin") or Path(spec).exists():
        return load_file(spec, protocol)
    close = difflib.get_close_matches(spec, list(zoo.presets()), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise CCNetError(
        f"unknown model {spec!r}{hint}: use 'default', a preset name (python -m ccnet zoo) or a checkpoint file"
    )

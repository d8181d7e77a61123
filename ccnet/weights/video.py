"""Video models by name: any image model on a clip, and the default model's heads trained on clips.

Any name ``load_model`` takes (``default``, its siblings, a preset, a file) gives a video network
with that model's weights: its head attends over the clip with the 3D block of the same steps
(ccnet.nn.video), or runs on each frame with ``per_frame``. With T = 1 it is the image model.

``default:video`` and ``default:ARM`` (the arms in assets/ccnet_default_video.pt) are heads
trained on synthetic clips (ccnet.experiments.street_clips) on ``default``'s frozen backbone. The
file holds only their heads (read with weights_only; written by ``python -m tools.video_heads``),
and its meta names the arm ``default:video`` stands for: the best of the video ablation
(docs/video.md).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ccnet.errors import CCNetError
from ccnet.inference.predictor import Protocol
from ccnet.nn.variants import head_variant
from ccnet.nn.video import VideoCCNet
from ccnet.project import ASSETS
from ccnet.weights import family
from ccnet.weights.checkpoints import read_checkpoint
from ccnet.weights.download import ProgressFn
from ccnet.weights.load import LoadedModel, load_model

VIDEO_FILE = ASSETS / "ccnet_default_video.pt"
VIDEO = "default:video"  # the best head trained on clips
HEAD_PREFIX = "decode_head."


def is_video_name(spec: str) -> bool:
    """``default:video`` or ``default:X`` where X is no image sibling: a head of the video file."""
    return spec == VIDEO or (family.is_sibling(spec) and spec.split(":", 1)[1] not in family.SIBLINGS)


def video_heads(path: Path = VIDEO_FILE) -> dict[str, str]:
    """The heads trained on clips, by name, with their labels from the heads table: ``default:video``
    (the best arm) first, then the file's other arms as ``default:ARM``."""
    meta = read_checkpoint(path)[1]
    named = {VIDEO: meta["best"], **{family.sibling_name(arm): arm for arm in meta["arms"] if arm != meta["best"]}}
    return {name: f"{head_variant(meta['arms'][arm]['head']).label} · {name}" for name, arm in named.items()}


def load_video_model(spec: str = VIDEO, protocol: Protocol | None = None, per_frame: bool = False,
                     progress: ProgressFn | None = None, path: Path = VIDEO_FILE) -> LoadedModel:
    """A LoadedModel whose ``net`` is a VideoCCNet (see the module's docstring for the names)."""
    if not is_video_name(spec):
        loaded = load_model(spec, protocol, progress)
        return replace(loaded, net=VideoCCNet.from_image(loaded.net, per_frame))
    if per_frame:
        raise CCNetError(f"{spec} is a head trained on clips: per_frame applies to image models only")
    if not Path(path).is_file():
        raise CCNetError(f"the default model's video heads are missing: {path}")
    weights, meta = read_checkpoint(path)
    arm = meta["best"] if spec == VIDEO else spec.split(":", 1)[1]
    if arm not in meta["arms"]:
        raise CCNetError(f"unknown video head {spec!r}: one of {VIDEO}, "
                         f"{', '.join(family.sibling_name(a) for a in meta['arms'])}")
    base = load_model("default", protocol)
    record = meta["arms"][arm]
    net = VideoCCNet(base.net.config, head_variant(record["head"]))
    state = {k: v for k, v in base.net.state_dict().items() if k.startswith("backbone.")}
    state.update({k[len(arm) + 1:]: v for k, v in weights.items() if k.startswith(f"{arm}.{HEAD_PREFIX}")})
    net.load_state_dict(state, strict=True)
    return replace(base, name=spec, net=net.eval())

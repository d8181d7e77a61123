"""The embedded model's family: heads of every attention kind trained on its frozen backbone.

`default` is criss-cross attention with R = 2, trained end to end. Its siblings (`default:none`,
`default:rcca_r1`, `default:rcca_r3`, `default:nonlocal`) are heads trained on `default`'s backbone
and auxiliary head, frozen (`python -m ccnet train --backbone assets/ccnet_default.pt ...`, see
assets/MODEL_CARD.md), so a sibling differs from `default` in nothing but its head: what each
attention sees of the same features can be compared cell by cell. One file holds every sibling's
head (assets/ccnet_default_family.pt, read with weights_only; written by `python -m tools.family`).
"""
from __future__ import annotations

from pathlib import Path

from ccnet.errors import CCNetError
from ccnet.nn.model import CCNet, CCNetConfig
from ccnet.nn.variants import BY_NAME, IMAGE_HEADS
from ccnet.project import ASSETS
from ccnet.weights.checkpoints import read_checkpoint

FAMILY_FILE = ASSETS / "ccnet_default_family.pt"
BASE = "default"
BASE_HEAD = "rcca_r2"  # the default model's own head
ARMS = tuple(head.name for head in IMAGE_HEADS)  # every head of the family, in the variants table's order
SIBLINGS = tuple(arm for arm in ARMS if arm != BASE_HEAD)
HEAD_PREFIX = "decode_head."


def sibling_name(arm: str) -> str:
    return BASE if arm == BASE_HEAD else f"{BASE}:{arm}"


def arm_of(name: str) -> str | None:
    """The head (variants table name) of a family member, None for other models."""
    if name == BASE:
        return BASE_HEAD
    return name.removeprefix(f"{BASE}:") if is_sibling(name) and name.removeprefix(f"{BASE}:") in BY_NAME else None


def head_label(name: str) -> str:
    """How the app names a family member's head ("R = 2", "non-local", ...); other names unchanged."""
    arm = arm_of(name)
    return BY_NAME[arm].label if arm else name


def is_sibling(name: str) -> bool:
    return name.startswith(f"{BASE}:")


def nonlocal_sibling(name: str) -> str:
    """The model with a non-local head on the same backbone, or a one-line error."""
    if name == BASE or is_sibling(name):
        return sibling_name("nonlocal")
    raise CCNetError(f"model {name!r} has no non-local sibling on its backbone (only 'default' and its "
                     f"siblings {', '.join(sibling_name(a) for a in SIBLINGS)} have one)")


def load_sibling(base: CCNet, arm: str, path: Path = FAMILY_FILE) -> CCNet:
    """`base` (the default model) with the head of `arm` in place of its own."""
    if arm not in SIBLINGS:
        raise CCNetError(f"unknown sibling {arm!r} of {BASE}: one of {', '.join(SIBLINGS)} (heads trained on clips, "
                         f"such as {BASE}:video, run on clips: ccnet.weights.video.load_video_model)")
    if not Path(path).is_file():
        raise CCNetError(f"the default model's family is missing: {path}")
    weights, meta = read_checkpoint(path)
    config = CCNetConfig.from_dict(meta["arms"][arm]["ccnet_config"])
    net = CCNet(config).eval()
    state = {k: v for k, v in base.state_dict().items() if not k.startswith(HEAD_PREFIX)}  # load_state_dict copies
    state.update({k[len(arm) + 1:]: v for k, v in weights.items() if k.startswith(f"{arm}.")})
    net.load_state_dict(state, strict=True)
    return net

"""The one table of head variants: every decode head this project builds, runs, shows and ablates.

A row names a head once for everything: the ablation's arm and the embedded model's sibling
(`default:<name>`), the label pages and tables print, the kind of attention a prediction carries
(and the viewer draws), what CCHead builds (the `attention` a checkpoint's config stores), how many
attention steps a forward runs, and its name in the cost measurements (ccnet.nn.cost). Menus,
labels, the cost panel, the family, the ablation and the viewer's panels all derive from it, so a
new head is one row plus its module.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ccnet.errors import CCNetError

# what a prediction's attention is; the -3d kinds attend over a clip's frames (ccnet/nn/video.py)
KINDS = ("criss-cross", "non-local", "none", "criss-cross-3d", "non-local-3d")


@dataclass(frozen=True)
class HeadVariant:
    """One head: see the module's docstring for what each field serves."""

    name: str
    label: str
    kind: str
    attention: str  # the head's block: "cca", "nonlocal" or "none" (3D blocks on a clip when video)
    steps: int  # attention steps of one forward (R for criss-cross, 1 for non-local, 0 without)
    cost_method: str  # the block's name in ccnet.nn.cost (ccnet.nn.cost3d for video rows; "" without one)
    description: str  # one line for a menu
    video: bool = False  # attends over a clip's frames (B, C, T, H, W); an image row runs on each frame

    @property
    def recurrence(self) -> int:
        """CCHead's `recurrence` (it ignores it for heads without criss-cross attention)."""
        return self.steps if self.attention == "cca" else 2

    def config(self, base: object) -> object:
        """A network config (ccnet.nn.model.CCNetConfig) with this head in place of `base`'s."""
        return replace(base, attention=self.attention, recurrence=self.recurrence)

    def train_flags(self) -> list[str]:
        """The `python -m ccnet train` options that build this head."""
        return ["--attention", self.attention, "--recurrence", str(self.recurrence)]


HEADS = (
    HeadVariant("none", "no attention", "none", "none", 0, "", "no attention, same backbone (the ablation's baseline)"),
    HeadVariant("rcca_r1", "R = 1", "criss-cross", "cca", 1, "rcca1",
                "R = 1 head on the embedded backbone (one step: row and column only)"),
    HeadVariant("rcca_r2", "R = 2", "criss-cross", "cca", 2, "rcca2",
                "R = 2, the paper's head (two steps: every cell)"),
    HeadVariant("rcca_r3", "R = 3", "criss-cross", "cca", 3, "rcca3", "R = 3 head on the embedded backbone"),
    HeadVariant("nonlocal", "non-local", "non-local", "nonlocal", 1, "nonlocal",
                "non-local head on the embedded backbone (every cell, one step)"),
    HeadVariant("rcca3d_r1", "3D R = 1", "criss-cross-3d", "cca", 1, "cca3d",
                "3D criss-cross, R = 1: a position's time line, column and row", video=True),
    HeadVariant("rcca3d_r2", "3D R = 2", "criss-cross-3d", "cca", 2, "cca3d",
                "3D criss-cross, R = 2: every position that differs in at most two of t, h, w", video=True),
    HeadVariant("rcca3d_r3", "3D R = 3", "criss-cross-3d", "cca", 3, "cca3d",
                "3D criss-cross, R = 3: every position of the clip", video=True),
    HeadVariant("nonlocal3d", "space-time non-local", "non-local-3d", "nonlocal", 1, "nonlocal3d",
                "space-time non-local: every position of the clip, one step", video=True),
)
BY_NAME = {head.name: head for head in HEADS}
IMAGE_HEADS = tuple(head for head in HEADS if not head.video)  # the embedded model's family, the image ablation
VIDEO_HEADS = tuple(head for head in HEADS if head.video)  # heads over a clip, the video ablation


def head_variant(name: str) -> HeadVariant:
    """The row of a head's name, or a one-line error naming them all."""
    if name not in BY_NAME:
        raise CCNetError(f"unknown head {name!r}: one of {', '.join(BY_NAME)}")
    return BY_NAME[name]


def variant_of(attention: str, recurrence: int) -> HeadVariant:
    """The row a network config (its `attention` and `recurrence`) builds."""
    if attention not in {head.attention for head in HEADS}:
        raise ValueError(f"attention must be one of {sorted({head.attention for head in HEADS})}, got {attention!r}")
    for head in IMAGE_HEADS:
        if head.attention == attention and (head.kind != "criss-cross" or head.steps == recurrence):
            return head
    steps = max(1, recurrence)  # a criss-cross head with an R of its own: the table's shape, its own R
    return HeadVariant(f"rcca_r{steps}", f"R = {steps}", "criss-cross", "cca", steps, f"rcca{steps}",
                       f"R = {steps} criss-cross head")


def clip_variant(image: HeadVariant) -> HeadVariant:
    """The head over a clip with an image head's block and steps (so its weights fit it unchanged):
    criss-cross R -> 3D criss-cross R, non-local -> space-time non-local; without attention a head
    is the same on a clip and on each frame."""
    if image.video or image.attention == "none":
        return image
    for head in VIDEO_HEADS:
        if head.attention == image.attention and (head.attention != "cca" or head.steps == image.steps):
            return head
    return HeadVariant(f"rcca3d_r{image.steps}", f"3D R = {image.steps}", "criss-cross-3d", "cca", image.steps,
                       "cca3d", f"3D criss-cross, R = {image.steps}", video=True)

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

KINDS = ("criss-cross", "non-local", "none")  # what a prediction's attention is


@dataclass(frozen=True)
class HeadVariant:
    """One head: see the module's docstring for what each field serves."""

    name: str
    label: str
    kind: str
    attention: str  # CCHead's block: "cca", "nonlocal" or "none"
    steps: int  # attention steps of one forward (R for criss-cross, 1 for non-local, 0 without)
    cost_method: str  # ccnet.nn.cost's name for the attention block ("" without one)
    description: str  # one line for a menu
    video: bool = False  # a head over a clip's frames (B, C, T, H, W) rather than one image

    @property
    def recurrence(self) -> int:
        """CCHead's `recurrence` (it ignores it for heads without criss-cross attention)."""
        return self.steps if self.kind == "criss-cross" else 2

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
)
BY_NAME = {head.name: head for head in HEADS}
IMAGE_HEADS = tuple(head for head in HEADS if not head.video)  # the embedded model's family, the image ablation


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

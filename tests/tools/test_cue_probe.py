"""The cue probe: how far the embedded model's backbone alone carries the panel's colour."""
from __future__ import annotations

from ccnet.weights.load import load_model
from tools.cue_probe import cue_spread


def test_the_backbone_keeps_the_cue_local_so_the_attention_must_fetch_it():
    """Flipping the cue changes the backbone's feature at the panel, but hardly five or more cells
    away: the vehicles (at least a quarter of the width aside) get the cue through the head."""
    profile = cue_spread(load_model("default"), count=4)
    assert profile[0] > 0.3 and profile[5] < 0.06 and profile[8] < 0.02, profile

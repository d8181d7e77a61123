"""The default model's siblings: heads on its exact backbone, shipped in one small file."""
from __future__ import annotations

import pytest
import torch

from ccnet.errors import CCNetError
from ccnet.project import DEFAULT_CHECKPOINT
from ccnet.weights.checkpoints import read_checkpoint
from ccnet.weights.family import ARMS, FAMILY_FILE, SIBLINGS, head_label, nonlocal_sibling, sibling_name
from ccnet.weights.load import load_model


def test_the_family_file_is_small_and_loads_without_pickled_code():
    assert FAMILY_FILE.stat().st_size + DEFAULT_CHECKPOINT.stat().st_size <= 10e6
    weights, meta = read_checkpoint(FAMILY_FILE)  # weights_only=True
    assert set(meta["arms"]) == set(SIBLINGS) and all(k.split(".", 1)[1].startswith("decode_head.") for k in weights)


@pytest.mark.parametrize("arm, attention, steps", [("none", "none", 0), ("rcca_r1", "cca", 1),
                                                   ("rcca_r3", "cca", 3), ("nonlocal", "nonlocal", 1)])
def test_each_sibling_is_the_default_backbone_with_its_own_head(arm, attention, steps):
    base, sibling = load_model("default"), load_model(sibling_name(arm))
    assert sibling.net.config.attention == attention and sibling.net.decode_head.recurrence == steps
    assert sibling.classes == base.classes and sibling.protocol == base.protocol
    base_state, state = base.net.state_dict(), sibling.net.state_dict()
    for key, value in base_state.items():
        if key.startswith(("backbone.", "auxiliary_head.")):
            assert torch.equal(state[key], value), key
    assert not torch.equal(state["decode_head.conv_seg.weight"], base_state["decode_head.conv_seg.weight"])


def test_only_the_family_has_a_non_local_sibling():
    assert nonlocal_sibling("default") == nonlocal_sibling("default:rcca_r1") == "default:nonlocal"
    with pytest.raises(CCNetError, match="has no non-local sibling"):
        nonlocal_sibling("ccnet_r50-d8_512x1024_80k_cityscapes")
    with pytest.raises(CCNetError, match="unknown sibling 'r9'"):
        load_model("default:r9")


def test_each_head_label_names_the_attention_its_model_loads_with():
    for arm in ARMS:
        config = load_model(sibling_name(arm)).net.config
        labels = {"cca": f"R = {config.recurrence}", "nonlocal": "non-local", "none": "no attention"}
        expected = labels[config.attention]
        assert head_label(sibling_name(arm)) == expected
    assert set(ARMS) == {*SIBLINGS, "rcca_r2"}
    assert head_label("ccnet_r50-d8_512x1024_80k_cityscapes") == "ccnet_r50-d8_512x1024_80k_cityscapes"

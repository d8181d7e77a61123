"""Released-checkpoint layouts (from mmseg's key list) load strictly into our CCNet."""
from __future__ import annotations

import json
import re

import pytest
import torch

from ccnet.errors import CheckpointError
from ccnet.nn.model import CCNet, CCNetConfig, config_from_state_dict
from ccnet.weights.checkpoints import (
    build_model,
    check_fit,
    read_checkpoint,
    save_checkpoint,
)
from tests.helpers import KEYS_FILE, tiny_model


def mmseg_layout(depth: int, num_classes: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """The key -> (shape, dtype) table of a released checkpoint, derived only from the keys file."""
    rows = {}
    for line in KEYS_FILE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape, dtype = line.split("\t")
        shape = tuple(json.loads(shape))
        if name.endswith(("conv_seg.weight", "conv_seg.bias")):
            shape = (num_classes,) + shape[1:]
        rows[name] = (shape, dtype)
    if depth == 101:  # layer3 has 23 blocks; blocks 1.. are identical to block 1 of R50
        template = {k: v for k, v in rows.items() if k.startswith("backbone.layer3.1.")}
        for block in range(6, 23):
            rows.update({k.replace("layer3.1.", f"layer3.{block}."): v for k, v in template.items()})
    return rows


def synthetic_state_dict(depth: int, num_classes: int, legacy_gamma: bool = False) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(depth + num_classes)
    state = {}
    for name, (shape, dtype) in mmseg_layout(depth, num_classes).items():
        if dtype == "int64":
            state[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[name] = torch.randn(shape, generator=gen) * 0.05
    if legacy_gamma:
        state["decode_head.cca.gamma"] = state.pop("decode_head.cca.gamma.scale").reshape(1)
    return state


@pytest.mark.parametrize("depth,num_classes", [(50, 19), (50, 21), (50, 150), (101, 19), (101, 150)])
def test_released_layout_loads_strictly(depth, num_classes):
    state = synthetic_state_dict(depth, num_classes)
    config = config_from_state_dict(state)
    assert (config.depth, config.num_classes, config.attention) == (depth, num_classes, "cca")
    model = CCNet(config)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {
        k: tuple(v.shape) for k, v in state.items()
    }
    model.load_state_dict(state, strict=True)
    torch.testing.assert_close(model.decode_head.cca.value_conv.weight, state["decode_head.cca.value_conv.weight"])


def test_checkpoint_file_round_trip_with_legacy_gamma(tmp_path):
    state = synthetic_state_dict(50, 19, legacy_gamma=True)
    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, {"meta": {"CLASSES": ("road",)}, "state_dict": state})
    loaded, meta = read_checkpoint(path)
    model = build_model(loaded, meta)
    assert model.decode_head.cca.gamma.scale.item() == pytest.approx(state["decode_head.cca.gamma"].item())
    assert not model.training


def test_output_stride_8_grid_sizes():
    model = CCNet(CCNetConfig(num_classes=5, depth=18, stem_channels=(8, 8, 16), base_channels=8,
                              head_channels=16, aux_channels=8)).eval()
    with torch.no_grad():
        for (h, w), grid in {(97, 129): (13, 17), (64, 128): (8, 16), (1, 1): (1, 1), (9, 7): (2, 1)}.items():
            logits, attn = model(torch.randn(1, 3, h, w), return_attention=True)
            assert tuple(logits.shape) == (1, 5, *grid)
            assert [tuple(a.shape) for a in attn] == [(1, *grid, sum(grid))] * 2


def test_r18_and_attention_variants_infer_from_state_dict():
    for attention in ("cca", "nonlocal", "none"):
        config = CCNetConfig(num_classes=7, depth=18, stem_channels=(8, 8, 16), base_channels=8,
                             head_channels=16, aux_channels=8, attention=attention)
        inferred = config_from_state_dict(CCNet(config).state_dict())
        assert inferred == config


def test_contract_dilation_matches_mmseg():
    model = CCNet(CCNetConfig(num_classes=19))
    layer3, layer4 = model.backbone.layer3, model.backbone.layer4
    assert layer3[0].conv2.dilation == (1, 1) and layer3[1].conv2.dilation == (2, 2)
    assert layer4[0].conv2.dilation == (2, 2) and layer4[2].conv2.dilation == (4, 4)
    assert model.backbone.layer2[0].conv2.stride == (2, 2)


def test_a_checkpoint_with_no_inferable_architecture_names_its_keys():
    """Regression: a state dict whose layer3 is renamed said only 'cannot infer the ResNet depth'."""
    state = {k.replace("backbone.layer3.", "backbone.stage3."): v for k, v in tiny_model().state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        build_model(state)
    message = str(err.value)
    assert "\n" not in message and "cannot infer the ResNet depth" in message
    assert "missing modules (1): backbone.layer3;" in message
    assert re.search(r"unexpected keys \(\d+\): .*backbone\.stage3\.", message)


def test_misfit_checkpoint_names_keys():
    state = synthetic_state_dict(50, 19)
    state.pop("decode_head.conv_cat.conv.weight")
    state["decode_head.extra.weight"] = torch.zeros(1)
    model = CCNet(config_from_state_dict(state))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): decode_head.conv_cat.conv.weight.*"
                                              r"unexpected keys \(1\): decode_head.extra.weight"):
        check_fit(model, state)


def test_malicious_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "meta": Evil()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.pth"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(path)
    assert re.search("not found", str(pytest.raises(CheckpointError, read_checkpoint, tmp_path / "no.pth").value))


def test_the_variants_table_names_each_head_once_for_everything():
    """Each row builds the head it describes, and a network's prediction carries that row's kind."""
    import numpy as np

    from ccnet.inference.predictor import Predictor, Protocol
    from ccnet.nn.model import EMBEDDED_CONFIG, CCNet
    from ccnet.nn.variants import IMAGE_HEADS as HEADS
    from ccnet.nn.variants import variant_of

    image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    for head in HEADS:
        net = CCNet(head.config(EMBEDDED_CONFIG)).eval()
        assert net.head_variant == head == variant_of(net.config.attention, net.config.recurrence)
        prediction = Predictor(net, Protocol(), "cpu").predict(image)
        assert prediction.kind == head.kind and len(prediction.attention) == (head.steps if head.kind ==
                                                                              "criss-cross" else int(bool(head.steps)))
        if head.kind == "non-local":
            assert prediction.attention[0].shape == (6 * 10, 6 * 10)
        assert prediction.grid == (6, 10)

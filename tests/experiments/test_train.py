"""Training is reproducible and resumable, and what it writes is a loadable model."""
from __future__ import annotations

import argparse
from dataclasses import replace

import pytest
import torch

from ccnet.errors import CCNetError
from ccnet.experiments import scenes
from ccnet.experiments.ablation import (
    ARMS,
    arm_model,
    markdown_table,
    run,
    summarise,
    train_arms,
)
from ccnet.experiments.train import (
    TrainConfig,
    aligned_share,
    make_batch,
    poly_lr,
    train,
)
from ccnet.weights.load import load_file

TINY = TrainConfig(iters=4, batch=2, height=64, width=128, threads=1, log_every=2, save_every=2, warmup=1)


def test_poly_lr_warms_up_then_decays_to_zero():
    cfg = replace(TINY, iters=100, warmup=10, lr=1.0)
    assert poly_lr(cfg, 0) == pytest.approx(0.1)
    assert poly_lr(cfg, 9) == pytest.approx(1.0)
    assert poly_lr(cfg, 50) == pytest.approx(0.5**0.9)
    assert poly_lr(cfg, 99) < 0.02


def test_batches_depend_only_on_seed_and_iteration():
    a, b = make_batch(TINY, 3), make_batch(TINY, 3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], make_batch(TINY, 4)[0])
    assert a[0].shape == (2, 3, 64, 128) and a[1].max() < len(scenes.CLASS_NAMES)


def test_the_curriculum_fades_out_halfway_and_can_be_switched_off():
    cfg = replace(TINY, iters=1000, curriculum=0.5)
    assert aligned_share(cfg, 0) == 0.5 and aligned_share(cfg, 250) == pytest.approx(0.25)
    assert aligned_share(cfg, 500) == aligned_share(cfg, 999) == 0.0
    assert aligned_share(replace(cfg, curriculum=0.0), 0) == 0.0
    early = make_batch(replace(TINY, iters=1000, batch=8, curriculum=0.5), 0)
    off = make_batch(replace(TINY, iters=1000, batch=8, curriculum=0.0), 0)
    late = make_batch(replace(TINY, iters=1000, batch=8, curriculum=0.5), 600)
    assert not torch.equal(early[0], off[0])  # some scenes of the first batch were re-laid out
    assert torch.equal(late[0], make_batch(replace(TINY, iters=1000, batch=8, curriculum=0.0), 600)[0])


def test_merged_context_labels_every_truck_a_car_and_changes_nothing_else():
    cfg = replace(TINY, batch=8)
    images, labels = make_batch(cfg, 0)
    merged_images, merged = make_batch(replace(cfg, merge_context=True), 0)
    assert (labels == scenes.TRUCK).any()  # the batch has trucks to merge
    assert torch.equal(images, merged_images)
    assert not (merged == scenes.TRUCK).any()
    assert torch.equal(merged, torch.where(labels == scenes.TRUCK, scenes.CAR, labels))


def state_of(path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


def test_a_frozen_backbone_is_loaded_and_kept_while_the_head_learns(tmp_path):
    source = train(replace(TINY, out=str(tmp_path / "stage1"), iters=2, attention="none", merge_context=True),
                   log=lambda _: None)
    head_only = train(replace(TINY, out=str(tmp_path / "head"), iters=3, backbone=str(source)), log=lambda _: None)
    fresh = train(replace(TINY, out=str(tmp_path / "fresh"), iters=0), log=lambda _: None)  # the initial weights
    before, after, initial = state_of(source), state_of(head_only), state_of(fresh)
    frozen = [k for k in after if k.startswith(("backbone.", "auxiliary_head."))]
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)  # BN statistics included
    assert not torch.equal(before["backbone.stem.0.weight"], initial["backbone.stem.0.weight"])
    assert not torch.equal(after["decode_head.convs.0.conv.weight"], initial["decode_head.convs.0.conv.weight"])


def test_a_backbone_of_another_shape_is_refused(tmp_path):
    source = train(replace(TINY, out=str(tmp_path / "stage1"), iters=0), log=lambda _: None)
    wide = torch.load(source, weights_only=True)
    wide["state_dict"]["backbone.stem.0.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(wide, tmp_path / "wide.pt")
    with pytest.raises(CCNetError, match="no matching backbone.*backbone.stem.0.weight"):
        train(replace(TINY, out=str(tmp_path / "head"), iters=1, backbone=str(tmp_path / "wide.pt")),
              log=lambda _: None)


def test_frozen_backbone_ablation_trains_one_backbone_per_seed_and_every_arm_on_it(tmp_path):
    args = argparse.Namespace(out=str(tmp_path), jobs=2, threads=1, batch=2, height=64, width=128, gamma_init=0.0,
                              curriculum=0.5, iters=2, frozen_backbone=True, backbone_iters=2,
                              backbone=None)
    paths = train_arms(["none", "rcca_r1"], [0], args)
    backbone = state_of(tmp_path / "backbone_s0" / "model.pt")
    assert backbone["decode_head.conv_seg.weight"].shape[0] == len(scenes.CLASS_NAMES)
    for arm in ("none", "rcca_r1"):
        arm_state = state_of(paths[(arm, 0)])
        assert all(torch.equal(arm_state[k], v) for k, v in backbone.items() if k.startswith("backbone."))
    assert "decode_head.cca.query_conv.weight" in state_of(paths[("rcca_r1", 0)])
    (tmp_path / "backbone_s1").symlink_to(tmp_path / "backbone_s0")  # seed 1's own backbone: seed 0's file
    given = argparse.Namespace(**{**vars(args), "out": str(tmp_path / "given"), "frozen_backbone": False,
                                  "backbone": str(tmp_path / "backbone_s{seed}" / "model.pt")})
    other = state_of(train_arms(["rcca_r2"], [1], given)[("rcca_r2", 1)])
    assert all(torch.equal(other[k], v) for k, v in backbone.items() if k.startswith("backbone."))
    meta = torch.load(tmp_path / "given" / "rcca_r2_s1" / "model.pt", weights_only=True)["meta"]["train"]
    assert meta["backbone"] == str(tmp_path / "backbone_s1" / "model.pt")


def test_ablation_run_scores_both_layouts_on_a_frozen_backbone(tmp_path):
    args = argparse.Namespace(out=str(tmp_path), arms="rcca_r1", seeds="0", jobs=1, threads=1, batch=2, height=64,
                              width=128, gamma_init=0.0, curriculum=0.5, iters=1, frozen_backbone=True,
                              backbone_iters=1, backbone=None, eval_scenes=1, eval_seed=1, eval_height=64,
                              eval_width=128)
    result = run(args)
    arm = result["arms"]["rcca_r1"]
    assert result["budget"]["frozen_backbone"] and result["budget"]["backbone_iters"] == 1
    assert arm["runs"][0]["seed"] == 0 and set(arm["runs"][0]["per_class"]) == set(scenes.CLASS_NAMES)
    assert arm["aligned_context_miou"]["values"] == [arm["runs"][0]["aligned_context_miou"]]
    assert arm["head_gflops"] > 0 and arm["grid"] == [8, 16]
    assert "| rcca_r1 |" in markdown_table(result)


class Interrupted(Exception):  # noqa: N818 - a signal in the test, not an error
    pass


def interrupt_at_iteration_3(message: str) -> None:
    if message.startswith("it 3/"):
        raise Interrupted


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    cfg = replace(TINY, log_every=3, save_every=2)  # last.pt at iteration 2, then the log at 3 fails
    straight = train(replace(cfg, out=str(tmp_path / "a")), log=lambda _: None)
    cut = replace(cfg, out=str(tmp_path / "b"))
    with pytest.raises(Interrupted):
        train(cut, log=interrupt_at_iteration_3)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["iteration"] == 2
    resumed = train(cut, resume=True, log=lambda _: None)
    a = torch.load(straight, weights_only=True)["state_dict"]
    b = torch.load(resumed, weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_final_checkpoint_is_a_self_describing_model(tmp_path):
    path = train(replace(TINY, out=str(tmp_path), iters=1, gamma_init=1.0), log=lambda _: None)
    loaded = load_file(path)
    assert loaded.classes == scenes.CLASS_NAMES and loaded.palette == scenes.PALETTE
    assert loaded.protocol.test_resize == (128, 64)
    assert loaded.net.config.depth == 18 and loaded.net.config.recurrence == 2


def test_resume_refuses_different_settings(tmp_path):
    train(replace(TINY, out=str(tmp_path), iters=2), log=lambda _: None)
    with pytest.raises(Exception, match="different settings"):
        train(replace(TINY, out=str(tmp_path), iters=2, lr=1.0), resume=True, log=lambda _: None)


def test_ablation_arms_differ_only_in_the_head():
    models = {arm: arm_model(arm) for arm in ARMS}
    backbone_keys = {arm: [k for k in m.state_dict() if k.startswith("backbone.")] for arm, m in models.items()}
    assert len({tuple(v) for v in backbone_keys.values()}) == 1
    assert models["rcca_r3"].decode_head.recurrence == 3 and models["nonlocal"].decode_head.attention == "nonlocal"
    assert models["none"].decode_head.attention_block() is None


def test_ablation_summary_and_table():
    assert summarise([0.5, 0.7]) == {"mean": pytest.approx(0.6), "spread": pytest.approx(0.1), "values": [0.5, 0.7]}
    result = {"arms": {"rcca_r2": {"miou": summarise([0.8]), "context_miou": summarise([0.7]),
                                   "head_gflops": 0.25, "head_peak_bytes": 3 * 2**20}}}
    assert "| rcca_r2 | 0.800 ± 0.000 | 0.700 ± 0.000 | – | 0.250 | 3.0 MiB |" in markdown_table(result)
    result["arms"]["rcca_r2"]["aligned_context_miou"] = summarise([0.9, 0.8])
    assert "| rcca_r2 | 0.800 ± 0.000 | 0.700 ± 0.000 | 0.850 ± 0.050 | 0.250 | 3.0 MiB |" in markdown_table(result)

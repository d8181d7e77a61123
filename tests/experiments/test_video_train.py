"""Training video heads: the cached pool is the frozen backbone on the augmented clips, a resumed run
equals an uninterrupted one, each arm starts from its family head, and `ablation --video` end to end."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ccnet.cli import main
from ccnet.experiments import video_train
from ccnet.experiments.street_clips import generate_clip
from ccnet.experiments.video_ablation import load_run
from ccnet.experiments.video_train import ARMS, VideoTrainConfig, aligned_share, build_cache, initial_head, train_video
from ccnet.inference.predictor import Protocol, normalise
from ccnet.nn.video import VideoCCNet
from ccnet.weights.load import load_model


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    folder = tmp_path_factory.mktemp("caches")
    return build_cache(folder / "main", 6, log=lambda _: None), build_cache(folder / "aligned", 4, aligned=True,
                                                                            log=lambda _: None)


def test_the_cache_is_the_frozen_backbone_on_the_augmented_clips(caches):
    main_pool, aligned_pool = caches
    features, labels = np.load(main_pool / "features.npy"), np.load(main_pool / "labels.npy")
    backbone = load_model("default").net.backbone.eval()
    for i, aligned, pool in ((4, False, main_pool), (1, True, aligned_pool)):
        clip = generate_clip(i + (video_train.ALIGNED_SEEDS if aligned else 0), aligned=aligned)
        frames, label = video_train._augment(clip.frames, clip.labels, np.random.default_rng([i, 7, aligned]))
        x = normalise(torch.from_numpy(frames).permute(0, 3, 1, 2), Protocol())
        with torch.no_grad():
            expected = backbone(x)[3].numpy()
        stored = np.load(pool / "features.npy")[i].astype(np.float32)
        np.testing.assert_allclose(stored, expected, rtol=2e-3, atol=2e-3)  # float16
        assert np.array_equal(np.load(pool / "labels.npy")[i], label)
        assert np.load(pool / "panel.npy")[i] == clip.panel_frame
    assert features.shape == (6, 5, 128, 16, 32) and labels.shape == (6, 5, 128, 256)


def test_an_interrupted_cache_is_finished_where_it_stopped(tmp_path):
    folder = build_cache(tmp_path / "cut", 10, log=lambda _: None)  # two chunks of 8 and 2 clips
    whole = {name: np.load(folder / f"{name}.npy") for name in ("features", "labels", "panel")}
    for name in whole:  # what a crash during the second chunk leaves, and a mark on the first
        np.lib.format.open_memmap(folder / f"{name}.npy", "r+")[8:] = 0
    np.lib.format.open_memmap(folder / "labels.npy", "r+")[0] = 99
    (folder / "progress.json").write_text(json.dumps({"done": 8, "count": 10}))
    build_cache(folder, 10, log=lambda _: None)
    labels = np.load(folder / "labels.npy")
    assert (labels[0] == 99).all()  # the finished chunk was kept, not computed again
    assert all(np.array_equal(np.load(folder / f"{name}.npy")[8:], array[8:]) for name, array in whole.items())
    with pytest.raises(Exception, match="another size"):
        build_cache(folder, 7, log=lambda _: None)


def _config(caches: tuple[Path, Path], out: Path, **changes: object) -> VideoTrainConfig:
    return replace(VideoTrainConfig(out=str(out), arm="rcca3d_r1", cache=str(caches[0]), aligned_cache=str(caches[1]),
                                    iters=4, batch=2, warmup=1, log_every=3, save_every=2), **changes)


class Interrupted(Exception):  # noqa: N818 - a signal in the test, not an error
    pass


def interrupt_at_iteration_3(message: str) -> None:
    if message.startswith("it 3/"):
        raise Interrupted


def test_a_resumed_run_equals_an_uninterrupted_one(caches, tmp_path):
    straight = train_video(_config(caches, tmp_path / "a"), log=lambda _: None)
    cut = _config(caches, tmp_path / "b")
    with pytest.raises(Interrupted):
        train_video(cut, log=interrupt_at_iteration_3)
    resumed = train_video(cut, log=lambda _: None)
    a, b = (torch.load(p, weights_only=True)["state_dict"] for p in (straight, resumed))
    assert a.keys() == b.keys() and all(k.startswith("decode_head.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    start = initial_head("rcca3d_r1").state_dict()
    assert not torch.equal(a["decode_head.conv_seg.weight"], start["conv_seg.weight"])  # it learned
    with pytest.raises(Exception, match="different settings"):
        train_video(_config(caches, tmp_path / "b", lr=1.0), log=lambda _: None)


def test_the_curriculum_mixes_in_aligned_clips_then_fades_out(caches):
    cfg = _config(caches, Path("unused"), iters=100, curriculum=0.5, batch=4)
    assert aligned_share(cfg, 0) == 0.5 and aligned_share(cfg, 25) == 0.25 and aligned_share(cfg, 50) == 0
    assert aligned_share(replace(cfg, aligned_cache=""), 0) == 0 == aligned_share(replace(cfg, curriculum=0), 0)
    pools = [video_train._pool(caches[0]), video_train._pool(caches[1])]
    aligned_features = torch.from_numpy(pools[1][0].astype(np.float32)).transpose(1, 2)
    drawn = [video_train._batch(pools, cfg, it)[0] for it in range(6)]
    from_aligned = [any(torch.equal(x, a) for a in aligned_features) for batch in drawn for x in batch]
    assert 0 < sum(from_aligned) < len(from_aligned)
    assert not any(any(torch.equal(x, a) for a in aligned_features) for x in video_train._batch(pools, cfg, 60)[0])


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_each_arm_starts_from_its_family_image_head(arm):
    spec, per_frame = ARMS[arm]
    head, image = initial_head(arm), load_model(spec).net.decode_head
    assert head.variant.video != per_frame and head.variant.attention == image.attention
    assert all(torch.equal(head.state_dict()[k], v) for k, v in image.state_dict().items())


def test_the_video_ablation_end_to_end(tmp_path):
    args = ["ablation", "--video", "--out", str(tmp_path), "--arms", "rcca3d_r1", "--seeds", "0", "--iters", "2",
            "--batch", "2", "--clips", "4", "--aligned-clips", "4", "--eval-clips", "1", "--eval-seed", "3",
            "--jobs", "1", "--json", str(tmp_path / "result.json")]
    assert main(args) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    arm = result["arms"]["rcca3d_r1"]
    assert result["budget"]["iters"] == 2 and result["budget"]["curriculum"] == VideoTrainConfig.curriculum
    assert arm["init"] == "default:rcca_r1" and arm["grid"] == [5, 16, 32] and arm["head_gflops"] > 0
    assert set(arm["runs"][0]) >= {"temporal_context_miou", "panel_frame_context_miou", "aligned_temporal_context_miou"}
    assert (arm["runs"][0]["seed"], arm["runs"][0]["eval_seed"]) == (0, 3)  # the training seed and the clips' own
    model = tmp_path / "rcca3d_r1_s0" / "model.pt"
    assert isinstance(load_run(model).net, VideoCCNet)
    written = model.stat().st_mtime_ns
    assert main(args) == 0 and model.stat().st_mtime_ns == written  # finished runs are not trained again


@pytest.mark.parametrize("args", [["--video", "--frozen-backbone"], ["--lr", "0.1"], ["--video", "--arms", "r9"]])
def test_misused_ablation_options_are_one_line(args, tmp_path, capsys):
    assert main(["ablation", "--out", str(tmp_path), "--clips", "1", "--aligned-clips", "1", *args]) == 2
    assert capsys.readouterr().err.count("\n") == 1

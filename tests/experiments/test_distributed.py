"""`torchrun` runs of evaluate, train and ablation on 2 CPU processes (gloo on loopback) against one
process: the same confusion matrix bit for bit, the same weights within float noise, one error line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ccnet.cli import main
from ccnet.errors import CCNetError
from ccnet.experiments import distributed, scenes
from ccnet.experiments.distributed import Group, RankError
from ccnet.experiments.global_batch import GlobalBatchDropout2d
from ccnet.experiments.metrics import iou_per_class, mean_iou
from ccnet.experiments.train import TrainConfig, make_batch, train
from ccnet.inference.predictor import Protocol
from ccnet.nn.model import CCNetConfig
from ccnet.project import ROOT
from ccnet.weights.checkpoints import save_checkpoint
from tests.cli.runner import run_cli
from tests.helpers import tiny_model
from tools.ports import free_port

SMALL = dict(depth=18, stem_channels=(8, 8, 16), base_channels=8, head_channels=16, aux_channels=8)
SCENE = ["--height", "64", "--width", "128"]
TRAIN = ["--iters", "3", "--batch", "4", "--height", "64", "--width", "128", "--threads", "1", "--warmup", "1",
         "--log-every", "1", "--save-every", "2"]


def environment(**extra: str) -> dict[str, str]:
    """One thread per process, gloo on loopback (the tests' network guard allows nothing else)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "CCNET_DIST_TIMEOUT": "60", **extra}


def torchrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "--local_addr", "127.0.0.1", "--monitor_interval", "0.2", *args]
    return subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=timeout)


def one_process(*args: str) -> subprocess.CompletedProcess:
    """`python -m ccnet *args` as one plain process: this one (it has one thread, as the ranks do)."""
    assert args[:2] == ("-m", "ccnet")
    return run_cli(*args[2:])


def result_of(run: subprocess.CompletedProcess) -> dict:
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1, run.stdout  # rank 0 alone prints the result
    return json.loads(lines[0])


def model_file(path: Path, num_classes: int) -> str:
    model = tiny_model(config=CCNetConfig(num_classes=num_classes, **SMALL))
    meta = {"ccnet_config": model.config.to_dict(), "protocol": Protocol().to_dict()}
    save_checkpoint(path, {"meta": meta, "state_dict": model.state_dict()})
    return str(path)


def cityscapes(root: Path, count: int) -> list[Path]:
    """``count`` random 32 x 64 images with random Cityscapes label ids, in the Cityscapes layout."""
    rng = np.random.default_rng(count)
    images = []
    for i in range(count):
        city = ("aachen", "bonn")[i % 2]
        stem = f"{city}_{i:06d}_000019"
        image = root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png"
        label = root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png"
        for path in (image, label):
            path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(image)
        Image.fromarray(rng.choice(np.array([0, 7, 8, 11, 21, 23, 24, 26], np.uint8), (32, 64))).save(label)
        images.append(image)
    return sorted(images)  # the order dataset_files gives


def assert_same_scores(one: dict, two: dict) -> None:
    assert two["confusion_matrix"] == one["confusion_matrix"]
    matrix = np.asarray(two["confusion_matrix"])
    assert matrix.dtype == np.int64 and matrix.sum() > 0
    assert mean_iou(iou_per_class(matrix)) == mean_iou(iou_per_class(np.asarray(one["confusion_matrix"])))
    for key in ("miou", "per_class", "accuracy", "images"):
        assert two[key] == one[key], key


# ---- the pieces, in one process -------------------------------------------------------------------

@pytest.mark.parametrize("count", range(8))
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_strided_shards_hold_every_item_once(count, world_size):
    items = list(range(count))
    shards = [Group(rank=r, world_size=world_size).shard(items) for r in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_a_plain_run_starts_no_process_group_and_reports_as_before(tmp_path, capsys):
    model = model_file(tmp_path / "tiny11.pth", len(scenes.CLASS_NAMES))
    assert main(["evaluate", "--model", model, "--synthetic", "2", *SCENE, "--device", "cpu", "--matrix"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert not torch.distributed.is_initialized()
    assert "world_size" not in result and "shards" not in result
    assert np.asarray(result["confusion_matrix"]).sum() == 2 * 64 * 128  # every scene pixel is labelled


def test_only_rank_0_reports_a_failure_the_ranks_agree_on(monkeypatch):
    @distributed.one_report
    def command(error: Exception) -> int:
        raise error

    monkeypatch.setenv("RANK", "1")
    assert command(RankError("rank 1: bad.png is not an image")) == 2  # silent: rank 0 prints it
    with pytest.raises(CCNetError, match="own"):
        command(CCNetError("its own problem"))  # not agreed on: this rank says it
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RankError, match="bad.png"):
        command(RankError("rank 1: bad.png is not an image"))


def test_timeout_and_the_environment_of_plain_children(monkeypatch):
    monkeypatch.delenv(distributed.TIMEOUT_ENV, raising=False)
    assert distributed.timeout_s() == distributed.DEFAULT_TIMEOUT_S
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "30")
    assert distributed.timeout_s() == 30
    for bad in ("0", "soon", "-5"):
        monkeypatch.setenv(distributed.TIMEOUT_ENV, bad)
        with pytest.raises(CCNetError, match="CCNET_DIST_TIMEOUT"):
            distributed.timeout_s()
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "TORCHELASTIC_RUN_ID"):
        monkeypatch.setenv(name, "1")
    assert distributed.launched()
    child = distributed.plain_environment()
    assert not {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "TORCHELASTIC_RUN_ID"} & set(child)
    assert child["PATH"] == os.environ["PATH"]


def test_the_ranks_dropout_masks_are_rows_of_the_whole_batchs():
    x = torch.randn(4, 16, 3, 5)
    torch.manual_seed(7)
    whole = torch.nn.Dropout2d(0.3)(x)
    torch.manual_seed(7)
    assert torch.equal(GlobalBatchDropout2d(0.3, 0, 1)(x), whole)
    parts = []
    for rank in (0, 1):
        torch.manual_seed(7)
        parts.append(GlobalBatchDropout2d(0.3, rank, 2)(x[2 * rank:2 * rank + 2]))
    assert torch.equal(torch.cat(parts), whole)


def test_the_ranks_batches_are_rows_of_the_whole_batch():
    cfg = TrainConfig(iters=10, batch=4, height=32, width=64, curriculum=1.0)
    for iteration in (0, 3):
        x, labels = make_batch(cfg, iteration)
        halves = [make_batch(cfg, iteration, slice(r * 2, r * 2 + 2)) for r in (0, 1)]
        assert torch.equal(torch.cat([h[0] for h in halves]), x)
        assert torch.equal(torch.cat([h[1] for h in halves]), labels)


def test_a_global_batch_that_does_not_divide_is_refused_in_one_line(tmp_path):
    group = Group(rank=0, world_size=2, backend="gloo")  # refused before any collective: no group needed
    with pytest.raises(RankError, match=r"^--batch 3 is the global batch: it must divide by the 2 processes$"):
        train(TrainConfig(out=str(tmp_path), batch=3, threads=1), log=lambda _: None, group=group)


# ---- evaluation under torchrun --------------------------------------------------------------------

def test_evaluate_five_scenes_on_two_ranks_equals_one_process(tmp_path):
    model = model_file(tmp_path / "tiny11.pth", len(scenes.CLASS_NAMES))
    args = ["-m", "ccnet", "evaluate", "--model", model, "--synthetic", "5", "--seed", "2", *SCENE, "--matrix"]
    one = result_of(one_process(*args, "--device", "cpu"))
    run = torchrun(*args)
    two = result_of(run)
    assert_same_scores(one, two)
    assert two["world_size"] == 2 and two["shards"] == [3, 2] and two["images"] == 5
    assert "[rank 0] evaluating 3/3" in run.stderr and "[rank 1] evaluating 2/2" in run.stderr


def test_evaluate_four_dataset_images_with_flip_on_two_ranks_equals_one_process(tmp_path):
    cityscapes(tmp_path / "cityscapes", 4)
    model = model_file(tmp_path / "tiny19.pth", 19)
    args = ["-m", "ccnet", "evaluate", "--model", model, "--data", str(tmp_path / "cityscapes"),
            "--dataset", "cityscapes", "--flip", "--matrix"]
    one = result_of(one_process(*args))
    two = result_of(torchrun(*args, "--json", str(tmp_path / "two.json")))
    assert_same_scores(one, two)
    assert two["shards"] == [2, 2] and two["flip"] is True
    assert json.loads((tmp_path / "two.json").read_text()) == two


def test_a_corrupt_image_on_one_shard_ends_both_ranks_with_one_line(tmp_path):
    images = cityscapes(tmp_path / "cityscapes", 5)
    corrupt = images[3]  # rank 1's second image: rank 0 has finished its shard and waits for rank 1
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    start = time.monotonic()
    run = torchrun("-m", "ccnet", "evaluate", "--model", model_file(tmp_path / "tiny19.pth", 19),
                   "--data", str(tmp_path / "cityscapes"), "--dataset", "cityscapes")
    assert time.monotonic() - start < 40  # the agreement ended it, not the 60 s timeout
    assert run.returncode != 0 and run.stdout == ""
    assert run.stderr.count(corrupt.name) == 1, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: rank 1: ") and corrupt.name in errors[0]


# ---- training under torchrun ----------------------------------------------------------------------

def sgd(params, lr, weight_decay):
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def assert_close_weights(a: dict, b: dict) -> None:
    """Within 5e-5 of the largest weight: the distance one process on 2 threads lands from one on 1
    (1.3e-5 measured; 2 ranks: 1.1e-5), the float noise of this network's gradients."""
    assert a.keys() == b.keys()
    scale = max(float(v.abs().max()) for v in a.values() if v.is_floating_point())
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=5e-5 * scale, msg=lambda m, k=key: f"{k}: {m}")
        else:
            assert torch.equal(b[key], a[key]), key


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
    """The reference: TRAIN on one process with SGD (tests/experiments/ddp_train_worker.py says why)."""
    out = tmp_path_factory.mktemp("one")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim, "AdamW", sgd)
        cfg = TrainConfig(out=str(out), iters=3, batch=4, height=64, width=128, threads=1, warmup=1, log_every=1,
                          save_every=2)
        return cfg, weights(train(cfg, log=lambda _: None))


def test_train_on_two_ranks_equals_one_process_on_the_global_batch(tmp_path, one_process_run):
    _, reference = one_process_run
    run = torchrun("-m", "tests.experiments.ddp_train_worker", "--out", str(tmp_path), *TRAIN)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_close_weights(reference, weights(tmp_path / "model.pt"))
    assert json.loads((tmp_path / "run.json").read_text()) == {
        "world_size": 2, "global_batch": 4, "per_rank_batch": 2, "backend": "gloo", "device": "cpu",
        "start_iteration": 0}
    assert run.stderr.count("it 3/3 loss") == 1  # rank 0 alone logs


class Interrupted(Exception):  # noqa: N818 - a signal in the test, not an error
    pass


def stop_at_iteration_3(message: str) -> None:
    if message.startswith("it 3/"):
        raise Interrupted


def test_a_one_process_run_resumes_on_two_ranks(tmp_path, one_process_run, monkeypatch):
    cfg, reference = one_process_run
    monkeypatch.setattr(torch.optim, "AdamW", sgd)
    with pytest.raises(Interrupted):
        train(replace(cfg, out=str(tmp_path)), log=stop_at_iteration_3)  # last.pt at iteration 2
    run = torchrun("-m", "tests.experiments.ddp_train_worker", "--out", str(tmp_path), *TRAIN, "--resume")
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"resumed from {tmp_path / 'last.pt'} at iteration 2" in run.stderr
    assert json.loads((tmp_path / "run.json").read_text())["start_iteration"] == 2
    assert_close_weights(reference, weights(tmp_path / "model.pt"))


# ---- the ablation under torchrun ------------------------------------------------------------------

def test_the_ablation_spreads_its_runs_over_the_ranks_and_rank_0_writes_the_table(tmp_path):
    run = torchrun("-m", "ccnet", "ablation", "--out", str(tmp_path), "--arms", "none,rcca_r1", "--seeds", "0",
                   "--iters", "1", "--batch", "2", "--height", "64", "--width", "128", "--eval-scenes", "1",
                   "--eval-height", "64", "--eval-width", "128", "--jobs", "1", "--json", str(tmp_path / "a.json"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "[rank 0] none seed 0" in run.stderr and "[rank 1] rcca_r1 seed 0" in run.stderr  # jobs 0 and 1
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["budget"]["world_size"] == 2 and list(result["arms"]) == ["none", "rcca_r1"]
    assert run.stdout.count("| rcca_r1 |") == 1
    for arm in ("none", "rcca_r1"):
        assert (tmp_path / f"{arm}_s0" / "model.pt").is_file()
        record = json.loads((tmp_path / f"{arm}_s0" / "run.json").read_text())
        assert record["world_size"] == 1 and record["backend"] is None  # each run is a plain one-process run

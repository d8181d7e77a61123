"""The command line end to end: outputs round-trip, every user error is one line and exit 2."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ccnet.cli import main
from ccnet.inference.predictor import Predictor, Protocol
from ccnet.project import ROOT
from ccnet.weights.load import load_model
from tests.cli.runner import run_cli, run_cli_process
from tests.helpers import composed_reference, step_reference, tiny_checkpoint, tiny_model


@pytest.fixture()
def files(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "img.png")
    tiny_checkpoint(tmp_path / "tiny.pth")
    return tmp_path, image


def test_predict_writes_mask_overlay_and_logits(files):
    tmp, image = files
    result = run_cli_process("predict", str(tmp / "img.png"), "--model", str(tmp / "tiny.pth"), "--device", "cpu",
                     "--out-mask", str(tmp / "m.png"), "--out-overlay", str(tmp / "o.png"),
                     "--out-logits", str(tmp / "l.npy"))
    assert result.returncode == 0, result.stderr
    logits = np.load(tmp / "l.npy")
    assert logits.dtype == np.float32 and logits.shape == (4, 45, 70)
    mask = np.asarray(Image.open(tmp / "m.png"))
    np.testing.assert_array_equal(mask, logits.argmax(0))
    expected = Predictor(tiny_model(), Protocol(), device="cpu").predict(image).logits.numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert Image.open(tmp / "o.png").size == (70, 45)


def test_attention_export_matches_model(files):
    tmp, image = files
    assert main(["attention", str(tmp / "img.png"), "--model", str(tmp / "tiny.pth"), "--pixel", "69,20",
                 "--out", str(tmp / "maps.npz")]) == 0
    maps = np.load(tmp / "maps.npz")
    grid = tuple(maps["grid"])
    assert grid == (6, 9)
    assert tuple(maps["cell"]) == (20 * 6 // 45, 69 * 9 // 70)
    row, col = maps["cell"]
    for step in ("step1", "step2"):
        m = maps[step]
        assert m.dtype == np.float32 and m.shape == grid
        assert m.sum() == pytest.approx(1.0, abs=1e-5)
        off = np.ones(grid, bool)
        off[row, :] = off[:, col] = False
        assert np.all(m[off] == 0)
    pred = Predictor(load_model(str(tmp / "tiny.pth")).net, Protocol(), device="cpu").predict(image)
    for step, attn in zip(("step1", "step2"), pred.attention):
        np.testing.assert_allclose(maps[step], step_reference(attn, row, col), atol=1e-7)
    np.testing.assert_allclose(maps["composed"], composed_reference(pred.attention, row, col), rtol=1e-5, atol=1e-7)
    assert maps["composed"].sum() == pytest.approx(1.0, abs=1e-5)


def test_attention_of_a_non_local_head_is_its_one_map_and_a_head_without_is_one_line(tmp_path):
    """By the head's kind, as the prediction carries it: a non-local block's map of the cell is its row
    of the (N, N) weights (before, the command took the matrix for criss-cross steps and crashed)."""
    image = np.asarray(Image.open(ROOT / "demos" / "street_seed2_truck.png").convert("RGB"))
    assert main(["attention", str(ROOT / "demos" / "street_seed2_truck.png"), "--model", "default:nonlocal",
                 "--pixel", "210,170", "--out", str(tmp_path / "nl.npz")]) == 0
    maps = np.load(tmp_path / "nl.npz")
    loaded = load_model("default:nonlocal")
    pred = Predictor(loaded.net, loaded.protocol, device="cpu").predict(image)
    (h, w), (row, col) = tuple(maps["grid"]), tuple(maps["cell"])
    assert pred.kind == "non-local" and sorted(maps.files) == ["cell", "composed", "grid"]
    np.testing.assert_array_equal(maps["composed"], pred.attention[0][row * w + col].reshape(h, w).numpy())
    assert maps["composed"].sum() == pytest.approx(1.0, abs=1e-5)
    result = run_cli("attention", str(ROOT / "demos" / "street_seed2_truck.png"), "--model", "default:none",
                     "--pixel", "210,170", "--out", str(tmp_path / "none.npz"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no attention to show" in result.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["predict", "{tmp}/missing.png", "--model", "{tmp}/tiny.pth"], "image not found"),
        (["predict", "{tmp}/text.png", "--model", "{tmp}/tiny.pth"], "not an image"),
        (["predict", "{tmp}/img.png", "--model", "{tmp}/text.pth"], "not a PyTorch checkpoint"),
        (["predict", "{tmp}/img.png", "--model", "{tmp}/misfit.pth"], "missing keys"),
        (["predict", "{tmp}/img.png", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["attention", "{tmp}/img.png", "--model", "{tmp}/tiny.pth", "--pixel", "70,0", "--out", "{tmp}/a.npz"],
         "outside the 70x45 image"),
    ],
)
def test_errors_are_one_line_without_traceback(files, args, message):
    tmp, _ = files
    (tmp / "text.png").write_text("<html>not an image</html>")
    (tmp / "text.pth").write_text("not a checkpoint")
    state = torch.load(tmp / "tiny.pth", weights_only=True)
    del state["state_dict"]["decode_head.conv_seg.bias"]
    torch.save(state, tmp / "misfit.pth")
    result = run_cli(*[a.format(tmp=tmp) for a in args])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_the_command_line_holds_what_users_run_and_the_instruments_are_scripts(capsys):
    import importlib

    from ccnet.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert commands == {"predict", "attention", "zoo", "fetch", "export", "train", "evaluate", "ablation", "bench"}
    scripts = sorted(p.stem for p in (ROOT / "tools").glob("*.py") if not p.stem.startswith("_"))
    libraries = {"attacks", "attacks_limits", "bombs", "hostile", "latency", "ports"}  # the scripts' libraries
    for name in sorted(set(scripts) - libraries):
        module = importlib.import_module(f"tools.{name}")
        with pytest.raises(SystemExit) as done:
            module.main(["--help"])
        assert done.value.code == 0 and f"python -m tools.{name}" in capsys.readouterr().out, name
        assert 'if __name__ == "__main__":' in (ROOT / "tools" / f"{name}.py").read_text(), name
    run = subprocess.run([sys.executable, "-m", "tools.family", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)  # and one as the docs run it
    assert run.returncode == 0 and "python -m tools.family" in run.stdout, run.stderr[-500:]


def test_a_checkpoints_class_names_cannot_drive_the_terminal(tmp_path):
    """Control characters from a crafted checkpoint (and a file name) are written out, not sent."""
    from tests.helpers import tiny_checkpoint

    crafted = tiny_checkpoint(tmp_path / "crafted.pt", classes=("\x1b[2J\x1b[31mroad", "car\u202e", "sky", "tree"))
    image = tmp_path / "scene\x1b[1m.png"
    Image.new("RGB", (96, 64), (90, 90, 90)).save(image, format="PNG")
    run = run_cli("predict", str(image), "--model", str(crafted), "--device", "cpu")
    assert run.returncode == 0, run.stderr
    assert "\x1b" not in run.stdout and "\u202e" not in run.stdout and "\\x1b" in run.stdout
    bad = run_cli("predict", str(tmp_path / "missing\x1b[2J.png"))
    assert bad.returncode == 2 and "\x1b" not in bad.stderr and "\\x1b[2J" in bad.stderr

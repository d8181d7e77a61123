"""Output paths on the command line: a wrong suffix, no suffix, a folder, a missing folder or a
symbolic link is one line and exit 2, before any work; a link is never written through."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from ccnet.cli.outputs import checked_output, open_output
from ccnet.errors import CCNetError
from tests.cli.runner import run_cli


@pytest.fixture()
def image(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)).save(tmp_path / "i.png")
    return tmp_path / "i.png"


@pytest.mark.parametrize("name, message", [
    ("x.xyz", "--out-mask must end in .png, got 'x.xyz'"),
    ("mask", "--out-mask must end in .png, got 'mask'"),
    ("sub/", "--out-mask must name a file, not a folder"),
    ("missing/m.png", "--out-mask: the folder"),
])
def test_bad_mask_paths_are_one_line_and_exit_2(tmp_path, image, name, message):
    (tmp_path / "sub").mkdir()
    result = run_cli("predict", str(image), "--out-mask", str(tmp_path / name) + ("/" if name.endswith("/") else ""))
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1


def test_a_folder_named_like_a_file_is_refused(tmp_path, image):
    (tmp_path / "maps.npz").mkdir()
    result = run_cli("attention", str(image), "--pixel", "3,3", "--out", str(tmp_path / "maps.npz"))
    assert result.returncode == 2 and "must name a file, not a folder" in result.stderr
    result = run_cli("attention", str(image), "--pixel", "3,3", "--out", str(tmp_path) + "/")
    assert result.returncode == 2 and "must name a file, not a folder" in result.stderr


def test_a_symbolic_link_is_not_written_through(tmp_path, image):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, tmp_path / "mask.png")
    result = run_cli("predict", str(image), "--out-mask", str(tmp_path / "mask.png"))
    assert result.returncode == 2 and "is a symbolic link" in result.stderr
    assert victim.read_text() == "keep me"


def test_a_link_that_appears_after_the_check_is_refused_when_opening(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    path = checked_output(tmp_path / "late.png", "--out-mask", (".png",))
    os.symlink(victim, path)
    with pytest.raises(CCNetError, match="cannot write"), open_output(path):
        pass
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize("alpha", ["nan", "inf", "-0.1", "1.5"])
def test_alpha_must_be_a_fraction(tmp_path, image, alpha):
    result = run_cli("predict", str(image), "--out-overlay", str(tmp_path / "o.png"), "--alpha", alpha)
    assert result.returncode == 2 and "--alpha must be a number from 0 to 1" in result.stderr
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("command", [["bench", "attention", "--sizes", "8x8", "--repeats", "1"],
                                     ["evaluate", "--synthetic", "1"]])
def test_json_outputs_need_a_json_name(tmp_path, command):
    result = run_cli(*command, "--json", str(tmp_path / "out.txt"))
    assert result.returncode == 2 and "--json must end in .json" in result.stderr


def test_good_outputs_are_written(tmp_path, image):
    result = run_cli("predict", str(image), "--out-mask", str(tmp_path / "m.PNG"), "--out-logits",
                     str(tmp_path / "l.npy"), "--alpha", "1")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "m.PNG").size == (64, 40) and np.load(tmp_path / "l.npy").shape[1:] == (40, 64)

"""The video bench: counted FLOPs against the closed forms, the non-local block estimated past the
budget, measured peaks that hold the maps, and its command line."""
from __future__ import annotations

import json

import pytest
import torch

from ccnet.cli import main
from ccnet.experiments.bench_video import bench_clip, format_video_table


def test_rows_count_what_the_formulas_say_and_measure_the_maps():
    channels, frames, height, width = 16, 3, 12, 16
    rows = bench_clip(channels, frames, height, width, torch.device("cpu"), repeats=1)
    cells = frames * height * width
    assert [(r["method"], r["steps"]) for r in rows] == [("cca3d", 2), ("cca3d", 3), ("nonlocal3d", 1)]
    for row in rows:
        assert not row["estimated"] and row["median_ms"] > 0 and row["runs"] == 1
        assert row["peak_bytes"] >= row["analytic_bytes"] / row["steps"]  # one step's maps exist at once
        # the stored layout has T + H + W entries a position, two of them masked: counted, not in the formula
        masked = 2 * cells * 2 * (channels // 8 + channels) * row["steps"] if row["method"] == "cca3d" else 0
        assert row["flops"] == row["flops_formula"] + masked
    nonlocal_row = rows[-1]
    assert nonlocal_row["analytic_bytes"] == cells * cells * 4 and nonlocal_row["peak_bytes"] > rows[1]["peak_bytes"]


def test_a_non_local_block_past_the_budget_is_estimated_not_run():
    rows = bench_clip(16, 2, 6, 8, torch.device("cpu"), repeats=1, budget=1000)
    estimated = rows[-1]
    assert estimated["estimated"] and estimated["median_ms"] is None
    assert estimated["peak_bytes"] == estimated["analytic_bytes"] == (2 * 6 * 8) ** 2 * 4
    assert not any(r["estimated"] for r in rows[:2])
    table = format_video_table(rows)
    assert "space-time non-local" in table and "*" in table.splitlines()[-1]


def test_the_command_writes_its_table_as_json(tmp_path, capsys):
    out = tmp_path / "video.json"
    assert main(["bench", "video", "--channels", "16", "--frames", "1,2", "--video-size", "6x8", "--repeats", "1",
                 "--threads", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["frames"] for r in report["video"]] == [1, 1, 1, 2, 2, 2] and "paper" not in report
    assert report["machine"]["threads"] == 1
    assert main(["bench", "video", "--frames", "0,2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("frames", ["a", "1,,2"])
def test_bad_frame_lists_are_one_line(frames, capsys):
    assert main(["bench", "video", "--frames", frames]) == 2
    assert "bad --frames" in capsys.readouterr().err

"""The per-stage benchmark attributes every FLOP to a stage, counts a conv as its formula says, and
times every stage of a real forward."""
from __future__ import annotations

import pytest
import torch

from tests.helpers import tiny_model
from tools.stage_bench import STAGES, paths, stage_flops, stage_times


def test_every_flop_belongs_to_a_stage_and_a_conv_counts_as_its_formula():
    net = tiny_model()
    x = torch.randn(1, 3, 64, 96)
    flops = stage_flops(net, x)
    assert sum(flops[s] for s in STAGES) == flops["total"] > 0
    conv = net.decode_head.conv_seg  # a 1x1 conv on the 8x12 feature grid
    assert flops["classifier"] == 2 * conv.in_channels * conv.out_channels * 8 * 12


def test_every_stage_is_timed_and_the_parts_add_up():
    times = stage_times(tiny_model(), torch.randn(1, 3, 64, 96), repeats=2)
    assert set(STAGES) <= set(times) and all(times[s] > 0 for s in STAGES)
    assert abs(sum(times[s] for s in [*STAGES, "resize", "other"]) - times["total"]) < 0.5 * times["total"]


def test_every_inference_path_gives_the_eager_logits_and_is_timed_against_the_previous(monkeypatch):
    from tools import stage_bench

    switched, mode = [], ["system"]

    def switch(wanted: str) -> bool:  # records the switches instead of making them
        switched.append(wanted)
        mode[0] = wanted
        return True

    monkeypatch.setattr(stage_bench, "GEMM_SIDE", 256)  # each round's GEMM at a test's size, not the peak's 4096
    monkeypatch.setattr(stage_bench, "use_allocator", switch)
    monkeypatch.setattr(stage_bench, "allocator_mode", lambda: mode[0])
    net, x = tiny_model(), torch.randn(1, 3, 64, 96)
    total = stage_flops(net, x)["total"]
    rows = paths(net, x, repeats=2, total_flops=total)
    # the warm-up and each of the 2 rounds run the first two paths with glibc's defaults and the
    # others with freed memory kept; at the end, the process is back in the mode it came in
    assert switched == ["system", "kept", "system", "kept", "system", "kept", "system"]
    assert [r["path"] for r in rows] == ["eager", "bn folded + channels-last", "+ freed memory kept", "onnxruntime"]
    assert rows[0]["rel_error"] == 0 and all(r["rel_error"] < 1e-5 for r in rows)
    for previous, row in zip(rows, rows[1:]):
        assert row["vs_previous"] == pytest.approx(row["median_s"] / previous["median_s"])
        assert row["gflop_per_s"] == pytest.approx(total / row["median_s"] / 1e9)
    assert all(row["of_round_gemm"] > 0 for row in rows)


def test_each_path_is_set_against_the_gemm_of_its_own_round():
    """of_round_gemm pairs each run with the GEMM timed in the same round (medians of the ratios)."""
    from tools.stage_bench import GEMM_SIDE, _path_rows

    gemm_flops = 2 * GEMM_SIDE**3
    times = {"a": [10.0, 20.0, 40.0], "b": [5.0, 5.0, 5.0], "gemm": [1.0, 4.0, 2.0]}  # ms per round
    rows = _path_rows(["a", "b"], times, {"a": 0.0, "b": 1e-7}, total_flops=gemm_flops)
    assert [r["of_round_gemm"] for r in rows] == [pytest.approx(0.1), pytest.approx(0.4)]  # medians of 1/10, 4/20,
    assert rows[1]["vs_previous"] == pytest.approx(5 / 20) and rows[1]["median_s"] == pytest.approx(0.005)  # 2/40

"""Cost model of the attention blocks (analytic sizes, counted FLOPs, measured memory) and the
`bench` command's JSON."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ccnet.errors import CCNetError
from ccnet.nn import cost
from tests.cli.runner import run_cli

MIB = 2**20


def test_analytic_attention_bytes_at_97x97():
    assert cost.analytic_attention_bytes("nonlocal", 97, 97) == 97**4 * 4
    assert cost.analytic_attention_bytes("nonlocal", 97, 97) / MIB == pytest.approx(337.7, abs=0.05)
    assert cost.analytic_attention_bytes("rcca1", 97, 97) / MIB == pytest.approx(6.93, abs=0.01)
    assert cost.analytic_attention_bytes("rcca2", 97, 97) == 2 * cost.analytic_attention_bytes("rcca1", 97, 97)
    assert cost.analytic_attention_bytes("rcca1", 97, 97, recurrence=3, dtype_bytes=2) == 3 * 97 * 97 * 193 * 2


def test_unknown_method_is_a_user_error():
    with pytest.raises(CCNetError, match="unknown attention method"):
        cost.analytic_attention_bytes("axial", 8, 8)


def test_flops_at_97x97_match_the_paper_and_the_formula():
    counted = {m: cost.count_flops(m, 512, 97, 97) for m in cost.METHODS}
    assert 1 - counted["rcca2"] / counted["nonlocal"] >= 0.84  # paper: about 85% fewer
    assert counted["rcca2"] / 1e9 == pytest.approx(16.5, rel=0.01)  # paper: 16.5 GFLOPs
    assert counted["nonlocal"] / 1e9 == pytest.approx(108, rel=0.01)  # paper: 108 GFLOPs
    for method, flops in counted.items():
        assert flops == pytest.approx(cost.formula_flops(method, 512, 97, 97), rel=0.02)


def test_flops_are_counted_on_the_fast_path_without_computing():
    # meta tensors: a 200x200 non-local map (6 GiB) is never allocated
    assert cost.count_flops("nonlocal", 64, 200, 200) == cost.formula_flops("nonlocal", 64, 200, 200)
    assert cost.count_flops("rcca1", 64, 9, 11) == pytest.approx(cost.formula_flops("rcca1", 64, 9, 11), rel=0.02)
    for method in cost.METHODS:  # the meta run counts what a real run counts
        assert cost.count_flops(method, 16, 9, 11, device="cpu") == cost.count_flops(method, 16, 9, 11)


def test_measured_memory_is_positive_and_larger_for_nonlocal():
    small = {m: cost.measure_cost(m, 16, 24, 24, repeats=1) for m in ("rcca2", "nonlocal")}
    for result in small.values():
        assert result["memory_bytes"] > 0 and result["time_ms"] > 0 and not result["estimated"]
    assert small["nonlocal"]["memory_bytes"] > small["rcca2"]["memory_bytes"]
    # the N x N map alone is allocated at least once
    assert small["nonlocal"]["memory_bytes"] >= small["nonlocal"]["analytic_bytes"]


def test_measure_peak_memory_sees_the_peak_not_the_end():
    def spike() -> None:
        big = torch.empty(MIB, dtype=torch.uint8)
        del big
        torch.empty(MIB // 4, dtype=torch.uint8)

    assert cost.measure_peak_memory(spike, "cpu") >= MIB


def test_guard_returns_an_estimate_instead_of_running():
    result = cost.measure_cost("nonlocal", 512, 200, 200, budget_bytes=2 << 30)
    assert result["estimated"] is True and result["time_ms"] is None
    assert result["memory_bytes"] == result["analytic_bytes"] == (200 * 200) ** 2 * 4
    assert "budget" in result["reason"]
    assert result["flops"] == cost.formula_flops("nonlocal", 512, 200, 200)


def test_bench_cli_writes_json(tmp_path: Path):
    out = tmp_path / "x.json"
    proc = run_cli("bench", "attention", "--sizes", "9x11", "--channels", "16", "--repeats", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "reference" in proc.stdout and "non-local" in proc.stdout
    report = json.loads(out.read_text())
    assert {"command", "machine", "paper", "attention"} <= set(report)
    (block,) = report["attention"]
    assert block["size"] == [9, 11] and block["channels"] == 16 and block["recurrence"] == 2
    cases = {(r["case"], r["impl"]) for r in block["rows"]}
    expected = {(mode, impl) for mode in ("inference", "training") for impl in ("reference", "fast", "nonlocal")}
    assert cases == expected | {("inference", "reference_nhwc"), ("inference", "fast_nhwc")}  # + channels-last
    for row in block["rows"]:
        assert row["runs"] == 1 and row["peak_bytes"] > 0 and row["min_ms"] <= row["median_ms"] <= row["max_ms"]
    assert block["fast_output_rel_error"] < 1e-5 and block["fast_grad_rel_error"] < 1e-5
    assert set(block["flops"]) == {"rcca1", "rcca2", "rcca3", "nonlocal"}


def test_bench_cli_rejects_bad_arguments(capsys):
    from ccnet.cli import main

    assert main(["bench", "attention", "--sizes", "9y11"]) == 2
    assert capsys.readouterr().err.startswith("error: bad size '9y11'")
    assert main(["bench", "attention", "--channels", "4"]) == 2
    assert "at least 8" in capsys.readouterr().err


def test_the_flops_formula_worked_out_by_hand_on_a_3x5_grid():
    """C = 16 (C/8 = 2), N = 15 cells. Per step: the 1x1 convs 2 N C (2 C/8 + C) = 9,600; affinity and
    aggregation 2 N S (C/8 + C) with S = 3 + 5 - 1 = 7 cells of a cross (3,780), or S = N = 15 for
    non-local (8,100)."""
    assert cost.formula_flops("rcca1", 16, 3, 5) == 9_600 + 3_780
    assert cost.formula_flops("rcca2", 16, 3, 5) == 2 * (9_600 + 3_780)
    assert cost.formula_flops("rcca3", 16, 3, 5) == 3 * (9_600 + 3_780)
    assert cost.formula_flops("nonlocal", 16, 3, 5) == 9_600 + 8_100
    assert cost.analytic_attention_bytes("rcca2", 3, 5) == 2 * 15 * 7 * 4

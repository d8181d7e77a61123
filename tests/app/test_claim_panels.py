"""The cost panel's paper-size ratios are the shipped benchmark's figures; the tiny-grid sentence
appears exactly when the non-local block was the faster; the head-cost table's scores are the
shipped JSON."""
from __future__ import annotations

import json

from ccnet.app.present import cost_note, cost_rows, family_scores, paper_size_figures
from ccnet.project import ASSETS


def _measured(rcca_ms: float, nonlocal_ms: float) -> dict:
    row = {"memory_bytes": 1, "analytic_bytes": 1, "flops": 1}
    return {"feature_size": [8, 32], "channels": 64, "device": "cpu", "rcca1": {**row, "time_ms": 1.0},
            "rcca2": {**row, "time_ms": rcca_ms}, "rcca3": {**row, "time_ms": 3.0},
            "nonlocal": {**row, "time_ms": nonlocal_ms}}


def test_the_paper_size_ratios_are_the_benchmarks():
    report = json.loads((ASSETS / "bench_attention_cpu.json").read_text())
    block = next(b for b in report["attention"] if b["size"] == [97, 97])
    rows = {(r["case"], r["impl"]): r for r in block["rows"]}
    figures = paper_size_figures()
    for case in ("training", "inference"):
        expected = rows[(case, "nonlocal")]["peak_bytes"] / rows[(case, "fast")]["peak_bytes"]
        assert abs(figures[f"{case}_memory_x"] - expected) < 1e-9
    assert abs(figures["paper_memory_x"] - 1411 / 127) < 1e-9
    assert abs(figures["paper_fewer_flops"] - (1 - 16.5 / 108)) < 1e-9
    note = cost_note(_measured(2.0, 3.0))
    assert f"**{figures['training_memory_x']:.1f}×** the memory of R = 2 in training" in note
    assert f"**{100 * figures['fewer_flops']:.1f}% fewer FLOPs**" in note


def test_the_tiny_grid_sentence_appears_only_when_non_local_was_faster():
    assert "non-local block is the faster one here (1.13 ms against 2.39 ms)" in cost_note(_measured(2.39, 1.13))
    assert "faster one here" not in cost_note(_measured(1.0, 3.0))


def test_the_head_cost_table_scores_are_the_shipped_figures():
    scores = json.loads((ASSETS / "family_eval.json").read_text())["models"]
    rows = {row[0]: row for row in cost_rows(_measured(2.0, 3.0), family_scores())}
    for name, label in (("default", "R = 2"), ("default:rcca_r1", "R = 1"), ("default:nonlocal", "non-local"),
                        ("default:none", "no attention"), ("default:rcca_r3", "R = 3")):
        assert rows[label][1] == f"{scores[name]['context_miou']:.3f}"
    assert rows["no attention"][2:5] == ["0.00 MiB", "—", 0.0]
    assert all(row[1] == "—" for row in cost_rows(_measured(2.0, 3.0)))  # a released model: no family scores

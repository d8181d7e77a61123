"""The attention bench's timing protocol: which runs alternate with which."""
from __future__ import annotations

import torch

from ccnet.experiments import bench


def test_inference_runs_alternate_with_inference_runs_only():
    calls: list[str] = []
    names = ["inference/reference", "inference/fast", "training/reference", "training/fast"]
    cases = {name: (lambda name=name: calls.append(name)) for name in names}
    measured = bench._measure(cases, repeats=3, device=torch.device("cpu"))
    # per mode: one profiled run of each case (the warm-up), then the timed runs, interleaved
    assert calls == names[:2] + names[:2] * 3 + names[2:] + names[2:] * 3
    assert list(measured) == names and all(len(measured[name][0]) == 3 for name in names)


def test_cases_without_a_mode_are_one_group():
    calls: list[str] = []
    cases = {name: (lambda name=name: calls.append(name)) for name in ("eager", "optimized")}
    bench._measure(cases, repeats=2, device=torch.device("cpu"))
    assert calls == ["eager", "optimized"] * 3

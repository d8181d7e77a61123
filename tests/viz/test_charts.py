"""Plotly figures: a pixel's row/column weights per step, and the cost growth chart."""
from __future__ import annotations

import numpy as np

from ccnet.inference.explain import PixelAttention
from ccnet.viz import charts


def test_cross_weights_plots_each_views_row_and_column():
    rng = np.random.default_rng(0)
    maps = [rng.random((4, 6)).astype(np.float32) for _ in range(3)]
    attention = PixelAttention((4, 6), (1, 2), maps[:2], maps[2])
    fig = charts.cross_weights(attention, ["step 1", "step 2", "composed"])
    assert len(fig.data) == 6
    for i, grid_map in enumerate(maps):
        row_trace, col_trace = fig.data[2 * i], fig.data[2 * i + 1]
        np.testing.assert_allclose(row_trace.y, grid_map[1, :])
        np.testing.assert_allclose(col_trace.y, grid_map[:, 2])
        assert col_trace.xaxis == "x2"
    assert fig.data[4].line.dash == "dash"  # composed
    assert [s.x0 for s in fig.layout.shapes] == [2, 1]  # the query's column and row


def _measured(estimated_nonlocal: bool = False) -> dict:
    item = {"memory_bytes": 1 << 20, "analytic_bytes": 1 << 19, "flops": 2e9, "time_ms": 3.0}
    return {"feature_size": [32, 64], "channels": 64, "device": "cpu", "rcca1": dict(item), "rcca2": dict(item),
            "nonlocal": dict(item, estimated=estimated_nonlocal)}


def test_cost_growth_marks_this_image_and_the_papers_setting():
    sides = [8, 16, 97]
    curves = {m: {"memory_bytes": [s ** 3 for s in sides], "flops": [s ** 4 for s in sides]}
              for m in ("rcca1", "rcca2", "nonlocal")}
    fig = charts.cost_growth({"sides": sides, "curves": curves, "current": _measured(True), "paper": [97, 97]})
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert len(fig.data) == 12
    np.testing.assert_allclose(fig.data[0].x, [64, 256, 97 * 97])
    assert {s.x0 for s in fig.layout.shapes} == {97 * 97, 32 * 64}
    assert any("estimated" in (t.name or "") for t in fig.data)


def test_unvalidated_figures_pass_plotly_validation():
    """The figures skip Plotly's validation for speed: check here that they would pass it."""
    import plotly.graph_objects as go

    rng = np.random.default_rng(1)
    maps = [rng.random((3, 5)) for _ in range(3)]
    views = ["step 1", "step 2", "composed"]
    figures = [charts.cross_weights(PixelAttention((3, 5), (0, 4), maps[:2], maps[2]), views)]
    curves = {m: {"memory_bytes": [1, 2], "flops": [3, 4]} for m in ("rcca1", "rcca2", "nonlocal")}
    figures.append(charts.cost_growth({"sides": [8, 16], "curves": curves, "current": _measured(), "paper": [97, 97]}))
    for fig in figures:
        go.Figure(fig.to_dict())  # raises ValueError on any invalid property

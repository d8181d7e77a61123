"""Plotly figures of the app: a pixel's weights along its row and column, and cost growth.

Figures are assembled from plain dicts and handed to Plotly unvalidated (with the template
resolved once): validating costs ~30 ms per figure, and the row/column chart is redrawn on
every click. The dicts use only documented plotly.js attributes; the tests read them back.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from ccnet.inference.explain import PixelAttention
from ccnet.nn.cost import METHOD_LABELS

COLORS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3")

METHOD_COLORS = {"rcca1": "#00a08a", "rcca2": "#3b5bdb", "rcca3": "#7048e8", "nonlocal": "#e8590c"}


@lru_cache(maxsize=1)
def _template() -> dict:
    return pio.templates["plotly_white"].to_plotly_json()


def _figure(traces: list[dict], left: dict, right: dict, title: str, shapes: list[dict]) -> go.Figure:
    """Two side-by-side panels (x/y left, x2/y2 right) holding the given traces and lines. Each
    panel's quantity is a heading above it, not a y-axis title: on a phone the right panel's
    axis title would sit on the left panel."""
    headings = [dict(text=side.pop("heading"), x=(a + b) / 2, y=1.0, xref="paper", yref="paper", xanchor="center",
                     yanchor="bottom", showarrow=False, font=dict(size=12))
                for side, (a, b) in ((left, (0.0, 0.45)), (right, (0.55, 1.0)))]
    layout = dict(
        xaxis=dict(domain=[0.0, 0.45], **left.get("x", {})), yaxis=dict(**left.get("y", {})),
        xaxis2=dict(domain=[0.55, 1.0], anchor="y2", **right.get("x", {})),
        yaxis2=dict(anchor="x2", **right.get("y", {})), annotations=headings,
        margin=dict(l=40, r=15, t=80, b=45), height=360, legend=dict(orientation="h", y=-0.25),
        title=dict(text=title, font=dict(size=14)), shapes=shapes, template=_template(),
    )
    return go.Figure(data=traces, layout=layout, _validate=False)


def _vline(x: float, axis: str, **line: object) -> dict:
    """A vertical line across one panel (axis "x" or "x2") at data position x."""
    return dict(type="line", x0=x, x1=x, y0=0, y1=1, xref=axis, yref=f"y{axis[1:]} domain", line=line)


def _line(y: np.ndarray | list, name: str, line: dict, right: bool = False, **extra: object) -> dict:
    trace = dict(type="scatter", y=np.asarray(y, dtype=float).tolist(), mode="lines", name=name, line=line,
                 legendgroup=name, **extra)
    return dict(trace, xaxis="x2", yaxis="y2", showlegend=False) if right else trace


def cross_weights(maps: PixelAttention, views: list[str]) -> go.Figure:
    """Weights along the query cell's row (left) and column (right), one line per step and one for
    the composed map; the dotted line is the query cell itself."""
    row, col = maps.cell
    traces = []
    for i, (name, grid_map) in enumerate(zip(views, [*maps.steps, maps.composed])):
        style = dict(color=COLORS[i % len(COLORS)], dash="dash" if name == "composed" else "solid")
        traces += [_line(grid_map[row, :], name, style), _line(grid_map[:, col], name, style, right=True)]
    return _figure(
        traces,
        {"x": {"title": {"text": "column"}}, "heading": f"weights along row {row}"},
        {"x": {"title": {"text": "row"}}, "heading": f"weights along column {col}"},
        f"weights along cell ({row}, {col})'s row and column",
        [_vline(col, "x", color="grey", dash="dot"), _vline(row, "x2", color="grey", dash="dot")],
    )


def cost_growth(growth: dict) -> go.Figure:
    """Attention-map memory (left) and FLOPs (right) against the feature grid's size, log-log:
    analytic curves on square grids, this image's values (◆) and the paper's 97x97 marked."""
    sides, curves, current, paper = growth["sides"], growth["curves"], growth["current"], growth["paper"]
    positions = [s * s for s in sides]
    here = current["feature_size"][0] * current["feature_size"][1]
    traces = []
    for method, curve in curves.items():
        name, line = METHOD_LABELS.get(method, method), dict(color=METHOD_COLORS.get(method))
        item = current[method]
        marker = dict(color=line["color"], size=10, symbol="diamond")
        label = f"{name}, this image" + (" (estimated)" if item.get("estimated") else "")
        traces += [
            dict(_line([b / 2**20 for b in curve["memory_bytes"]], name, line), x=positions),
            dict(_line([f / 1e9 for f in curve["flops"]], name, line, right=True), x=positions),
            dict(type="scatter", x=[here], y=[item["analytic_bytes"] / 2**20], mode="markers", name=label,
                 marker=marker, legendgroup=name, showlegend=False),
            dict(type="scatter", x=[here], y=[item["flops"] / 1e9], mode="markers", name=label, marker=marker,
                 legendgroup=name, showlegend=False, xaxis="x2", yaxis="y2"),
        ]
    cells = {"title": {"text": "feature cells h·w"}, "type": "log"}
    return _figure(
        traces,
        {"x": cells, "y": {"type": "log"}, "heading": "attention maps (MiB)"},
        {"x": cells, "y": {"type": "log"}, "heading": "GFLOPs"},
        f"growth on square grids, {current['channels']} channels<br><sup>dotted: the paper's {paper[0]}×{paper[1]}"
        f" · dashed and ◆: this image ({current['feature_size'][0]}×{current['feature_size'][1]})</sup>",
        [_vline(v, axis, **style) for axis in ("x", "x2")
         for v, style in ((paper[0] * paper[1], dict(color="grey", dash="dot")),
                          (here, dict(color="black", dash="dash", width=1)))],
    )


def paper_bars(figures: dict) -> go.Figure:
    """RCCA R=2 against the non-local block at the paper's 97x97 grid, as labelled bars (training
    memory, FLOPs), each non-local bar carrying its ratio: readable without a legend, on a phone too."""
    rows = (("training memory (MiB)", figures["training_mib"]), ("GFLOPs", figures["gflops"]))
    traces = []
    for i, (title, values) in enumerate(rows):
        ratio = values["nonlocal"] / values["rcca2"]
        axis = "" if i == 0 else "2"
        traces.append(dict(
            type="bar", orientation="h", y=[METHOD_LABELS["rcca2"], METHOD_LABELS["nonlocal"]],
            x=[values["rcca2"], values["nonlocal"]],
            marker=dict(color=[METHOD_COLORS["rcca2"], METHOD_COLORS["nonlocal"]]), showlegend=False,
            text=[_amount(values["rcca2"]), f"{_amount(values['nonlocal'])} ({ratio:.1f}×)"], textposition="auto",
            xaxis=f"x{axis}", yaxis=f"y{axis}", hoverinfo="x+y", name=title))
    headings = [dict(text=title, x=0, y=top, xref="paper", yref="paper", xanchor="left", yanchor="bottom",
                     showarrow=False, font=dict(size=12)) for (title, _), top in zip(rows, (1.0, 0.42))]
    layout = dict(  # two full-width rows, one above the other: nothing sits beside anything on a phone
        yaxis=dict(domain=[0.6, 1.0]), xaxis=dict(anchor="y", showticklabels=False),
        yaxis2=dict(domain=[0.0, 0.42], anchor="x2"), xaxis2=dict(anchor="y2", showticklabels=False),
        annotations=headings, margin=dict(l=80, r=15, t=60, b=20), height=300, template=_template(),
        title=dict(text="at the paper's size, 1×512×97×97", font=dict(size=14)))
    return go.Figure(data=traces, layout=layout, _validate=False)


def _amount(value: float) -> str:
    """A bar's number: whole above 100 (1,055, not 1.05e+03), three digits below."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


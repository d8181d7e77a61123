"""What the views print: the legend, the clicked pixel's line, the top-k and cost tables, as
plain strings and rows built from the app's state (ui.py only places them)."""
from __future__ import annotations

import html
import json

from ccnet.app.analysis import Analysis, Explanation
from ccnet.nn.cost import METHOD_LABELS, METHODS
from ccnet.viz import pictures as viz


def legend_html(analysis: Analysis, classes: tuple[str, ...], palette: tuple[tuple[int, int, int], ...]) -> str:
    """Coloured swatches, class names and pixel shares (inline styles: no app CSS needed);
    classes absent from the image are dimmed."""
    items = []
    for row in viz.legend(analysis.mask, classes, palette):
        opacity = 1.0 if row["share"] else 0.45
        items.append(
            f"<span style='display:inline-flex;align-items:center;gap:4px;margin:2px 12px 2px 0;"
            f"opacity:{opacity}'><span style='display:inline-block;width:14px;height:14px;border-radius:3px;"
            f"border:1px solid #0004;background:{row['color']}'></span>{html.escape(row['name'])}"
            f"&nbsp;<b>{100 * row['share']:.1f}%</b></span>"
        )
    return "<div style='display:flex;flex-wrap:wrap;font-size:0.9em'>" + "".join(items) + "</div>"


def pixel_text(explanation: Explanation, classes: tuple[str, ...]) -> str:
    """One line about the clicked pixel: its class, confidence and feature cell."""
    label = explanation.pixel_class
    name = classes[label] if label < len(classes) else str(label)
    (row, col), (h, w) = explanation.maps.cell, explanation.maps.grid
    return (f"pixel ({explanation.x}, {explanation.y}) → **{name}** ({100 * explanation.confidence:.1f}% confident)"
            f" · feature cell ({row}, {col}) of {h}×{w}")


def compact_json(data: dict) -> str:
    """JSON with one key per line and each top-k entry on its own line: readable in a small box."""
    lines = []
    for key, value in data.items():
        if key == "topk" and value:
            items = ",\n".join(f"    {json.dumps(item)}" for item in value)
            lines.append(f'  "topk": [\n{items}\n  ]')
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}"


def topk_rows(explanation: Explanation) -> list[list]:
    return [[t["rank"], f"({t['cell'][0]}, {t['cell'][1]})", f"({t['pixel'][0]}, {t['pixel'][1]})",
             round(t["weight"], 5), t["class"]] for t in explanation.topk]


TOPK_HEADERS = ["rank", "cell (row, col)", "pixel (x, y)", "weight", "class there"]


COST_HEADERS = ["method", "attention maps (analytic)", "measured peak", "GFLOPs", "time (ms)", "note"]


def cost_rows(measured: dict) -> list[list]:
    """The cost table as displayed: sizes in MiB, FLOPs in G, estimates flagged."""
    rows = []
    for method in METHODS:
        item = measured[method]
        note = f"estimated: {item.get('reason', 'not measured')}" if item.get("estimated") else "measured"
        rows.append([
            METHOD_LABELS[method], _mib(item.get("analytic_bytes")), _mib(item.get("memory_bytes")),
            round(item["flops"] / 1e9, 3), None if item.get("time_ms") is None else round(item["time_ms"], 2), note,
        ])
    return rows


def cost_note(measured: dict) -> str:
    """What the cost table measured, where and how; says so when rows are estimates."""
    height, width = measured["feature_size"]
    peak = "`torch.cuda.max_memory_allocated`" if measured["device"] == "cuda" else "the profiler's memory timeline"
    note = (f"Feature grid **{height}×{width}**, {measured['channels']} channels, on **{measured['device']}**. "
            f"Attention maps: the analytic size of the weights the block stores; measured peak: {peak}; "
            "FLOPs: `torch.utils.flop_counter`; time: median of 3 runs.")
    if any(measured[m].get("estimated") for m in METHODS):
        note += " ⚠️ Rows marked *estimated* were not run: they would not fit in memory here."
    return note


def _mib(nbytes: float | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 2**20:.2f} MiB"

"""What the views print: the legend, the clicked pixel's line, the top-k and cost tables, as
plain strings and rows built from the app's state (ccnet/app/ui only places them)."""
from __future__ import annotations

import functools
import html
import json
import re
from pathlib import Path

from ccnet.app.analysis import Analysis, Explanation
from ccnet.nn import cost
from ccnet.nn.cost import METHODS
from ccnet.nn.variants import IMAGE_HEADS
from ccnet.project import ASSETS
from ccnet.viz import pictures as viz
from ccnet.weights import family

_MARKDOWN_SIGNS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$:])")


def md_text(value: object) -> str:
    """Any value as literal text inside the page's Markdown: one line, every Markdown sign escaped
    and HTML's < & > as entities, so that what a visitor sends (a link's parameters, a file name, a
    checkpoint's class names) is read, never rendered as a heading, a link, an image or a form."""
    text = " ".join(str(value).split())
    return html.escape(_MARKDOWN_SIGNS.sub(r"\\\1", text), quote=False)


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
    return (f"pixel ({explanation.x}, {explanation.y}) → **{md_text(name)}** "
            f"({100 * explanation.confidence:.1f}% confident)"
            f" · feature cell ({row}, {col}) of {h}×{w}")


def bare_pixel_text(analysis: Analysis, x: int, y: int, classes: tuple[str, ...]) -> str:
    """One line about a pixel pinned on a head without attention: its class and confidence."""
    label = int(analysis.mask[y, x])
    name = classes[label] if label < len(classes) else str(label)
    return (f"pixel ({x}, {y}) → **{md_text(name)}** ({100 * float(analysis.confidence[y, x]):.1f}% confident)"
            f" · {md_text(analysis.model)} has no attention: each pixel sees only its neighbourhood")


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


COST_HEADERS = ["head", "context mIoU", "attention maps (analytic)", "measured peak", "GFLOPs", "time (ms)", "note"]


def cost_rows(measured: dict, scores: dict | None = None) -> list[list]:
    """The cost table as displayed, one row per head of the variants table at the analysed
    image's grid: sizes in MiB, FLOPs in G, estimates flagged; with `scores` (the embedded
    family's held-out figures, family_scores()) each head's context mIoU beside its cost."""
    rows = []
    for head in IMAGE_HEADS:
        score = f"{scores[family.sibling_name(head.name)]['context_miou']:.3f}" if scores else "—"
        if not head.cost_method:
            rows.append([head.label, score, _mib(0), "—", 0.0, None, "no attention block"])
            continue
        item = measured[head.cost_method]
        note = f"estimated: {item.get('reason', 'not measured')}" if item.get("estimated") else "measured"
        rows.append([
            head.label, score, _mib(item.get("analytic_bytes")), _mib(item.get("memory_bytes")),
            round(item["flops"] / 1e9, 3), None if item.get("time_ms") is None else round(item["time_ms"], 2), note,
        ])
    return rows


@functools.lru_cache(maxsize=1)
def family_scores(path: Path = ASSETS / "family_eval.json") -> dict | None:
    """Each family head's held-out scores (mIoU, context mIoU on car and truck), as shipped."""
    try:
        return json.loads(Path(path).read_text())["models"]
    except (OSError, ValueError, KeyError):
        return None


SCORES_NOTE = ("\n\nContext mIoU: car and truck on 64 held-out synthetic scenes (seed 1), every head on the "
               "embedded model's backbone (assets/family_eval.json, `python -m ccnet evaluate --model M --synthetic 64 "
               "--seed 1`). R = 1 cannot reach the cue panel from a vehicle; R = 2 reaches it and scores what the "
               "non-local block scores.")


def cost_note(measured: dict) -> str:
    """What the cost table measured, where and how; says so when rows are estimates."""
    height, width = measured["feature_size"]
    peak = "`torch.cuda.max_memory_allocated`" if measured["device"] == "cuda" else "the profiler's memory timeline"
    note = (f"Feature grid **{height}×{width}**, {measured['channels']} channels, on **{measured['device']}**. "
            f"Attention maps: the analytic size of the weights the block stores; measured peak: {peak}; "
            "FLOPs: `torch.utils.flop_counter`; time: median of 3 runs.")
    if any(measured[m].get("estimated") for m in METHODS):
        note += " ⚠️ Rows marked *estimated* were not run: they would not fit in memory here."
    rcca, non_local = measured["rcca2"].get("time_ms"), measured["nonlocal"].get("time_ms")
    if rcca and non_local and non_local < rcca:
        note += (f"\n\nAt this small grid the non-local block is the faster one here ({non_local:.2f} ms against "
                 f"{rcca:.2f} ms): its {height * width}×{height * width} product is one small matrix multiply, "
                 "while criss-cross attention runs many tiny per-row and per-column ones. Its cost grows with the "
                 "square of the cell count, criss-cross attention's far slower: the gap turns at larger sizes, "
                 "as below.")
    paper = paper_size_figures()
    if paper:
        note += (f"\n\n**At the paper's size** (1×512×97×97, measured by `python -m ccnet bench attention`): "
                 f"the non-local block needs **{paper['training_memory_x']:.1f}×** the memory of R = 2 in training "
                 f"({paper['inference_memory_x']:.1f}× in inference; the paper: "
                 f"{paper['paper_memory_x']:.0f}×), and R = 2 needs **{100 * paper['fewer_flops']:.1f}% fewer "
                 f"FLOPs** (the paper: {100 * paper['paper_fewer_flops']:.0f}%).")
    return note


def cost_strip(grid: tuple[int, int], channels: int) -> dict:
    """The claim in figures for the first screen: what a non-local block's attention maps take
    against R = 2's, and the FLOPs R = 2 saves, on this image's feature grid (analytic: the bytes
    of the weights each stores, the paper's FLOP count) and at the paper's size (measured by the
    shipped benchmark), each with where it comes from."""
    height, width = grid
    here = {"grid": [height, width],
            "memory_x": cost.analytic_attention_bytes("nonlocal", height, width)
            / cost.analytic_attention_bytes("rcca2", height, width),
            "fewer_flops": 1 - cost.formula_flops("rcca2", channels, height, width)
            / cost.formula_flops("nonlocal", channels, height, width),
            "source": f"analytic, {height}×{width} cells, {channels} channels: a non-local map's N² weights against "
                      f"two criss-cross steps' 2·N·(h+w−1); FLOPs by the paper's count (ccnet/nn/cost.py)"}
    paper = paper_size_figures()
    if paper is None:
        return {"here": here}
    return {"here": here, "paper": {
        "memory_x": paper["training_memory_x"], "fewer_flops": paper["fewer_flops"],
        "paper_memory_x": paper["paper_memory_x"], "paper_fewer_flops": paper["paper_fewer_flops"],
        "source": "measured on this machine's CPU at 1×512×97×97, training, peak memory beside R = 2's "
                  "(assets/bench_attention_cpu.json, python -m ccnet bench attention)"}}


@functools.lru_cache(maxsize=1)
def paper_size_figures(path: Path = ASSETS / "bench_attention_cpu.json") -> dict | None:
    """The ratios the shipped attention benchmark measured at the paper's 97×97 grid, and the paper's."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    block = next((b for b in report.get("attention", []) if b["size"] == [97, 97]), None)
    if block is None:
        return None
    ratio = {r["case"]: r["memory_vs_fast"] for r in block["rows"] if r["impl"] == "nonlocal"}
    peaks = {(r["case"], r["impl"]): r["peak_bytes"] / 2**20 for r in block["rows"]}
    paper = report["paper"]
    return {"training_memory_x": ratio["training"], "inference_memory_x": ratio["inference"],
            "training_mib": {"rcca2": peaks[("training", "fast")], "nonlocal": peaks[("training", "nonlocal")]},
            "gflops": {"rcca2": block["flops"]["rcca2"] / 1e9, "nonlocal": block["flops"]["nonlocal"] / 1e9},
            "fewer_flops": block["rcca2_fewer_flops_than_nonlocal"],
            "paper_memory_x": paper["nonlocal"]["memory_mb"] / paper["rcca2"]["memory_mb"],
            "paper_fewer_flops": 1 - paper["rcca2"]["gflops"] / paper["nonlocal"]["gflops"]}


def _mib(nbytes: float | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 2**20:.2f} MiB"


def compare_text(figures: dict, classes: dict[str, str]) -> str:
    """What the comparison panel says: agreement, on-cross shares and every head's class."""
    share, image = figures["on_cross_share"], figures["image_on_cross_share"]
    heads = " · ".join(f"{family.head_label(name)} **{md_text(label)}**" for name, label in classes.items())
    criss_cross = family.head_label(figures["criss_cross_model"])
    return (f"**Criss-cross {criss_cross} (composed) against non-local**, same backbone: top-{figures['topk']} overlap "
            f"**{figures['topk_overlap']:.2f}**, Jensen–Shannon divergence **{figures['js_divergence_bits']:.2f}** "
            f"bits (0: the same map, 1: disjoint).\n\n"
            f"Weight on the pinned cell's own row and column: criss-cross **{100 * share['criss_cross']:.0f}%**, "
            f"non-local **{100 * share['nonlocal']:.0f}%** (averaged over the image: "
            f"{100 * image['criss_cross']:.0f}% and {100 * image['nonlocal']:.0f}%). On the cue panel (cells "
            f"labelled traffic sign or light): criss-cross **{100 * figures['panel_weight']['criss_cross']:.0f}%**, "
            f"non-local **{100 * figures['panel_weight']['nonlocal']:.0f}%**.\n\n"
            f"Each head's class here: {heads}.")

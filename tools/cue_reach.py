"""Does a vehicle pixel's attention land on the cue panel? Measured for every head of the default
model's family on the demo scenes (`python -m tools.cue_reach`, assets/cue_reach.json).

For three pixels of the vehicles of each demo scene (4 with a blue panel: cars; 4 with a red one:
trucks) it records whether the map's largest cell lies on the panel (criss-cross: the composed map;
non-local: its dense map), the weight on the panel, and whether the pixel's class is right. The
explorer showed that the default model's composed map finds the blue panel far more often than the
red one: the model may have learned "blue panel found -> car, otherwise truck".
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from ccnet.cli.outputs import checked_output, write_text
from ccnet.experiments.scenes import CLASS_NAMES, generate_scene
from ccnet.inference.agreement import nonlocal_map, top_cells
from ccnet.inference.explain import explain_pixel
from ccnet.inference.geometry import box_cells, cell_of
from ccnet.inference.predictor import Prediction, Predictor
from ccnet.weights.family import SIBLINGS, sibling_name
from ccnet.weights.load import load_model
from tools._cli import run
from tools.demos import DEMO_SEEDS

ARMS = ("rcca_r1", "rcca_r2", "rcca_r3", "nonlocal")  # "none" has no map to look at


def vehicle_pixels(boxes: list[tuple[int, int, int, int]], count: int = 3) -> list[tuple[int, int]]:
    """`count` pixels (x, y): the centres of the first vehicles, then points across the largest one."""
    points = [((x0 + x1) // 2, (y0 + y1) // 2) for x0, y0, x1, y1 in boxes[:count]]
    x0, y0, x1, y1 = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    for fraction in (1 / 3, 2 / 3, 1 / 6, 5 / 6):
        if len(points) >= count:
            break
        points.append((int(x0 + fraction * (x1 - x0)), (y0 + y1) // 2))
    return points[:count]


def _map(prediction: Prediction, arm: str, x: int, y: int) -> tuple[np.ndarray, tuple[int, int]]:
    if arm == "nonlocal":
        cell = cell_of(x, y, prediction.image_size, prediction.grid)
        return nonlocal_map(prediction.attention[0], *cell, prediction.grid), cell
    maps = explain_pixel(prediction, x, y)
    return maps.composed, maps.cell


def measure(arms: tuple[str, ...] = ARMS) -> dict:
    """Per arm and cue: how many vehicle pixels' top cell is on the panel, the mean panel weight
    (and its ratio to the panel's share of the grid) and how many pixels are classed right."""
    scenes = [generate_scene(s, split="demo", cue="car" if s % 2 else "truck") for s in DEMO_SEEDS]
    result = {}
    for arm in arms:
        loaded = load_model(sibling_name(arm))
        predictor = Predictor(loaded.net, loaded.protocol, "cpu")
        rows: dict[str, dict] = {cue: {"pixels": 0, "top_on_panel": 0, "panel_weight": [], "uniform_ratio": [],
                                       "right_class": 0} for cue in ("car", "truck")}
        for scene in scenes:
            prediction = predictor.predict(scene.image, with_attention=True)
            h, w = prediction.grid
            top, bottom, left, right = box_cells(scene.sign_box, prediction.image_size, (h, w))
            panel = np.zeros((h, w), bool)
            panel[top:bottom + 1, left:right + 1] = True
            mask = prediction.mask
            row = rows[scene.cue]
            for x, y in vehicle_pixels(scene.vehicle_boxes):
                grid_map, _ = _map(prediction, arm, x, y)
                (peak,) = top_cells(grid_map, 1)
                weight = float(grid_map[panel].sum())
                row["pixels"] += 1
                row["top_on_panel"] += int(panel[peak])
                row["panel_weight"].append(weight)
                row["uniform_ratio"].append(weight / (panel.sum() / (h * w)))
                row["right_class"] += int(CLASS_NAMES[int(mask[y, x])] == scene.cue)
        for row in rows.values():
            row["panel_weight"] = round(float(np.mean(row["panel_weight"])), 4)
            row["uniform_ratio"] = round(float(np.median(row["uniform_ratio"])), 2)
        result[arm] = rows
    return {"scenes": list(DEMO_SEEDS), "pixels_per_scene": 3, "arms": result,
            "siblings": [sibling_name(a) for a in SIBLINGS]}


def table(report: dict) -> str:
    lines = ["| head | cue | top cell on the panel | mean weight on the panel | × uniform (median) | class right |",
             "|---|---|---|---|---|---|"]
    for arm, rows in report["arms"].items():
        for cue, row in rows.items():
            lines.append(f"| {arm} | {cue} ({'blue' if cue == 'car' else 'red'} panel) | "
                         f"{row['top_on_panel']}/{row['pixels']} | {row['panel_weight']:.3f} | "
                         f"{row['uniform_ratio']:.1f} | {row['right_class']}/{row['pixels']} |")
    return "\n".join(lines)


def reach_command(args: argparse.Namespace) -> int:
    json_out = checked_output(args.json, "--json", (".json",))
    torch.set_num_threads(args.threads)
    report = measure()
    print(table(report))
    if json_out:
        write_text(json_out, json.dumps(report, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cue_reach",
                                     description="does each head's map of a vehicle pixel land on the cue panel?")
    parser.add_argument("--json", help="also write the figures here (e.g. assets/cue_reach.json)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    return run(parser, reach_command, argv)


if __name__ == "__main__":
    sys.exit(main())

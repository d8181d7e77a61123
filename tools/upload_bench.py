"""`python -m tools.upload_bench`: how long a visitor waits for a released model's analysis of an
upload, at the app's interactive size and under the preset's full protocol, side by side.

Random weights of the real architectures (time does not depend on the weights), the presets' real
protocols, the app's Predictor with attention (what an upload costs), on photo-sized inputs.
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch

from ccnet.app.analysis import INTERACTIVE_PIXELS
from ccnet.inference.predictor import Predictor, interactive
from ccnet.nn.model import CCNet, CCNetConfig
from ccnet.weights import presets
from tools._cli import bench_main

# (preset, the upload's (height, width)): street photos at the app's largest side, others 4:3
CASES = (
    ("ccnet_r50-d8_512x1024_80k_cityscapes", (1024, 2048)),
    ("ccnet_r101-d8_512x1024_80k_cityscapes", (1024, 2048)),
    ("ccnet_r50-d8_769x769_80k_cityscapes", (1024, 2048)),
    ("ccnet_r50-d8_512x512_160k_ade20k", (768, 1024)),
)


def _seconds(predictor: Predictor, image: np.ndarray, repeats: int) -> tuple[list[float], tuple[int, int]]:
    times, size = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        prediction = predictor.predict(image, with_attention=True)
        times.append(time.perf_counter() - start)
        size = prediction.input_size
    return times, size


def bench_uploads(device: torch.device, repeats: int = 3, full_repeats: int = 1,
                  cases: tuple = CASES) -> list[dict]:
    """One row per (preset, analysis size): median seconds per upload and the input the network saw."""
    rows = []
    for name, (height, width) in cases:
        preset = presets.get(name)
        torch.manual_seed(0)
        net = CCNet(CCNetConfig(depth=preset.depth, num_classes=preset.num_classes)).eval()
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        sizes = {"interactive": (interactive(preset.protocol, INTERACTIVE_PIXELS), repeats),
                 "full": (preset.protocol, full_repeats)}
        medians = {}
        for size, (protocol, runs) in sizes.items():
            times, seen = _seconds(Predictor(net, protocol, str(device)), image, runs)
            medians[size] = statistics.median(times)
            rows.append({"preset": name, "backbone": preset.backbone, "image": [height, width], "size": size,
                         "protocol": preset.describe_protocol() if size == "full" else "whole, <= 0.26 MP",
                         "input": list(seen), "median_s": medians[size], "runs": [round(t, 3) for t in times]})
        rows[-1]["vs_interactive"] = medians["full"] / medians["interactive"]
    return rows


def format_upload_table(rows: list[dict]) -> str:
    head = f"{'preset':<40}{'upload':>11}{'size':>13}{'network input':>15}{'median s':>10}{'x interactive':>15}"
    lines = ["Released models, one upload (random weights, the app's Predictor with attention)", head]
    for r in rows:
        ratio = f"{r['vs_interactive']:.1f}" if "vs_interactive" in r else ""
        lines.append(f"{r['preset']:<40}{r['image'][1]:>6}x{r['image'][0]:<4}{r['size']:>13}"
                     f"{r['input'][1]:>9}x{r['input'][0]:<5}{r['median_s']:>10.2f}{ratio:>15}")
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> int:
    def measure(repeats: int) -> list[dict]:
        return bench_uploads(torch.device("cpu"), repeats)

    return bench_main("upload_bench", __doc__, "upload", measure, format_upload_table, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Hugging Face ZeroGPU: GPU work has to run inside `spaces.GPU`, which lends a GPU for at most the
function's `duration` seconds; elsewhere the decorator leaves the function unchanged.

The durations are estimates from the work itself (`network_seconds`, `measure_seconds`), so a small
image does not hold a GPU as long as a 2048 px one on a ResNet-101. The decorated functions return
CPU tensors only (the Predictor moves logits and attention to the CPU), and nothing calls
`torch.compile` at request time.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

try:
    import spaces
except ImportError:  # the common case off Spaces
    spaces = None

R50_GFLOP_PER_PIXEL = 805e9 / (512 * 1024) / 1e9  # the released R50-D8 CCNet (torch.utils.flop_counter)
GPU_GFLOPS = 5_000  # a cautious sustained fp32 rate for the estimate (ZeroGPU lends H200 slices)


def gpu_task(duration: float | Callable[..., float]) -> Callable[[Callable], Callable]:
    """`spaces.GPU(duration=...)` on ZeroGPU; `duration` may be a function of the call's arguments."""

    def wrap(fn: Callable) -> Callable:
        return spaces.GPU(duration=duration)(fn) if spaces is not None else fn

    return wrap


def network_seconds(predictor: object, image: np.ndarray, *_: object) -> float:
    """GPU seconds to ask for one network run: start-up plus the model's FLOPs at the size it runs."""
    config = predictor.net.config
    height, width = image.shape[:2]
    if predictor.protocol.test_resize is not None:
        long, short = predictor.protocol.test_resize
        scale = min(long / max(height, width), short / min(height, width))
        height, width = height * scale, width * scale
    depth_factor = {18: 0.25, 50: 1.0, 101: 1.6}.get(config.depth, 1.6)
    width_factor = (config.base_channels / 64) ** 2
    gflop = R50_GFLOP_PER_PIXEL * height * width * depth_factor * width_factor
    return float(min(120.0, 10.0 + gflop / GPU_GFLOPS))


def measure_seconds(methods: tuple[str, ...], channels: int, height: int, width: int, *_: object) -> float:
    """GPU seconds for one cost measurement (a few runs of each attention block)."""
    return float(min(60.0, 10.0 + len(methods) * channels * (height * width) ** 2 * 1e-12))

"""How long a click's own work takes on an image already analysed (no network run)."""
from __future__ import annotations

import statistics
import time

import numpy as np

from ccnet.app.analysis import Display
from ccnet.app.explorer import Explorer, ImageSource


def click_latency(explorer: Explorer, source: ImageSource, clicks: int = 20, display: Display | None = None) -> dict:
    """Median and spread of one click's work (maps, pictures, chart) on an already analysed image."""
    display = display or Display()
    analysis = explorer.analyse(source)
    height, width = analysis.size
    rng = np.random.default_rng(0)
    runs_before = explorer.network_runs
    times = []
    for _ in range(clicks):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        start = time.perf_counter()
        explorer.render(explorer.explain(source, x, y, display=display), display)
        times.append((time.perf_counter() - start) * 1000)
    return {"clicks": clicks, "median_ms": statistics.median(times), "max_ms": max(times),
            "min_ms": min(times), "network_runs": explorer.network_runs - runs_before}

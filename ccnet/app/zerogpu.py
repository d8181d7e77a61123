"""Hugging Face ZeroGPU: GPU work has to run inside `spaces.GPU`; elsewhere the decorator is a no-op."""
from __future__ import annotations

from collections.abc import Callable

try:
    import spaces

    gpu_task = spaces.GPU
except ImportError:  # the common case off Spaces

    def gpu_task(fn: Callable) -> Callable:
        return fn

"""What a visitor sends, checked: each number the page's events or the API take from a client, as
the type it must be, or one line saying what was expected (never a traceback in the log).

Why: the page's events and the API are plain HTTP; a crafted call can put a float, a boolean, NaN,
null or text where a pixel coordinate or the top-k count goes, and int() takes some of them (True
is 1, 3.7 is 3) while others fail deep inside the handlers.
"""
from __future__ import annotations

import math
from typing import Any

from ccnet.errors import CCNetError, shown

TOP_K = (1, 20)  # the top-k slider's range


def whole_number(value: Any) -> int | None:
    """An int, or a float that is one (JSON may send 3.0); None for anything else (bool, NaN, text, None)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def pixel(x: Any, y: Any) -> tuple[int, int]:
    """A pixel's (x, y) as whole numbers, or one line (whether it lies in the image is the geometry's)."""
    checked = whole_number(x), whole_number(y)
    if None in checked:
        raise CCNetError(f"pixel coordinates must be whole numbers, got x={shown(x)}, y={shown(y)}")
    return checked


def top_k(k: Any) -> int:
    """The number of top cells asked for, a whole number in TOP_K, or one line."""
    checked = whole_number(k)
    if checked is None or not TOP_K[0] <= checked <= TOP_K[1]:
        raise CCNetError(f"top-k must be a whole number from {TOP_K[0]} to {TOP_K[1]}, got {shown(k)}")
    return checked

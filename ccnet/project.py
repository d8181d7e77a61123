"""Where the checkout's own files live: `assets/` (the embedded model, measured results) and
`demos/` (example scenes), both at the repository's top, beside `app.py`. The one module that
knows the repository's layout; everything else asks it."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
DEMOS = ROOT / "demos"
DEFAULT_CHECKPOINT = ASSETS / "ccnet_default.pt"

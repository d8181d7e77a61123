"""The downloadable result files (mask, pictures, attention maps, cost table), each written in
its own folder on the server and pruned to a bounded number."""
from __future__ import annotations

import csv
import io
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ccnet.app.analysis import Analysis, Explanation
from ccnet.errors import CCNetError
from ccnet.nn.cost import METHODS
from ccnet.viz.pictures import colorize, palette_image


class Exports:
    """Writes the downloadable files, each in a fresh sub-folder so that two visitors working on
    the same image never overwrite each other's file before Gradio has copied it; only the newest
    ``max_files`` are kept (Gradio's copies are deleted after an hour by ``delete_cache``)."""

    def __init__(self, folder: str | Path | None = None, max_files: int = 256) -> None:
        self.folder = Path(folder or tempfile.mkdtemp(prefix="ccnet-app-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_files = max_files
        self._lock = threading.Lock()

    def _write(self, analysis: Analysis, suffix: str, write: Callable[[Path], None]) -> Path:
        """Write one file as <key>_<model>_<suffix> in its own folder, then prune the oldest."""
        try:
            path = Path(tempfile.mkdtemp(dir=self.folder)) / f"{analysis.key[:10]}_{Path(analysis.model).stem}_{suffix}"
            write(path)
        except OSError as err:
            raise CCNetError(f"could not write the {suffix} file on the server ({err.strerror or err})") from None
        self._prune()
        return path

    def _prune(self) -> None:
        with self._lock:
            folders = sorted((p for p in self.folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime_ns)
            for old in folders[: max(0, len(folders) - self.max_files)]:
                shutil.rmtree(old, ignore_errors=True)

    def mask_png(self, analysis: Analysis, palette: tuple[tuple[int, int, int], ...]) -> Path:
        """Class indices as a palette PNG: each pixel's value is its class index, shown in colour."""
        return self._write(analysis, "mask.png", lambda p: palette_image(analysis.mask, palette).save(p))

    def colour_png(self, analysis: Analysis, palette: tuple[tuple[int, int, int], ...]) -> Path:
        """The segmentation in the dataset's colours, as RGB."""
        colours = colorize(analysis.mask, palette)
        return self._write(analysis, "mask_colour.png", lambda p: Image.fromarray(colours).save(p))

    def picture(self, analysis: Analysis, name: str, picture: np.ndarray) -> Path:
        """A picture for the page (and its download) as a PNG at compression level 1: about three
        times quicker to write than the default, which matters for a click's latency."""
        return self._write(analysis, f"{name}.png", lambda p: Image.fromarray(picture).save(p, compress_level=1))

    def attention_npz(self, explanation: Explanation) -> Path:
        """The clicked cell's maps, with the pixel."""
        maps = explanation.maps.to_npz_dict()
        return self._write(explanation.analysis, f"attention_x{explanation.x}_y{explanation.y}.npz",
                           lambda p: np.savez_compressed(p, pixel=np.asarray([explanation.x, explanation.y]), **maps))

    def cost_csv(self, analysis: Analysis, measured: dict) -> Path:
        return self._write(analysis, "cost.csv", lambda p: p.write_text(cost_csv_text(measured)))


def cost_csv_text(measured: dict) -> str:
    """Raw numbers (bytes, FLOPs, ms) per method, one row each."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["method", "feature_h", "feature_w", "channels", "device", "analytic_bytes",
                     "memory_bytes", "flops", "time_ms", "estimated", "reason"])
    height, width = measured["feature_size"]
    for method in METHODS:
        item = measured[method]
        writer.writerow([method, height, width, measured["channels"], measured["device"],
                         item.get("analytic_bytes"), item.get("memory_bytes"), item.get("flops"),
                         item.get("time_ms"), bool(item.get("estimated", False)), item.get("reason", "")])
    return out.getvalue()

"""The app's state without Gradio: models loaded once, one network run per (model, image) kept
in a bounded cache, and a click answered from it (maps, top-k, pictures, cost).

Every handler of ccnet/app/ui/ is a thin wrapper around a method here, so the behaviour
(caching, bad input, rendering choices, cost measurement) is unit-tested without a server, and
the named API endpoints and the browser share one implementation.
"""
from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccnet import limits
from ccnet.app import inputs
from ccnet.app.analysis import SIZES, Analysis, Display, Explanation, size_note
from ccnet.app.cache import LRUCache
from ccnet.app.links import LinkKeys
from ccnet.app.models import ModelStore
from ccnet.app.present import md_text
from ccnet.app.server.zerogpu import gpu_task, measure_seconds, network_seconds
from ccnet.errors import CCNetError, ImageError, shown
from ccnet.inference.agreement import agreement, mean_on_cross_share, nonlocal_map
from ccnet.inference.domain import domain_check
from ccnet.inference.explain import pixel_attention
from ccnet.inference.geometry import cell_centre, cell_of
from ccnet.inference.images import check_size, decode_reduced, limit_size
from ccnet.inference.predictor import Predictor, predict_or_fall_back, resolve_device
from ccnet.nn import cost
from ccnet.nn.attention_maps import composed_map, dense_matrix
from ccnet.nn.cost import METHODS
from ccnet.viz import pictures as viz
from ccnet.weights import family, presets
from ccnet.weights.load import LoadedModel, load_model

PHOTO_MODEL = "ccnet_r50-d8_512x512_160k_ade20k"  # offered when the embedded model meets a photo
PANEL_CLASSES = ("traffic sign", "traffic light")  # the cue panel's labels in the synthetic scenes
PAPER_GRID = (97, 97)  # the paper's cost setting: a 769x769 input at output stride 8
ImageSource = str | Path | bytes | np.ndarray


@gpu_task(network_seconds)
def _run_network(predictor: Predictor, image: np.ndarray, cpu_predictor: Callable[[], Predictor]):  # noqa: ANN202
    return predict_or_fall_back(predictor, image, True, cpu_predictor)


def image_key(source: ImageSource) -> str:
    """sha1 of the file's bytes (or of an array's shape and pixels): the image's cache identity."""
    digest = hashlib.sha1()
    if isinstance(source, np.ndarray):
        digest.update(repr((source.shape, source.dtype.str)).encode())
        digest.update(np.ascontiguousarray(source).data)
    elif isinstance(source, bytes):
        digest.update(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{path.name} is no longer on the server (uploads expire after "
                             f"{limits.duration(limits.UPLOAD_MAX_AGE_S)}); upload it again")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def load_image(source: ImageSource) -> tuple[np.ndarray, str | None]:
    """Decoded RGB at the size the app works with, and a note when it had to be downscaled."""
    image, original = decode_reduced(source, limits.MAX_SIDE)  # a big JPEG decodes at a reduced scale (memory, time)
    check_size(original)  # the file's own size, for the checks and the note
    image, note = limit_size(image, limits.MAX_SIDE, original)
    return (image if image.flags.writeable else image.copy()), note


class Explorer:
    """One per app: models loaded once per name, one network run per (model, image), cached."""

    def __init__(
        self,
        model: str = "default",
        device: str = "auto",
        amp: str | None = None,
        max_entries: int = limits.ANALYSES,
        max_bytes: int = limits.ANALYSES_BYTES,
        loader: Callable[..., LoadedModel] = load_model,
    ) -> None:
        self.default_model = model
        self.default_size = "interactive" if resolve_device(device).type == "cpu" else "full"
        self.device = resolve_device(device).type
        self.amp = amp
        self.models = ModelStore(model, self.device, amp, loader)
        self.cache = LRUCache(max_entries, max_bytes)
        self.kept: set[str] = set()  # image keys (the examples) held in their own cache, never evicted
        self.kept_cache = LRUCache(64, 1 << 30)
        self.cost_cache = LRUCache(64, 1 << 20)
        self.links = LinkKeys()  # the uploads' link keys (random, issued to their senders)
        self.network_runs = 0
        self._in_flight, self.max_in_flight = 0, 0  # concurrent network runs, for the load test
        self._count_lock = threading.Lock()

    # -- models: self.models (ccnet.app.models.ModelStore), each loaded once per name ----------------
    def size_for(self, name: str | None, size: str | None = None) -> str:
        """The analysis size an image gets: for a released model `size` if given, else the app's
        default (interactive on a CPU); always "full" for other models (the embedded one runs at
        256×128 by its own protocol)."""
        if size not in (None, "", *SIZES):
            raise CCNetError(f"unknown analysis size {shown(size)}; choose one of: {', '.join(SIZES)}")
        return (size or self.default_size) if (name or self.default_model) in presets.presets() else "full"

    def classes(self, name: str | None = None) -> tuple[str, ...]:
        return self.models.model(name)[0].classes

    # -- the one network run --------------------------------------------------------------------
    def analyse(self, source: ImageSource, model: str | None = None, size: str | None = None) -> Analysis:
        """The cached analysis of this image under this model at this analysis size (see size_for),
        running the network if needed."""
        name = model or self.default_model
        if source is None:
            raise ImageError("no image yet: upload one or pick an example")
        size = self.size_for(name, size)
        self.models.ready(name)  # a download goes on in the background: this queue is everyone's
        key = image_key(source)
        return self._cache_for(key).get_or_create((name, size, key), lambda: self._run(name, size, key, source))

    def keep(self, sources: Iterable[ImageSource], now: bool = True) -> dict[str, ImageSource]:
        """Keep these images' analyses (the examples) apart from the uploads' cache, so that no flood
        of uploads evicts them; `now` analyses them at once, else on first use. Returns them by key."""
        by_key = {image_key(source): source for source in sources}
        self.kept |= set(by_key)
        for source in by_key.values() if now else ():
            self.analyse(source)
        return by_key

    def _run(self, name: str, size: str, key: str, source: ImageSource) -> tuple[Analysis, int]:
        image, note = load_image(source)
        loaded, predictor = self.models.model(name)[0], self.models.predictor(name, size)
        with self._count_lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            prediction, fallback_note = _run_network(predictor, image, lambda: self.models.cpu_predictor(name))
        finally:
            with self._count_lock:
                self._in_flight -= 1
        with self._count_lock:
            self.network_runs += 1
        if name in presets.presets():  # only released models have two sizes
            note = "; ".join(n for n in (note, size_note(size, prediction.input_size, loaded.protocol)) if n)
        note = "; ".join(n for n in (note, fallback_note) if n) or None
        probabilities = torch.softmax(prediction.logits, dim=0)
        check = domain_check(name)
        confidence, mask = probabilities.max(dim=0)
        analysis = Analysis(
            model=name, key=key, image=image,
            mask=mask.numpy().astype(np.uint8 if len(loaded.classes) <= 256 else np.int32),
            confidence=confidence.numpy().astype(np.float16),
            attention=prediction.attention if prediction.kind == "criss-cross" else [], grid=prediction.grid,
            dense=prediction.attention[0] if prediction.kind == "non-local" else None, kind=prediction.kind,
            seconds=prediction.seconds, device="cpu" if fallback_note else predictor.device.type, note=note,
            analysis_size=size, input_size=prediction.input_size, domain=check.assess(probabilities) if check else None,
        )
        return analysis, analysis.nbytes

    # -- what the views show ------------------------------------------------------------------
    def overlay(self, analysis: Analysis, alpha: float = Display.alpha,
                click: tuple[int, int] | None = None) -> np.ndarray:
        """The class colours over the image, with the clicked pixel marked when there is one."""
        picture = viz.overlay(analysis.image, analysis.mask, self.models.model(analysis.model)[0].palette, alpha)
        return viz.mark_pixel(picture, *click) if click else picture

    def explain(self, source: ImageSource | Analysis, x: int, y: int, model: str | None = None,
                display: Display = Display(), size: str | None = None) -> Explanation:
        """The attention of the cell under pixel (x, y) of the analysed image (or of an analysis).
        Never runs the network for an image already analysed."""
        analysis = source if isinstance(source, Analysis) else self.analyse(source, model, size)
        x, y = inputs.pixel(x, y)
        if analysis.kind == "none":
            raise CCNetError(f"{analysis.model} has no attention to show: its head sees each pixel's "
                             "neighbourhood only; pick a head with attention (R = 1, 2, 3 or non-local)")
        weights = [analysis.dense] if analysis.kind == "non-local" else analysis.attention
        maps = pixel_attention(analysis.kind, weights, analysis.grid, analysis.size, x, y)
        view = display.view if display.view in analysis.views else "composed"
        explanation = Explanation(analysis, x, y, maps, view)
        explanation.topk = self._topk(explanation, display.k)
        return explanation

    def _topk(self, explanation: Explanation, k: int) -> list[dict]:
        analysis, classes = explanation.analysis, self.classes(explanation.analysis.model)
        rows = []
        for rank, (row, col, weight) in enumerate(viz.topk(explanation.view_map, k), start=1):
            cx, cy = cell_centre(row, col, analysis.grid, analysis.size)
            label = int(analysis.mask[cy, cx])
            rows.append({"rank": rank, "cell": [row, col], "pixel": [cx, cy], "weight": round(weight, 6),
                         "class": classes[label] if label < len(classes) else str(label)})
        return rows

    def render(self, explanation: Explanation, display: Display) -> dict[str, Any]:
        """The pictures of a click that the API returns: the chosen view's heat map (pixel and
        top-k marked) and every view side by side. (The page draws its maps in the browser.)"""
        analysis, click = explanation.analysis, (explanation.x, explanation.y)
        thumb = analysis.thumbnail
        scale = thumb.shape[1] / analysis.size[1]

        def picture(grid_map: np.ndarray, under: np.ndarray) -> np.ndarray:
            return viz.heatmap(grid_map, under, display.cmap, display.clip, display.scale,
                               display.upsampling, grid_lines=display.grid_lines)

        maps = dict(zip(analysis.views, [*explanation.maps.steps, explanation.maps.composed]))
        main = viz.mark_cells(picture(maps[explanation.view], analysis.image),
                              [tuple(t["cell"]) for t in explanation.topk], analysis.grid)
        small = [viz.mark_pixel(picture(m, thumb), round(click[0] * scale), round(click[1] * scale))
                 for m in maps.values()]
        return {
            "heatmap": viz.mark_pixel(main, *click),
            "steps": viz.side_by_side(small, list(maps)),
        }

    def _sibling(self, name: str, analysis: Analysis) -> Analysis:
        """Another family head's analysis of the same image: the very one choosing it in the menu
        makes (same cache and key, kept with the examples), so each head runs once per image."""
        if name == analysis.model:
            return analysis
        return self._cache_for(analysis.key).get_or_create(
            (name, "full", analysis.key), lambda: self._run(name, "full", analysis.key, analysis.image))

    def _cache_for(self, key: str) -> LRUCache:
        """The examples' results live in their own cache, never evicted by uploads."""
        return self.kept_cache if key in self.kept else self.cache

    def _criss_cross_of(self, analysis: Analysis) -> tuple[str, list[torch.Tensor]]:
        """The criss-cross head a comparison uses: the analysis' own, else (a head without one) R = 2's."""
        if analysis.kind == "criss-cross":
            return analysis.model, analysis.attention
        return family.BASE, self._sibling(family.BASE, analysis).attention

    def _nonlocal_of(self, analysis: Analysis) -> torch.Tensor:
        """The non-local head's (N, N) weights of the analysed image (its own, for that head)."""
        sibling = family.nonlocal_sibling(analysis.model)
        matrix = self._sibling(sibling, analysis).dense
        if matrix is None or matrix.shape[0] != analysis.grid[0] * analysis.grid[1]:
            raise CCNetError(f"{sibling} saw a different feature grid than {analysis.model}")
        return matrix

    def compare_nonlocal(self, analysis: Analysis, x: int, y: int) -> tuple[np.ndarray, dict]:
        """The non-local head's map of the cell under pixel (x, y) (same backbone, same image) and how
        it agrees with a criss-cross head's composed map (the shown head's, or R = 2's for a head
        without criss-cross attention), with both maps' on-cross share averaged over the image."""
        cell = cell_of(*inputs.pixel(x, y), analysis.size, analysis.grid)
        family.nonlocal_sibling(analysis.model)  # a one-line error for models outside the family
        criss_cross, steps = self._criss_cross_of(analysis)
        matrix = self._nonlocal_of(analysis)
        composed = composed_map(steps, *cell).numpy().astype(np.float32)
        non_local = nonlocal_map(matrix, *cell, analysis.grid)
        figures = agreement(composed, non_local, cell)
        figures["criss_cross_model"] = criss_cross
        figures["image_on_cross_share"] = self._image_shares(analysis, steps, matrix)
        panel = self.panel_cells(analysis)
        figures["panel_weight"] = {name: round(float(m[panel].sum()), 6)
                                   for name, m in (("criss_cross", composed), ("nonlocal", non_local))}
        return non_local, figures

    def _image_shares(self, analysis: Analysis, steps: list[torch.Tensor], matrix: torch.Tensor) -> dict:
        """Per image, once (cached; every pin reuses them): both heads' on-cross share averaged over
        the image."""
        def compute() -> tuple[dict, int]:
            composed = functools.reduce(lambda total, step: dense_matrix(step) @ total,
                                        steps[1:], dense_matrix(steps[0]))
            return {name: round(mean_on_cross_share(m.numpy(), analysis.grid), 6)
                    for name, m in (("criss_cross", composed), ("nonlocal", matrix))}, 256

        return self._cache_for(analysis.key).get_or_create((analysis.model, "on-cross shares", analysis.key), compute)

    def panel_cells(self, analysis: Analysis) -> np.ndarray:
        """(h, w) bool: the feature cells whose centre pixel is labelled as the cue panel (traffic
        sign or light), where a vehicle's attention finds what decides car or truck."""
        def compute() -> tuple[np.ndarray, int]:
            classes = self.classes(analysis.model)
            panel_classes = [classes.index(name) for name in PANEL_CLASSES if name in classes]
            h, w = analysis.grid
            labels = np.array([[analysis.mask[cell_centre(r, c, analysis.grid, analysis.size)[::-1]]
                                for c in range(w)] for r in range(h)])
            panel = np.isin(labels, panel_classes)
            return panel, panel.nbytes + 64

        return self._cache_for(analysis.key).get_or_create((analysis.model, "panel cells", analysis.key), compute)

    def heads(self, analysis: Analysis) -> dict[str, Analysis]:
        """Every head the page shows side by side for this image: the embedded family's (each run
        once, cached with the image), or the analysis alone for a model outside the family."""
        if analysis.model != family.BASE and not family.is_sibling(analysis.model):
            return {analysis.model: analysis}
        return {family.sibling_name(arm): self._sibling(family.sibling_name(arm), analysis) for arm in family.ARMS}

    def head_classes(self, analysis: Analysis, x: int, y: int) -> dict[str, str]:
        """The class every head of the embedded family gives pixel (x, y) of an analysed image."""
        classes = self.classes(analysis.model)
        return {name: classes[int(head.mask[y, x])] for name, head in self.heads(analysis).items()}

    # -- cost -----------------------------------------------------------------------------------
    def cost(self, source: ImageSource | Analysis, model: str | None = None, size: str | None = None) -> dict:
        """Memory, FLOPs and time of RCCA R=1, R=2 and the non-local block at this image's feature
        size, measured once per (channels, feature size, device) and cached."""
        analysis = source if isinstance(source, Analysis) else self.analyse(source, model, size)
        channels = self.models.model(analysis.model)[0].net.config.head_channels
        height, width = analysis.grid
        key = (channels, height, width, self.device)

        def measure() -> tuple[dict, int]:
            result = {"feature_size": [height, width], "channels": channels, "device": self.device}
            return {**result, **_measure(METHODS, channels, height, width, self.device)}, 4096

        return self.cost_cache.get_or_create(key, measure)

    @staticmethod
    def cost_growth(measured: dict) -> dict:
        """Analytic memory and closed-form FLOPs of each method on square grids (the growth chart's
        curves: counting FLOPs on dozens of sizes would take seconds), with this image's values."""
        sides, curves = _growth_curves(measured["channels"])
        return {"sides": list(sides), "curves": curves, "current": measured, "paper": list(PAPER_GRID)}

    def status(self, analysis: Analysis | None = None, model: str | None = None) -> str:
        """The status line: device, model and the last inference's time (nothing server-wide)."""
        name = analysis.model if analysis else model or self.default_model
        text = f"device **{self.device}** · model **{md_text(name)}**"
        if analysis:
            height, width = analysis.size
            text += f" · last inference {analysis.seconds * 1000:.0f} ms on {width}×{height}"
            text += f" (feature grid {analysis.grid[0]}×{analysis.grid[1]})"
        if analysis and analysis.note:
            text += f" · {md_text(analysis.note)}"
        return text


@gpu_task(measure_seconds)
def _measure(methods: tuple[str, ...], channels: int, height: int, width: int, device: str) -> dict:
    return cost.measure_costs(methods, channels, height, width, device=device)


@functools.lru_cache(maxsize=8)
def _growth_curves(channels: int) -> tuple[tuple[int, ...], dict]:
    sides = tuple(sorted({*range(8, 129, 8), PAPER_GRID[0]}))
    return sides, {
        method: {"memory_bytes": [cost.analytic_attention_bytes(method, s, s) for s in sides],
                 "flops": [cost.formula_flops(method, channels, s, s) for s in sides]}
        for method in METHODS
    }


